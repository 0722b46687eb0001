// ra/cuda/flash_backward.cuh — the runtime entry to the attention backward: its params
// (ra/cuda/backward_params.cuh), their validation, make_backward_params from a forward call and
// gradient views, and attention_backward, the ONE mapping of runtime (dtype, D) to the kernels
// (flash_backward_dispatch.cuh maps R, flash_backward_rank.cuh the gates and the path).
//
// The kernels sit behind a per-architecture seam, as the forward's do: mma.sync in
// ra/cuda/sm80/flash_backward.cuh (every GPU from sm_80, fp32 on SIMT), the sm_90a dK/dV and dQ
// passes (TMA + wgmma, warp-specialised) in ra/cuda/sm90/flash_backward.cuh, and the RA pieces
// both share (row pass, head sums, parameter gradients) in ra/cuda/backward_passes.cuh. Under
// RA_CUDA_EXTERN_FLASH this header declares the dispatch and instantiates no kernel (the units
// of ra_add_flash_instantiations() do, cmake/ra_cuda.cmake).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <string>

#include <ra/core/dispatch.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/backward_params.cuh>
#include <ra/cuda/backward_path.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/sm90/support.cuh>

namespace ra::cuda {

/// Checks a backward params struct; throws ra::error naming the bad field.
inline void validate(const AttentionBackwardParams& p) {
  constexpr const char* where = "attention_backward";
  validate(p.fwd, where);
  require_arg(p.fwd.lse != nullptr, where, "fwd.lse", "a null pointer",
              "the forward's log-sum-exp (B*H*T floats)");
  if (p.fwd.restart.enabled())
    require_arg(p.fwd.o_pre != nullptr, where, "fwd.o_pre", "a null pointer",
                "O before the self-restart mix, as the forward wrote it (restart is on)");
  require_arg(p.d_out && p.dq && p.dk && p.dv, where, "d_out/dq/dk/dv", "a null pointer",
              "device pointers to dO', dQf, dKf and dV");
  require_arg(p.workspace != nullptr, where, "workspace", "a null pointer",
              "backward_workspace_floats(B, H, T) floats");
  check_strides(where, "gradient stride", p.fwd.dtype, p.fwd.batch, p.fwd.heads, p.fwd.seq,
                {p.do_batch_stride, p.do_head_stride, p.do_row_stride, p.dq_batch_stride,
                 p.dq_head_stride, p.dq_row_stride});
  check_strides(where, "gradient stride", p.fwd.dtype, p.fwd.batch, p.fwd.heads, p.fwd.seq_k,
                {p.dk_batch_stride, p.dk_head_stride, p.dk_row_stride, p.dv_batch_stride,
                 p.dv_head_stride, p.dv_row_stride});
  check_aligned(where, "gradient pointer", {p.d_out, p.dq, p.dk, p.dv});
  const AttentionParams& f = p.fwd;
  const index_t n_gates = f.spec().gate_count(), n_a = f.restart.enabled() ? f.heads : 0;
  require_disjoint(where,
                   {{"dQf", detail::operand_footprint(f, p.dq, f.seq, p.dq_batch_stride,
                                                      p.dq_head_stride, p.dq_row_stride)},
                    {"dKf", detail::operand_footprint(f, p.dk, f.seq_k, p.dk_batch_stride,
                                                      p.dk_head_stride, p.dk_row_stride)},
                    {"dV", detail::operand_footprint(f, p.dv, f.seq_k, p.dv_batch_stride,
                                                     p.dv_head_stride, p.dv_row_stride)},
                    {"d_w_std", float_footprint(p.d_w_std, n_gates)},
                    {"d_w_rec", float_footprint(p.d_w_rec, n_gates)},
                    {"d_a", float_footprint(p.d_a, n_a)},
                    {"workspace", float_footprint(p.workspace, backward_workspace_floats(
                                                                   f.batch, f.heads, f.seq))},
                    {"dO'", detail::operand_footprint(f, p.d_out, f.seq, p.do_batch_stride,
                                                      p.do_head_stride, p.do_row_stride)},
                    {"Qf", detail::operand_footprint(f, f.q, f.seq, f.q_batch_stride,
                                                     f.q_head_stride, f.q_row_stride)},
                    {"Kf", detail::operand_footprint(f, f.k, f.seq_k, f.k_batch_stride,
                                                     f.k_head_stride, f.k_row_stride)},
                    {"V", detail::operand_footprint(f, f.v, f.seq_k, f.v_batch_stride,
                                                    f.v_head_stride, f.v_row_stride)},
                    {"O'", detail::operand_footprint(f, f.o, f.seq, f.o_batch_stride,
                                                     f.o_head_stride, f.o_row_stride)},
                    {"o_pre", detail::operand_footprint(f, f.o_pre, f.seq, f.o_pre_batch_stride,
                                                        f.o_pre_head_stride, f.o_pre_row_stride)},
                    {"lse", float_footprint(f.lse, index_t{f.batch} * f.heads * f.seq)},
                    {"gates.w_std", float_footprint(f.gates.w_std, n_gates)},
                    {"gates.w_rec", float_footprint(f.gates.w_rec, n_gates)},
                    {"restart.a", float_footprint(f.restart.a, n_a)}},
                   7);
  if (is_sm90_path(p.path)) {
    const std::string why = sm90::flash_backward_refusal(p);
    if (!why.empty())
      throw unsupported(ra::detail::concat(where, ": path = ", path_name(p.path),
                                           " cannot run this call: ", why));
  }
}

namespace detail {

/// Launches the backward of <T, D> for p's rank, gate mode and restart flag.
template <class T, int D>
void flash_backward_dispatch(const AttentionBackwardParams& p, cudaStream_t stream);

/// Launches the backward of <T, D, R> for p's gates.
template <class T, int D, int R>
void flash_backward_rank(const AttentionBackwardParams& p, cudaStream_t stream);

}  // namespace detail

namespace detail {

/// Requires a gradient view of the forward's shape ((B,H,T_q,D) for dO' and dQf, (B,H,T_k,D)
/// for dKf and dV: `rows`) and element type.
template <View G>
void check_like_forward(const AttentionParams& fwd, const char* name, const G& g, int rows) {
  constexpr const char* where = "attention_backward";
  const std::array<index_t, 4> want{fwd.batch, fwd.heads, rows, fwd.head_dim};
  require(g.extents() == want, where, ": '", name, "' has shape ", to_string(g.extents()),
          ", expected the forward's (B,H,T,D) = ", to_string(want));
  require(dtype_v<typename G::value_type> == fwd.dtype, where, ": '", name, "' has dtype ",
          dtype_v<typename G::value_type>, ", expected ", fwd.dtype, " like the forward's inputs");
}

}  // namespace detail

/// Backward params of the forward call `fwd` (make_params: O', lse, and with self-restart
/// o_pre, all as the forward wrote them); dO' and the gradients dQf, dKf, dV are (B,H,T,D)
/// views of the forward's shape and dtype with any strides (unit last stride), e.g. the
/// folded views of a (B,T,3C) gradient buffer. Throws ra::error naming a mismatch.
template <View DO, View DQ, View DK, View DV>
AttentionBackwardParams make_backward_params(const AttentionParams& fwd, const DO& d_out,
                                             const DQ& dq, const DK& dk, const DV& dv,
                                             float* d_w_std, float* d_w_rec, float* d_a,
                                             float* workspace) {
  detail::check_like_forward(fwd, "dO'", d_out, fwd.seq);
  detail::check_like_forward(fwd, "dQf", dq, fwd.seq);
  detail::check_like_forward(fwd, "dKf", dk, fwd.seq_k);
  detail::check_like_forward(fwd, "dV", dv, fwd.seq_k);
  AttentionBackwardParams p;
  p.fwd = fwd;
  p.d_out = d_out.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  detail::set_strides(d_out, p.do_batch_stride, p.do_head_stride, p.do_row_stride, "dO'");
  detail::set_strides(dq, p.dq_batch_stride, p.dq_head_stride, p.dq_row_stride, "dQf");
  detail::set_strides(dk, p.dk_batch_stride, p.dk_head_stride, p.dk_row_stride, "dKf");
  detail::set_strides(dv, p.dv_batch_stride, p.dv_head_stride, p.dv_row_stride, "dV");
  p.d_w_std = d_w_std;
  p.d_w_rec = d_w_rec;
  p.d_a = d_a;
  p.workspace = workspace;
  return p;
}

/// Gradients of folded attention (the formulas: ra/cuda/sm80/flash_backward.cuh) on `stream`,
/// on the tensor-core path p.path asks for (ra/cuda/backward_path.cuh). Deterministic.
/// Throws ra::error on bad parameters, ra::unsupported outside the supported lists or for a
/// path that cannot take the call.
inline void attention_backward(const AttentionBackwardParams& p, cudaStream_t stream) {
  validate(p);
  if (p.fwd.batch == 0 || p.fwd.seq == 0) {  // nothing to sum: the parameter gradients are 0
    const Gates& g = p.fwd.gates;
    const auto n_gates = static_cast<std::size_t>(p.fwd.spec().gate_count());
    if (g.enabled() && p.d_w_std)
      RA_CUDA_CHECK(cudaMemsetAsync(p.d_w_std, 0, n_gates * sizeof(float), stream));
    if (g.enabled() && p.d_w_rec)
      RA_CUDA_CHECK(cudaMemsetAsync(p.d_w_rec, 0, n_gates * sizeof(float), stream));
    if (p.fwd.restart.enabled() && p.d_a)
      RA_CUDA_CHECK(cudaMemsetAsync(p.d_a, 0, p.fwd.heads * sizeof(float), stream));
    return;
  }
  dispatch_dtype(p.fwd.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_head_dim(p.fwd.head_dim, [&](auto d) {
      detail::flash_backward_dispatch<T, static_cast<int>(decltype(d)::value)>(p, stream);
    });
  });
}

}  // namespace ra::cuda

#ifndef RA_CUDA_EXTERN_FLASH
#include <ra/cuda/flash_backward_dispatch.cuh>
#include <ra/cuda/flash_backward_rank.cuh>
#endif
