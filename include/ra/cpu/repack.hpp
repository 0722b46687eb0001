// ra/cpu/repack.hpp — repacking baseline attention weights into the folded layout.
//
// From W_q, W_k, W_v (each (C,C), rows are outputs) and their (C) biases, builds the fused
// projection W_attn (3C,C) and b_attn (3C). For head h with a = h·D, b = a + D, D_std = D - R:
//   Qf rows [a, a+D_std) ← W_q rows [a, a+D_std);   Qf rows [a+D_std, b) ← W_k rows [b-R, b)
//   Kf rows [a, a+D_std) ← W_k rows [a, a+D_std);   Kf rows [a+D_std, b) ← W_q rows [b-R, b)
//   V  rows [a, b)       ← W_v rows [a, b)
// where Qf, Kf, V are rows [0,C), [C,2C), [2C,3C) of W_attn. A row permutation: biases move
// with their rows, and the gates are not baked into the weights.
#pragma once

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/matrix.hpp>

namespace ra::cpu {

// The row map (RepackSource, repack_source, check_repack_config) lives in ra/core/folded.hpp:
// the GPU model's initialisation uses it without the CPU backend.
using ra::check_repack_config;
using ra::repack_source;
using ra::RepackSource;

/// Writes the folded W_attn (3C,C) and b_attn (3C) from baseline W_q, W_k, W_v (C,C) and
/// b_q, b_k, b_v (C). Any element types and strides. Pass a null b_attn (a
/// default-constructed view) for a projection without bias; the baseline biases are then
/// not read. Throws ra::error naming the argument on a bad shape, null data or R >= D.
template <ViewOfRank<2> WQ, ViewOfRank<2> WK, ViewOfRank<2> WV, ViewOfRank<1> BQ, ViewOfRank<1> BK,
          ViewOfRank<1> BV, ViewOfRank<2> WA, ViewOfRank<1> BA>
void repack_qkv(index_t C, index_t H, int R, const WQ& w_q, const WK& w_k, const WV& w_v,
                const BQ& b_q, const BK& b_k, const BV& b_v, const WA& w_attn, const BA& b_attn) {
  constexpr const char* where = "repack_qkv";
  check_repack_config(where, C, H, R);
  auto check_square = [&](const char* name, const auto& w) {
    require(w.extent(0) == C && w.extent(1) == C, where, ": '", name, "' has shape ",
            to_string(w.extents()), ", expected (", C, ",", C, ")");
    detail::require_data(where, name, w);
  };
  check_square("w_q", w_q);
  check_square("w_k", w_k);
  check_square("w_v", w_v);
  require(w_attn.extent(0) == 3 * C && w_attn.extent(1) == C, where, ": 'w_attn' has shape ",
          to_string(w_attn.extents()), ", expected (", 3 * C, ",", C, ")");
  detail::require_data(where, "w_attn", w_attn);
  const bool bias = !absent(b_attn);
  if (bias) {
    require_arg(b_attn.extent(0) == 3 * C, where, "b_attn.extent(0)", b_attn.extent(0),
                ra::detail::concat("3C = ", 3 * C));
    auto check_bias = [&](const char* name, const auto& b) {
      require_arg(b.extent(0) == C, where, ra::detail::concat(name, ".extent(0)"), b.extent(0),
                  ra::detail::concat("C = ", C));
      detail::require_data(where, name, b);
    };
    check_bias("b_q", b_q);
    check_bias("b_k", b_k);
    check_bias("b_v", b_v);
  }

  using TW = typename WA::value_type;
  using TB = typename BA::value_type;
  for (index_t row = 0; row < 3 * C; ++row) {
    const RepackSource s = repack_source(C, H, R, row);
    auto copy_row = [&](const auto& w, const auto& b) {
      for (index_t j = 0; j < C; ++j) w_attn(row, j) = convert<TW>(convert<double>(w(s.row, j)));
      if (bias) b_attn(row) = convert<TB>(convert<double>(b(s.row)));
    };
    switch (s.matrix) {
      case RepackSource::q:
        copy_row(w_q, b_q);
        break;
      case RepackSource::k:
        copy_row(w_k, b_k);
        break;
      case RepackSource::v:
        copy_row(w_v, b_v);
        break;
    }
  }
}

}  // namespace ra::cpu
