// tests/cuda/gpt2_reference.cpp — see gpt2_reference.hpp.
#include "gpt2_reference.hpp"

#include <ra/nn/adamw.hpp>
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
  r.grads.assign(model.gradients().begin(), model.gradients().end());
  if (lr > 0.0) {
    nn::AdamW opt(model.num_parameters(), model.parameter_table());
    opt.step(model.parameters(), model.gradients(), lr);
    r.params_after.assign(model.parameters().begin(), model.parameters().end());
  }
  return r;
}

}  // namespace

Gpt2Result reference_gpt2(const nn::GPT2Config& cfg, bool bf16, std::uint64_t seed,
                          const std::vector<std::int32_t>& tokens,
                          const std::vector<std::int32_t>& targets, index_t B, index_t T,
                          std::uint64_t dropout_seed, double lr, index_t b, index_t t) {
  if (bf16) return run<ra::bf16>(cfg, seed, tokens, targets, B, T, dropout_seed, lr, b, t);
  return run<float>(cfg, seed, tokens, targets, B, T, dropout_seed, lr, b, t);
}

}  // namespace ra::test
