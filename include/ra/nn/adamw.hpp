// ra/nn/adamw.hpp — AdamW over one flat fp32 parameter buffer, with global-norm gradient
// clipping and decoupled weight decay, and optionally SPAM on top of it.
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
//
// AdamW with SPAM (kind adamw_spam): T. Huang, Z. Zhu, G. Jin, L. Liu, Z. Wang, S. Liu, "SPAM:
// Spike-Aware Adam with Momentum Reset for Stable LLM Training", ICLR 2025, arXiv:2501.06842
// (Algorithm 1, and the defaults of its authors' code). With the period phase
// k = t mod ΔT (k = t when ΔT = 0), the step t above becomes:
//   reset      if ΔT > 0 and k = 0: m = v = 0 before the step (momentum reset, every ΔT steps)
//   spike clip if θ > 0 and k >= clip_delay, per element with v > 0 (v: the second moment
//              before this step, as in the authors' code):
//                g² > θ·v  →  g = sign(g)·√(θ·v)
//   warm-up    after the first reset (t >= ΔT), for k < N:
//                w = 1 − 0.99 · ½ (1 + cos(π k / (N + 1)))     (0.01 at the reset step → ~1)
//              otherwise w = 1; the Adam direction is scaled by it:
//                p = p − lr · (w · m̂ / (√v̂ + ε) + λ p)
// The bias corrections keep the global t (the moments restart from zero, the step count does
// not), as in the paper's algorithm. The clip delay (the authors' code skips clipping in the
// first 20 steps of each period) and the v > 0 condition exist because a second moment that
// was just zeroed (or never saw a gradient) would clip every element to 0 and stall it; the
// v > 0 condition is this implementation's addition, stated here. Defaults: θ = 5000, ΔT = 500,
// N = 150, clip delay 20. Global-norm clipping still comes first (grad_clip 0 turns it off),
// so the two optimizers differ in SPAM alone. The SPAM state is the step count t (the phase
// and the warm-up follow from it) and the number of elements clipped so far; checkpoints
// store both with the hyperparameters (ra/nn/checkpoint.hpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <string_view>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra::nn {

/// Which update the optimizer applies: plain AdamW, or AdamW with SPAM (see the top).
enum class OptimizerKind : std::uint8_t { adamw, adamw_spam };

inline std::string_view name(OptimizerKind k) {
  return k == OptimizerKind::adamw ? "adamw" : "adamw_spam";
}

/// "adamw" or "adamw_spam"; throws ra::error naming the value otherwise.
inline OptimizerKind parse_optimizer_kind(std::string_view s) {
  if (s == "adamw") return OptimizerKind::adamw;
  if (s == "adamw_spam") return OptimizerKind::adamw_spam;
  throw error(ra::detail::concat("optimizer: got '", s, "', expected 'adamw' or 'adamw_spam'"));
}

/// What SPAM does at one step (see the top of this header).
struct SpamPhase {
  bool reset = false;             // zero m and v before this step
  bool clip = false;              // spike clipping is on at this step
  double warmup_scale = 1.0;      // w, the factor of the Adam direction
  std::uint64_t since_reset = 0;  // k = t mod ΔT (t when ΔT = 0)
};

/// SPAM's hyperparameters (defaults: the paper's and its authors' code).
struct SpamConfig {
  double threshold = 5000.0;           // θ; 0 turns spike clipping off
  std::uint64_t reset_interval = 500;  // ΔT; 0: the moments are never reset
  std::uint64_t warmup = 150;          // N: steps of cosine warm-up after each reset (0: none)
  std::uint64_t clip_delay = 20;       // no clipping in the first steps of each period

  /// Throws ra::error naming a value outside its range.
  void validate(const char* where = "nn::SpamConfig") const {
    require_arg(std::isfinite(threshold) && threshold >= 0.0, where, "spam threshold", threshold,
                "a finite value >= 0 (0: no spike clipping)");
    require_arg(reset_interval == 0 || warmup <= reset_interval, where, "spam warmup", warmup,
                ra::detail::concat("at most the reset interval ", reset_interval));
  }

  /// What step t (1-based: the step being taken) does.
  SpamPhase at(std::uint64_t t) const {
    SpamPhase p;
    p.since_reset = reset_interval > 0 ? t % reset_interval : t;
    p.reset = reset_interval > 0 && p.since_reset == 0;
    p.clip = threshold > 0.0 && p.since_reset >= clip_delay;
    if (reset_interval > 0 && t >= reset_interval && p.since_reset < warmup) {
      const double k = static_cast<double>(p.since_reset);
      p.warmup_scale =
          1.0 -
          0.99 * 0.5 * (1.0 + std::cos(std::numbers::pi * k / static_cast<double>(warmup + 1)));
    }
    return p;
  }

  bool operator==(const SpamConfig&) const = default;
};

/// AdamW hyperparameters (the learning rate is given per step, from the schedule).
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // max global gradient norm; 0 turns clipping off
  OptimizerKind kind = OptimizerKind::adamw;
  SpamConfig spam;  // used by kind adamw_spam only

  /// Throws ra::error naming a value outside its range.
  void validate(const char* where = "nn::AdamWConfig") const {
    require_arg(beta1 >= 0.0 && beta1 < 1.0, where, "beta1", beta1, "a value in [0, 1)");
    require_arg(beta2 >= 0.0 && beta2 < 1.0, where, "beta2", beta2, "a value in [0, 1)");
    require_arg(eps > 0.0, where, "eps", eps, "a positive value");
    require_arg(weight_decay >= 0.0, where, "weight_decay", weight_decay, "a value >= 0");
    require_arg(grad_clip >= 0.0, where, "grad_clip", grad_clip, "a value >= 0 (0: off)");
    require_arg(kind == OptimizerKind::adamw || kind == OptimizerKind::adamw_spam, where, "kind",
                static_cast<int>(kind), "adamw or adamw_spam");
    if (kind == OptimizerKind::adamw_spam) spam.validate(where);
  }

  /// What step t does: SPAM's phase for adamw_spam, nothing (no reset, no clipping, w = 1)
  /// for adamw.
  SpamPhase phase(std::uint64_t t) const {
    if (kind == OptimizerKind::adamw_spam) return spam.at(t);
    SpamPhase p;
    p.since_reset = t;
    return p;
  }
};

/// What one step did.
struct AdamWStep {
  double grad_norm = 0.0;    // global gradient norm before clipping
  double clip_scale = 1.0;   // the factor the gradients were multiplied by
  SpamPhase spam;            // the SPAM phase of this step (nothing for adamw)
  std::uint64_t spikes = 0;  // elements whose gradient SPAM clipped in this step
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

/// AdamW (or AdamW with SPAM, by config().kind) over a flat buffer of n fp32 parameters.
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
    require(m.size() == m_.size() && v.size() == v_.size(), "nn::AdamW::restore: got ", m.size(),
            " and ", v.size(), " moment values, expected ", m_.size(), " each");
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    t_ = t;
    spikes_ = spikes;
  }

 private:
  AdamWConfig cfg_;
  std::vector<float> m_, v_;
  std::vector<std::uint8_t> decay_;
  std::uint64_t t_ = 0, spikes_ = 0;
};

}  // namespace ra::nn
