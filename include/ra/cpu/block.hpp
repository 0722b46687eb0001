// ra/cpu/block.hpp — the attention block on the host, forward and backward.
//
//   forward:  fused = x · W_attnᵀ + b_attn                      x (B,T,C), fused (B,T,3C)
//             O'    = folded attention of the views Qf, Kf, V of fused   (B,T,C)
//             y     = O' · W_oᵀ + b_o                            (B,T,C)
//   backward: given dy: dO' = dy · W_o, dW_o = dyᵀ · O', db_o = Σ dy;
//             dQf, dKf, dV (written through the folded views of a (B,T,3C) buffer, no copy)
//             and d w_std, d w_rec, d a from cpu::attention_backward;
//             dx = dfused · W_attn, dW_attn = dfusedᵀ · x, db_attn = Σ dfused.
// Intermediates (fused, O', dO', dfused) are stored in the element type T, as on the GPU;
// each stage computes in double. The backward recomputes the forward from x.
#pragma once

#include <type_traits>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/layout.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/attention.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/gemm.hpp>
#include <ra/expr/block.hpp>

namespace ra::cpu {

/// Caller-visible workspace of block_forward / block_backward; grown on demand, reusable
/// across calls (and readable after a call: fused holds x·W_attnᵀ + b_attn, o holds O').
template <class T>
struct BlockBuffers {
  std::vector<T> fused;    // (B,T,3C) the fused projection
  std::vector<T> o;        // (B,T,C) attention output O'
  std::vector<T> d_fused;  // (B,T,3C) dQf | dKf | dV
  std::vector<T> d_o;      // (B,T,C) dO'

  /// The fused buffer as a (B,T,3C) view (resizing it as needed).
  StridedView<T, 3> fused_view(index_t B, index_t T_, index_t C) { return at(fused, B, T_, 3 * C); }
  /// The O' buffer as a (B,T,C) view.
  StridedView<T, 3> o_view(index_t B, index_t T_, index_t C) { return at(o, B, T_, C); }
  /// The dfused buffer as a (B,T,3C) view.
  StridedView<T, 3> d_fused_view(index_t B, index_t T_, index_t C) {
    return at(d_fused, B, T_, 3 * C);
  }
  /// The dO' buffer as a (B,T,C) view.
  StridedView<T, 3> d_o_view(index_t B, index_t T_, index_t C) { return at(d_o, B, T_, C); }

 private:
  static StridedView<T, 3> at(std::vector<T>& buf, index_t B, index_t T_, index_t N) {
    const auto n = static_cast<std::size_t>(B * T_ * N);
    if (buf.size() < n) buf.resize(n);
    return make_view(buf.data(), shape(B, T_, N));  // (B,T,N) strides (TN,N,1)
  }
};

/// Where block_backward writes the parameter gradients (all overwritten). A null view or
/// pointer means "not wanted"; bias gradients are ignored for a block without bias, gate
/// and restart gradients for a block without gates or restart.
template <class T>
struct AttentionBlockGrads {
  StridedView<T, 2> w_attn;  // (3C,C)
  StridedView<T, 1> b_attn;  // (3C)
  StridedView<T, 2> w_o;     // (C,C)
  StridedView<T, 1> b_o;     // (C)
  float* w_std = nullptr;    // gate_count() values
  float* w_rec = nullptr;
  float* a = nullptr;  // H values
};

namespace detail {

template <class T>
void check_block_io(const char* where, const AttentionBlockConfig& cfg,
                    const AttentionBlockWeights<T>& w, const StridedView<const T, 3>& x) {
  cfg.validate(where);
  w.validate(cfg, where);
  require_data(where, "x", x);
  require_data(where, "w_attn", w.w_attn);
  require_data(where, "w_o", w.w_o);
  if (cfg.bias) {
    require_data(where, "b_attn", w.b_attn);
    require_data(where, "b_o", w.b_o);
  }
}

template <View V>
void require_btc(const char* where, const char* name, const V& v, index_t B, index_t T_,
                 index_t C) {
  require(v.extent(0) == B && v.extent(1) == T_ && v.extent(2) == C, where, ": '", name,
          "' has shape ", to_string(v.extents()), ", expected (", B, ",", T_, ",", C, ")");
  require_data(where, name, v);
}

// The (BT,C) view of a (B,T,C) view, or a null view when the argument is absent.
template <class T>
StridedView<T, 2> rows_or_null(const StridedView<T, 3>& v) {
  if (absent(v)) return {};
  return view(v, shape(v.extent(0) * v.extent(1), v.extent(2)));  // (BT,C)
}

}  // namespace detail

/// y = the attention block applied to x (both (B,T,C), any row-mergeable strides), using
/// (and growing) `buffers` for the fused projection and O'. Builds ra::attention_block and
/// evaluates it on ra::cpu::device.
/// Throws ra::error (ra::unsupported for an unsupported D or R) naming the bad argument.
template <class T>
void block_forward(const AttentionBlockConfig& cfg, std::type_identity_t<StridedView<const T, 3>> x,
                   const AttentionBlockWeights<T>& weights,
                   std::type_identity_t<StridedView<T, 3>> y, BlockBuffers<T>& buffers) {
  constexpr const char* where = "cpu::block_forward";
  detail::check_block_io(where, cfg, weights, x);
  const index_t B = x.extent(0), T_ = x.extent(1), C = cfg.C;
  detail::require_btc(where, "x", x, B, T_, C);
  detail::require_btc(where, "y", y, B, T_, C);
  auto pipeline =
      attention_block<T>(cfg, x, weights, buffers.fused_view(B, T_, C), buffers.o_view(B, T_, C));
  ra::eval(y, pipeline, device{});
}

/// Gradients of the block at x given dy (both (B,T,C)): dx (null view: not wanted) and the
/// parameter gradients in `grads` (see AttentionBlockGrads). Recomputes the forward into
/// `buffers`, then runs the output GEMM backward, attention_backward (into the folded views
/// of buffers.d_fused) and the projection GEMM backward.
/// Throws ra::error (ra::unsupported for an unsupported D or R) naming the bad argument.
template <class T>
void block_backward(const AttentionBlockConfig& cfg,
                    std::type_identity_t<StridedView<const T, 3>> x,
                    const AttentionBlockWeights<T>& weights,
                    std::type_identity_t<StridedView<const T, 3>> dy,
                    std::type_identity_t<StridedView<T, 3>> dx, const AttentionBlockGrads<T>& grads,
                    BlockBuffers<T>& buffers) {
  constexpr const char* where = "cpu::block_backward";
  detail::check_block_io(where, cfg, weights, x);
  const index_t B = x.extent(0), T_ = x.extent(1), C = cfg.C, H = cfg.H, D = cfg.head_dim();
  detail::require_btc(where, "x", x, B, T_, C);
  detail::require_btc(where, "dy", dy, B, T_, C);
  if (!absent(dx)) detail::require_btc(where, "dx", dx, B, T_, C);

  auto o = buffers.o_view(B, T_, C);  // (B,T,C) strides (TC,C,1)
  auto p = attention_block<T>(cfg, x, weights, buffers.fused_view(B, T_, C), o);
  detail::gemm_forward(p.project, p.fused, p.bias);  // fused (BT,3C)
  attention_forward(p.attend, p.o_heads);            // O' (B,H,T,D) strides (TC,D,C,1)

  auto d_o = buffers.d_o_view(B, T_, C);          // (B,T,C) strides (TC,C,1)
  auto d_fused = buffers.d_fused_view(B, T_, C);  // (B,T,3C) strides (3TC,3C,1)
  const StridedView<T, 1> no_bias{};
  gemm_backward(p.output.a, weights.w_o, detail::rows_or_null(dy), detail::rows_or_null(d_o),
                grads.w_o, cfg.bias ? grads.b_o : no_bias);

  auto d_o_heads = heads(StridedView<const T, 3>(d_o), H, D);  // (B,H,T,D) strides (TC,D,C,1)
  auto d_qkv = folded_views(d_fused, H, D);                    // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  attention_backward(p.attend, d_o_heads, d_qkv.q, d_qkv.k, d_qkv.v,
                     AttentionGrads{grads.w_std, grads.w_rec, grads.a});

  gemm_backward(p.project.a, weights.w_attn, detail::rows_or_null(d_fused),
                detail::rows_or_null(dx), grads.w_attn, cfg.bias ? grads.b_attn : no_bias);
}

}  // namespace ra::cpu
