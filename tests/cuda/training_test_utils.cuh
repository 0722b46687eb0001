// tests/cuda/training_test_utils.cuh — what the training-kernel tests (test_layernorm.cu,
// test_elementwise.cu, test_reduce.cu, test_embedding.cu, test_cross_entropy.cu,
// test_gemm_training.cu, test_adamw.cu) share: inputs, names, a case's setup (TrainingCase:
// dtype, stream, generators, families) and the judgement of one GPU output against the exact
// and naive references of training_reference.hpp by the precision rule of
// tests/common/precision.hpp.
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/cuda/buffer.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "training_reference.hpp"

namespace ra::test {

inline std::size_t sz(index_t n) {
  return static_cast<std::size_t>(n);
}

/// The values of v, exactly, as doubles.
template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = convert<double>(v[i]);
  return d;
}

/// A value of T whose bytes are all ones (NaN), as poison() writes.
template <class T>
T poison_value() {
  unsigned char ones[sizeof(T)];
  std::memset(ones, 0xff, sizeof ones);
  T x;
  std::memcpy(&x, ones, sizeof x);
  return x;
}

/// (N,C) values normal(0, 1) plus a per-row offset in [-2, 2]: rows with non-zero means.
template <class T>
std::vector<T> offset_rows(index_t N, index_t C, std::mt19937_64& g) {
  const auto v = random_vector<float>(N * C, g);
  const auto off = uniform_floats(N, g, -2.f, 2.f);
  std::vector<T> x(sz(N * C));
  for (index_t i = 0; i < N * C; ++i) x[sz(i)] = T(v[sz(i)] + off[sz(i / C)]);
  return x;
}

/// n token ids uniform in [0, vocab).
inline std::vector<std::int32_t> random_tokens(index_t n, index_t vocab, std::mt19937_64& g) {
  std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> t(sz(n));
  for (auto& x : t) x = tok(g);
  return t;
}

/// "bf16 rows=37 C=64 seed=…": what a case ran on.
inline std::string describe(DType t, index_t N, index_t C) {
  std::ostringstream os;
  os << t << " rows=" << N << " C=" << C << " seed=" << seed();
  return os.str();
}

/// "training <what> <dtype>": the family a training output is summarised under.
inline std::string training_family(const std::string& what, DType t) {
  std::ostringstream os;
  os << "training " << what << " " << t;
  return os.str();
}

/// Judges a GPU output (host copy) against the exact and naive references of it, in rows of
/// row_len elements; the naive reference's floors apply.
template <class T>
PrecisionReport judge_output(const std::string& family, const std::string& what,
                             const std::vector<T>& out, const Computed& naive,
                             const Computed& exact, index_t row_len) {
  return judge(family, what, as_double(out), naive.v, exact.v, naive.floor, sz(row_len));
}

/// What every training-kernel test case over element type T sets up: its dtype, a stream, a
/// fresh generator per sub-case (salts salt_base + 1, + 2, ...), and the judgement of its GPU
/// outputs under the families "training <layer> <what> <dtype>".
template <class T>
class TrainingCase {
 public:
  /// layer: the family prefix ("layernorm"), or "" when `what` alone names the family.
  TrainingCase(std::string layer, std::uint64_t salt_base)
      : layer_(std::move(layer)), salt_(salt_base) {}

  const DType dtype = dtype_v<T>;
  Stream stream;

  /// The generator of the next sub-case.
  std::mt19937_64 next_rng() { return rng(++salt_); }

  /// "training <layer> <what> <dtype>".
  std::string family(const std::string& what) const {
    return training_family(layer_.empty() ? what : layer_ + " " + what, dtype);
  }

  /// Judges an output (host copy, or a device buffer read whole after all queued work) named
  /// `what` in the family of the same name, in rows of row_len elements.
  template <class U>
  PrecisionReport judge(const std::string& what, const std::vector<U>& out, const Computed& naive,
                        const Computed& exact, index_t row_len) const {
    return judge_output(family(what), what, out, naive, exact, row_len);
  }
  template <class U>
  PrecisionReport judge(const std::string& what, const cuda::DeviceBuffer<U>& out,
                        const Computed& naive, const Computed& exact, index_t row_len) const {
    return judge(what, to_host(out.data(), out.size()), naive, exact, row_len);
  }

 private:
  std::string layer_;
  std::uint64_t salt_;
};

}  // namespace ra::test
