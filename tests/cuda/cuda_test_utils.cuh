// tests/cuda/cuda_test_utils.cuh — what the GPU tests share: the printed seed, random host
// data, device round trips, NaN poisoning, bitwise comparison, free device memory and a
// stream. Numerical comparisons go through the precision rule (tests/common/precision.hpp).
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

/// A new device buffer of n elements, poisoned (complete on return).
template <class T>
cuda::DeviceBuffer<T> poisoned(index_t n) {
  cuda::DeviceBuffer<T> d(n);
  poison(d.data(), n);
  return d;
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
