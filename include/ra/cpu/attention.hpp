// ra/cpu/attention.hpp — folded reciprocal attention on the host, forward and backward.
//
// For each batch b and head h, with Qf, Kf, V the (T,D) slices of the node's (B,H,T,D) views:
//   Q̂   = Qf ⊙ g            g_d = g_std for d < D-R, g_rec for d >= D-R (1 without gates)
//   Z   = Q̂ · Kfᵀ / √D       (T_q,T_k), Z_ij = -inf for j > i + T_k - T_q (causal, aligned
//                         bottom-right; T_q = T_k in training, T_q < T_k when decoding)
//   P   = softmax_j(Z),  lse_i = log Σ_j exp(Z_ij)
//   O   = P · V,  O'_i = (1 - α_h) O_i + α_h V_{i+T_k-T_q}   (α_h = clamp(a_h, 0, 0.5) with
//                                                            self-restart)
// Backward (one-sided gate form), given dO':
//   dO = (1 - α) dO',  dV = Pᵀ · dO + α dO',  dP = dO · Vᵀ,  dZ = P ⊙ (dP - rowsum(dP ⊙ P))
//   dQ̂ = dZ · Kf / √D,  dQf = g ⊙ dQ̂,  dKf = dZᵀ · Q̂ / √D
//   d w_std = g'(w_std) Σ_{b,t,d<D-R} dQ̂ ⊙ Qf   (likewise w_rec over d >= D-R; per-layer gates
//   also sum over h),  d a_h = clamp'(a_h) Σ_{b,t,d} dO' ⊙ (V - O)
//
// Everything is computed in double with Eigen's GEMM per (b, h); the backward recomputes P
// from the inputs instead of reading a saved O or lse. The evaluators of the attention op
// (FoldedAttention) and of the expression node ra::attend on cpu::device are at the end. Inputs and
// outputs may have any strides and element type (float, fp16, bf16, double).
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include <ra/core/any_view.hpp>
#include <ra/core/dispatch.hpp>
#include <ra/core/error.hpp>
#include <ra/core/overlap.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/matrix.hpp>
#include <ra/cpu/device.hpp>
#include <ra/expr/attend.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/node.hpp>

namespace ra::cpu {

/// Where attention_backward writes the gate and restart gradients (ra/expr/attention.hpp).
using ra::AttentionGrads;

namespace detail {

// The effective gate and its derivative in double. Same formulas as ra::effective_gate, so
// finite differences of a double loss see no float rounding of g.
inline double gate_value(float w, GateParam p) {
  if (p == GateParam::softplus) {
    const double x = w;
    return x > 20.0 ? x : std::log1p(std::exp(x));
  }
  return w > kGateFloor ? static_cast<double>(w) : static_cast<double>(kGateFloor);
}

inline double gate_derivative(float w, GateParam p) {
  if (p == GateParam::softplus) return 1.0 / (1.0 + std::exp(-static_cast<double>(w)));
  return w >= kGateFloor ? 1.0 : 0.0;
}

// Everything one (b, h) slice needs to know about gates and restart.
struct HeadParams {
  RowVector gate;  // (D) g_d per dim of Qf
  double alpha = 0.0;
  bool restart = false;
};

inline HeadParams head_params(const Gates& gates, const Restart& restart, index_t h, index_t D,
                              int R) {
  HeadParams hp;
  hp.gate = RowVector::Ones(D);
  if (gates.enabled()) {
    const int gi = gates.index(static_cast<int>(h));
    hp.gate.head(D - R).setConstant(gate_value(gates.w_std[gi], gates.param));
    hp.gate.tail(R).setConstant(gate_value(gates.w_rec[gi], gates.param));
  }
  if (restart.enabled()) {
    hp.restart = true;
    hp.alpha = effective_restart(restart.a[h]);
  }
  return hp;
}

// Causal softmax of the (T_q,T_k) logits z in place (z becomes P): row i sees keys
// j <= i + T_k - T_q. Returns the per-row lse.
inline Vector causal_softmax(Matrix& z) {
  const index_t Tq = z.rows(), Tk = z.cols();
  Vector lse(Tq);
  for (index_t i = 0; i < Tq; ++i) {
    const index_t n = i + Tk - Tq + 1;  // keys this row sees
    auto row = z.row(i);
    const double m = row.head(n).maxCoeff();
    row.head(n) = (row.head(n).array() - m).exp();
    const double l = row.head(n).sum();
    row.head(n) /= l;
    row.tail(Tk - n).setZero();
    lse(i) = m + std::log(l);
  }
  return lse;
}

// The forward of one (b, h) slice: P (T_q,T_k), lse (T_q), O (T_q,D) before restart.
struct HeadForward {
  Matrix p;
  Vector lse;
  Matrix o;
};

inline HeadForward head_forward(const Matrix& qhat, const Matrix& kf, const Matrix& v,
                                double scale) {
  HeadForward f;
  f.p = (qhat * kf.transpose()) * scale;  // (T_q,T_k) logits Z
  f.lse = causal_softmax(f.p);            // Z -> P
  f.o = f.p * v;                          // (T_q,D)
  return f;
}

// The (T,D) slice of a (B,H,T,D) view at (b, h).
template <View V>
auto head_slice(const V& t, index_t b, index_t h) {
  return select<0>(select<0>(t, b), h);  // (T,D)
}

// An output (or dO') of the shape of `like` (Qf: (B,H,T_q,D); Kf: (B,H,T_k,D)).
template <View Like, View OV>
void check_output(const char* where, const char* like_name, const Like& like, const char* name,
                  const OV& o) {
  static_assert(OV::rank == 4, "attention: outputs are (B,H,T,D) views");
  require_same_extents(where, like_name, like, name, o);
  require_data(where, name, o);
}

// Gate and restart values live in host memory here: a NaN or infinity among them would be
// floored silently by the clamp or turn every output into NaN, so it is refused by name.
inline void require_finite_values(const char* where, const char* name, const float* v, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw error(ra::detail::concat(where, ": argument '", name, "[", i, "]' is ", v[i],
                                     ", expected a finite value"));
}

template <class Node>
void check_inputs(const char* where, const Node& node) {
  node.validate(where);
  require_data(where, "Qf", node.q);
  require_data(where, "Kf", node.k);
  require_data(where, "V", node.v);
  if (node.gates.enabled()) {
    const index_t n = node.spec().gate_count();
    require_finite_values(where, "gates.w_std", node.gates.w_std, n);
    require_finite_values(where, "gates.w_rec", node.gates.w_rec, n);
  }
  if (node.restart.enabled())
    require_finite_values(where, "restart.a", node.restart.a, node.heads());
}

}  // namespace detail

/// Evaluates a FoldedAttention node into o (B,H,T,D) (any strides and element type).
/// lse, when not null, receives B·H·T floats, row-major (b,h,t): the natural-log
/// log-sum-exp of each row of scaled, gated, masked logits.
/// Throws ra::error on mismatched shapes, R outside [0, D), null data, missing gate values or
/// non-finite gate or restart values.
template <int R, class QV, class KV, class VV, View OV>
void attention_forward(const FoldedAttention<R, QV, KV, VV>& node, const OV& o,
                       float* lse = nullptr) {
  constexpr const char* where = "cpu::attention_forward";
  detail::check_inputs(where, node);
  detail::check_output(where, "Qf", node.q, "O", o);
  const index_t B = node.batch(), H = node.heads(), T = node.seq_q(), D = node.head_dim();
  require_disjoint(where,
                   {{"O", footprint(o)},
                    {"lse", float_footprint(lse, B * H * T)},
                    {"Qf", footprint(node.q)},
                    {"Kf", footprint(node.k)},
                    {"V", footprint(node.v)}},
                   2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < H; ++h) {
      const auto hp = detail::head_params(node.gates, node.restart, h, D, node.rank);
      const Matrix qf = load(detail::head_slice(node.q, b, h));  // (T_q,D)
      const Matrix kf = load(detail::head_slice(node.k, b, h));  // (T_k,D)
      const Matrix v = load(detail::head_slice(node.v, b, h));   // (T_k,D)
      const Matrix qhat = qf * hp.gate.asDiagonal();
      auto f = detail::head_forward(qhat, kf, v, scale);
      if (hp.restart) f.o = (1.0 - hp.alpha) * f.o + hp.alpha * v.bottomRows(T);
      store(detail::head_slice(o, b, h), f.o);
      if (lse != nullptr)
        for (index_t t = 0; t < T; ++t) lse[(b * H + h) * T + t] = static_cast<float>(f.lse(t));
    }
  }
}

/// Folded attention on type-erased (B,H,T,D) views, the element type read at run time
/// (for callers that hold views before knowing their type). Same result as the typed form.
/// Throws ra::error when Qf, Kf, V and O do not share one dtype (the message names the
/// first view that differs) or are not of rank 4, and as the typed form otherwise.
inline void attention_forward(const AnyView& q, const AnyView& k, const AnyView& v,
                              const AnyView& o, int R, Gates g = gates::none(),
                              Restart r = restart::none(), float* lse = nullptr) {
  constexpr const char* where = "cpu::attention_forward";
  require_same_dtype(where, {{"Qf", &q}, {"Kf", &k}, {"V", &v}, {"O", &o}});
  dispatch_dtype(q.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto node =
        folded_attention(as_view<const T, 4>(q, where, "Qf"), as_view<const T, 4>(k, where, "Kf"),
                         as_view<const T, 4>(v, where, "V"), R, g, causal, r);
    attention_forward(node, as_view<T, 4>(o, where, "O"), lse);
  });
}

/// Gradients of a FoldedAttention node given d_out = dO' (B,H,T,D): writes dQf, dKf, dV into
/// (B,H,T,D) views (any strides and element type; usually folded_views of a (B,T,3C)
/// gradient buffer) and the gate/restart gradients into `grads` (see AttentionGrads).
/// All outputs are overwritten. P is recomputed from the node's inputs.
/// Throws ra::error on mismatched shapes, null data, missing gate values or non-finite gate or
/// restart values.
template <int R, class QV, class KV, class VV, View DOV, View DQV, View DKV, View DVV>
void attention_backward(const FoldedAttention<R, QV, KV, VV>& node, const DOV& d_out, const DQV& dq,
                        const DKV& dk, const DVV& dv, AttentionGrads grads = {}) {
  constexpr const char* where = "cpu::attention_backward";
  detail::check_inputs(where, node);
  detail::check_output(where, "Qf", node.q, "dO", d_out);
  detail::check_output(where, "Qf", node.q, "dQf", dq);
  detail::check_output(where, "Kf", node.k, "dKf", dk);
  detail::check_output(where, "Kf", node.k, "dV", dv);
  const index_t B = node.batch(), H = node.heads(), D = node.head_dim(), Tq = node.seq_q();
  const index_t Ds = node.std_dims();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const bool gated = node.gates.enabled();
  const index_t n_gates = node.spec().gate_count();
  const index_t n_a = node.restart.enabled() ? H : 0;
  require_disjoint(where,
                   {{"dQf", footprint(dq)},
                    {"dKf", footprint(dk)},
                    {"dV", footprint(dv)},
                    {"grads.w_std", float_footprint(grads.w_std, n_gates)},
                    {"grads.w_rec", float_footprint(grads.w_rec, n_gates)},
                    {"grads.a", float_footprint(grads.a, n_a)},
                    {"Qf", footprint(node.q)},
                    {"Kf", footprint(node.k)},
                    {"V", footprint(node.v)},
                    {"dO", footprint(d_out)},
                    {"gates.w_std", float_footprint(node.gates.w_std, n_gates)},
                    {"gates.w_rec", float_footprint(node.gates.w_rec, n_gates)},
                    {"restart.a", float_footprint(node.restart.a, n_a)}},
                   6);
  std::vector<double> sum_std(n_gates, 0.0), sum_rec(n_gates, 0.0), sum_a(H, 0.0);

  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < H; ++h) {
      const auto hp = detail::head_params(node.gates, node.restart, h, D, node.rank);
      const Matrix qf = load(detail::head_slice(node.q, b, h));    // (T_q,D)
      const Matrix kf = load(detail::head_slice(node.k, b, h));    // (T_k,D)
      const Matrix v = load(detail::head_slice(node.v, b, h));     // (T_k,D)
      const Matrix g_out = load(detail::head_slice(d_out, b, h));  // (T_q,D) dO'
      const Matrix qhat = qf * hp.gate.asDiagonal();
      const auto f = detail::head_forward(qhat, kf, v, scale);

      Matrix d_o = g_out;  // (T_q,D) dO
      Matrix d_v;          // (T_k,D)
      if (hp.restart) {
        sum_a[h] += g_out.cwiseProduct(v.bottomRows(Tq) - f.o).sum();
        d_o *= 1.0 - hp.alpha;
        d_v = f.p.transpose() * d_o;
        d_v.bottomRows(Tq) += hp.alpha * g_out;  // each query row's own token
      } else {
        d_v = f.p.transpose() * d_o;
      }
      // rowsum(dP ⊙ P)_i = Σ_j (dO_i · V_j) P_ij = dO_i · O_i.
      const Vector delta = d_o.cwiseProduct(f.o).rowwise().sum();  // (T_q)
      Matrix d_z = d_o * v.transpose();                            // (T_q,T_k) dP
      d_z.colwise() -= delta;
      d_z = d_z.cwiseProduct(f.p);                           // (T_q,T_k) dZ
      const Matrix d_qhat = (d_z * kf) * scale;              // (T_q,D)
      const Matrix d_kf = (d_z.transpose() * qhat) * scale;  // (T_k,D)
      if (gated) {
        const Matrix prod = d_qhat.cwiseProduct(qf);  // (T_q,D)
        const index_t gi = node.gates.index(static_cast<int>(h));
        sum_std[gi] += prod.leftCols(Ds).sum();
        sum_rec[gi] += prod.rightCols(D - Ds).sum();
      }
      store(detail::head_slice(dq, b, h), d_qhat * hp.gate.asDiagonal());
      store(detail::head_slice(dk, b, h), d_kf);
      store(detail::head_slice(dv, b, h), d_v);
    }
  }
  for (index_t i = 0; i < n_gates; ++i) {
    if (grads.w_std != nullptr)
      grads.w_std[i] = static_cast<float>(
          sum_std[i] * detail::gate_derivative(node.gates.w_std[i], node.gates.param));
    if (grads.w_rec != nullptr)
      grads.w_rec[i] = static_cast<float>(
          sum_rec[i] * detail::gate_derivative(node.gates.w_rec[i], node.gates.param));
  }
  if (node.restart.enabled() && grads.a != nullptr)
    for (index_t h = 0; h < H; ++h)
      grads.a[h] = static_cast<float>(sum_a[h] * effective_restart_grad(node.restart.a[h]));
}

}  // namespace ra::cpu

namespace ra {

/// The attention op on the host: O' of the node's views into o (B,H,T,D). Its gradients are
/// cpu::attention_backward's, with explicit outputs (the op has no sinks of its own).
template <int R, class QV, class KV, class VV>
struct Evaluator<FoldedAttention<R, QV, KV, VV>, cpu::device> {
  template <View OV>
  static LeafTape forward(const FoldedAttention<R, QV, KV, VV>& node, const OV& o,
                          const cpu::device&) {
    cpu::attention_forward(node, o);
    return {};
  }
};

/// attend on the host: the fold's operand into the workspace, then the attention op on its
/// folded views, O' written as the heads of the (BT,C) output. Backward: dQf, dKf, dV
/// through the folded views of a (BT,3C) workspace buffer, which goes on to the operand
/// node; gate and restart gradients into the node's sinks.
template <int R, class FoldT>
struct Evaluator<Attend<R, FoldT>, cpu::device> {
  using N = Attend<R, FoldT>;
  using T = typename N::value_type;

  template <View OV>
  static auto forward(const N& node, const OV& out, const cpu::device& dev) {
    constexpr const char* where = "cpu::attend";
    node.validate(where);
    static_assert(OV::rank == 2, "attend: the output is O' as (BT,C) rows");
    require(out.extents() == node.extents(), where, ": output has shape ", to_string(out.extents()),
            ", expected (BT,C) = ", to_string(node.extents()));
    auto [fused, src_tape] = materialise(node.src.src, dev);          // (BT,3C)
    const auto qkv = node.src.views(StridedView<const T, 2>(fused));  // 3 x (B,H,T,D)
    cpu::attention_forward(node.op(qkv.q, qkv.k, qkv.v), node.src.heads_of(out));
    return AttendTape<StridedView<const T, 2>, decltype(src_tape)>{fused, src_tape};
  }

  template <class Tape, View DOV>
  static void backward(const N& node, const Tape& tape, const DOV& d_out, const cpu::device& dev) {
    const auto ext = node.src.src.extents();
    const auto d_fused = make_view(dev.template take<T>(ext[0] * ext[1]),
                                   shape(ext[0], ext[1]));  // (BT,3C) dQf | dKf | dV
    const auto qkv = node.src.views(tape.fused);            // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const auto d_qkv = node.src.views(d_fused);             // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    cpu::attention_backward(node.op(qkv.q, qkv.k, qkv.v), node.src.heads_of(d_out), d_qkv.q,
                            d_qkv.k, d_qkv.v, node.grads);
    if constexpr (FoldT::kNodeSrc) backward_step(node.src.src, tape.src_tape, d_fused, dev);
  }
};

}  // namespace ra
