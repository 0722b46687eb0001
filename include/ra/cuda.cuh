// ra/cuda.cuh — the CUDA backend: core + expr + every ra/cuda header (no Eigen).
//
//   ra::eval(o, node, ra::cuda::device{stream});             lazy nodes on the GPU
//   ra::cuda::AttentionBlock<ra::bf16> block(cfg, B, T);     planned, allocation-free block
//   auto g = ra::cuda::Graph::capture(stream, [&](cudaStream_t s) { block.forward(...); });
//   ra::cuda::GPT2Backend<T>: the GPU backend of the GPT-2 model (nn::CudaGPT2<T>,
//   ra/nn/gpt2_cuda.cuh, which nvcc units include beside this header).
#pragma once

#include <ra/core.hpp>
#include <ra/expr.hpp>

#include <ra/cuda/adamw.cuh>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/block.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/cross_entropy.cuh>
#include <ra/cuda/device.cuh>
#include <ra/cuda/elementwise.cuh>
#include <ra/cuda/eval_attention.cuh>
#include <ra/cuda/eval_gemm.cuh>
#include <ra/cuda/embedding.cuh>
#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/gpt2_backend.cuh>
#include <ra/cuda/graph.cuh>
#include <ra/cuda/layernorm.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/cuda/unfused.cuh>
#include <ra/cuda/workspace.cuh>
