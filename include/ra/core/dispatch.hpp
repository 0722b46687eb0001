// ra/core/dispatch.hpp — the ONE list of supported template values, and the fold that maps
// runtime (D, R, dtype) to template arguments.
//
// CMake can narrow the lists to cut build time: -DRA_HEAD_DIMS="64;128" becomes the compile
// definition RA_HEAD_DIMS=64,128 (likewise RA_RANKS).
#pragma once

#include <array>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/int.hpp>

#ifndef RA_HEAD_DIMS
#define RA_HEAD_DIMS 32, 64, 80, 96, 128
#endif
#ifndef RA_RANKS
#define RA_RANKS 0, 1, 2, 4, 8, 16
#endif

namespace ra {

template <int... V>
struct IntList {
  static constexpr int size = sizeof...(V);
  static constexpr std::array<int, sizeof...(V)> values{V...};
  static constexpr bool contains(int x) { return ((x == V) || ...); }
  static std::string to_string() {
    std::ostringstream os;
    os << '{';
    int i = 0;
    ((os << (i++ ? ", " : "") << V), ...);
    os << '}';
    return os.str();
  }
};

/// Head dims with instantiated kernels.
using SupportedHeadDims = IntList<RA_HEAD_DIMS>;
/// Reciprocal ranks with instantiated kernels (0 = plain attention).
using SupportedRanks = IntList<RA_RANKS>;

/// Element types with instantiated kernels.
template <class... T>
struct TypeList {};
using SupportedDTypes = TypeList<float, fp16, bf16>;

/// Type tag passed to dtype-dispatched callables: f(ra::type_tag<T>{}).
template <class T>
struct type_tag {
  using type = T;
};

namespace detail {

template <int First, int... Rest>
inline constexpr int first_of = First;

template <int... V, class F>
decltype(auto) dispatch_int(IntList<V...>, int x, const char* what, F&& f) {
  using Ret = decltype(f(Int<first_of<V...>>{}));
  static_assert((std::is_same_v<Ret, decltype(f(Int<V>{}))> && ...),
                "dispatch: every branch must return the same type");
  if (!IntList<V...>::contains(x)) {
    throw unsupported(concat("unsupported ", what, " ", x, ": supported values are ",
                             IntList<V...>::to_string()));
  }
  if constexpr (std::is_void_v<Ret>) {
    (void)((x == V ? (f(Int<V>{}), true) : false) || ...);
  } else {
    std::optional<Ret> r;
    (void)((x == V ? (r.emplace(f(Int<V>{})), true) : false) || ...);
    // By value: `*std::move(r)` alone would make decltype(auto) return Ret&& into the local r.
    return static_cast<Ret>(*std::move(r));
  }
}

}  // namespace detail

/// Calls f(ra::Int<D>{}) for a supported head dim; throws ra::unsupported otherwise.
template <class F>
decltype(auto) dispatch_head_dim(int D, F&& f) {
  return detail::dispatch_int(SupportedHeadDims{}, D, "head dim D", std::forward<F>(f));
}

/// Calls f(ra::Int<R>{}) for a supported reciprocal rank; throws ra::unsupported otherwise.
template <class F>
decltype(auto) dispatch_rank(int R, F&& f) {
  return detail::dispatch_int(SupportedRanks{}, R, "reciprocal rank R", std::forward<F>(f));
}

/// Calls f(ra::type_tag<T>{}) for the element type named by t.
template <class F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f16: return f(type_tag<fp16>{});
    case DType::bf16: return f(type_tag<bf16>{});
  }
  throw unsupported(detail::concat("unsupported dtype code ", static_cast<int>(t),
                                   ": supported are fp32, fp16, bf16"));
}

/// Checks 0 <= R < D with both in the supported lists (the error names what is supported).
inline void check_head_dim_and_rank(const char* where, int D, int R) {
  if (!SupportedHeadDims::contains(D))
    throw unsupported(detail::concat(where, ": unsupported head dim D = ", D,
                                     ", supported values are ", SupportedHeadDims::to_string()));
  if (!SupportedRanks::contains(R))
    throw unsupported(detail::concat(where, ": unsupported reciprocal rank R = ", R,
                                     ", supported values are ", SupportedRanks::to_string()));
  require_arg(R < D, where, "R", R, detail::concat("0 <= R < D = ", D));
}

/// Calls f(Int<D>{}, Int<R>{}) after check_head_dim_and_rank.
template <class F>
decltype(auto) dispatch_attention(int D, int R, F&& f) {
  check_head_dim_and_rank("dispatch_attention", D, R);
  return dispatch_head_dim(D, [&](auto d) -> decltype(auto) {
    return dispatch_rank(R, [&](auto r) -> decltype(auto) {
      constexpr index_t kD = std::remove_cvref_t<decltype(d)>::value;
      constexpr index_t kR = std::remove_cvref_t<decltype(r)>::value;
      if constexpr (kR < kD) {
        return f(Int<kD>{}, Int<kR>{});
      } else {
        // Unreachable: R < D was checked above. Keeps the return type of the valid branches.
        return f(Int<kD>{}, Int<0>{});
      }
    });
  });
}

}  // namespace ra
