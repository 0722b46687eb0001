// ra/expr/gates.hpp — learnable gates and self-restart, as the attention node sees them.
//
// Gates: raw parameters w_std, w_rec (one pair per layer, or one pair per head), effective
// value g = max(w, 1e-8) (no gradient below the floor) or, as an option, g = softplus(w).
// The kernel scales the Q tile on load by g_std for d < D - R and g_rec for d >= D - R, so
// the gates are applied exactly once and V is never gated.
// Self-restart: alpha_h = clamp(a_h, 0, 0.5), O' = (1 - alpha_h) O + alpha_h V_h.
//
// The pointers address host memory for the CPU backend and device memory for the CUDA one;
// kernels read them at run time, so a captured CUDA graph sees updated values.
#pragma once

#include <cmath>
#include <cstdint>
#include <ostream>

#include <ra/core/config.hpp>

namespace ra {

enum class GateMode : std::uint8_t { none, per_layer, per_head };
enum class GateParam : std::uint8_t { clamp, softplus };

inline std::ostream& operator<<(std::ostream& os, GateMode m) {
  return os << (m == GateMode::none ? "none" : m == GateMode::per_layer ? "per_layer" : "per_head");
}
inline std::ostream& operator<<(std::ostream& os, GateParam p) {
  return os << (p == GateParam::clamp ? "clamp" : "softplus");
}

inline constexpr float kGateFloor = 1e-8f;
inline constexpr float kGateInitStd = 0.9f;
inline constexpr float kGateInitRec = 0.1f;
inline constexpr float kRestartInit = 0.05f;
inline constexpr float kRestartMax = 0.5f;

/// Effective gate g(w) of a raw parameter.
RA_HOST_DEVICE inline float effective_gate(float w, GateParam p) {
  if (p == GateParam::softplus) return w > 20.f ? w : log1pf(expf(w));
  return w > kGateFloor ? w : kGateFloor;
}

/// dg/dw (0 below the clamp floor, as the reference implementation).
RA_HOST_DEVICE inline float effective_gate_grad(float w, GateParam p) {
  if (p == GateParam::softplus) return 1.f / (1.f + expf(-w));
  return w >= kGateFloor ? 1.f : 0.f;
}

/// The raw parameter whose effective gate is g (inverse of effective_gate).
inline float raw_gate_for(float g, GateParam p) {
  if (p == GateParam::softplus) return g > 20.f ? g : std::log(std::expm1(g));
  return g;
}

/// Effective self-restart mix alpha(a) = clamp(a, 0, 0.5).
RA_HOST_DEVICE inline float effective_restart(float a) {
  return a < 0.f ? 0.f : (a > kRestartMax ? kRestartMax : a);
}

/// d alpha / d a: 1 inside [0, 0.5], else 0.
RA_HOST_DEVICE inline float effective_restart_grad(float a) {
  return (a >= 0.f && a <= kRestartMax) ? 1.f : 0.f;
}

/// Gate parameters of one attention call.
struct Gates {
  GateMode mode = GateMode::none;
  GateParam param = GateParam::clamp;
  const float* w_std = nullptr;  // 1 value (per_layer) or H values (per_head)
  const float* w_rec = nullptr;

  /// Raw (w_std, w_rec) index for head h.
  RA_HOST_DEVICE int index(int h) const { return mode == GateMode::per_head ? h : 0; }
  RA_HOST_DEVICE bool enabled() const { return mode != GateMode::none; }
};

namespace gates {
/// No gates: plain causal attention on (Qf, Kf, V).
inline Gates none() { return {}; }
/// One (w_std, w_rec) pair for the layer; each pointer addresses one float.
inline Gates per_layer(const float* w_std, const float* w_rec, GateParam p = GateParam::clamp) {
  return {GateMode::per_layer, p, w_std, w_rec};
}
/// One pair per head; each pointer addresses H floats.
inline Gates per_head(const float* w_std, const float* w_rec, GateParam p = GateParam::clamp) {
  return {GateMode::per_head, p, w_std, w_rec};
}
}  // namespace gates

/// Self-restart parameters (per head, H floats); a null pointer turns it off.
struct Restart {
  const float* a = nullptr;
  RA_HOST_DEVICE bool enabled() const { return a != nullptr; }
};

namespace restart {
inline Restart none() { return {}; }
inline Restart per_head(const float* a) { return {a}; }
}  // namespace restart

}  // namespace ra
