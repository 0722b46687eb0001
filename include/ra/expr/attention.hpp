// ra/expr/attention.hpp — the lazy folded-attention node.
//
//   Z_ij = (1/sqrt(D)) · sum_d g_d · Qf_id · Kf_jd      (g_d = g_std for d < D-R, else g_rec)
//   Z_ij = -inf for j > i + (T_k - T_q) (causal, bottom-right aligned: attention_spec.hpp)
//   P = softmax_j(Z);  O = P · V;  O'_i = (1 - alpha_h) · O_i + alpha_h · V_{i+T_k-T_q}
//   (self-restart, optional)
//
// Qf, O are (B, H, T_q, D) and Kf, V (B, H, T_k, D) views with T_q <= T_k (T_q = T_k in
// training; fewer query rows when decoding); any strides, last stride 1 for the GPU. With the
// folded layout Qf = [Q_std | K_low], Kf = [K_std | Q_low], this is reciprocal attention;
// R = 0 is plain causal attention. The node holds views by value and computes nothing until
// ra::eval(out, node, device): it is the attention op on given views (its backward is the
// backends' attention_backward with explicit outputs). Inside an expression, attention over
// the folded views of another node's result is ra::attend (ra/expr/attend.hpp), which
// evaluates through this node.
#pragma once

#include <type_traits>

#include <ra/core/dispatch.hpp>
#include <ra/core/tensor.hpp>
#include <ra/expr/attention_spec.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/node.hpp>

namespace ra {

/// Causal masking tag (the only mask the folded form needs).
struct Causal {};
inline constexpr Causal causal{};

/// Marks a rank known only at run time.
inline constexpr int kDynamicRank = -1;

namespace detail {
template <class V>
constexpr int static_head_dim() {
  using E = std::tuple_element_t<3, typename V::shape_type>;
  if constexpr (is_static_int_v<E>) {
    return static_cast<int>(E::value);
  } else {
    return 0;
  }
}
}  // namespace detail

/// Lazy folded attention. kRank is the compile-time R (or kDynamicRank); kHeadDim is the
/// compile-time D when Q's last extent is an ra::Int<D> (else 0).
template <int R, View QV, View KV, View VV>
struct FoldedAttention {
  static_assert(QV::rank == 4 && KV::rank == 4 && VV::rank == 4,
                "folded_attention: Qf, Kf and V are (B,H,T,D) views");
  static_assert(std::is_same_v<typename QV::value_type, typename KV::value_type> &&
                    std::is_same_v<typename QV::value_type, typename VV::value_type>,
                "folded_attention: Qf, Kf and V must have the same element type");
  using node_tag = void;
  using element_type = typename QV::value_type;
  using value_type = typename QV::value_type;
  static constexpr int kRank = R;
  static constexpr int kHeadDim = detail::static_head_dim<QV>();

  QV q;
  KV k;
  VV v;
  int rank = R;
  Gates gates{};
  Restart restart{};

  index_t batch() const { return q.extent(0); }
  index_t heads() const { return q.extent(1); }
  index_t seq_q() const { return q.extent(2); }
  index_t seq_k() const { return k.extent(2); }
  index_t head_dim() const { return q.extent(3); }
  index_t std_dims() const { return head_dim() - rank; }

  /// The call this node describes (shapes read from Qf and Kf).
  AttentionSpec spec() const {
    return {batch(), heads(), seq_q(), seq_k(), head_dim(), rank, gates, restart};
  }

  /// Checks shapes, rank and parameters; throws ra::error naming the problem.
  void validate(const char* where = "folded_attention") const {
    require_same_extents(where, "Kf", k, "V", v);
    for (int m : {0, 1, 3}) {
      constexpr const char* names[] = {"B", "H", "T", "D"};
      require(q.extent(m) == k.extent(m), where, ": 'Qf' and 'Kf' differ in ", names[m], " (",
              q.extent(m), " vs ", k.extent(m), "), expected Qf (B,H,T_q,D) and Kf (B,H,T_k,D)");
    }
    ra::validate(spec(), where);
  }
};

/// Builds the node with a compile-time rank: folded_attention<ra::Rank<4>>(Qf, Kf, V, ...).
template <class RankTag, View QV, View KV, View VV>
FoldedAttention<RankTag::value, QV, KV, VV> folded_attention(const QV& q, const KV& k,
                                                             const VV& v, Gates g = gates::none(),
                                                             Causal = causal,
                                                             Restart r = restart::none()) {
  FoldedAttention<RankTag::value, QV, KV, VV> node{q, k, v, RankTag::value, g, r};
  node.validate();
  return node;
}

/// Builds the node with a rank known at run time.
template <View QV, View KV, View VV>
FoldedAttention<kDynamicRank, QV, KV, VV> folded_attention(const QV& q, const KV& k, const VV& v,
                                                           int R, Gates g = gates::none(),
                                                           Causal = causal,
                                                           Restart r = restart::none()) {
  FoldedAttention<kDynamicRank, QV, KV, VV> node{q, k, v, R, g, r};
  node.validate();
  return node;
}

/// Where an attention backward writes the gradients of the gate and restart parameters
/// (host memory for the CPU, device memory for the GPU). Each pointer addresses gate_count
/// floats (1 per layer, H per head) or H floats (a); the values are OVERWRITTEN, not
/// accumulated. A null pointer means "not wanted"; pointers for parameters the call does not
/// use (gates with GateMode::none, a without restart) are ignored.
struct AttentionGrads {
  float* w_std = nullptr;
  float* w_rec = nullptr;
  float* a = nullptr;
};

}  // namespace ra
