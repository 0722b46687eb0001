// ra/cpu/adamw.hpp — AdamW (or AdamW with SPAM) on the host over one flat fp32 parameter
// buffer: the update of ra/model/adamw.hpp, each element computed in double and rounded once.
// The CPU backend's optimizer (ra/cpu/gpt2_backend.hpp); ra::cuda::AdamW is its GPU twin.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/model/adamw.hpp>

namespace ra::cpu {

/// AdamW (or AdamW with SPAM, by config().kind) over a flat buffer of n fp32 parameters.
class AdamW {
 public:
  /// `table`: the tensors of the buffer, each with .offset, .size() and .decay (e.g. a
  /// GPT2's parameter_table()); elements outside every tensor do not decay.
  /// Throws ra::error on a bad config or a tensor outside [0, n).
  template <class Table>
  AdamW(std::size_t n, const Table& table, const model::AdamWConfig& cfg = {})
      : cfg_(cfg), decay_(model::decay_mask(n, table, "cpu::AdamW")) {
    cfg_.validate("cpu::AdamW");
    m_.assign(n, 0.f);
    v_.assign(n, 0.f);
  }

  const model::AdamWConfig& config() const { return cfg_; }
  std::size_t size() const { return m_.size(); }
  /// Number of steps taken (t of the last step).
  std::uint64_t steps() const { return t_; }
  /// Elements whose gradient SPAM clipped, over all steps (0 for adamw).
  std::uint64_t spikes() const { return spikes_; }

  /// √Σ g² over all gradients, accumulated in double.
  static double global_norm(std::span<const float> grads) {
    double s = 0.0;
    for (float g : grads) s += static_cast<double>(g) * static_cast<double>(g);
    return std::sqrt(s);
  }

  /// One step at learning rate lr: updates params in place from grads (both of size()).
  /// Throws ra::error on a size mismatch or a non-finite gradient norm (the parameters are
  /// then left unchanged).
  model::AdamWStep step(std::span<float> params, std::span<const float> grads, double lr) {
    constexpr const char* where = "cpu::AdamW::step";
    require_arg(params.size() == m_.size(), where, "params.size()", params.size(),
                ra::detail::concat(m_.size(), " (the optimizer's size)"));
    require_arg(grads.size() == m_.size(), where, "grads.size()", grads.size(),
                ra::detail::concat(m_.size(), " (the optimizer's size)"));
    model::AdamWStep r;
    r.grad_norm = global_norm(grads);
    require(std::isfinite(r.grad_norm), where, ": the gradient norm is ", r.grad_norm,
            ", expected a finite value (the loss diverged or a gradient overflowed)");
    if (cfg_.grad_clip > 0.0) r.clip_scale = std::min(1.0, cfg_.grad_clip / (r.grad_norm + 1e-6));
    ++t_;
    r.spam = cfg_.phase(t_);
    const double b1 = cfg_.beta1, b2 = cfg_.beta2, theta = cfg_.spam.threshold;
    const double w = r.spam.warmup_scale;
    const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
    for (std::size_t i = 0; i < m_.size(); ++i) {
      double g = static_cast<double>(grads[i]) * r.clip_scale;
      const double m0 = r.spam.reset ? 0.0 : m_[i];
      const double v0 = r.spam.reset ? 0.0 : v_[i];
      if (r.spam.clip && v0 > 0.0 && g * g > theta * v0) {
        g = std::copysign(std::sqrt(theta * v0), g);
        ++r.spikes;
      }
      const double m = b1 * m0 + (1.0 - b1) * g;
      const double v = b2 * v0 + (1.0 - b2) * g * g;
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      const double p = params[i];
      const double wd = decay_[i] ? cfg_.weight_decay : 0.0;
      params[i] =
          static_cast<float>(p - lr * (w * ((m / c1) / (std::sqrt(v / c2) + cfg_.eps)) + wd * p));
    }
    spikes_ += r.spikes;
    return r;
  }

  /// The state, for checkpoints: first and second moments, the step count and spikes().
  std::span<const float> first_moment() const { return m_; }
  std::span<const float> second_moment() const { return v_; }
  /// Restores the state saved from first_moment(), second_moment(), steps(), spikes().
  /// Throws ra::error on a size mismatch.
  void restore(std::span<const float> m, std::span<const float> v, std::uint64_t t,
               std::uint64_t spikes = 0) {
    require(m.size() == m_.size() && v.size() == v_.size(), "cpu::AdamW::restore: got ", m.size(),
            " and ", v.size(), " moment values, expected ", m_.size(), " each");
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    t_ = t;
    spikes_ = spikes;
  }

 private:
  model::AdamWConfig cfg_;
  std::vector<float> m_, v_;
  std::vector<std::uint8_t> decay_;
  std::uint64_t t_ = 0, spikes_ = 0;
};

}  // namespace ra::cpu
