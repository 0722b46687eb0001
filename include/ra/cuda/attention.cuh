// ra/cuda/attention.cuh — the runtime entry to the attention forward kernels (the flash
// kernels for T_q = T_k, the decode kernel of ra/cuda/decode.cuh for a few new rows over a KV
// cache): validates a params struct and maps runtime (dtype, D, R, gate mode, restart) to one
// specialised kernel. This is the only place the attention dispatch happens.
//
// Build parallelism: a translation unit that defines RA_CUDA_EXTERN_FLASH sees only the
// declarations of the dispatch (flash_dispatch.cuh) and of the per-rank launchers
// (flash_rank.cuh) and instantiates no kernel; the units made by
// ra_add_flash_instantiations() (cmake/ra_cuda.cmake), one per (dtype, D, R), compile the
// kernel family in parallel.
#pragma once

#include <ra/core/any_view.hpp>
#include <ra/core/dispatch.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/forward_path.cuh>
#include <ra/cuda/sm90/support.cuh>
#include <ra/expr/attention.hpp>

#include <cmath>
#include <initializer_list>

namespace ra::cuda {

/// Requires 16-byte-aligned rows: each (batch, head, row) stride triple a multiple of 16
/// bytes, except along modes of extent 1, which are never stepped.
inline void check_strides(const char* where, const char* what, DType dtype, int batch, int heads,
                          int seq, std::initializer_list<index_t> strides) {
  const index_t align = 16 / static_cast<index_t>(size_of(dtype));
  const int extents[3] = {batch, heads, seq};
  int i = 0;
  for (index_t s : strides) {
    if (extents[i++ % 3] > 1)
      require_arg(s % align == 0, where, what, s,
                  ra::detail::concat("a multiple of ", align, " elements (16-byte rows)"));
  }
}

/// Requires 16-byte-aligned base pointers (the kernels move 16-byte chunks).
inline void check_aligned(const char* where, const char* what,
                          std::initializer_list<const void*> pointers) {
  for (const void* ptr : pointers)
    require_arg(reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0, where, what, ptr,
                "16-byte alignment");
}

/// Checks a params struct for the flash kernels; throws ra::error naming the bad field
/// (ra::unsupported for values outside the supported lists or shapes no kernel takes yet).
inline void validate(const AttentionParams& p, const char* where = "attention_forward") {
  check_head_dim_and_rank(where, p.head_dim, p.rank);
  validate_common(p, where);
  check_strides(where, "stride", p.dtype, p.batch, p.heads, p.seq,
                {p.q_batch_stride, p.q_head_stride, p.q_row_stride, p.o_batch_stride,
                 p.o_head_stride, p.o_row_stride});
  check_strides(where, "stride", p.dtype, p.batch, p.heads, p.seq_k,
                {p.k_batch_stride, p.k_head_stride, p.k_row_stride, p.v_batch_stride,
                 p.v_head_stride, p.v_row_stride});
  check_aligned(where, "pointer", {p.q, p.k, p.v, p.o});
  if (p.o_pre != nullptr) {
    check_strides(where, "o_pre stride", p.dtype, p.batch, p.heads, p.seq,
                  {p.o_pre_batch_stride, p.o_pre_head_stride, p.o_pre_row_stride});
    check_aligned(where, "o_pre pointer", {p.o_pre});
  }
  if (p.path == ForwardPath::tma_wgmma && p.batch > 0 && p.seq > 0) {
    const std::string why = sm90::flash_forward_refusal(p);
    if (!why.empty())
      throw unsupported(
          ra::detail::concat(where, ": path = tma_wgmma cannot run this call: ", why));
  }
}

/// Checks a params struct for attention_decode: T_q in [1, kDecodeMaxRows] new rows over a
/// cache of T_k = seq_k rows, seq_lens set, kv_splits in [1, kDecodeMaxSplits] with a split
/// workspace of decode_workspace_floats() floats where kv_splits > 1, 16-byte rows; the other
/// fields as validate(). Throws ra::error naming the bad field (ra::unsupported for values
/// outside the supported lists).
inline void validate_decode(const AttentionParams& p, const char* where = "attention_decode") {
  check_head_dim_and_rank(where, p.head_dim, p.rank);
  // The row count first: the memory checks below measure the operands with it.
  require_arg(p.seq >= 1 && p.seq <= kDecodeMaxRows, where, "T_q", p.seq,
              ra::detail::concat("1 to ", kDecodeMaxRows,
                                 " new query rows (a longer prefill is attention_forward's)"));
  validate_common(p, where, AttentionCall::decode);
  require_arg(p.seq_lens != nullptr, where, "seq_lens", "a null pointer",
              "a device pointer to the B key counts");
  require_arg(index_t{p.batch} * p.heads <= 65535, where, "B·H", index_t{p.batch} * p.heads,
              "at most 65535 (sequence, head) pairs");
  require_arg(p.kv_splits >= 1 && p.kv_splits <= kDecodeMaxSplits, where, "kv_splits", p.kv_splits,
              ra::detail::concat("1 to ", kDecodeMaxSplits, " (decode_splits())"));
  const index_t need = decode_workspace_floats(p.batch, p.heads, p.seq, p.head_dim, p.kv_splits);
  require_arg(p.split_ws_floats >= need && (need == 0 || p.split_ws != nullptr), where,
              "split_ws_floats", p.split_ws == nullptr && need > 0 ? 0 : p.split_ws_floats,
              ra::detail::concat("at least decode_workspace_floats(...) = ", need,
                                 " floats of split-KV scratch"));
  check_strides(where, "stride", p.dtype, p.batch, p.heads, p.seq,
                {p.q_batch_stride, p.q_head_stride, p.q_row_stride, p.o_batch_stride,
                 p.o_head_stride, p.o_row_stride});
  check_strides(where, "stride", p.dtype, p.batch, p.heads, p.seq_k,
                {p.k_batch_stride, p.k_head_stride, p.k_row_stride, p.v_batch_stride,
                 p.v_head_stride, p.v_row_stride});
  check_aligned(where, "pointer", {p.k, p.v});
  if (p.o_pre != nullptr)
    check_strides(where, "o_pre stride", p.dtype, p.batch, p.heads, p.seq,
                  {p.o_pre_batch_stride, p.o_pre_head_stride, p.o_pre_row_stride});
}

namespace detail {

/// Launches the kernel of <T, D> for p's rank, gate mode and restart flag.
template <class T, int D>
void flash_forward_dispatch(const AttentionParams& p, cudaStream_t stream);

/// Launches the kernel of <T, D, R> for p's gate mode and restart flag.
template <class T, int D, int R>
void flash_forward_rank(const AttentionParams& p, cudaStream_t stream);

/// Launches the decode kernel of <T, D> for p's rank, gate mode and restart flag.
template <class T, int D>
void decode_dispatch(const AttentionParams& p, cudaStream_t stream);

/// Launches the decode kernel of <T, D, R> for p's gate mode and restart flag.
template <class T, int D, int R>
void decode_rank(const AttentionParams& p, cudaStream_t stream);

}  // namespace detail

/// O' = folded attention of (Qf, Kf, V) as described by p, on `stream`: the ONE mapping of
/// runtime (dtype, D) to the kernels (flash_dispatch.cuh maps R, flash_rank.cuh the gate mode
/// and restart, at the boundary of the per-(dtype, D, R) build units).
/// Throws ra::error on bad parameters, ra::unsupported on values outside the
/// supported lists, ra::cuda_error when a launch fails.
inline void attention_forward(const AttentionParams& p, cudaStream_t stream) {
  validate(p);
  if (p.batch == 0 || p.seq == 0) return;
  dispatch_dtype(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_head_dim(p.head_dim, [&](auto d) {
      detail::flash_forward_dispatch<T, static_cast<int>(decltype(d)::value)>(p, stream);
    });
  });
}

/// O' (and lse, o_pre where set) of T_q new query rows over a KV cache, as described by p
/// (see AttentionParams and ra/cuda/decode.cuh), on `stream`: the decode kernel of runtime
/// (dtype, D) here, R in decode_dispatch (flash_dispatch.cuh), gate mode and restart in
/// decode_rank (decode_rank.cuh). Reads the key counts from device memory at run time and
/// allocates nothing, so it can be captured in a CUDA graph. Throws as validate_decode,
/// ra::cuda_error when a launch fails.
inline void attention_decode(const AttentionParams& p, cudaStream_t stream) {
  validate_decode(p);
  if (p.batch == 0) return;
  dispatch_dtype(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_head_dim(p.head_dim, [&](auto d) {
      detail::decode_dispatch<T, static_cast<int>(decltype(d)::value)>(p, stream);
    });
  });
}

namespace detail {

template <class T, class ShapeT>
void set_strides(const TensorView<T, ShapeT>& t, index_t& b, index_t& h, index_t& r,
                 const char* name) {
  require_arg(t.stride(3) == 1, "attention_forward", ra::detail::concat(name, ".stride(3)"),
              t.stride(3), "1 (contiguous head dim)");
  b = t.stride(0);
  h = t.stride(1);
  r = t.stride(2);
}

}  // namespace detail

/// Params for a folded-attention node evaluated into o (B,H,T,D); lse may be null.
template <int R, class Q, class K, class V, View O>
AttentionParams make_params(const FoldedAttention<R, Q, K, V>& node, const O& o, float* lse) {
  using Tq = typename Q::value_type;
  static_assert(std::is_same_v<Tq, typename O::value_type>,
                "attention: O must have the element type of Qf, Kf and V");
  node.validate("attention_forward");
  require_same_extents("attention_forward", "Qf", node.q, "O", o);
  AttentionParams p;
  p.q = node.q.data();
  p.k = node.k.data();
  p.v = node.v.data();
  p.o = o.data();
  p.lse = lse;
  detail::set_strides(node.q, p.q_batch_stride, p.q_head_stride, p.q_row_stride, "Qf");
  detail::set_strides(node.k, p.k_batch_stride, p.k_head_stride, p.k_row_stride, "Kf");
  detail::set_strides(node.v, p.v_batch_stride, p.v_head_stride, p.v_row_stride, "V");
  detail::set_strides(o, p.o_batch_stride, p.o_head_stride, p.o_row_stride, "O");
  p.batch = static_cast<int>(node.batch());
  p.heads = static_cast<int>(node.heads());
  p.seq = static_cast<int>(node.seq_q());
  p.seq_k = static_cast<int>(node.seq_k());
  p.head_dim = static_cast<int>(node.head_dim());
  p.rank = node.rank;
  p.scale = 1.0f / std::sqrt(static_cast<float>(node.head_dim()));
  p.dtype = dtype_v<Tq>;
  p.gates = node.gates;
  p.restart = node.restart;
  return p;
}

/// As above, and with self-restart on also O before the restart mix into o_pre (B,H,T,D),
/// which attention_backward needs (with restart off o_pre is not written).
template <int R, class Q, class K, class V, View O, View OPre>
AttentionParams make_params(const FoldedAttention<R, Q, K, V>& node, const O& o, float* lse,
                            const OPre& o_pre) {
  static_assert(std::is_same_v<typename O::value_type, typename OPre::value_type>,
                "attention: o_pre must have the element type of O");
  AttentionParams p = make_params(node, o, lse);
  require_same_extents("attention_forward", "O", o, "o_pre", o_pre);
  p.o_pre = o_pre.data();
  detail::set_strides(o_pre, p.o_pre_batch_stride, p.o_pre_head_stride, p.o_pre_row_stride,
                      "o_pre");
  return p;
}

namespace detail {

/// Launches the forward for p (made from `node`): a node whose D and R are compile-time values
/// (an Int<D> head dim and a Rank<R>) of the supported lists launches the kernels of
/// <T, D, R> directly, without mapping ints back to templates; otherwise p goes through
/// attention_forward(params).
template <int R, class Q, class K, class V>
void launch_forward(const FoldedAttention<R, Q, K, V>&, const AttentionParams& p,
                    cudaStream_t stream) {
  using Node = FoldedAttention<R, Q, K, V>;
  using T = std::remove_cv_t<typename Q::value_type>;
  constexpr int kD = Node::kHeadDim;
  if constexpr (R != kDynamicRank && kD != 0 && R < kD && SupportedHeadDims::contains(kD) &&
                SupportedRanks::contains(R)) {
    validate(p);
    if (p.batch == 0 || p.seq == 0) return;
    flash_forward_rank<T, kD, R>(p, stream);
  } else {
    attention_forward(p, stream);
  }
}

}  // namespace detail

/// O' (and lse when not null) of a folded-attention node into o, on `stream`; compile-time D
/// and R launch their kernels directly (detail::launch_forward). Throws as make_params and
/// attention_forward(params).
template <int R, class Q, class K, class V, View O>
void attention_forward(const FoldedAttention<R, Q, K, V>& node, const O& o, float* lse,
                       cudaStream_t stream) {
  detail::launch_forward(node, make_params(node, o, lse), stream);
}

/// As above, and with self-restart on also O before the mix into o_pre (for the backward).
template <int R, class Q, class K, class V, View O, View OPre>
void attention_forward(const FoldedAttention<R, Q, K, V>& node, const O& o, float* lse,
                       const OPre& o_pre, cudaStream_t stream) {
  detail::launch_forward(node, make_params(node, o, lse, o_pre), stream);
}

/// Params for folded attention over type-erased (B,H,T,D) device views (element type read
/// at run time). Throws ra::error when Qf, Kf, V and O do not share one dtype (naming the
/// first that differs) or are not of rank 4, and as the typed form otherwise.
inline AttentionParams make_params(const AnyView& q, const AnyView& k, const AnyView& v,
                                   const AnyView& o, int R, Gates g, Restart r, float* lse) {
  constexpr const char* where = "attention_forward";
  require_same_dtype(where, {{"Qf", &q}, {"Kf", &k}, {"V", &v}, {"O", &o}});
  return dispatch_dtype(q.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto node =
        folded_attention(as_view<const T, 4>(q, where, "Qf"), as_view<const T, 4>(k, where, "Kf"),
                         as_view<const T, 4>(v, where, "V"), R, g, causal, r);
    return make_params(node, as_view<T, 4>(o, where, "O"), lse);
  });
}

}  // namespace ra::cuda

#ifndef RA_CUDA_EXTERN_FLASH
#include <ra/cuda/decode_rank.cuh>
#include <ra/cuda/flash_dispatch.cuh>
#include <ra/cuda/flash_rank.cuh>
#endif
