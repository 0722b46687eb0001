// ra/core/layout.hpp — shapes and layouts.
//
// A shape is a std::tuple of extents, each a compile-time ra::Int<N> or a runtime index_t.
// A layout is a shape plus one runtime stride per mode, in elements; the offset of a
// coordinate is the dot product of coordinate and strides. Nothing here owns memory.
#pragma once

#include <array>
#include <cstddef>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include <ra/core/int.hpp>

namespace ra {

/// A shape: ra::shape(B, T, ra::Int<64>{}) -> std::tuple<index_t, index_t, Int<64>>.
template <class... A>
constexpr auto shape(A... a) {
  return std::tuple{as_extent(a)...};
}

template <class ShapeT>
inline constexpr int rank_v = static_cast<int>(std::tuple_size_v<ShapeT>);

/// Extents of a shape as runtime values.
template <class ShapeT>
constexpr std::array<index_t, rank_v<ShapeT>> extents_of(const ShapeT& s) {
  return std::apply([](auto... e) { return std::array<index_t, sizeof...(e)>{value(e)...}; }, s);
}

/// Row-major (last mode fastest) strides of a compact tensor of the given extents.
template <std::size_t N>
constexpr std::array<index_t, N> compact_strides(const std::array<index_t, N>& ext) {
  std::array<index_t, N> s{};
  index_t acc = 1;
  for (std::size_t i = N; i-- > 0;) {
    s[i] = acc;
    acc *= ext[i];
  }
  return s;
}

template <std::size_t N>
std::string to_string(const std::array<index_t, N>& a) {
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < N; ++i) os << (i ? "," : "") << a[i];
  os << ')';
  return os.str();
}

/// Shape plus strides. Strides are in elements and may be any non-negative value.
template <class ShapeT>
struct Layout {
  static constexpr int rank = rank_v<ShapeT>;
  using shape_type = ShapeT;

  ShapeT shape{};
  std::array<index_t, rank> stride{};

  constexpr std::array<index_t, rank> extents() const { return extents_of(shape); }
  constexpr index_t extent(int i) const { return extents()[i]; }

  constexpr index_t size() const {
    index_t n = 1;
    for (index_t e : extents()) n *= e;
    return n;
  }

  constexpr index_t offset(const std::array<index_t, rank>& coord) const {
    index_t off = 0;
    for (int i = 0; i < rank; ++i) off += coord[i] * stride[i];
    return off;
  }

  /// One past the largest offset the layout reaches (0 for an empty layout).
  constexpr index_t cosize() const {
    if (size() == 0) return 0;
    index_t last = 0;
    const auto ext = extents();
    for (int i = 0; i < rank; ++i) last += (ext[i] - 1) * stride[i];
    return last + 1;
  }

  /// True when the layout is row-major compact (strides equal compact_strides).
  constexpr bool is_compact() const {
    const auto ext = extents();
    index_t acc = 1;
    for (int i = rank; i-- > 0;) {
      if (ext[i] != 1 && stride[i] != acc) return false;
      acc *= ext[i];
    }
    return true;
  }
};

/// A compact row-major layout of the given shape.
template <class ShapeT>
constexpr Layout<ShapeT> make_layout(const ShapeT& s) {
  return Layout<ShapeT>{s, compact_strides(extents_of(s))};
}

template <class ShapeT>
std::ostream& operator<<(std::ostream& os, const Layout<ShapeT>& l) {
  return os << to_string(l.extents()) << ':' << to_string(l.stride);
}

}  // namespace ra
