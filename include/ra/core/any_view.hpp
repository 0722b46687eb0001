// ra/core/any_view.hpp — a type-erased strided view: pointer, runtime element type, extents
// and strides. It is what a caller holds before the element type is known (a binding layer,
// a program configured at run time); as_view() recovers the typed view and is where
// mismatched dtypes and ranks are caught, with the argument named.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra {

struct AnyView {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::vector<index_t> extents;
  std::vector<index_t> strides;

  int rank() const { return static_cast<int>(extents.size()); }
};

/// The type-erased form of a typed view (same memory).
template <class T, class ShapeT>
AnyView erase(const TensorView<T, ShapeT>& v) {
  const auto e = v.extents();
  const auto& s = v.strides();
  return {const_cast<std::remove_const_t<T>*>(v.data()), dtype_v<T>,
          std::vector<index_t>(e.begin(), e.end()), std::vector<index_t>(s.begin(), s.end())};
}

/// The typed view of rank N over v's memory.
/// Throws ra::error naming `name` when v's dtype is not T or its rank is not N.
template <class T, int N>
StridedView<T, N> as_view(const AnyView& v, const char* where, const char* name) {
  require(v.dtype == dtype_v<T>, where, ": '", name, "' has dtype ", v.dtype, ", expected ",
          dtype_v<T>);
  require(v.rank() == N && static_cast<int>(v.strides.size()) == N, where, ": '", name,
          "' has rank ", v.rank(), ", expected ", N);
  std::array<index_t, N> ext{}, str{};
  for (int i = 0; i < N; ++i) {
    ext[i] = v.extents[i];
    str[i] = v.strides[i];
  }
  DynShape<N> shape = std::apply([](auto... e) { return std::tuple{e...}; }, ext);
  return make_view(static_cast<T*>(v.data), shape, str);
}

/// Requires every named view to have the dtype of the first; the error names the first
/// view that differs, its dtype and the expected one.
inline void require_same_dtype(
    const char* where, std::initializer_list<std::pair<const char*, const AnyView*>> views) {
  const auto& first = *views.begin();
  for (const auto& [name, v] : views)
    require(v->dtype == first.second->dtype, where, ": '", name, "' has dtype ", v->dtype,
            ", expected ", first.second->dtype, " like '", first.first, "'");
}

}  // namespace ra
