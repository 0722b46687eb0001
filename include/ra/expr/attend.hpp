// ra/expr/attend.hpp — gated causal attention over folded views, as a node of an expression.
//
//   attend<Rank<R>>(fold(fused, B, H, D), gates, causal, restart)  ->  O' (BT,C)
//
// The result is O' in (B,T,C) layout, head-interleaved, as (BT,C) rows: the output
// projection takes it as its A with no transpose. The evaluators read Qf, Kf, V through the
// fold's views of the operand (a workspace buffer when the operand is a node) and run the
// attention op (FoldedAttention) on them, so a compile-time R (Rank<R>) and D (Int<D> in the
// fold) reach the kernel's instantiation as template arguments.
//
// Backward, given dO' (BT,C): dQf, dKf, dV are written through the fold's views of a
// (BT,3C) workspace buffer, which goes on to the operand node (the fused GEMM's dY); the
// gate and restart gradients go to `grads` (AttentionGrads).
#pragma once

#include <array>

#include <ra/core/error.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/attention_spec.hpp>
#include <ra/expr/fold.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/node.hpp>

namespace ra {

template <int R, class FoldT>
struct Attend {
  using node_tag = void;
  using value_type = typename FoldT::value_type;
  static constexpr int kRank = R;

  FoldT src;
  int rank = R;
  Gates gates{};
  Restart restart{};
  AttentionGrads grads{};

  /// O' as (BT,C) rows.
  std::array<index_t, 2> extents() const { return {src.rows(), src.channels()}; }

  AttentionSpec spec() const {
    return {src.batch, src.heads, src.seq(), src.seq(), value(src.head_dim), rank, gates, restart};
  }

  void validate(const char* where = "attend") const {
    src.validate(where);
    if constexpr (R != kDynamicRank) {
      require_arg(rank == R, where, "rank", rank, detail::concat("the static rank R = ", R));
    }
    ra::validate(spec(), where);
  }

  /// The attention op on Qf, Kf, V views (the fold's views of the operand's value).
  template <class QV, class KV, class VV>
  FoldedAttention<R, QV, KV, VV> op(const QV& q, const KV& k, const VV& v) const {
    return {q, k, v, rank, gates, restart};
  }

  /// The same node with gate and restart gradient sinks.
  Attend with_grads(AttentionGrads g) const {
    Attend r = *this;
    r.grads = g;
    return r;
  }
};

/// What attend's backward needs of its forward: the fused operand's value (Qf, Kf, V are its
/// folded views), the operand's tape, and where a device keeps them, the forward's lse and O
/// before the restart mix (the GPU's backward reads both; the CPU's recomputes P).
template <class FusedV, class SrcTape>
struct AttendTape {
  FusedV fused;  // (BT,3C)
  SrcTape src_tape;
  StridedView<typename FusedV::value_type, 2> o{};  // (BT,C) O', where a device keeps it
  float* lse = nullptr;  // (B,H,T), where a device keeps it (the GPU's backward reads it)
  StridedView<typename FusedV::value_type, 2> o_pre{};  // (BT,C) O before the restart mix
};

/// Attention with a compile-time rank over folded views: attend<ra::Rank<4>>(fold(...), ...).
/// Throws ra::error on a bad shape, rank or missing gate values.
template <class RankTag, class FoldT>
Attend<RankTag::value, FoldT> attend(const FoldT& src, Gates g = gates::none(), Causal = causal,
                                     Restart r = restart::none()) {
  Attend<RankTag::value, FoldT> node{src, RankTag::value, g, r};
  node.validate();
  return node;
}

/// Attention with a rank known at run time.
template <class FoldT>
Attend<kDynamicRank, FoldT> attend(const FoldT& src, int R, Gates g = gates::none(),
                                   Causal = causal, Restart r = restart::none()) {
  Attend<kDynamicRank, FoldT> node{src, R, g, r};
  node.validate();
  return node;
}

}  // namespace ra
