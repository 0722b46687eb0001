// tests/common/same_precision_gemm.hpp — Y = A · Wᵀ (+ bias) as a naive implementation in storage
// precision T computes it (fp32 sequential sums, Y rounded to T), with each element's floor
// u·‖terms‖₂ ⊕ u_32·‖partial sums‖₂ (precision.hpp): terms a_ik·w_jk and the bias, and the
// first-order error of the fp32 sum, which a GEMM summing in another order (blocks, FMA)
// redistributes. The yardstick of the GEMM, block
// and unfused-attention precision checks.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/tensor.hpp>

#include "same_precision_attention.hpp"

namespace ra::test {

/// Values and floors of a naive GEMM, (M,N) row-major.
struct SamePrecisionGemm {
  std::vector<double> y, floor;
};

/// Y (M,N) = A (M,K) · W (N,K)ᵀ (+ bias (N); a view with null data for none), in storage
/// precision T. A, W, bias hold values exactly representable in T.
template <class T, View AV, View WV, View BV>
SamePrecisionGemm same_precision_gemm(const AV& a, const WV& w, const BV& bias) {
  const index_t M = a.extent(0), K = a.extent(1), N = w.extent(0);
  const double u = unit_roundoff(dtype_v<T>), u32 = unit_roundoff(DType::f32);
  SamePrecisionGemm r;
  r.y.assign(static_cast<std::size_t>(M * N), 0.0);
  r.floor.assign(r.y.size(), 0.0);
  parallel_for(static_cast<std::size_t>(M), [&](std::size_t row) {
    const auto i = static_cast<index_t>(row);
    for (index_t j = 0; j < N; ++j) {
      float s = 0.f;
      double t2 = 0.0, partial2 = 0.0;
      for (index_t l = 0; l < K; ++l) {
        const float x = static_cast<float>(a(i, l)) * static_cast<float>(w(j, l));
        s += x;
        t2 += static_cast<double>(x) * x;
        partial2 += static_cast<double>(s) * s;
      }
      if (bias.data() != nullptr) {
        const float bj = static_cast<float>(bias(j));
        s += bj;
        t2 += static_cast<double>(bj) * bj;
        partial2 += static_cast<double>(s) * s;
      }
      const auto at = static_cast<std::size_t>(i * N + j);
      r.y[at] = round_to_storage<T>(s);
      r.floor[at] = std::sqrt(u * u * t2 + u32 * u32 * partial2);
    }
  });
  return r;
}

}  // namespace ra::test
