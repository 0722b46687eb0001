// tests/cuda/gpt2_reference.cpp — see gpt2_reference.hpp.
#include "gpt2_reference.hpp"

#include <algorithm>

#include <ra/nn/adamw.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/gpt2.hpp>

namespace ra::test {

namespace {

template <class T>
Gpt2Result run(const nn::GPT2Config& cfg, std::uint64_t seed,
               const std::vector<std::int32_t>& tokens, const std::vector<std::int32_t>& targets,
               index_t B, index_t T_, std::uint64_t dropout_seed, double lr, index_t b, index_t t) {
  nn::GPT2<T> model(cfg);
  model.init_gpt2(seed);
  Gpt2Result r;
  const auto tok = make_view(tokens.data(), shape(B, T_));  // (B,T)
  if (targets.empty()) {
    model.set_training(false);
    model.forward(tok);
    r.logits = model.logits(b, t);
    return r;
  }
  model.set_training(true);
  model.set_dropout_seed(dropout_seed);
  r.loss = model.forward(tok, make_view(targets.data(), shape(B, T_)));  // (B,T)
  model.backward();
  r.grads = model.gradients();
  if (lr > 0.0) {
    nn::AdamW opt(model.num_parameters(), model.parameter_table());
    model.step(opt, lr);
    r.params_after = model.parameters();
  }
  return r;
}

}  // namespace

Gpt2Result reference_gpt2(const nn::GPT2Config& cfg, CpuCompute compute, std::uint64_t seed,
                          const std::vector<std::int32_t>& tokens,
                          const std::vector<std::int32_t>& targets, index_t B, index_t T,
                          std::uint64_t dropout_seed, double lr, index_t b, index_t t) {
  switch (compute) {
    case CpuCompute::bf16:
      return run<ra::bf16>(cfg, seed, tokens, targets, B, T, dropout_seed, lr, b, t);
    case CpuCompute::f64:
      return run<double>(cfg, seed, tokens, targets, B, T, dropout_seed, lr, b, t);
    case CpuCompute::f32:
      break;
  }
  return run<float>(cfg, seed, tokens, targets, B, T, dropout_seed, lr, b, t);
}

std::vector<std::vector<std::int32_t>> cpu_greedy(
    const nn::GPT2Config& cfg, std::uint64_t seed,
    const std::vector<std::vector<std::int32_t>>& prompts, index_t max_seq, int steps) {
  nn::GPT2<float> model(cfg);
  model.init_gpt2(seed);
  model.set_training(false);
  const auto B = static_cast<index_t>(prompts.size());
  model.reset_cache(B, max_seq);
  auto z = model.prefill(prompts);
  std::vector<std::vector<std::int32_t>> out(prompts.size());
  for (int s = 0; s < steps; ++s) {
    std::vector<std::int32_t> next(prompts.size());
    for (index_t b = 0; b < B; ++b) {
      const auto row = z.begin() + b * cfg.vocab;
      next[static_cast<std::size_t>(b)] =
          static_cast<std::int32_t>(std::max_element(row, row + cfg.vocab) - row);
      out[static_cast<std::size_t>(b)].push_back(next[static_cast<std::size_t>(b)]);
    }
    if (s + 1 < steps) z = model.decode(next);
  }
  return out;
}

CpuRunState cpu_run(const nn::GPT2Config& cfg, std::shared_ptr<const nn::TokenFile> data, index_t B,
                    index_t T, std::uint64_t seed, int steps, const std::string& load_from,
                    const std::string& save_to, double lr) {
  nn::GPT2<float> model(cfg);
  nn::AdamW opt(model.num_parameters(), model.parameter_table());
  nn::BatchLoader loader(std::move(data), B, T, seed);
  nn::TrainingState state(seed);
  std::vector<std::int32_t> batch;
  if (load_from.empty()) {
    model.init_gpt2(seed);
    for (int i = 0; i < steps; ++i) nn::train_step(model, opt, loader, state, lr, batch);
  } else {
    nn::load_checkpoint(load_from, model, opt, state, loader);
  }
  CpuRunState r;
  r.params = model.parameters();
  r.m.assign(opt.first_moment().begin(), opt.first_moment().end());
  r.v.assign(opt.second_moment().begin(), opt.second_moment().end());
  r.optimizer_steps = opt.steps();
  r.step = state.step;
  if (!save_to.empty()) nn::save_checkpoint(save_to, model, opt, state, loader);
  r.next_loss = nn::train_step(model, opt, loader, state, lr, batch).loss;
  return r;
}

}  // namespace ra::test
