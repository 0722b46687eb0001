// ra/core/view.hpp — layout algebra on tensor views: transpose, split, join, slice, select
// and reshape ("view"). Each builds a new layout over the same pointer; none copies.
#pragma once

#include <array>
#include <tuple>
#include <utility>

#include <ra/core/tensor.hpp>

namespace ra {

namespace detail {

// The shape with mode Axis replaced by `e`.
template <int Axis, class ShapeT, class E>
constexpr auto replace_mode(const ShapeT& s, E e) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple{[&] {
      if constexpr (I == Axis) {
        return e;
      } else {
        return std::get<I>(s);
      }
    }()...};
  }(std::make_index_sequence<rank_v<ShapeT>>{});
}

// The shape with mode Axis removed.
template <int Axis, class ShapeT>
constexpr auto drop_mode(const ShapeT& s) {
  return [&]<std::size_t... I, std::size_t... J>(std::index_sequence<I...>,
                                                   std::index_sequence<J...>) {
    return std::tuple{std::get<I>(s)..., std::get<Axis + 1 + J>(s)...};
  }(std::make_index_sequence<Axis>{}, std::make_index_sequence<rank_v<ShapeT> - Axis - 1>{});
}

template <int Axis, std::size_t N>
constexpr std::array<index_t, N - 1> drop_index(const std::array<index_t, N>& a) {
  std::array<index_t, N - 1> r{};
  for (std::size_t i = 0, j = 0; i < N; ++i)
    if (i != static_cast<std::size_t>(Axis)) r[j++] = a[i];
  return r;
}

// Extent `e` divided by N; stays compile-time when e is.
template <int N, class E>
constexpr auto divide_extent(E e) {
  if constexpr (is_static_int_v<E>) {
    static_assert(E::value % N == 0, "split: a static extent must divide evenly");
    return Int<E::value / N>{};
  } else {
    return static_cast<index_t>(e / N);
  }
}

template <int N, class E>
constexpr auto multiply_extent(E e) {
  if constexpr (is_static_int_v<E>) {
    return Int<E::value * N>{};
  } else {
    return static_cast<index_t>(e * N);
  }
}

}  // namespace detail

/// Permutes modes: result mode i is input mode P[i].  transpose<1,0>(m) is m's transpose.
template <int... P, View V>
constexpr auto transpose(const V& t) {
  static_assert(sizeof...(P) == V::rank, "transpose: one index per mode");
  static_assert(
      [] {
        std::array<int, sizeof...(P)> p{P...};
        for (std::size_t i = 0; i < p.size(); ++i) {
          if (p[i] < 0 || p[i] >= static_cast<int>(p.size())) return false;
          for (std::size_t j = 0; j < i; ++j)
            if (p[i] == p[j]) return false;
        }
        return true;
      }(),
      "transpose: the indices must be a permutation of 0..rank-1");
  auto s = std::tuple{std::get<P>(t.shape())...};
  using S = decltype(s);
  return TensorView<typename V::element_type, S>{
      t.data(), Layout<S>{s, {t.stride(P)...}}};
}

/// Splits mode Axis into N equal consecutive parts: N views over the same memory.
/// Throws ra::error when the extent is not divisible by N.
template <int N, int Axis, View V>
constexpr auto split(const V& t) {
  static_assert(N > 0 && Axis >= 0 && Axis < V::rank, "split: bad N or axis");
  const index_t ext = t.extent(Axis);
  require_arg(ext % N == 0, "split", "extent of the split axis", ext,
          detail::concat("a multiple of ", N));
  auto part = detail::divide_extent<N>(std::get<Axis>(t.shape()));
  auto s = detail::replace_mode<Axis>(t.shape(), part);
  using S = decltype(s);
  using R = TensorView<typename V::element_type, S>;
  std::array<R, N> out{};
  for (int i = 0; i < N; ++i)
    out[i] = R{t.data() + i * value(part) * t.stride(Axis), Layout<S>{s, t.strides()}};
  return out;
}

/// Inverse of split: joins N views that lie back to back along Axis into one view.
/// Throws ra::error when they do not (different layouts, or not adjacent in memory).
template <int Axis, View V, std::size_t N>
constexpr auto join(const std::array<V, N>& parts) {
  static_assert(N > 0 && Axis >= 0 && Axis < V::rank, "join: bad axis");
  const auto& first = parts[0];
  const index_t step = first.extent(Axis) * first.stride(Axis);
  for (std::size_t i = 1; i < N; ++i) {
    require(parts[i].layout().extents() == first.extents() &&
                parts[i].strides() == first.strides(),
            "join: part ", i, " has layout ", parts[i].layout(), ", expected ", first.layout());
    require(parts[i].data() == first.data() + static_cast<index_t>(i) * step, "join: part ", i,
            " does not follow part ", i - 1, " in memory along axis ", Axis,
            ", expected adjacent parts");
  }
  auto s = detail::replace_mode<Axis>(first.shape(),
                                      detail::multiply_extent<N>(std::get<Axis>(first.shape())));
  using S = decltype(s);
  return TensorView<typename V::element_type, S>{first.data(), Layout<S>{s, first.strides()}};
}

/// Elements [begin, end) of mode Axis. The extent of that mode becomes a runtime value.
template <int Axis, View V>
constexpr auto slice(const V& t, index_t begin, index_t end) {
  static_assert(Axis >= 0 && Axis < V::rank, "slice: bad axis");
  const index_t ext = t.extent(Axis);
  require(0 <= begin && begin <= end && end <= ext, "slice: range [", begin, ", ", end,
          ") of axis ", Axis, " with extent ", ext, ", expected 0 <= begin <= end <= extent");
  auto s = detail::replace_mode<Axis>(t.shape(), static_cast<index_t>(end - begin));
  using S = decltype(s);
  return TensorView<typename V::element_type, S>{t.data() + begin * t.stride(Axis),
                                                 Layout<S>{s, t.strides()}};
}

/// Fixes mode Axis at index i, dropping the mode.
template <int Axis, View V>
constexpr auto select(const V& t, index_t i) {
  static_assert(Axis >= 0 && Axis < V::rank, "select: bad axis");
  require_arg(0 <= i && i < t.extent(Axis), "select", "index", i,
          detail::concat("in [0, ", t.extent(Axis), ") on axis ", Axis));
  auto s = detail::drop_mode<Axis>(t.shape());
  using S = decltype(s);
  return TensorView<typename V::element_type, S>{t.data() + i * t.stride(Axis),
                                                 Layout<S>{s, detail::drop_index<Axis>(t.strides())}};
}

/// Reshape without copying: the same elements in row-major order, new shape.
/// Works whenever each group of merged or split modes is contiguous in the input; throws
/// ra::error otherwise (a copy would be needed, and views never copy).
template <View V, class ShapeT>
constexpr auto view(const V& t, const ShapeT& new_shape) {
  using S = std::remove_cvref_t<decltype(std::apply(
      [](auto... e) { return std::tuple{as_extent(e)...}; }, new_shape))>;
  const S s = std::apply([](auto... e) { return std::tuple{as_extent(e)...}; }, new_shape);
  constexpr int M = rank_v<S>;
  const auto old_ext = t.extents();
  const auto old_str = t.strides();
  const auto new_ext = extents_of(s);
  detail::check_extents("view", new_ext);
  index_t old_size = 1, new_size = 1;
  for (index_t e : old_ext) old_size *= e;
  for (index_t e : new_ext) new_size *= e;
  require_arg(old_size == new_size, "view", "shape", to_string(new_ext),
          detail::concat(old_size, " elements like the input ", to_string(old_ext)));
  std::array<index_t, M> new_str = compact_strides(new_ext);
  if (old_size == 0) return TensorView<typename V::element_type, S>{t.data(), Layout<S>{s, new_str}};

  // Walk groups of old modes and new modes with equal products (extent-1 modes are free).
  int oi = 0, ni = 0;
  constexpr int N = V::rank;
  while (oi < N || ni < M) {
    if (ni < M && new_ext[ni] == 1) {
      ++ni;  // extent-1 modes get their stride in the pass below
      continue;
    }
    if (oi < N && old_ext[oi] == 1) {
      ++oi;
      continue;
    }
    int o_end = oi, n_end = ni;
    index_t po = old_ext[o_end++], pn = new_ext[n_end++];
    while (po != pn) {
      if (po < pn) {
        po *= old_ext[o_end++];
      } else {
        pn *= new_ext[n_end++];
      }
    }
    // Old modes [oi, o_end) must be mergeable: ignoring extent-1 modes, each stride equals the
    // next stride times the next extent.
    index_t inner_stride = 0;
    bool have_inner = false;
    for (int k = o_end; k-- > oi;) {
      if (old_ext[k] == 1) continue;
      if (have_inner)
        require(old_str[k] == inner_stride, "view: cannot reshape ", to_string(old_ext),
                " with strides ", to_string(old_str), " to ", to_string(new_ext),
                " without a copy, expected the merged modes to be contiguous");
      inner_stride = old_str[k] * old_ext[k];
      have_inner = true;
    }
    index_t base = 0;
    for (int k = o_end; k-- > oi;)
      if (old_ext[k] != 1) {
        base = old_str[k];
        break;
      }
    index_t acc = base;
    for (int k = n_end; k-- > ni;) {
      new_str[k] = acc;
      acc *= new_ext[k];
    }
    oi = o_end;
    ni = n_end;
  }
  // Any stride addresses an extent-1 mode correctly; give it the one a compact layout would
  // (next inner stride times extent), so e.g. a batch of one keeps the batch stride of many.
  for (int k = M; k-- > 0;)
    if (new_ext[k] == 1) new_str[k] = k + 1 < M ? new_str[k + 1] * new_ext[k + 1] : 1;
  return TensorView<typename V::element_type, S>{t.data(), Layout<S>{s, new_str}};
}

}  // namespace ra
