// ra/cpu/layernorm.hpp — LayerNorm over the last mode on the host, forward and backward, in
// double.
//
//   forward:  μ_i = mean_c x_ic,  σ²_i = mean_c (x_ic − μ_i)²,  r_i = 1 / √(σ²_i + eps)
//             x̂_ic = (x_ic − μ_i) · r_i,   y_ic = x̂_ic · w_c + b_c
//             x, y (N,C); w, b (C); b optional (a null view: no bias)
//   backward: given dy (N,C):
//             db_c = Σ_i dy_ic,   dw_c = Σ_i dy_ic · x̂_ic
//             g_ic = dy_ic · w_c,  dx_ic = r_i · (g_ic − mean_c g_ic − x̂_ic · mean_c (g_ic x̂_ic))
//
// The backward recomputes μ and r from x in double instead of reading saved statistics, so a
// finite-difference check in double sees no float rounding of them; the forward can still
// hand out float statistics (what a GPU kernel saves) for comparisons.
#pragma once

#include <cmath>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/matrix.hpp>

namespace ra::cpu {

/// GPT-2's LayerNorm epsilon.
inline constexpr double kLayerNormEps = 1e-5;

namespace detail {

// x̂ (N,C) and r (N) of the rows of x.
struct Normalized {
  Matrix xhat;
  Vector rstd;
  Vector mean;
};

inline Normalized normalize_rows(const Matrix& x, double eps) {
  Normalized n;
  n.mean = x.rowwise().mean();
  Matrix xc = x.colwise() - n.mean;  // (N,C)
  const Vector var = xc.array().square().rowwise().mean();
  n.rstd = (var.array() + eps).rsqrt();
  n.xhat = n.rstd.asDiagonal() * xc;
  return n;
}

template <View XV, View WV>
void check_layernorm(const char* where, const XV& x, const WV& w) {
  static_assert(XV::rank == 2 && WV::rank == 1, "layernorm: x is (N,C) and weight is (C)");
  require_arg(w.extent(0) == x.extent(1), where, "weight.extent(0)", w.extent(0),
              ra::detail::concat("C = x.extent(1) = ", x.extent(1)));
  require_data(where, "x", x);
  require_data(where, "weight", w);
}

template <View V>
void check_rows(const char* where, const char* name, const V& v, index_t N, index_t C) {
  require(v.extent(0) == N && v.extent(1) == C, where, ": '", name, "' has shape ",
          to_string(v.extents()), ", expected (", N, ",", C, ")");
  require_data(where, name, v);
}

}  // namespace detail

/// y = LayerNorm(x) · weight + bias over the last mode of x (N,C); weight (C), bias (C) or a
/// null view, y (N,C); any element types and strides. mean and rstd, when not null, receive
/// N floats each (μ_i and r_i). Throws ra::error on a shape mismatch or null data.
template <ViewOfRank<2> XV, ViewOfRank<1> WV, ViewOfRank<1> BV, ViewOfRank<2> YV>
void layernorm_forward(const XV& x, const WV& weight, const BV& bias, const YV& y,
                       float* mean = nullptr, float* rstd = nullptr, double eps = kLayerNormEps) {
  constexpr const char* where = "cpu::layernorm_forward";
  detail::check_layernorm(where, x, weight);
  const index_t N = x.extent(0), C = x.extent(1);
  detail::check_rows(where, "y", y, N, C);
  const auto n = detail::normalize_rows(load(x), eps);
  Matrix out = n.xhat * load(weight).asDiagonal();  // (N,C)
  if (!absent(bias)) {
    require_arg(bias.extent(0) == C, where, "bias.extent(0)", bias.extent(0),
                ra::detail::concat("C = ", C));
    out.rowwise() += load(bias);
  }
  store(y, out);
  for (index_t i = 0; i < N; ++i) {
    if (mean != nullptr) mean[i] = static_cast<float>(n.mean(i));
    if (rstd != nullptr) rstd[i] = static_cast<float>(n.rstd(i));
  }
}

/// Gradients of layernorm_forward at x given dy (N,C): dx (N,C), dweight (C), dbias (C).
/// Every output is overwritten; a null view means "not wanted". Statistics are recomputed
/// from x. Throws ra::error on a shape mismatch or null data.
template <ViewOfRank<2> XV, ViewOfRank<1> WV, ViewOfRank<2> DYV, ViewOfRank<2> DXV,
          ViewOfRank<1> DWV, ViewOfRank<1> DBV>
void layernorm_backward(const XV& x, const WV& weight, const DYV& dy, const DXV& dx,
                        const DWV& dweight, const DBV& dbias, double eps = kLayerNormEps) {
  constexpr const char* where = "cpu::layernorm_backward";
  detail::check_layernorm(where, x, weight);
  const index_t N = x.extent(0), C = x.extent(1);
  detail::check_rows(where, "dy", dy, N, C);
  const auto n = detail::normalize_rows(load(x), eps);
  const Matrix g_out = load(dy);  // (N,C)
  if (!absent(dbias)) store(dbias, g_out.colwise().sum());
  if (!absent(dweight)) store(dweight, g_out.cwiseProduct(n.xhat).colwise().sum());
  if (absent(dx)) return;
  detail::check_rows(where, "dx", dx, N, C);
  const Matrix g = g_out * load(weight).asDiagonal();                 // (N,C)
  const Vector g_mean = g.rowwise().mean();                           // (N)
  const Vector gx_mean = g.cwiseProduct(n.xhat).rowwise().mean();     // (N)
  Matrix d = (g.colwise() - g_mean) - gx_mean.asDiagonal() * n.xhat;  // (N,C)
  store(dx, n.rstd.asDiagonal() * d);
}

}  // namespace ra::cpu
