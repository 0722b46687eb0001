// tests/cpu/reference.hpp — shared helpers of the CPU tests: seeded random inputs, NaN
// poisoning, the tier-1 references (naive double loops over tiny sizes: the only place
// scalar loops compute attention or GEMM) and error metrics that name the worst element.
//
// Seeds: every test draws from its own generator, seeded with base ^ hash(test name), where
// the base is the run's seed (seed.hpp: fresh every run, or $RA_TEST_SEED; main.cpp prints
// it). RA_TEST_RNG(rng) declares the generator and INFOs the seed, so any failure in its
// scope prints the RA_TEST_SEED that reproduces it.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core.hpp>
#include <ra/expr.hpp>

#include "seed.hpp"

namespace ra::test {

// ---- seeds and random inputs --------------------------------------------------------------

inline std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// The seed of the running test: base_seed() ^ hash(test name).
inline std::uint64_t test_seed() {
  return base_seed() ^ fnv1a(Catch::getResultCapture().getCurrentTestName());
}

/// Declares `std::mt19937_64 name` seeded for the running test and prints, with every
/// failure in the enclosing scope, the RA_TEST_SEED that reproduces it.
#define RA_TEST_RNG(name)                                                                 \
  const std::uint64_t name##_seed = ::ra::test::test_seed();                              \
  std::mt19937_64 name(name##_seed);                                                      \
  INFO("RA_TEST_SEED=" << ::ra::test::base_seed() << " reproduces this (the generator's " \
                       << "seed " << name##_seed << " is it xor the test name's hash)")

/// n values ~ normal(0, stddev), rounded to T.
template <class T>
std::vector<T> random_normal(std::mt19937_64& rng, std::size_t n, double stddev = 1.0) {
  std::normal_distribution<double> d(0.0, stddev);
  std::vector<T> v(n);
  for (T& x : v) x = convert<T>(d(rng));
  return v;
}

/// n values ~ uniform[lo, hi), as float (gate and restart parameters).
inline std::vector<float> random_uniform(std::mt19937_64& rng, std::size_t n, double lo,
                                         double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

/// Fills a buffer with NaN so that an element a kernel forgets to write fails the check.
template <class T>
void poison(std::vector<T>& v) {
  std::fill(v.begin(), v.end(), convert<T>(std::numeric_limits<double>::quiet_NaN()));
}

/// Converts every element of a buffer to another element type (rounding).
template <class To, class From>
std::vector<To> converted(const std::vector<From>& v) {
  std::vector<To> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = convert<To>(convert<double>(v[i]));
  return r;
}

// ---- flattening views ---------------------------------------------------------------------

/// A dense row-major double copy of a view, with its extents.
struct Dense {
  std::vector<index_t> extents;
  std::vector<double> values;
};

template <View V>
Dense dense(const V& t) {
  constexpr int N = std::remove_cvref_t<V>::rank;
  Dense d;
  const auto ext = t.extents();
  d.extents.assign(ext.begin(), ext.end());
  d.values.reserve(static_cast<std::size_t>(t.size()));
  if (t.size() == 0) return d;
  std::array<index_t, N> c{};
  for (;;) {
    d.values.push_back(convert<double>(t.at(c)));
    int i = N - 1;
    while (i >= 0 && ++c[i] == ext[i]) c[i--] = 0;
    if (i < 0) break;
  }
  return d;
}

/// The coordinate of element `flat` of a row-major tensor of extents `ext` (rank N).
template <std::size_t N>
std::array<index_t, N> unravel(const std::vector<index_t>& ext, std::size_t flat) {
  std::array<index_t, N> c{};
  for (std::size_t i = N; i-- > 0;) {
    c[i] = static_cast<index_t>(flat % static_cast<std::size_t>(ext[i]));
    flat /= static_cast<std::size_t>(ext[i]);
  }
  return c;
}

inline std::string coord_string(const std::vector<index_t>& ext, std::size_t flat) {
  std::vector<index_t> c(ext.size());
  for (std::size_t i = ext.size(); i-- > 0;) {
    c[i] = static_cast<index_t>(flat) % ext[i];
    flat /= static_cast<std::size_t>(ext[i]);
  }
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < c.size(); ++i) os << (i ? "," : "") << c[i];
  os << ')';
  return os.str();
}

// ---- error metrics ------------------------------------------------------------------------

/// The largest absolute difference between two equally shaped tensors and where it is.
/// A NaN or infinity in `got` (e.g. a poisoned element never written) counts as infinite.
struct MaxError {
  double abs = 0.0;
  double got = 0.0, want = 0.0;
  std::string at = "-";
  double max_want = 0.0;  // max |want|, to judge the error's scale
};

inline std::ostream& operator<<(std::ostream& os, const MaxError& e) {
  return os << "max |error| " << e.abs << " at " << e.at << " (got " << e.got << ", want " << e.want
            << "; max |want| " << e.max_want << ")";
}

inline MaxError max_error(const Dense& got, const Dense& want) {
  REQUIRE(got.extents == want.extents);
  MaxError e;
  for (std::size_t i = 0; i < got.values.size(); ++i) {
    const double g = got.values[i], w = want.values[i];
    const double d = std::isfinite(g) ? std::abs(g - w) : std::numeric_limits<double>::infinity();
    e.max_want = std::max(e.max_want, std::abs(w));
    if (i == 0 || d > e.abs) {
      e.abs = d;
      e.got = g;
      e.want = w;
      e.at = coord_string(got.extents, i);
    }
  }
  return e;
}

template <View A, View B>
MaxError max_error(const A& got, const B& want) {
  return max_error(dense(got), dense(want));
}

/// True when two views hold bit-identical values (after conversion to double).
template <View A, View B>
bool bitwise_equal(const A& a, const B& b) {
  const Dense x = dense(a), y = dense(b);
  if (x.extents != y.extents) return false;
  for (std::size_t i = 0; i < x.values.size(); ++i) {
    const double u = x.values[i], v = y.values[i];
    if (std::memcmp(&u, &v, sizeof u) != 0) return false;
  }
  return true;
}

// ---- tier-1 references: naive double loops, tiny sizes only ---------------------------------

/// Effective gate, written out independently of the library.
inline double naive_gate(float w, GateParam p) {
  if (p == GateParam::softplus) return w > 20.f ? double(w) : std::log(1.0 + std::exp(double(w)));
  return std::max(double(w), double(1e-8f));
}

inline double naive_restart(float a) {
  return std::clamp(double(a), 0.0, 0.5);
}

/// O' (B,H,T_q,D) and lse (B,H,T_q) of folded attention by the definition: scalar loops in
/// double. Kf and V have T_k >= T_q rows; query row i is key position i + T_k - T_q.
struct NaiveAttention {
  Dense o;
  Dense lse;
};

template <View QV, View KV, View VV>
NaiveAttention naive_attention(const QV& q, const KV& k, const VV& v, int R, const Gates& gates,
                               const Restart& restart) {
  const index_t B = q.extent(0), H = q.extent(1), T = q.extent(2), D = q.extent(3);
  const index_t off = k.extent(2) - T;  // query row i sees keys j <= i + off
  NaiveAttention r;
  r.o.extents = {B, H, T, D};
  r.o.values.assign(static_cast<std::size_t>(B * H * T * D), 0.0);
  r.lse.extents = {B, H, T};
  r.lse.values.assign(static_cast<std::size_t>(B * H * T), 0.0);
  const double scale = 1.0 / std::sqrt(double(D));
  std::vector<double> z(static_cast<std::size_t>(T + off));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      double g_std = 1.0, g_rec = 1.0;
      if (gates.mode != GateMode::none) {
        const index_t gi = gates.mode == GateMode::per_head ? h : 0;
        g_std = naive_gate(gates.w_std[gi], gates.param);
        g_rec = naive_gate(gates.w_rec[gi], gates.param);
      }
      const double alpha = restart.a != nullptr ? naive_restart(restart.a[h]) : 0.0;
      for (index_t i = 0; i < T; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (index_t j = 0; j <= i + off; ++j) {
          double s = 0.0;
          for (index_t d = 0; d < D; ++d) {
            const double g = d < D - R ? g_std : g_rec;
            s += g * convert<double>(q(b, h, i, d)) * convert<double>(k(b, h, j, d));
          }
          z[j] = s * scale;
          m = std::max(m, z[j]);
        }
        double l = 0.0;
        for (index_t j = 0; j <= i + off; ++j) l += std::exp(z[j] - m);
        r.lse.values[static_cast<std::size_t>((b * H + h) * T + i)] = m + std::log(l);
        for (index_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (index_t j = 0; j <= i + off; ++j)
            acc += std::exp(z[j] - m) / l * convert<double>(v(b, h, j, d));
          acc = (1.0 - alpha) * acc + alpha * convert<double>(v(b, h, i + off, d));
          r.o.values[static_cast<std::size_t>(((b * H + h) * T + i) * D + d)] = acc;
        }
      }
    }
  return r;
}

/// Y = A · Wᵀ (+ bias) (M,N) by the definition, in double. Pass a null bias view for none.
template <View AV, View WV, View BV>
Dense naive_gemm(const AV& a, const WV& w, const BV& bias) {
  const index_t M = a.extent(0), K = a.extent(1), N = w.extent(0);
  Dense y;
  y.extents = {M, N};
  y.values.assign(static_cast<std::size_t>(M * N), 0.0);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double s = bias.data() != nullptr ? convert<double>(bias(j)) : 0.0;
      for (index_t l = 0; l < K; ++l) s += convert<double>(a(i, l)) * convert<double>(w(j, l));
      y.values[static_cast<std::size_t>(i * N + j)] = s;
    }
  return y;
}

/// The folded logits of identity I4 by its definition, from baseline Q and K (B,T,C) views:
/// Z_ij = (g_std · Σ_{d<D-R} Q_id K_jd + g_rec · Σ_{d>=D-R} Q_jd K_id) / √D, causal (j <= i).
/// Returns lse (B,H,T) and O = softmax(Z) · V (B,H,T,D) for V (B,T,C).
template <View QV, View KV, View VV>
NaiveAttention naive_reciprocal(const QV& q, const KV& k, const VV& v, index_t H, int R,
                                double g_std, double g_rec) {
  const index_t B = q.extent(0), T = q.extent(1), C = q.extent(2), D = C / H;
  NaiveAttention r;
  r.o.extents = {B, H, T, D};
  r.o.values.assign(static_cast<std::size_t>(B * H * T * D), 0.0);
  r.lse.extents = {B, H, T};
  r.lse.values.assign(static_cast<std::size_t>(B * H * T), 0.0);
  std::vector<double> z(static_cast<std::size_t>(T));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < T; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (index_t j = 0; j <= i; ++j) {
          double s_std = 0.0, s_rec = 0.0;
          for (index_t d = 0; d < D; ++d) {
            const index_t c = h * D + d;
            if (d < D - R) {
              s_std += convert<double>(q(b, i, c)) * convert<double>(k(b, j, c));
            } else {
              s_rec += convert<double>(q(b, j, c)) * convert<double>(k(b, i, c));
            }
          }
          z[j] = (g_std * s_std + g_rec * s_rec) / std::sqrt(double(D));
          m = std::max(m, z[j]);
        }
        double l = 0.0;
        for (index_t j = 0; j <= i; ++j) l += std::exp(z[j] - m);
        r.lse.values[static_cast<std::size_t>((b * H + h) * T + i)] = m + std::log(l);
        for (index_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (index_t j = 0; j <= i; ++j)
            acc += std::exp(z[j] - m) / l * convert<double>(v(b, j, h * D + d));
          r.o.values[static_cast<std::size_t>(((b * H + h) * T + i) * D + d)] = acc;
        }
      }
  return r;
}

// ---- narrowed builds -------------------------------------------------------------------------

/// Whether this build instantiates blocks of head dim D and rank R (a constant expression). A
/// build configured with -DRA_HEAD_DIMS / -DRA_RANKS narrows the supported lists.
constexpr bool block_instantiated(int D, int R) {
  return SupportedHeadDims::contains(D) && SupportedRanks::contains(R) && R < D;
}

/// For a test that loops over several block shapes: whether this one is instantiated; if not,
/// says so in a WARN (the case must check something else: see RA_TEST_CASE_IF).
inline bool block_supported(int D, int R) {
  const bool ok = block_instantiated(D, R);
  if (!ok) WARN("skipped: D = " << D << ", R = " << R << " are not in this build's lists");
  return ok;
}

/// Registers the test case only if `cond`, a constant expression, holds: a case that needs
/// blocks a narrowed build does not instantiate is not registered there at all, rather than
/// passing with nothing checked (a case without assertions fails: tests/cpu/main.cpp).
/// Otherwise like TEST_CASE.
#define RA_TEST_CASE_IF(cond, ...) \
  RA_TEST_CASE_IF_IMPL_(INTERNAL_CATCH_UNIQUE_NAME(ra_test_case_), (cond), __VA_ARGS__)
#define RA_TEST_CASE_IF_IMPL_(fn, cond, ...)                                                       \
  static void fn();                                                                                \
  namespace {                                                                                      \
  const bool INTERNAL_CATCH_UNIQUE_NAME(ra_registered_) = ::ra::test::register_test_case_if<cond>( \
      &fn, CATCH_INTERNAL_LINEINFO, Catch::NameAndTags{__VA_ARGS__});                              \
  }                                                                                                \
  static void fn()

template <bool Register>
bool register_test_case_if(void (*fn)(), const Catch::SourceLineInfo& line,
                           const Catch::NameAndTags& name_and_tags) {
  if constexpr (Register) {
    const Catch::AutoReg registered(Catch::makeTestInvoker(fn), line, Catch::StringRef(),
                                    name_and_tags);
  } else {
    (void)fn, (void)line, (void)name_and_tags;
  }
  return Register;
}

// ---- the (D, R) matrix ----------------------------------------------------------------------

/// Every (D, R) pair of the supported lists with R < D, as X(D, R). A test in
/// test_attention.cpp checks that this list covers ra::SupportedHeadDims x SupportedRanks.
#define RA_TEST_DR_PAIRS(X)                                                                      \
  X(32, 0)                                                                                       \
  X(32, 1)                                                                                       \
  X(32, 2) X(32, 4) X(32, 8) X(32, 16) X(64, 0) X(64, 1) X(64, 2) X(64, 4) X(64, 8) X(64, 16)    \
      X(80, 0) X(80, 1) X(80, 2) X(80, 4) X(80, 8) X(80, 16) X(96, 0) X(96, 1) X(96, 2) X(96, 4) \
          X(96, 8) X(96, 16) X(128, 0) X(128, 1) X(128, 2) X(128, 4) X(128, 8) X(128, 16)

}  // namespace ra::test
