// ra/cpu/gelu.hpp — the tanh approximation of GELU (GPT-2's) on the host, forward and
// backward, element-wise in double.
//
//   forward:   y = ½ x (1 + tanh(u)),   u = √(2/π) (x + 0.044715 x³)        x, y (N,M)
//   backward:  dx = dy · (½ (1 + tanh u) + ½ x (1 − tanh² u) √(2/π) (1 + 3·0.044715 x²))
#pragma once

#include <cmath>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/matrix.hpp>

namespace ra::cpu {

namespace detail {

inline constexpr double kGeluCoeff = 0.044715;
inline constexpr double kGeluScale = 0.7978845608028654;  // √(2/π)

inline double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(kGeluScale * (x + kGeluCoeff * x * x * x)));
}

inline double gelu_derivative(double x) {
  const double t = std::tanh(kGeluScale * (x + kGeluCoeff * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kGeluScale * (1.0 + 3.0 * kGeluCoeff * x * x);
}

template <View A, View B>
void check_same(const char* where, const char* na, const A& a, const char* nb, const B& b) {
  require_same_extents(where, na, a, nb, b);
  require_data(where, na, a);
  require_data(where, nb, b);
}

}  // namespace detail

/// y = gelu_tanh(x), element-wise over (N,M) views of any element types and strides (y may
/// alias x exactly). Throws ra::error on a shape mismatch or null data.
template <ViewOfRank<2> XV, ViewOfRank<2> YV>
void gelu_forward(const XV& x, const YV& y) {
  detail::check_same("cpu::gelu_forward", "x", x, "y", y);
  using T = typename YV::value_type;
  for (index_t i = 0; i < x.extent(0); ++i)
    for (index_t j = 0; j < x.extent(1); ++j)
      y(i, j) = convert<T>(detail::gelu(convert<double>(x(i, j))));
}

/// dx = dy · gelu_tanh'(x), element-wise over (N,M) views (dx may alias dy exactly).
/// Throws ra::error on a shape mismatch or null data.
template <ViewOfRank<2> XV, ViewOfRank<2> DYV, ViewOfRank<2> DXV>
void gelu_backward(const XV& x, const DYV& dy, const DXV& dx) {
  constexpr const char* where = "cpu::gelu_backward";
  detail::check_same(where, "x", x, "dy", dy);
  detail::check_same(where, "x", x, "dx", dx);
  using T = typename DXV::value_type;
  for (index_t i = 0; i < x.extent(0); ++i)
    for (index_t j = 0; j < x.extent(1); ++j)
      dx(i, j) =
          convert<T>(convert<double>(dy(i, j)) * detail::gelu_derivative(convert<double>(x(i, j))));
}

}  // namespace ra::cpu
