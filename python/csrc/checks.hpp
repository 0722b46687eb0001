// python/csrc/checks.hpp — argument checks of the ra::folded_attention ops and the FoldedCall
// they describe, shared by the CPU and CUDA kernels of the binding. Every failure raises a
// Python exception (TypeError for a dtype, ValueError otherwise) that names the op, the
// argument, the value received and what was expected.
#pragma once

#include <torch/library.h>
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <string_view>

#include "folded_call.hpp"

namespace ra_torch {

inline constexpr const char* kForward = "ra::folded_attention";
inline constexpr const char* kBackward = "ra::folded_attention_backward";

inline std::string shape_of(const at::Tensor& t) {
  return c10::str(t.sizes());
}

// The dtype as Python spells it (torch.float32 is ScalarType Float).
inline std::string dtype_name(at::ScalarType s) {
  switch (s) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kInt:
      return "int32";
    case at::kLong:
      return "int64";
    default:
      return c10::str(s);
  }
}

inline Dtype dtype_of(const char* op, const char* name, const at::Tensor& t, bool allow_f64) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return Dtype::f32;
    case at::kHalf:
      return Dtype::f16;
    case at::kBFloat16:
      return Dtype::bf16;
    case at::kDouble:
      if (allow_f64) return Dtype::f64;
      break;
    default:
      break;
  }
  TORCH_CHECK_TYPE(false, op, ": argument '", name, "' has dtype ", dtype_name(t.scalar_type()),
                   allow_f64 ? ", expected float32, float16, bfloat16 or float64"
                             : ", expected float32, float16 or bfloat16 (float64 only on the CPU)");
}

inline void check_device(const char* op, const char* name, const at::Tensor& t,
                         const at::Tensor& fused) {
  TORCH_CHECK_VALUE(t.device() == fused.device(), op, ": argument '", name, "' is on ", t.device(),
                    ", expected ", fused.device(), " like 'fused'");
}

inline GateMode gate_mode_of(const char* op, std::string_view s) {
  if (s == "none") return GateMode::none;
  if (s == "per_layer") return GateMode::per_layer;
  if (s == "per_head") return GateMode::per_head;
  TORCH_CHECK_VALUE(false, op, ": argument 'gate_mode' is '", s,
                    "', expected 'none', 'per_layer' or 'per_head'");
}

inline GateParam gate_param_of(const char* op, std::string_view s) {
  if (s == "clamp") return GateParam::clamp;
  if (s == "softplus") return GateParam::softplus;
  TORCH_CHECK_VALUE(false, op, ": argument 'gate_param' is '", s,
                    "', expected 'clamp' or 'softplus'");
}

// A float32 vector of n values on fused's device with unit stride.
inline const float* parameter_vector(const char* op, const char* name, const at::Tensor& t,
                                     const at::Tensor& fused, std::int64_t n, const char* expect) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, op, ": argument '", name, "' has shape ",
                    shape_of(t), ", expected (", n, ",) ", expect);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, op, ": argument '", name, "' has dtype ",
                   dtype_name(t.scalar_type()), ", expected float32");
  check_device(op, name, t, fused);
  TORCH_CHECK_VALUE(t.stride(0) == 1 || n == 1, op, ": argument '", name, "' has stride ",
                    t.stride(0), ", expected 1 (contiguous)");
  return t.data_ptr<float>();
}

/// Checks the forward's arguments and describes the call. allow_f64: the CPU kernel takes
/// float64 too. Does not check (D, R) against the compiled lists (the adapter does).
inline FoldedCall folded_call(const char* op, const at::Tensor& fused, std::int64_t H,
                              std::int64_t R, std::string_view gate_mode,
                              std::string_view gate_param, const std::optional<at::Tensor>& w_std,
                              const std::optional<at::Tensor>& w_rec,
                              const std::optional<at::Tensor>& restart, bool allow_f64) {
  FoldedCall c;
  TORCH_CHECK_VALUE(fused.dim() == 3, op, ": argument 'fused' has shape ", shape_of(fused),
                    ", expected (B, T, 3C)");
  c.dtype = dtype_of(op, "fused", fused, allow_f64);
  TORCH_CHECK_VALUE(H > 0, op, ": argument 'n_head' is ", H, ", expected a positive head count");
  const std::int64_t C3 = fused.size(2);
  TORCH_CHECK_VALUE(C3 > 0 && C3 % (3 * H) == 0, op, ": argument 'fused' has shape ",
                    shape_of(fused),
                    ", expected a last extent 3C = 3 * n_head * D with n_head = ", H);
  c.B = fused.size(0);
  c.T = fused.size(1);
  c.H = H;
  c.D = C3 / (3 * H);
  TORCH_CHECK_VALUE(R >= 0 && R < c.D, op, ": argument 'rank' is ", R,
                    ", expected 0 <= rank < D = ", c.D);
  c.R = static_cast<int>(R);
  TORCH_CHECK_VALUE(fused.stride(2) == 1 || fused.numel() == 0, op,
                    ": argument 'fused' has strides ", c10::str(fused.strides()),
                    ", expected a last stride of 1");
  c.fused = fused.data_ptr();
  c.fused_stride_b = fused.stride(0);
  c.fused_stride_t = fused.stride(1);

  c.gate_mode = gate_mode_of(op, gate_mode);
  c.gate_param = gate_param_of(op, gate_param);
  if (c.gate_mode == GateMode::none) {
    TORCH_CHECK_VALUE(!w_std && !w_rec, op,
                      ": arguments 'w_std' and 'w_rec' are given, expected None with gate_mode "
                      "'none'");
  } else {
    const bool per_head = c.gate_mode == GateMode::per_head;
    const std::int64_t n = per_head ? H : 1;
    const char* expect = per_head ? "(one value per head, gate_mode 'per_head')"
                                  : "(one value per layer, gate_mode 'per_layer')";
    TORCH_CHECK_VALUE(w_std.has_value(), op, ": argument 'w_std' is None, expected a tensor with ",
                      "gate_mode '", gate_mode, "'");
    TORCH_CHECK_VALUE(w_rec.has_value(), op, ": argument 'w_rec' is None, expected a tensor with ",
                      "gate_mode '", gate_mode, "'");
    c.w_std = parameter_vector(op, "w_std", *w_std, fused, n, expect);
    c.w_rec = parameter_vector(op, "w_rec", *w_rec, fused, n, expect);
  }
  if (restart)
    c.restart = parameter_vector(op, "restart", *restart, fused, H, "(one value per head)");
  return c;
}

/// A (B,T,C) tensor of the call's dtype and device with a unit last stride.
inline Btc btc_of(const char* op, const char* name, const at::Tensor& t, const at::Tensor& fused,
                  const FoldedCall& c) {
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == c.B && t.size(1) == c.T && t.size(2) == c.H * c.D,
                    op, ": argument '", name, "' has shape ", shape_of(t), ", expected (", c.B,
                    ", ", c.T, ", ", c.H * c.D, ")");
  TORCH_CHECK_TYPE(t.scalar_type() == fused.scalar_type(), op, ": argument '", name, "' has dtype ",
                   dtype_name(t.scalar_type()), ", expected ", dtype_name(fused.scalar_type()),
                   " like 'fused'");
  check_device(op, name, t, fused);
  TORCH_CHECK_VALUE(t.stride(2) == 1 || t.numel() == 0, op, ": argument '", name, "' has strides ",
                    c10::str(t.strides()), ", expected a last stride of 1");
  return {t.data_ptr(), t.stride(0), t.stride(1)};
}

/// The forward's outputs: out (B,T,C) and lse (B,H,T) float32, both contiguous; out_pre like
/// out with restart, else an empty (0,) tensor. register_fake in ra_torch/_ops.py mirrors this.
struct Outputs {
  at::Tensor out, lse, out_pre;
};

inline Outputs allocate_outputs(const at::Tensor& fused, const FoldedCall& c) {
  const auto C = c.H * c.D;
  Outputs o;
  o.out = at::empty({c.B, c.T, C}, fused.options());
  o.lse = at::empty({c.B, c.H, c.T}, fused.options().dtype(at::kFloat));
  o.out_pre =
      c.restart ? at::empty({c.B, c.T, C}, fused.options()) : at::empty({0}, fused.options());
  return o;
}

inline ForwardOutputs forward_outputs(const Outputs& o, bool restart) {
  ForwardOutputs f;
  f.out = {o.out.data_ptr(), o.out.stride(0), o.out.stride(1)};
  f.lse = o.lse.data_ptr<float>();
  if (restart) f.out_pre = {o.out_pre.data_ptr(), o.out_pre.stride(0), o.out_pre.stride(1)};
  return f;
}

/// The backward's gradients: grad_fused (B,T,3C) contiguous; gate gradients like the gates and
/// the restart gradient like restart, float32, or empty (0,) float32 tensors when absent.
struct Gradients {
  at::Tensor grad_fused, grad_w_std, grad_w_rec, grad_restart;
};

inline Gradients allocate_gradients(const at::Tensor& fused, const FoldedCall& c) {
  const auto f32 = fused.options().dtype(at::kFloat);
  const std::int64_t n_gates = c.gate_mode == GateMode::none       ? 0
                               : c.gate_mode == GateMode::per_head ? c.H
                                                                   : 1;
  Gradients g;
  g.grad_fused = at::empty({c.B, c.T, 3 * c.H * c.D}, fused.options());
  g.grad_w_std = at::empty({n_gates}, f32);
  g.grad_w_rec = at::empty({n_gates}, f32);
  g.grad_restart = at::empty({c.restart ? c.H : 0}, f32);
  return g;
}

/// Checks the backward's tensors against the forward call c and points the gradients at g.
inline BackwardArgs backward_args(const at::Tensor& grad_out, const at::Tensor& fused,
                                  const at::Tensor& out, const at::Tensor& lse,
                                  const at::Tensor& out_pre, const FoldedCall& c,
                                  const Gradients& g) {
  constexpr const char* op = kBackward;
  BackwardArgs a;
  a.grad_out = btc_of(op, "grad_out", grad_out, fused, c);
  a.out = btc_of(op, "out", out, fused, c);
  if (c.restart) a.out_pre = btc_of(op, "out_pre", out_pre, fused, c);
  TORCH_CHECK_VALUE(lse.dim() == 3 && lse.size(0) == c.B && lse.size(1) == c.H &&
                        lse.size(2) == c.T && (lse.is_contiguous() || lse.numel() == 0),
                    op, ": argument 'lse' has shape ", shape_of(lse), " and strides ",
                    c10::str(lse.strides()), ", expected a contiguous (", c.B, ", ", c.H, ", ", c.T,
                    ") tensor");
  TORCH_CHECK_TYPE(lse.scalar_type() == at::kFloat, op, ": argument 'lse' has dtype ",
                   dtype_name(lse.scalar_type()), ", expected float32");
  check_device(op, "lse", lse, fused);
  a.lse = lse.data_ptr<float>();
  a.grad_fused = g.grad_fused.data_ptr();
  a.grad_fused_stride_b = g.grad_fused.stride(0);
  a.grad_fused_stride_t = g.grad_fused.stride(1);
  if (g.grad_w_std.numel()) a.grad_w_std = g.grad_w_std.data_ptr<float>();
  if (g.grad_w_rec.numel()) a.grad_w_rec = g.grad_w_rec.data_ptr<float>();
  if (g.grad_restart.numel()) a.grad_restart = g.grad_restart.data_ptr<float>();
  return a;
}

/// Runs f, turning ra's exceptions (std::runtime_error) into a Python ValueError whose message
/// starts with the op's name.
template <class F>
void translate_errors(const char* op, F&& f) {
  try {
    f();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::runtime_error& e) {
    const std::string_view what = e.what();
    if (what.starts_with(op)) TORCH_CHECK_VALUE(false, what);
    TORCH_CHECK_VALUE(false, op, ": ", what);
  }
}

/// The forward op on one device: checks, allocates, then kernel(call, outputs), which may throw
/// ra's exceptions. allow_f64: the device's kernel takes float64.
template <class Kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_forward(
    const at::Tensor& fused, std::int64_t n_head, std::int64_t rank, c10::string_view gate_mode,
    c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart,
    bool allow_f64, Kernel&& kernel) {
  const FoldedCall c = folded_call(kForward, fused, n_head, rank, gate_mode, gate_param, w_std,
                                   w_rec, restart, allow_f64);
  const Outputs o = allocate_outputs(fused, c);
  translate_errors(kForward, [&] { kernel(c, forward_outputs(o, c.restart != nullptr)); });
  return {o.out, o.lse, o.out_pre};
}

/// The backward op on one device: checks, allocates, then kernel(call, args).
template <class Kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_backward(
    const at::Tensor& grad_out, const at::Tensor& fused, const at::Tensor& out,
    const at::Tensor& lse, const at::Tensor& out_pre, std::int64_t n_head, std::int64_t rank,
    c10::string_view gate_mode, c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart,
    bool allow_f64, Kernel&& kernel) {
  const FoldedCall c = folded_call(kBackward, fused, n_head, rank, gate_mode, gate_param, w_std,
                                   w_rec, restart, allow_f64);
  const Gradients g = allocate_gradients(fused, c);
  BackwardArgs a = backward_args(grad_out, fused, out, lse, out_pre, c, g);
  translate_errors(kBackward, [&] { kernel(c, a); });
  return {g.grad_fused, g.grad_w_std, g.grad_w_rec, g.grad_restart};
}

}  // namespace ra_torch
