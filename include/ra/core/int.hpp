// ra/core/int.hpp — compile-time integers used as extents, head dims and ranks.
//
// An extent is either ra::Int<N> (known at compile time) or ra::index_t (known at run time),
// as in CuTe. Arithmetic and comparisons read both through ra::value().
#pragma once

#include <concepts>
#include <type_traits>

#include <ra/core/config.hpp>

namespace ra {

/// A compile-time integer; converts to index_t where a runtime value is needed.
template <index_t N>
struct Int {
  static constexpr index_t value = N;
  RA_HOST_DEVICE constexpr operator index_t() const { return N; }
};

/// Reciprocal rank tag: folded_attention<ra::Rank<4>>(...).
template <int R>
struct Rank {
  static constexpr int value = R;
};

/// Head-dimension tag.
template <int D>
struct HeadDim {
  static constexpr int value = D;
};

template <class T>
struct is_static_int : std::false_type {};
template <index_t N>
struct is_static_int<Int<N>> : std::true_type {};

template <class T>
inline constexpr bool is_static_int_v = is_static_int<std::remove_cvref_t<T>>::value;

/// An extent: a compile-time Int<N> or a runtime index_t.
template <class T>
concept Extent = is_static_int_v<T> || std::same_as<std::remove_cvref_t<T>, index_t>;

/// The numeric value of an extent.
template <Extent E>
RA_HOST_DEVICE constexpr index_t value(E e) {
  return static_cast<index_t>(e);
}

/// Turns any integral into index_t and keeps Int<N> as it is (used by ra::shape).
template <class T>
constexpr auto as_extent(T v) {
  if constexpr (is_static_int_v<T>) {
    return v;
  } else {
    static_assert(std::is_integral_v<T>, "an extent is an integer or ra::Int<N>");
    return static_cast<index_t>(v);
  }
}

}  // namespace ra
