// tests/cuda/gpt2_reference.hpp — the CPU GPT-2 (nn::GPT2<T>, ra/nn/gpt2.hpp: the one model on
// the Eigen backend) behind plain functions, compiled by the host compiler in
// gpt2_reference.cpp, so the GPU model's tests compare against it without Eigen entering a .cu
// translation unit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>

namespace ra::test {

/// The compute type of the CPU model: fp32 or bf16 storage (the GPU model's precisions), or
/// double, the exact reference.
enum class CpuCompute { f32, bf16, f64 };

/// What the CPU model computed for one batch.
struct Gpt2Result {
  double loss = 0.0;
  std::vector<float> grads;         // flat, layout order (empty without targets)
  std::vector<float> params_after;  // after one nn::AdamW step at lr (empty with lr = 0)
  std::vector<double> logits;       // logits(b, t) of a forward without targets
};

/// One step of nn::GPT2 in `compute` initialised from `seed`, on tokens/targets (B,T)
/// row-major, dropout seed `dropout_seed` in training mode: the loss and gradients, and with
/// lr > 0 the parameters after one AdamW step (default config). With targets empty: a forward
/// without targets in evaluation mode, returning logits(b, t).
Gpt2Result reference_gpt2(const nn::GPT2Config& cfg, CpuCompute compute, std::uint64_t seed,
                          const std::vector<std::int32_t>& tokens,
                          const std::vector<std::int32_t>& targets, index_t B, index_t T,
                          std::uint64_t dropout_seed, double lr, index_t b = 0, index_t t = 0);

/// Greedy generation on the CPU model in fp32 (nn::GPT2<float>, init_gpt2(seed)) with the KV
/// cache: the prompts prefilled into a cache of max_seq positions, then `steps` tokens per
/// sequence, each the argmax of the logits (the lowest id on a tie). Returns them per sequence.
std::vector<std::vector<std::int32_t>> cpu_greedy(
    const nn::GPT2Config& cfg, std::uint64_t seed,
    const std::vector<std::vector<std::int32_t>>& prompts, index_t max_seq, int steps);

/// A CPU training run in fp32 (nn::GPT2<float>, nn::AdamW, batches of B x T from `data`, loader
/// and state seeded with `seed`): started from init_gpt2(seed) and `steps` training steps, or
/// from the checkpoint at `load_from` when that is not empty; then saved to `save_to` (when
/// not empty), and one more step taken. Returns the state before that step and its loss.
struct CpuRunState {
  std::vector<float> params, m, v;
  std::uint64_t optimizer_steps = 0, step = 0;
  double next_loss = 0.0;
};
CpuRunState cpu_run(const nn::GPT2Config& cfg, std::shared_ptr<const nn::TokenFile> data, index_t B,
                    index_t T, std::uint64_t seed, int steps, const std::string& load_from,
                    const std::string& save_to, double lr);

}  // namespace ra::test
