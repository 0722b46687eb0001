// ra/expr/gemm.hpp — the lazy GEMM node: Y = A · Wᵀ (+ bias).
//
// A is (M, K), W is (N, K) (rows are outputs, as nn.Linear), bias is (N) or absent, Y is
// (M, N). Any strides; the GPU needs a unit stride in the last mode of each.
#pragma once

#include <ra/core/tensor.hpp>

namespace ra {

/// Marks a GEMM without bias.
struct NoBias {};

template <View AV, View WV, class BiasV = NoBias>
struct Gemm {
  static_assert(AV::rank == 2 && WV::rank == 2, "gemm: A is (M,K) and W is (N,K)");
  static constexpr bool kHasBias = !std::is_same_v<BiasV, NoBias>;
  AV a;
  WV w;
  BiasV bias{};

  index_t m() const { return a.extent(0); }
  index_t n() const { return w.extent(0); }
  index_t k() const { return a.extent(1); }

  void validate(const char* where = "gemm") const {
    require_arg(w.extent(1) == a.extent(1), where, "W.extent(1)", w.extent(1),
                detail::concat("K = A.extent(1) = ", a.extent(1)));
    if constexpr (kHasBias) {
      static_assert(BiasV::rank == 1, "gemm: bias is (N)");
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
};

/// Y = A · Wᵀ.
template <View AV, View WV>
Gemm<AV, WV> gemm(const AV& a, const WV& w) {
  Gemm<AV, WV> g{a, w};
  g.validate();
  return g;
}

/// Y = A · Wᵀ + bias.
template <View AV, View WV, View BV>
Gemm<AV, WV, BV> gemm(const AV& a, const WV& w, const BV& bias) {
  Gemm<AV, WV, BV> g{a, w, bias};
  g.validate();
  return g;
}

}  // namespace ra
