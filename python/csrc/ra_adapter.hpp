// python/csrc/ra_adapter.hpp — the ONLY file of the PyTorch binding that calls ra's C++ API:
// it turns a FoldedCall (folded_call.hpp) into ra's views, attention node and parameters. When
// ra's attention API changes, this file is the one to adapt.
//
// The CPU part (ra/cpu: Eigen, any element type, double included) compiles in the C++ units;
// the CUDA part (ra/cuda: the flash kernels, declared only under RA_CUDA_EXTERN_FLASH and
// instantiated by ra_add_flash_instantiations) in the .cu unit, so Eigen never enters nvcc.
// Every function throws ra::error (ra::unsupported for a (D, R) outside the lists compiled
// here); the binding turns that into a Python exception.
//
// ra calls made here: check_head_dim_and_rank, make_view, folded_views, heads,
// folded_attention, repack_source; cpu::attention_forward, cpu::attention_backward;
// cuda::make_params, cuda::make_backward_params, cuda::attention_forward,
// cuda::attention_backward, cuda::backward_workspace_floats.
#pragma once

#include <cstdint>

#include <ra/core/dispatch.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/tensor.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/gates.hpp>

#include "folded_call.hpp"

#if defined(__CUDACC__)
#include <ra/cuda/attention.cuh>
#include <ra/cuda/flash_backward.cuh>
#else
#include <ra/cpu/attention.hpp>
#endif

namespace ra_torch::adapter {

/// Throws ra::unsupported unless (D, R) is in the lists this unit was compiled with.
inline void check_supported(const char* where, std::int64_t D, int R) {
  ra::check_head_dim_and_rank(where, static_cast<int>(D), R);
}

namespace detail {

inline ra::Gates gates_of(const FoldedCall& c) {
  const auto p =
      c.gate_param == GateParam::softplus ? ra::GateParam::softplus : ra::GateParam::clamp;
  switch (c.gate_mode) {
    case GateMode::per_layer:
      return ra::gates::per_layer(c.w_std, c.w_rec, p);
    case GateMode::per_head:
      return ra::gates::per_head(c.w_std, c.w_rec, p);
    case GateMode::none:
      break;
  }
  return ra::gates::none();
}

inline ra::Restart restart_of(const FoldedCall& c) {
  return c.restart ? ra::restart::per_head(c.restart) : ra::restart::none();
}

// (B,H,T,D) view of a (B,T,C) buffer.
template <class T>
auto heads_of(const FoldedCall& c, const Btc& b) {
  const auto C = c.H * c.D;
  auto btc = ra::make_view(static_cast<T*>(b.data), ra::shape(c.B, c.T, C),
                           {b.stride_b, b.stride_t, 1});  // (B,T,C) strides (sb,st,1)
  return ra::heads(btc, c.H, c.D);                        // (B,H,T,D) strides (sb,D,st,1)
}

// Qf, Kf, V: (B,H,T,D) views of a (B,T,3C) buffer.
template <class T>
auto folded_of(const FoldedCall& c, T* data, std::int64_t stride_b, std::int64_t stride_t) {
  auto fused = ra::make_view(data, ra::shape(c.B, c.T, 3 * c.H * c.D),
                             {stride_b, stride_t, 1});  // (B,T,3C) strides (sb,st,1)
  return ra::folded_views(fused, c.H, c.D);             // 3 x (B,H,T,D) strides (sb,D,st,1)
}

// f(T{}) for the call's element type; float64 only where kWithDouble (ra's CPU backend).
template <bool kWithDouble, class F>
void dispatch_dtype(Dtype d, F&& f) {
  switch (d) {
    case Dtype::f32:
      return f(float{});
    case Dtype::f16:
      return f(ra::fp16{});
    case Dtype::bf16:
      return f(ra::bf16{});
    case Dtype::f64:
      if constexpr (kWithDouble) return f(double{});
      break;
  }
  throw ra::unsupported("ra's CUDA kernels take float32, float16 or bfloat16, not float64");
}

template <class T>
auto node_of(const FoldedCall& c, ra::Restart restart) {
  auto f = folded_of(c, static_cast<const T*>(c.fused), c.fused_stride_b, c.fused_stride_t);
  return ra::folded_attention(f.q, f.k, f.v, c.R, gates_of(c), ra::causal, restart);
}

}  // namespace detail

#if !defined(__CUDACC__)

/// Row map of the folded W_attn (3C, C): row i takes row index[i] of the stacked baseline
/// [W_q; W_k; W_v] (3C, C). ra::repack_source's semantics; index holds 3C values.
inline void repack_index(std::int64_t C, std::int64_t H, int R, std::int64_t* index) {
  for (std::int64_t row = 0; row < 3 * C; ++row) {
    const ra::RepackSource s = ra::repack_source(C, H, R, row);
    index[row] = static_cast<std::int64_t>(s.matrix) * C + s.row;
  }
}

/// Folded attention forward on the host (ra's Eigen backend, computed in double).
inline void cpu_forward(const FoldedCall& c, const ForwardOutputs& o) {
  detail::dispatch_dtype<true>(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    ra::cpu::attention_forward(detail::node_of<T>(c, detail::restart_of(c)),
                               detail::heads_of<T>(c, o.out), o.lse);
    // ra's CPU forward has no o_pre output: O before the mix is the forward without restart.
    if (o.out_pre.data)
      ra::cpu::attention_forward(detail::node_of<T>(c, ra::restart::none()),
                                 detail::heads_of<T>(c, o.out_pre));
  });
}

/// Folded attention backward on the host; P is recomputed (out, out_pre and lse are not read).
inline void cpu_backward(const FoldedCall& c, const BackwardArgs& a) {
  detail::dispatch_dtype<true>(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    auto g = detail::folded_of(c, static_cast<T*>(a.grad_fused), a.grad_fused_stride_b,
                               a.grad_fused_stride_t);
    ra::cpu::attention_backward(detail::node_of<T>(c, detail::restart_of(c)),
                                detail::heads_of<const T>(c, a.grad_out), g.q, g.k, g.v,
                                {a.grad_w_std, a.grad_w_rec, a.grad_restart});
  });
}

#else  // __CUDACC__

namespace detail {

template <class T>
ra::cuda::AttentionParams forward_params(const FoldedCall& c, const Btc& out, float* lse,
                                         const Btc& out_pre) {
  auto node = node_of<T>(c, restart_of(c));
  if (c.restart)
    return ra::cuda::make_params(node, heads_of<T>(c, out), lse, heads_of<T>(c, out_pre));
  return ra::cuda::make_params(node, heads_of<T>(c, out), lse);
}

}  // namespace detail

/// fp32 scratch floats the CUDA backward needs.
inline std::int64_t cuda_backward_workspace_floats(std::int64_t B, std::int64_t H, std::int64_t T) {
  return ra::cuda::backward_workspace_floats(B, H, T);
}

/// Folded attention forward with ra's flash kernels on `stream`.
inline void cuda_forward(const FoldedCall& c, const ForwardOutputs& o, cudaStream_t stream) {
  detail::dispatch_dtype<false>(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    ra::cuda::attention_forward(detail::forward_params<T>(c, o.out, o.lse, o.out_pre), stream);
  });
}

/// Folded attention backward with ra's flash kernels on `stream` (reads out, lse, out_pre).
inline void cuda_backward(const FoldedCall& c, const BackwardArgs& a, cudaStream_t stream) {
  detail::dispatch_dtype<false>(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto fwd = detail::forward_params<T>(c, a.out, const_cast<float*>(a.lse), a.out_pre);
    auto g = detail::folded_of(c, static_cast<T*>(a.grad_fused), a.grad_fused_stride_b,
                               a.grad_fused_stride_t);
    const auto p =
        ra::cuda::make_backward_params(fwd, detail::heads_of<const T>(c, a.grad_out), g.q, g.k, g.v,
                                       a.grad_w_std, a.grad_w_rec, a.grad_restart, a.workspace);
    ra::cuda::attention_backward(p, stream);
  });
}

#endif  // __CUDACC__

}  // namespace ra_torch::adapter
