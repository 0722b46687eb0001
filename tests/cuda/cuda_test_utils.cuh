// tests/cuda/cuda_test_utils.cuh — what the GEMM, unfused, block and graph tests share:
// the printed seed, random host data, device round trips, NaN poisoning and error metrics.
//
// Tolerances (relative L2 error against the double reference, ‖out − ref‖ / ‖ref‖):
// bf16 1e-2, fp16 5e-3, fp32 1e-4 — a few unit roundoffs of the output type (2^-8, 2^-11),
// since every stage rounds its output once; fp32 runs with fp32 accumulation throughout.
// The worst element must also stay within 4x that tolerance of the largest |ref|, and no
// output may be NaN (outputs are poisoned with NaN before the code under test runs).
#pragma once

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/check.cuh>

namespace ra::test {

/// The run's seed: $RA_TEST_SEED, else fresh from std::random_device; printed once.
inline std::uint64_t seed() {
  static const std::uint64_t s = [] {
    const char* env = std::getenv("RA_TEST_SEED");
    const std::uint64_t v = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::cout << "ra cuda tests: seed " << v << " (RA_TEST_SEED=" << v << " reproduces)\n";
    return v;
  }();
  return s;
}

/// A generator for one test case: the run's seed mixed with a per-case salt, so cases draw
/// independent data and any one reproduces from the seed alone.
inline std::mt19937_64 rng(std::uint64_t salt) {
  std::seed_seq seq{seed(), salt, std::uint64_t{0x9e3779b97f4a7c15ull}};
  return std::mt19937_64(seq);
}

/// n normal(0, sigma) values rounded to T.
template <class T>
std::vector<T> random_vector(index_t n, std::mt19937_64& g, float sigma = 1.f) {
  std::normal_distribution<float> dist(0.f, sigma);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = T(dist(g));
  return v;
}

/// n uniform values in [lo, hi) (gate and restart parameters).
inline std::vector<float> uniform_floats(index_t n, std::mt19937_64& g, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(g);
  return v;
}

/// The values of an IntList (the supported D or R) as an array.
template <int... V>
constexpr std::array<int, sizeof...(V)> values(IntList<V...>) {
  return {V...};
}

// cudaMemcpy from pageable memory and cudaMemset may return before the device has the data,
// and the tests' streams do not wait for the legacy stream: every helper that writes device
// memory synchronises the device before returning.

/// Copies a host vector to a new device buffer (complete on return).
template <class T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& h) {
  cuda::DeviceBuffer<T> d(static_cast<index_t>(h.size()));
  if (!h.empty())
    RA_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

/// Copies n device elements to the host after all queued work is done.
template <class T>
std::vector<T> to_host(const T* d, index_t n) {
  std::vector<T> h(static_cast<std::size_t>(n));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  if (n > 0) RA_CUDA_CHECK(cudaMemcpy(h.data(), d, h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/// Fills n device elements with all-ones bytes: a NaN in fp32, fp16 and bf16 alike
/// (complete on return).
template <class T>
void poison(T* d, index_t n) {
  if (n > 0) RA_CUDA_CHECK(cudaMemset(d, 0xff, static_cast<std::size_t>(n) * sizeof(T)));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
}

/// True when x holds the poison pattern (all-ones bytes).
template <class T>
bool is_poison(const T& x) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &x, sizeof(T));
  for (unsigned char c : b)
    if (c != 0xff) return false;
  return true;
}

/// Bitwise equality of two host arrays (graph replay against direct execution).
template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// Relative L2 tolerance of an output type against the double reference.
inline double tolerance(DType t) {
  switch (t) {
    case DType::f32:
      return 1e-4;
    case DType::f16:
      return 5e-3;
    case DType::bf16:
      return 1e-2;
  }
  return 0.0;
}

/// How far an output is from its reference.
struct ErrorReport {
  index_t count = 0;      // elements compared
  index_t nan_count = 0;  // non-finite outputs (poison left behind, overflow)
  double rel_l2 = 0.0;    // ‖out − ref‖ / ‖ref‖
  double max_abs = 0.0;   // max |out − ref|
  double ref_max = 0.0;   // max |ref|
  index_t worst = -1;     // index of max |out − ref| (or of the first non-finite output)
  double worst_out = 0.0, worst_ref = 0.0;
};

inline std::ostream& operator<<(std::ostream& os, const ErrorReport& r) {
  return os << "rel_l2 " << r.rel_l2 << ", max_abs " << r.max_abs << " (max |ref| " << r.ref_max
            << ") at index " << r.worst << ": out " << r.worst_out << " vs ref " << r.worst_ref
            << ", " << r.nan_count << " non-finite of " << r.count;
}

/// Compares out (any element type) with a double reference, element by element.
template <class T>
ErrorReport compare(const std::vector<T>& out, const std::vector<double>& ref) {
  REQUIRE(out.size() == ref.size());
  ErrorReport r;
  r.count = static_cast<index_t>(out.size());
  double diff2 = 0.0, ref2 = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = convert<double>(out[i]), e = ref[i];
    ref2 += e * e;
    r.ref_max = std::max(r.ref_max, std::abs(e));
    if (!std::isfinite(o)) {
      if (r.nan_count++ == 0) {
        r.worst = static_cast<index_t>(i);
        r.worst_out = o;
        r.worst_ref = e;
        r.max_abs = std::numeric_limits<double>::infinity();
      }
      continue;
    }
    const double d = std::abs(o - e);
    diff2 += d * d;
    if (r.nan_count == 0 && d > r.max_abs) {
      r.max_abs = d;
      r.worst = static_cast<index_t>(i);
      r.worst_out = o;
      r.worst_ref = e;
    }
  }
  r.rel_l2 = r.nan_count > 0 ? std::numeric_limits<double>::infinity()
                             : std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-30);
  return r;
}

/// Checks a report: no non-finite output, rel_l2 <= tol, max_abs <= 4·tol·max|ref|.
inline void check_close(const ErrorReport& r, double tol, const std::string& what) {
  INFO(what << ": " << r << " (tolerance " << tol << ")");
  CHECK(r.nan_count == 0);
  CHECK(r.rel_l2 <= tol);
  CHECK(r.max_abs <= 4.0 * tol * std::max(r.ref_max, 1e-30));
}

/// Checks a log-sum-exp: finite, and within tol of the reference relative to max(1, |ref|).
/// (A relative L2 check would mislead at T = 1, where lse is one logit that tiny gates can
/// bring arbitrarily close to 0.)
inline void check_lse(const ErrorReport& r, double tol, const std::string& what = "lse") {
  INFO(what << ": " << r << " (tolerance " << tol << " x max(1, max |ref|))");
  CHECK(r.nan_count == 0);
  CHECK(r.max_abs <= tol * std::max(1.0, r.ref_max));
}

/// Free device memory now (cudaMemGetInfo), after all queued work is done.
inline std::size_t free_device_bytes() {
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  std::size_t free = 0, total = 0;
  RA_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free;
}

/// A created (capturable) stream, destroyed at scope exit.
class Stream {
 public:
  Stream() { RA_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { (void)cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }
  void sync() const { RA_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

}  // namespace ra::test
