// ra/model/adamw.hpp — what AdamW (and AdamW with SPAM) is on every backend: its
// configuration, SPAM's per-step phase, what a step reports, and the decay mask from the
// parameter table. The update itself runs on a backend: ra::cpu::AdamW (ra/cpu/adamw.hpp, in
// double) and ra::cuda::AdamW (ra/cuda/adamw.cuh, one fused fp32 pass). Plain C++.
//
// The update, over one flat fp32 parameter buffer, with global-norm gradient clipping and
// decoupled weight decay, and optionally SPAM on top of it.
//
// One fused pass over every element (t = step count after this step, g = clipped gradient):
//   s  = min(1, clip / (‖grad‖₂ + 1e-6))        global norm over ALL gradients (clip 0: off)
//   g  = s · grad
//   m  = β1 m + (1 − β1) g,        v = β2 v + (1 − β2) g²
//   m̂  = m / (1 − β1^t),           v̂ = v / (1 − β2^t)
//   p  = p − lr · (m̂ / (√v̂ + ε) + λ p)   λ = weight_decay on decayed tensors, 0 elsewhere
// (llm.c's form of PyTorch's AdamW; defaults β1 0.9, β2 0.95, ε 1e-8, λ 0.1, clip 1.0). Which
// tensors decay comes from the parameter table (ra/model/gpt2_config.hpp: the 2-D weights and the
// embeddings; never biases, LayerNorm, gates or restart). The state m, v is fp32, one value
// per parameter; the CPU computes each element's update in double and rounds it once, the GPU
// computes it in fp32 (ra/cuda/adamw.cuh says what that costs).
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
#include <string_view>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra::model {

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
  void validate(const char* where = "model::SpamConfig") const {
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
  void validate(const char* where = "model::AdamWConfig") const {
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

}  // namespace ra::model
