// tests/cuda/gpt2_reference.hpp — the CPU GPT-2 (ra/nn/gpt2.hpp, Eigen backend) behind plain
// functions, compiled by the host compiler in gpt2_reference.cpp, so the GPU model's tests
// compare against it without Eigen entering a .cu translation unit.
#pragma once

#include <cstdint>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/nn/gpt2_config.hpp>

namespace ra::test {

/// What the CPU model computed for one batch.
struct Gpt2Result {
  double loss = 0.0;
  std::vector<float> grads;         // flat, layout order (empty without targets)
  std::vector<float> params_after;  // after one nn::AdamW step at lr (empty with lr = 0)
  std::vector<double> logits;       // logits(b, t) of a forward without targets
};

/// One step of nn::GPT2 (float compute, or bf16 with `bf16`) initialised from `seed`, on
/// tokens/targets (B,T) row-major, dropout seed `dropout_seed` in training mode: the loss and
/// gradients, and with lr > 0 the parameters after one AdamW step (default config).
/// With targets empty: a forward without targets in evaluation mode, returning logits(b, t).
Gpt2Result reference_gpt2(const nn::GPT2Config& cfg, bool bf16, std::uint64_t seed,
                          const std::vector<std::int32_t>& tokens,
                          const std::vector<std::int32_t>& targets, index_t B, index_t T,
                          std::uint64_t dropout_seed, double lr, index_t b = 0, index_t t = 0);

}  // namespace ra::test
