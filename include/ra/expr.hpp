// ra/expr.hpp — lazy expressions: views as leaves, nodes (gemm, fold, attend, folded
// attention) that nest, ra::eval / ra::backward, and the attention block as one expression.
#pragma once

#include <ra/expr/attend.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/fold.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/gemm.hpp>
#include <ra/expr/node.hpp>
