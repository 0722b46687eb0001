// ra/nn/gpt2_cuda.cuh — nn::CudaGPT2<T>: the GPT-2 model (ra/nn/gpt2_model.hpp) on the CUDA
// backend (ra/cuda/gpt2_backend.cuh), compute type ra::bf16 (training) or float (checks), with
// cuda::AdamW as its optimizer. Compiled by nvcc only; no Eigen. The same seed gives the model
// of nn::GPT2<T> (ra/nn/gpt2.hpp), and checkpoints move between the two.
//
//   nn::CudaGPT2<bf16> model(cfg);                     // or (cfg, ctx, stream, GPT2Options)
//   cuda::AdamW opt(model.num_parameters(), model.parameter_table());
//   model.forward(tokens, targets); model.backward(); model.step(opt, lr);
#pragma once

#include <ra/cuda/adamw.cuh>
#include <ra/cuda/gpt2_backend.cuh>
#include <ra/nn/adamw.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/gpt2_model.hpp>

namespace ra::nn {

/// GPT-2 on the GPU with fp32 master parameters and gradients and compute type T.
template <class T>
using CudaGPT2 = GPT2Model<cuda::GPT2Backend<T>>;

}  // namespace ra::nn
