// ra/expr.hpp — lazy nodes: gemm, folded attention, and the attention-block pipeline.
#pragma once

#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/gemm.hpp>
