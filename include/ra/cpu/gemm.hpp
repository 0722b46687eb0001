// ra/cpu/gemm.hpp — the GEMM node on the host, forward and backward, in double.
//
//   forward:   Y  = A · Wᵀ (+ bias)      A (M,K), W (N,K), bias (N), Y (M,N)
//   backward:  dA = dY · W               (M,K)
//              dW = dYᵀ · A              (N,K)
//              db = column sums of dY    (N)
//
// Inputs of any element type (float, fp16, bf16, double) and any strides are gathered into
// double matrices; the products run in Eigen's GEMM; results are rounded into the outputs.
// Evaluator<Gemm, cpu::device> (below) is the node's one evaluator on the host.
#pragma once

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/matrix.hpp>
#include <ra/expr/gemm.hpp>
#include <ra/expr/node.hpp>

namespace ra::cpu {

/// Y = A · Wᵀ (+ bias) for a Gemm node of views; y is (M,N) with any strides and element
/// type. A bias view with null data adds no bias. Throws ra::error on a shape mismatch or null
/// data.
template <View AV, class WV, class BiasV, class G, ViewOfRank<2> YV>
void gemm_forward(const Gemm<AV, WV, BiasV, G>& node, const YV& y) {
  constexpr const char* where = "cpu::gemm_forward";
  node.validate(where);
  node.validate_output(y, where);
  detail::require_data(where, "A", node.a);
  detail::require_data(where, "W", node.w);
  detail::require_data(where, "Y", y);
  Matrix out = load(node.a) * load(node.w).transpose();  // (M,N)
  if constexpr (Gemm<AV, WV, BiasV, G>::kHasBias) {
    if (node.has_bias()) out.rowwise() += load(node.bias);
  }
  store(y, out);
}

/// Gradients of Y = A · Wᵀ + b given dY: dA = dY · W (M,K), dW = dYᵀ · A (N,K),
/// db = column sums of dY (N). Each output is overwritten; pass a default-constructed (null)
/// view for a gradient that is not wanted. Throws ra::error on a shape mismatch.
template <ViewOfRank<2> AV, ViewOfRank<2> WV, ViewOfRank<2> DYV, ViewOfRank<2> DAV,
          ViewOfRank<2> DWV, ViewOfRank<1> DBV>
void gemm_backward(const AV& a, const WV& w, const DYV& dy, const DAV& da, const DWV& dw,
                   const DBV& db) {
  constexpr const char* where = "cpu::gemm_backward";
  const index_t M = a.extent(0), K = a.extent(1), N = w.extent(0);
  require_arg(w.extent(1) == K, where, "W.extent(1)", w.extent(1),
              ra::detail::concat("K = A.extent(1) = ", K));
  require(dy.extent(0) == M && dy.extent(1) == N, where, ": 'dY' has shape ",
          to_string(dy.extents()), ", expected (", M, ",", N, ")");
  if (!absent(da))
    require(da.extent(0) == M && da.extent(1) == K, where, ": 'dA' has shape ",
            to_string(da.extents()), ", expected (", M, ",", K, ")");
  if (!absent(dw))
    require(dw.extent(0) == N && dw.extent(1) == K, where, ": 'dW' has shape ",
            to_string(dw.extents()), ", expected (", N, ",", K, ")");
  if (!absent(db))
    require_arg(db.extent(0) == N, where, "db.extent(0)", db.extent(0),
                ra::detail::concat("N = ", N));
  detail::require_data(where, "dY", dy);
  const Matrix g = load(dy);  // (M,N)
  if (!absent(da)) {
    detail::require_data(where, "W", w);
    store(da, g * load(w));
  }
  if (!absent(dw)) {
    detail::require_data(where, "A", a);
    store(dw, g.transpose() * load(a));
  }
  if (!absent(db)) store(db, g.colwise().sum());
}

namespace detail {

// A sink as a view: NoGrad becomes a null view (gemm_backward then skips it).
template <class T, int N, class S>
auto sink(const S& s) {
  if constexpr (View<S>) {
    return s;
  } else {
    return StridedView<T, N>{};
  }
}

}  // namespace detail

}  // namespace ra::cpu

namespace ra {

/// The GEMM on the host: A's node (if any) into the workspace, then Y = A·Wᵀ + b in double.
/// Backward: dW, db into their sinks; dA into A's sink, or into a workspace buffer that goes
/// on to A's node.
template <class AV, class WV, class BiasV, class G>
struct Evaluator<Gemm<AV, WV, BiasV, G>, cpu::device> {
  using N = Gemm<AV, WV, BiasV, G>;
  using T = typename N::value_type;

  template <View YV>
  static auto forward(const N& node, const YV& y, const cpu::device& dev) {
    node.validate("cpu::gemm_forward");
    auto [a, a_tape] = materialise(node.a, dev);
    cpu::gemm_forward(Gemm<decltype(a), WV, BiasV>{a, node.w, node.bias}, y);
    return GemmTape<decltype(a), decltype(a_tape)>{a, a_tape};
  }

  template <class Tape, View DYV>
  static void backward(const N& node, const Tape& tape, const DYV& dy, const cpu::device& dev) {
    using GW = std::remove_cvref_t<decltype(cpu::detail::sink<T, 2>(node.grads.w))>;
    const auto dw = cpu::detail::sink<typename GW::value_type, 2>(node.grads.w);
    const auto db = node.has_bias() ? cpu::detail::sink<typename GW::value_type, 1>(node.grads.bias)
                                    : StridedView<typename GW::value_type, 1>{};
    if constexpr (N::kNodeA) {
      const auto da = make_view(dev.template take<T>(node.m() * node.k()),
                                shape(node.m(), node.k()));  // (M,K) dA for A's node
      cpu::gemm_backward(tape.a, node.w, dy, da, dw, db);
      backward_step(node.a, tape.a_tape, da, dev);
    } else {
      cpu::gemm_backward(tape.a, node.w, dy, cpu::detail::sink<T, 2>(node.grads.a), dw, db);
    }
  }
};

}  // namespace ra
