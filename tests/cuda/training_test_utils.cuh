// tests/cuda/training_test_utils.cuh — what the training-kernel tests (test_layernorm.cu,
// test_elementwise.cu, test_reduce.cu, test_embedding.cu, test_cross_entropy.cu,
// test_gemm_training.cu, test_adamw.cu) share: inputs, names, and the judgement of one GPU
// output against the exact and naive references of training_reference.hpp by the precision
// rule of tests/common/precision.hpp.
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>

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

}  // namespace ra::test
