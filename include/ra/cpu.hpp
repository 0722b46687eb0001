// ra/cpu.hpp — the Eigen CPU backend: GEMM, folded attention and the attention block,
// forward and backward, computed in double; weight repacking; ra::cpu::device for ra::eval;
// the GPT-2 layers' kernels (LayerNorm, GELU, embedding, cross-entropy).
#pragma once

#include <ra/core.hpp>
#include <ra/expr.hpp>

#include <ra/cpu/attention.hpp>
#include <ra/cpu/block.hpp>
#include <ra/cpu/cross_entropy.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/embedding.hpp>
#include <ra/cpu/gelu.hpp>
#include <ra/cpu/gemm.hpp>
#include <ra/cpu/layernorm.hpp>
#include <ra/cpu/matrix.hpp>
#include <ra/cpu/repack.hpp>
