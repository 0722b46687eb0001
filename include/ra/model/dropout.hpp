// ra/model/dropout.hpp — inverted dropout with a counter-based, seeded mask (the one definition
// both backends use: the CPU applies it below, the GPU's kernel in ra/cuda/elementwise.cuh
// calls uniform()).
//
//   y_i = x_i · m_i / (1 − p),   m_i = [u(seed, site, i) >= p]        x, y (N,M), in place
//   dx_i = dy_i · m_i / (1 − p)  (the same operation, so forward and backward share apply())
//
// u is a hash of (seed, site, flat index i) mapped to [0, 1): the mask needs no stored state
// and no generator to checkpoint, is the same in forward and backward, and is reproducible on
// any device that computes the same hash (the GPU model's kernel calls uniform()). `site`
// tells the places of one step apart (the model uses one site per residual branch and one for
// the embeddings); the trainer draws a fresh seed per step. p = 0 (the default) is the identity.
#pragma once

#include <cstdint>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra::model {

/// SplitMix64's finaliser: a bijective 64-bit mix (also the data loader's seed mixer).
RA_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Inverted dropout of probability p with a counter-based mask (see the top of this header).
struct Dropout {
  float p = 0.f;

  /// Throws ra::error unless 0 <= p < 1.
  void validate(const char* where = "model::Dropout") const {
    require_arg(p >= 0.f && p < 1.f, where, "dropout", p, "a probability in [0, 1)");
  }

  /// The uniform number in [0, 1) that decides element i of `site` under `seed`.
  RA_HOST_DEVICE static double uniform(std::uint64_t seed, std::uint64_t site, std::uint64_t i) {
    const std::uint64_t h = mix64(mix64(seed ^ mix64(site)) + i);
    return static_cast<double>(h >> 11) * 0x1p-53;
  }

  /// True when element i of `site` is kept.
  bool keep(std::uint64_t seed, std::uint64_t site, std::uint64_t i) const {
    return uniform(seed, site, i) >= static_cast<double>(p);
  }

  /// Applies the mask in place to the (N,M) view x (row-major flat index i = r·M + c): the
  /// forward on activations, the backward on their gradients. A no-op for p = 0.
  template <class T>
  void apply(StridedView<T, 2> x, std::uint64_t seed, std::uint64_t site) const {
    if (p == 0.f) return;
    validate();
    const double scale = 1.0 / (1.0 - static_cast<double>(p));
    const index_t M = x.extent(1);
    for (index_t r = 0; r < x.extent(0); ++r)
      for (index_t c = 0; c < M; ++c) {
        const auto i = static_cast<std::uint64_t>(r * M + c);
        x(r, c) =
            keep(seed, site, i) ? convert<T>(convert<double>(x(r, c)) * scale) : convert<T>(0.0);
      }
  }
};

}  // namespace ra::model
