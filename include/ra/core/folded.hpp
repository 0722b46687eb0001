// ra/core/folded.hpp — the folded views of a fused projection buffer.
//
// fused = x · W_attnᵀ is (B, T, 3C); per head h its column blocks hold
//   Qf = [Q_std | K_low]  at columns      h·D + d
//   Kf = [K_std | Q_low]  at columns  C + h·D + d
//   V                     at columns 2C + h·D + d
// and each is read in place as a (B, H, T, D) view with strides (3TC, D, 3C, 1).
#pragma once

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

}  // namespace ra
