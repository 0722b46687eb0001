// ra/core/overlap.hpp — whether two strided views can touch a common byte, and the check each
// op runs on its outputs: an output may not share memory with an input or another output.
//
// Exact for the layouts ra makes (the folded views of one fused (B,T,3C) buffer interleave:
// Qf, Kf and V of one row share no element although their address ranges cross): when both
// views have the same strides and each stride steps over everything the smaller ones reach, an
// element pair at byte distance δ exists iff δ = Σ S_i d_i (±< one element) with d_i inside
// the extents, and each d_i is then the floor or the ceiling of what is left over S_i.
// Otherwise the answer is conservative: crossing address ranges count as overlap.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra {

/// The bytes a view addresses: base address, element size, and (extent, stride in elements)
/// per mode (strides are non-negative in ra).
struct Footprint {
  static constexpr int kMaxRank = 8;
  std::uintptr_t base = 0;
  index_t elem = 1;
  int rank = 0;
  std::array<index_t, kMaxRank> extent{};
  std::array<index_t, kMaxRank> stride{};

  bool empty() const {
    for (int i = 0; i < rank; ++i)
      if (extent[i] == 0) return true;
    return false;
  }
  /// One past the last byte addressed (base when empty).
  std::uintptr_t end() const {
    if (empty()) return base;
    index_t last = 0;
    for (int i = 0; i < rank; ++i) last += stride[i] * (extent[i] - 1);
    return base + static_cast<std::uintptr_t>((last + 1) * elem);
  }
};

template <View V>
Footprint footprint(const V& v) {
  static_assert(std::remove_cvref_t<V>::rank <= Footprint::kMaxRank, "footprint: rank > 8");
  Footprint f;
  f.base = reinterpret_cast<std::uintptr_t>(v.data());
  f.elem = static_cast<index_t>(sizeof(typename std::remove_cvref_t<V>::value_type));
  f.rank = std::remove_cvref_t<V>::rank;
  for (int i = 0; i < f.rank; ++i) {
    f.extent[i] = v.extent(i);
    f.stride[i] = v.stride(i);
  }
  return f;
}

/// The footprint of raw memory: `elem`-byte elements at p, modes given as (extent, stride).
inline Footprint footprint(const void* p, index_t elem,
                           std::initializer_list<std::pair<index_t, index_t>> modes) {
  Footprint f;
  f.base = reinterpret_cast<std::uintptr_t>(p);
  f.elem = elem;
  for (const auto& [e, s] : modes) {
    f.extent[f.rank] = e;
    f.stride[f.rank] = s;
    ++f.rank;
  }
  return f;
}

/// The footprint of n floats at p (nothing when p is null: an optional output or input).
inline Footprint float_footprint(const float* p, index_t n) {
  return footprint(p, sizeof(float), {{p != nullptr ? n : 0, 1}});
}

namespace detail {

// Is there d with lo_i <= d_i <= hi_i and |r - Σ_{i>=k} S_i d_i| < elem? Modes sorted by
// byte stride S, largest first; S_k dominates what the later modes reach (checked by caller).
inline bool reach(const std::array<index_t, Footprint::kMaxRank>& S,
                  const std::array<index_t, Footprint::kMaxRank>& lo,
                  const std::array<index_t, Footprint::kMaxRank>& hi, int n, int k, index_t r,
                  index_t elem) {
  if (k == n) return r > -elem && r < elem;
  const index_t q = r / S[k];  // toward zero; the candidates are q - 1, q, q + 1 around r/S
  for (index_t d = q - 1; d <= q + 1; ++d)
    if (d >= lo[k] && d <= hi[k] && reach(S, lo, hi, n, k + 1, r - S[k] * d, elem)) return true;
  return false;
}

}  // namespace detail

/// True when a and b may address a common byte (exact for same-stride dominated layouts,
/// conservative otherwise); empty views overlap nothing.
inline bool overlaps(const Footprint& a, const Footprint& b) {
  if (a.empty() || b.empty()) return false;
  if (a.end() <= b.base || b.end() <= a.base) return false;
  if (a.elem != b.elem || a.rank != b.rank) return true;
  // Modes either view steps along; both must step them by the same stride.
  struct Mode {
    index_t S, lo, hi;
  };
  std::array<Mode, Footprint::kMaxRank> modes{};
  int n = 0;
  for (int i = 0; i < a.rank; ++i) {
    if (a.extent[i] == 1 && b.extent[i] == 1) continue;
    if (a.stride[i] != b.stride[i] || a.stride[i] == 0) return true;
    // a's element at k, b's at k': d = k - k' in [-(e_b - 1), e_a - 1].
    modes[n++] = {a.stride[i] * a.elem, -(b.extent[i] - 1), a.extent[i] - 1};
  }
  for (int i = 1; i < n; ++i)  // largest stride first (insertion sort: n <= 8)
    for (int j = i; j > 0 && modes[j - 1].S < modes[j].S; --j) std::swap(modes[j - 1], modes[j]);
  std::array<index_t, Footprint::kMaxRank> S{}, lo{}, hi{};
  index_t below = a.elem;  // what the modes after k reach, plus one element
  for (int k = n - 1; k >= 0; --k) {
    if (modes[k].S < below) return true;  // not dominated: stay conservative
    below += modes[k].S * std::max(-modes[k].lo, modes[k].hi);
    S[k] = modes[k].S;
    lo[k] = modes[k].lo;
    hi[k] = modes[k].hi;
  }
  // a's element k meets b's element k' where Σ S_i (k_i − k'_i) = b.base − a.base.
  const index_t delta = static_cast<index_t>(b.base) - static_cast<index_t>(a.base);
  return detail::reach(S, lo, hi, n, 0, delta, a.elem);
}

/// A named footprint, for require_disjoint.
struct Named {
  const char* name;
  Footprint f;
};

/// Throws ra::error "<where>: output '<out>' overlaps '<other>' in memory ..." when an output
/// shares memory with an input or with another output (outputs listed first, `n_out` of them).
inline void require_disjoint(const char* where, std::initializer_list<Named> items, int n_out) {
  const Named* v = items.begin();
  const int n = static_cast<int>(items.size());
  for (int i = 0; i < n_out && i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (j != i && !(j < n_out && j < i) && overlaps(v[i].f, v[j].f))
        throw error(detail::concat(where, ": output '", v[i].name, "' overlaps ",
                                   j < n_out ? "output '" : "input '", v[j].name,
                                   "' in memory, expected memory of its own"));
}

}  // namespace ra
