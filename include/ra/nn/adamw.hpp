// ra/nn/adamw.hpp — AdamW over one flat fp32 parameter buffer, with global-norm gradient
// clipping and decoupled weight decay.
//
// One fused pass over every element (t = step count after this step, g = clipped gradient):
//   s  = min(1, clip / (‖grad‖₂ + 1e-6))        global norm over ALL gradients (clip 0: off)
//   g  = s · grad
//   m  = β1 m + (1 − β1) g,        v = β2 v + (1 − β2) g²
//   m̂  = m / (1 − β1^t),           v̂ = v / (1 − β2^t)
//   p  = p − lr · (m̂ / (√v̂ + ε) + λ p)   λ = weight_decay on decayed tensors, 0 elsewhere
// (llm.c's form of PyTorch's AdamW; defaults β1 0.9, β2 0.95, ε 1e-8, λ 0.1, clip 1.0). Which
// tensors decay comes from the parameter table (ra/nn/gpt2.hpp: the 2-D weights and the
// embeddings; never biases, LayerNorm, gates or restart). The state m, v is fp32, one value
// per parameter; each element's update is computed in double and rounded once.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra::nn {

/// AdamW hyperparameters (the learning rate is given per step, from the schedule).
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // max global gradient norm; 0 turns clipping off

  /// Throws ra::error naming a value outside its range.
  void validate(const char* where = "nn::AdamWConfig") const {
    require_arg(beta1 >= 0.0 && beta1 < 1.0, where, "beta1", beta1, "a value in [0, 1)");
    require_arg(beta2 >= 0.0 && beta2 < 1.0, where, "beta2", beta2, "a value in [0, 1)");
    require_arg(eps > 0.0, where, "eps", eps, "a positive value");
    require_arg(weight_decay >= 0.0, where, "weight_decay", weight_decay, "a value >= 0");
    require_arg(grad_clip >= 0.0, where, "grad_clip", grad_clip, "a value >= 0 (0: off)");
  }
};

/// What one step did.
struct AdamWStep {
  double grad_norm = 0.0;   // global gradient norm before clipping
  double clip_scale = 1.0;  // the factor the gradients were multiplied by
};

/// One byte per parameter of a flat buffer of n: 1 where the tensor holding it decays (its
/// table entry's .decay), 0 elsewhere (also outside every tensor). `table`: the tensors, each
/// with .offset, .size() and .decay (a GPT2's parameter_table()). Both optimizers (CPU and
/// GPU) build their masks here. Throws ra::error, naming `where`, on a tensor outside [0, n).
template <class Table>
std::vector<std::uint8_t> decay_mask(std::size_t n, const Table& table, const char* where) {
  std::vector<std::uint8_t> mask(n, 0);
  for (const auto& p : table) {
    require(p.offset >= 0 && p.size() >= 0 && static_cast<std::size_t>(p.offset + p.size()) <= n,
            where, ": tensor at offset ", p.offset, " of size ", p.size(), " lies outside the ", n,
            " parameters, expected a table of this buffer");
    if (p.decay)
      for (index_t i = 0; i < p.size(); ++i) mask[static_cast<std::size_t>(p.offset + i)] = 1;
  }
  return mask;
}

/// AdamW over a flat buffer of n fp32 parameters.
class AdamW {
 public:
  /// `table`: the tensors of the buffer, each with .offset, .size() and .decay (e.g. a
  /// GPT2's parameter_table()); elements outside every tensor do not decay.
  /// Throws ra::error on a bad config or a tensor outside [0, n).
  template <class Table>
  AdamW(std::size_t n, const Table& table, const AdamWConfig& cfg = {})
      : cfg_(cfg), decay_(decay_mask(n, table, "nn::AdamW")) {
    cfg_.validate("nn::AdamW");
    m_.assign(n, 0.f);
    v_.assign(n, 0.f);
  }

  const AdamWConfig& config() const { return cfg_; }
  std::size_t size() const { return m_.size(); }
  /// Number of steps taken (t of the last step).
  std::uint64_t steps() const { return t_; }

  /// √Σ g² over all gradients, accumulated in double.
  static double global_norm(std::span<const float> grads) {
    double s = 0.0;
    for (float g : grads) s += static_cast<double>(g) * static_cast<double>(g);
    return std::sqrt(s);
  }

  /// One AdamW step at learning rate lr: updates params in place from grads (both of
  /// size()). Throws ra::error on a size mismatch or a non-finite gradient norm (the
  /// parameters are then left unchanged).
  AdamWStep step(std::span<float> params, std::span<const float> grads, double lr) {
    constexpr const char* where = "nn::AdamW::step";
    require_arg(params.size() == m_.size(), where, "params.size()", params.size(),
                ra::detail::concat(m_.size(), " (the optimizer's size)"));
    require_arg(grads.size() == m_.size(), where, "grads.size()", grads.size(),
                ra::detail::concat(m_.size(), " (the optimizer's size)"));
    AdamWStep r;
    r.grad_norm = global_norm(grads);
    require(std::isfinite(r.grad_norm), where, ": the gradient norm is ", r.grad_norm,
            ", expected a finite value (the loss diverged or a gradient overflowed)");
    if (cfg_.grad_clip > 0.0) r.clip_scale = std::min(1.0, cfg_.grad_clip / (r.grad_norm + 1e-6));
    ++t_;
    const double b1 = cfg_.beta1, b2 = cfg_.beta2;
    const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
    for (std::size_t i = 0; i < m_.size(); ++i) {
      const double g = static_cast<double>(grads[i]) * r.clip_scale;
      const double m = b1 * m_[i] + (1.0 - b1) * g;
      const double v = b2 * v_[i] + (1.0 - b2) * g * g;
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      const double p = params[i];
      const double wd = decay_[i] ? cfg_.weight_decay : 0.0;
      params[i] = static_cast<float>(p - lr * ((m / c1) / (std::sqrt(v / c2) + cfg_.eps) + wd * p));
    }
    return r;
  }

  /// The state, for checkpoints: first and second moments and the step count.
  std::span<const float> first_moment() const { return m_; }
  std::span<const float> second_moment() const { return v_; }
  /// Restores the state saved from first_moment(), second_moment(), steps().
  /// Throws ra::error on a size mismatch.
  void restore(std::span<const float> m, std::span<const float> v, std::uint64_t t) {
    require(m.size() == m_.size() && v.size() == v_.size(), "nn::AdamW::restore: got ", m.size(),
            " and ", v.size(), " moment values, expected ", m_.size(), " each");
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    t_ = t;
  }

 private:
  AdamWConfig cfg_;
  std::vector<float> m_, v_;
  std::vector<std::uint8_t> decay_;
  std::uint64_t t_ = 0;
};

}  // namespace ra::nn
