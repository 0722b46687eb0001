// ra/expr/gemm.hpp — the lazy GEMM node: Y = A · Wᵀ (+ bias), a linear layer.
//
// A is (M, K): a view, or a node whose result is (M, K) (the node is evaluated into a
// workspace buffer first). W is (N, K) (rows are outputs, as nn.Linear), bias is (N) or
// absent — NoBias, or a bias view with null data (a block without bias) — and Y is (M, N).
// Any strides; the GPU needs a unit stride in the last mode of each. Devices add the bias in
// the GEMM's epilogue.
//
// Backward, given dY (M,N): dA = dY · W (M,K), passed on to A's node or written to the sink
// grads.a; dW = dYᵀ · A (N,K) and db = column sums of dY (N) into grads.w and grads.bias.
// Sinks are views set by with_grads(); NoGrad or a view with null data means "not wanted".
#pragma once

#include <array>
#include <type_traits>

#include <ra/core/tensor.hpp>
#include <ra/expr/node.hpp>

namespace ra {

/// Marks a GEMM without bias.
struct NoBias {};

/// Where a GEMM's backward writes the gradients of its leaf input and its parameters.
template <class DA = NoGrad, class DW = NoGrad, class DB = NoGrad>
struct GemmGrads {
  DA a{};     // (M,K) dA, for a view A (a node A receives dA itself)
  DW w{};     // (N,K) dW
  DB bias{};  // (N) db
};

namespace detail {

/// (rows, cols) of a matrix operand: a rank-2 view or a matrix node.
template <Operand E>
std::array<index_t, 2> operand_extents(const E& e) {
  if constexpr (View<E>) {
    static_assert(std::remove_cvref_t<E>::rank == 2, "gemm: A is an (M,K) view or node");
    return {e.extent(0), e.extent(1)};
  } else {
    return e.extents();
  }
}

/// Whether a sink is wanted: a view with data (NoGrad never is).
template <class S>
bool wanted(const S& s) {
  if constexpr (View<S>) {
    return s.data() != nullptr;
  } else {
    return false;
  }
}

}  // namespace detail

template <Operand AV, View WV, class BiasV = NoBias, class G = GemmGrads<>>
struct Gemm {
  static_assert(WV::rank == 2, "gemm: W is (N,K)");
  using node_tag = void;
  using value_type = typename WV::value_type;
  static constexpr bool kHasBias = !std::is_same_v<BiasV, NoBias>;
  static constexpr bool kNodeA = !View<AV>;

  AV a;
  WV w;
  BiasV bias{};
  G grads{};

  index_t m() const { return detail::operand_extents(a)[0]; }
  index_t n() const { return w.extent(0); }
  index_t k() const { return detail::operand_extents(a)[1]; }
  /// The (M,N) result.
  std::array<index_t, 2> extents() const { return {m(), n()}; }
  /// Whether the bias is added: a bias view with data (a null one stands for "no bias").
  bool has_bias() const {
    if constexpr (kHasBias) {
      return bias.data() != nullptr;
    } else {
      return false;
    }
  }

  void validate(const char* where = "gemm") const {
    require_arg(w.extent(1) == k(), where, "W.extent(1)", w.extent(1),
                detail::concat("K = A.extent(1) = ", k()));
    if constexpr (kHasBias) {
      static_assert(BiasV::rank == 1, "gemm: bias is (N)");
      static_assert(std::is_same_v<typename BiasV::value_type, value_type>,
                    "gemm: the bias has the element type of W");
      if (has_bias())
        require_arg(bias.extent(0) == w.extent(0), where, "bias.extent(0)", bias.extent(0),
                    detail::concat("N = W.extent(0) = ", w.extent(0)));
    }
  }

  /// Checks an output view against the node.
  template <View YV>
  void validate_output(const YV& y, const char* where = "gemm") const {
    static_assert(YV::rank == 2, "gemm: Y is (M,N)");
    require(y.extent(0) == m() && y.extent(1) == n(), where, ": output has shape ",
            to_string(y.extents()), ", expected (", m(), ",", n(), ")");
  }

  /// The same node with gradient sinks: dA (M,K) (for a view A only), dW (N,K), db (N).
  template <class DA, class DW, class DB>
  Gemm<AV, WV, BiasV, GemmGrads<DA, DW, DB>> with_grads(const DA& da, const DW& dw,
                                                        const DB& db) const {
    static_assert(!kNodeA || std::is_same_v<DA, NoGrad>,
                  "gemm: dA of a node operand goes to that node, not to a sink");
    return {a, w, bias, {da, dw, db}};
  }
};

/// What a GEMM's backward needs of its forward: the value of A (a view, or the workspace
/// buffer its node was evaluated into) and A's own tape.
template <class AVal, class ATape>
struct GemmTape {
  AVal a;
  ATape a_tape;
};

/// Y = A · Wᵀ; A a view or a matrix node.
template <Operand AV, View WV>
Gemm<AV, WV> gemm(const AV& a, const WV& w) {
  Gemm<AV, WV> g{a, w};
  g.validate();
  return g;
}

/// Y = A · Wᵀ + bias (a bias view with null data: no bias).
template <Operand AV, View WV, View BV>
Gemm<AV, WV, BV> gemm(const AV& a, const WV& w, const BV& bias) {
  Gemm<AV, WV, BV> g{a, w, bias};
  g.validate();
  return g;
}

}  // namespace ra
