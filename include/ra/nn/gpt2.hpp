// ra/nn/gpt2.hpp — nn::GPT2<T>: the GPT-2 model (ra/nn/gpt2_model.hpp) on the CPU backend
// (ra/cpu/gpt2_backend.hpp, Eigen, every op in double), with compute type T (float, bf16 or
// double) and nn::AdamW (ra::cpu::AdamW) as its optimizer. The reference the GPU model
// (nn::CudaGPT2<T>, ra/nn/gpt2_cuda.cuh) is tested against: the same seed gives the same model.
//
// Initialisation (GPT-2, ra/model/gpt2_config.hpp): weights ~ normal(0, 0.02); the residual
// projections (attention W_o and the MLP's W_proj) further scaled by 1/√(2·n_layer); biases 0;
// LayerNorm weight 1, bias 0; gates 0.9 / 0.1; restart a = 0.05. Both arms draw the same numbers
// in the same order: the RA arm stores repack_qkv(W_q, W_k, W_v), a row permutation of the
// baseline's W_attn, so at initialisation RA is the baseline with rows permuted (plus its
// gates). AdamW decays every 2-D tensor (linear weights, wte — also the head — and wpe) and
// nothing else (biases, LayerNorm, gates, restart).
#pragma once

#include <ra/cpu/gpt2_backend.hpp>
#include <ra/nn/adamw.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/gpt2_model.hpp>

namespace ra::nn {

/// GPT-2 on the CPU with fp32 master parameters and gradients and compute type T.
template <class T = float>
using GPT2 = GPT2Model<cpu::GPT2Backend<T>>;

}  // namespace ra::nn
