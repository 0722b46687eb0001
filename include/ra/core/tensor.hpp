// ra/core/tensor.hpp — a tensor view: a pointer plus a layout. Never owns, never copies.
#pragma once

#include <array>
#include <tuple>
#include <utility>
#include <type_traits>

#include <ra/core/error.hpp>
#include <ra/core/layout.hpp>

namespace ra {

/// A typed pointer plus a layout. Copying a view copies the pointer, not the data.
template <class T, class ShapeT>
class TensorView {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using shape_type = ShapeT;
  using layout_type = Layout<ShapeT>;
  static constexpr int rank = rank_v<ShapeT>;

  constexpr TensorView() = default;
  constexpr TensorView(T* data, const layout_type& layout) : data_(data), layout_(layout) {}

  /// A view of const elements from a view of mutable ones, over the same memory.
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<const U, T>)
  constexpr TensorView(const TensorView<U, ShapeT>& other)
      : data_(other.data()), layout_(other.layout()) {}

  constexpr T* data() const { return data_; }
  constexpr const layout_type& layout() const { return layout_; }
  constexpr const ShapeT& shape() const { return layout_.shape; }
  constexpr std::array<index_t, rank> extents() const { return layout_.extents(); }
  constexpr const std::array<index_t, rank>& strides() const { return layout_.stride; }
  constexpr index_t extent(int i) const { return layout_.extent(i); }
  constexpr index_t stride(int i) const { return layout_.stride[i]; }
  constexpr index_t size() const { return layout_.size(); }
  constexpr bool empty() const { return size() == 0; }
  constexpr bool is_compact() const { return layout_.is_compact(); }

  template <class... I>
    requires(sizeof...(I) == rank)
  constexpr T& operator()(I... i) const {
    return data_[layout_.offset({static_cast<index_t>(i)...})];
  }
  constexpr T& at(const std::array<index_t, rank>& c) const { return data_[layout_.offset(c)]; }

 private:
  T* data_ = nullptr;
  layout_type layout_{};
};

namespace detail {
template <std::size_t... I>
auto dyn_shape(std::index_sequence<I...>) -> std::tuple<decltype((void)I, index_t{})...>;
}  // namespace detail

/// A shape of N runtime extents.
template <int N>
using DynShape = decltype(detail::dyn_shape(std::make_index_sequence<N>{}));

/// A view of rank N with runtime extents: the common currency of the nn layer.
template <class T, int N>
using StridedView = TensorView<T, DynShape<N>>;

template <class T>
inline constexpr bool is_tensor_view_v = false;
template <class T, class S>
inline constexpr bool is_tensor_view_v<TensorView<T, S>> = true;

/// Any TensorView.
template <class V>
concept View = is_tensor_view_v<std::remove_cvref_t<V>>;

/// A TensorView of rank N.
template <class V, int N>
concept ViewOfRank = View<V> && std::remove_cvref_t<V>::rank == N;

namespace detail {

template <std::size_t N>
void check_extents(const char* where, const std::array<index_t, N>& ext) {
  for (index_t e : ext) require_arg(e >= 0, where, "shape", to_string(ext), "non-negative extents");
}

template <class T>
void check_data(const char* where, T* data, index_t size) {
  require_arg(data != nullptr || size == 0, where, "data", "a null pointer",
          "a valid pointer for a non-empty tensor");
}

}  // namespace detail

/// A compact row-major view of `data` with the given shape.
/// Throws ra::error on a negative extent or a null pointer with a non-empty shape.
template <class T, class ShapeT>
constexpr TensorView<T, ShapeT> make_view(T* data, const ShapeT& shape) {
  auto layout = make_layout(shape);
  detail::check_extents("make_view", layout.extents());
  detail::check_data("make_view", data, layout.size());
  return {data, layout};
}

/// A view with explicit strides (in elements).
template <class T, class ShapeT>
constexpr TensorView<T, ShapeT> make_view(T* data, const ShapeT& shape,
                                          const std::array<index_t, rank_v<ShapeT>>& strides) {
  Layout<ShapeT> layout{shape, strides};
  detail::check_extents("make_view", layout.extents());
  for (index_t s : strides)
    require_arg(s >= 0, "make_view", "strides", to_string(strides), "non-negative strides");
  detail::check_data("make_view", data, layout.size());
  return {data, layout};
}

/// Requires two views to have equal extents; names both in the error.
template <View A, View B>
void require_same_extents(const char* where, const char* name_a, const A& a, const char* name_b,
                          const B& b) {
  static_assert(A::rank == B::rank);
  require(a.extents() == b.extents(), where, ": '", name_a, "' has shape ", to_string(a.extents()),
          " but '", name_b, "' has shape ", to_string(b.extents()), ", expected equal shapes");
}

}  // namespace ra
