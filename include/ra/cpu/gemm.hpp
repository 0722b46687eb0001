// ra/cpu/gemm.hpp — the GEMM node on the host, forward and backward, in double.
//
//   forward:   Y  = A · Wᵀ (+ bias)      A (M,K), W (N,K), bias (N), Y (M,N)
//   backward:  dA = dY · W               (M,K)
//              dW = dYᵀ · A              (N,K)
//              db = column sums of dY    (N)
//
// Inputs of any element type (float, fp16, bf16, double) and any strides are gathered into
// double matrices; the products run in Eigen's GEMM; results are rounded into the outputs.
#pragma once

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/matrix.hpp>
#include <ra/expr/gemm.hpp>

namespace ra::cpu {

template <class T>
inline constexpr bool is_gemm_v = false;
template <class A, class W, class B>
inline constexpr bool is_gemm_v<Gemm<A, W, B>> = true;

namespace detail {

// The forward with the bias switched at run time: the block pipeline always carries a bias
// view and says with a flag whether the block has one.
template <class AV, class WV, class BiasV, ViewOfRank<2> YV>
void gemm_forward(const Gemm<AV, WV, BiasV>& node, const YV& y, bool use_bias) {
  constexpr const char* where = "cpu::gemm_forward";
  // A block without bias carries a null bias view: validate it only when it is used.
  if (use_bias) {
    node.validate(where);
  } else {
    Gemm<AV, WV>{node.a, node.w}.validate(where);
  }
  node.validate_output(y, where);
  require_data(where, "A", node.a);
  require_data(where, "W", node.w);
  require_data(where, "Y", y);
  Matrix out = load(node.a) * load(node.w).transpose();  // (M,N)
  if constexpr (Gemm<AV, WV, BiasV>::kHasBias) {
    if (use_bias) {
      require_arg(node.bias.extent(0) == node.n(), where, "bias.extent(0)", node.bias.extent(0),
                  ra::detail::concat("N = ", node.n()));
      require_data(where, "bias", node.bias);
      out.rowwise() += load(node.bias);
    }
  }
  store(y, out);
}

}  // namespace detail

/// Y = A · Wᵀ (+ bias) for a Gemm node; y is (M,N) with any strides and element type.
/// Throws ra::error on a shape mismatch or null data.
template <class AV, class WV, class BiasV, ViewOfRank<2> YV>
void gemm_forward(const Gemm<AV, WV, BiasV>& node, const YV& y) {
  detail::gemm_forward(node, y, Gemm<AV, WV, BiasV>::kHasBias);
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

}  // namespace ra::cpu
