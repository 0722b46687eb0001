// ra/core/folded.hpp — the folded views of a fused projection buffer.
//
// fused = x · W_attnᵀ is (B, T, 3C); per head h its column blocks hold
//   Qf = [Q_std | K_low]  at columns      h·D + d
//   Kf = [K_std | Q_low]  at columns  C + h·D + d
//   V                     at columns 2C + h·D + d
// and each is read in place as a (B, H, T, D) view with strides (3TC, D, 3C, 1).
// repack_source() says which row of the baseline W_q, W_k, W_v feeds each row of the fused
// projection W_attn (3C, C) (ra/cpu/repack.hpp applies it to weights).
#pragma once

#include <ra/core/error.hpp>
#include <ra/core/view.hpp>

namespace ra {

/// Qf, Kf and V: three (B,H,T,D) views into one fused buffer.
template <class T, class ShapeT>
struct FoldedQKV {
  TensorView<T, ShapeT> q;  // (B,H,T,D) strides (3TC,D,3C,1)
  TensorView<T, ShapeT> k;  // (B,H,T,D) strides (3TC,D,3C,1)
  TensorView<T, ShapeT> v;  // (B,H,T,D) strides (3TC,D,3C,1)
};

/// Splits the channel mode of a (B,T,C) view into heads: (B,H,T,D) strides (TC·, D, C·, 1)
/// for a row stride C· of the input. D may be ra::Int<N> to make the head dim static.
template <View V, class DExt>
constexpr auto heads(const V& btc, index_t H, DExt D) {
  static_assert(V::rank == 3, "heads: expects a (B,T,C) view");
  require_arg(H > 0, "heads", "H", H, "a positive number of heads");
  require_arg(value(as_extent(D)) > 0, "heads", "D", value(as_extent(D)), "a positive head dim");
  require_arg(btc.extent(2) == H * value(as_extent(D)), "heads", "channels", btc.extent(2),
              detail::concat("H * D = ", H, " * ", value(as_extent(D))));
  auto bthd = view(btc, shape(btc.extent(0), btc.extent(1), H, D));  // (B,T,H,D)
  return transpose<0, 2, 1, 3>(bthd);                                // (B,H,T,D)
}

/// Qf, Kf, V views of a fused (B,T,3C) buffer, C = H·D. No copy.
/// Throws ra::error when the last extent is not 3·H·D.
template <View V, class DExt>
constexpr auto folded_views(const V& fused, index_t H, DExt D) {
  static_assert(V::rank == 3, "folded_views: expects a (B,T,3C) view");
  const index_t d = value(as_extent(D));
  require(H > 0 && d > 0, "folded_views: H = ", H, " and D = ", d, ", expected positive values");
  require_arg(fused.extent(2) == 3 * H * d, "folded_views", "fused.extent(2)", fused.extent(2),
              detail::concat("3 * H * D = ", 3 * H * d));
  auto [qf, kf, v] = split<3, 2>(fused);  // 3 x (B,T,C) strides (3TC,3C,1)
  auto q = heads(qf, H, D);               // (B,H,T,D) strides (3TC,D,3C,1)
  auto k = heads(kf, H, D);               // (B,H,T,D) strides (3TC,D,3C,1)
  auto w = heads(v, H, D);                // (B,H,T,D) strides (3TC,D,3C,1)
  return FoldedQKV<typename V::element_type, typename decltype(q)::shape_type>{q, k, w};
}

/// Which baseline matrix feeds a row of W_attn, and which of its rows.
struct RepackSource {
  enum Which : int { q = 0, k = 1, v = 2 };
  Which matrix = q;
  index_t row = 0;
};

/// Checks C > 0, H > 0, C divisible by H and 0 <= R < D = C/H; throws ra::error naming the
/// argument.
inline void check_repack_config(const char* where, index_t C, index_t H, int R) {
  require_arg(C > 0, where, "C", C, "a positive channel count");
  require_arg(H > 0, where, "H", H, "a positive head count");
  require_arg(C % H == 0, where, "C", C, ra::detail::concat("a multiple of H = ", H));
  const index_t D = C / H;
  require_arg(R >= 0 && R < D, where, "R", R, ra::detail::concat("0 <= R < D = ", D));
}

/// The baseline source of row `row` (in [0, 3C)) of the repacked W_attn.
/// Throws ra::error on a bad configuration or a row outside [0, 3C).
inline RepackSource repack_source(index_t C, index_t H, int R, index_t row) {
  check_repack_config("repack_source", C, H, R);
  require_arg(row >= 0 && row < 3 * C, "repack_source", "row", row,
              ra::detail::concat("in [0, 3C = ", 3 * C, ")"));
  const index_t D = C / H;
  const index_t block = row / C, r = row % C;  // block 0: Qf, 1: Kf, 2: V
  if (block == 2) return {RepackSource::v, r};
  // Rows [b-R, b) of a head are its own last R rows: the low dims keep their row index and
  // come from the other matrix (Qf's from W_k, Kf's from W_q).
  const bool low = r % D >= D - R;
  const bool from_q = (block == 0) != low;
  return {from_q ? RepackSource::q : RepackSource::k, r};
}

}  // namespace ra
