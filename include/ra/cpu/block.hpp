// ra/cpu/block.hpp — the attention block on the host, forward and backward.
//
//   forward:  fused = x · W_attnᵀ + b_attn                      x (B,T,C), fused (B,T,3C)
//             O'    = folded attention of the views Qf, Kf, V of fused   (B,T,C)
//             y     = O' · W_oᵀ + b_o                            (B,T,C)
//   backward: given dy: dO' = dy · W_o, dW_o = dyᵀ · O', db_o = Σ dy;
//             dQf, dKf, dV (written through the folded views of a (B,T,3C) buffer, no copy)
//             and d w_std, d w_rec, d a from cpu::attention_backward;
//             dx = dfused · W_attn, dW_attn = dfusedᵀ · x, db_attn = Σ dfused.
// Both build ONE expression (ra::attention_block, ra/expr/block.hpp) and evaluate it on
// cpu::device: intermediates (fused, O', dO', dfused) come from the block's workspace, stored
// in the element type T as on the GPU; each node computes in double. The backward recomputes
// the forward from x.
#pragma once

#include <type_traits>

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

/// The workspace of block_forward / block_backward: the host arena the block expression takes
/// its intermediates from (grown on the first call, then reused), and views of the last
/// forward's intermediates there (valid until the next call).
template <class T>
struct BlockBuffers {
  Workspace workspace;
  StridedView<const T, 3> fused;  // (B,T,3C) the fused projection x·W_attnᵀ + b_attn
  StridedView<const T, 3> o;      // (B,T,C) attention output O'
};

/// Where block_backward writes the parameter gradients (ra/expr/block.hpp).
using ra::AttentionBlockGrads;

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

// The views of the last forward's intermediates: O' is the output GEMM's A, fused the
// attention's operand.
template <class T, class Tape>
void keep_intermediates(BlockBuffers<T>& buffers, const Tape& tape, index_t B, index_t T_,
                        index_t C) {
  buffers.o = view(StridedView<const T, 2>(tape.a), shape(B, T_, C));  // (B,T,C)
  buffers.fused = view(StridedView<const T, 2>(tape.a_tape.fused), shape(B, T_, 3 * C));
}

// The gradients of an empty batch: zero where wanted.
template <class T>
void zero_gradients(const AttentionBlockConfig& cfg, const AttentionBlockGrads<T>& g) {
  const auto zero = [](const auto& v) {
    if (!absent(v)) store(v, Matrix::Zero(v.extent(0), v.rank == 2 ? v.extent(1) : 1));
  };
  zero(g.w_attn);
  zero(g.w_o);
  if (cfg.bias) {
    if (!absent(g.b_attn)) store(g.b_attn, RowVector::Zero(g.b_attn.extent(0)));
    if (!absent(g.b_o)) store(g.b_o, RowVector::Zero(g.b_o.extent(0)));
  }
  for (float* p : {g.w_std, g.w_rec})
    if (p != nullptr)
      for (index_t i = 0; i < cfg.gate_count(); ++i) p[i] = 0.f;
  if (cfg.restart && g.a != nullptr)
    for (index_t i = 0; i < cfg.H; ++i) g.a[i] = 0.f;
}

}  // namespace detail

/// y = the attention block applied to x (both (B,T,C), any row-mergeable strides): builds the
/// block expression (ra::attention_block) and evaluates it on cpu::device with `buffers`'
/// workspace, which then holds the fused projection and O' (buffers.fused, buffers.o).
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
  if (B * T_ == 0) return;
  const device dev{&buffers.workspace};
  const auto expr = attention_block<DynamicRank>(cfg, x, weights, cfg.head_dim());
  const auto tape = ra::eval(view(y, shape(B * T_, C)), expr, dev);  // y (BT,C)
  detail::keep_intermediates(buffers, tape.tape, B, T_, C);
}

/// Gradients of the block at x given dy (both (B,T,C)): dx (null view: not wanted) and the
/// parameter gradients in `grads` (see AttentionBlockGrads). Evaluates the block expression
/// with its gradient sinks again (the forward, into `buffers`' workspace), then ra::backward
/// walks it: the output GEMM's backward, the attention backward (dQf, dKf, dV through the
/// folded views of a (BT,3C) workspace buffer), the projection GEMM's backward.
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
  const index_t B = x.extent(0), T_ = x.extent(1), C = cfg.C;
  detail::require_btc(where, "x", x, B, T_, C);
  detail::require_btc(where, "dy", dy, B, T_, C);
  if (!absent(dx)) detail::require_btc(where, "dx", dx, B, T_, C);
  if (B * T_ == 0) {
    detail::zero_gradients(cfg, grads);
    return;
  }
  const device dev{&buffers.workspace};
  const auto expr = attention_block<DynamicRank>(cfg, x, weights, cfg.head_dim(), grads, dx);
  const auto [y, tape] = ra::eval(expr, dev);  // y (BT,C) in the workspace
  detail::keep_intermediates(buffers, tape.tape, B, T_, C);
  ra::backward(expr, tape, view(dy, shape(B * T_, C)), dev);
}

}  // namespace ra::cpu
