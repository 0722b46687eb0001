// ra/cuda/buffer.cuh — owning device memory, and the counter that proves the hot path
// allocates nothing.
//
// Every device allocation ra makes goes through detail::device_malloc, which bumps
// allocation_count(). A test reads the counter before and after a forward: equal values mean
// the forward made no allocation of its own (cudaMemGetInfo covers the libraries' allocations).
//
//   DeviceBuffer<T> buf(n);      // n elements of T, uninitialised; move-only, freed on scope exit
//   buf.data(), buf.size(), buf.bytes()
//   copy_to_host(buf)            // std::vector<T> with its contents
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>

namespace ra::cuda {

namespace detail {

// Function-local statics: one counter per process however many translation units include us.
inline std::atomic<std::int64_t>& allocation_counter() {
  static std::atomic<std::int64_t> n{0};
  return n;
}

inline std::atomic<std::int64_t>& live_bytes_counter() {
  static std::atomic<std::int64_t> n{0};
  return n;
}

/// cudaMalloc through the counters. Zero bytes allocates nothing and returns null.
/// Throws ra::cuda_error when the allocation fails.
inline void* device_malloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  RA_CUDA_CHECK(cudaMalloc(&p, bytes));
  allocation_counter().fetch_add(1, std::memory_order_relaxed);
  live_bytes_counter().fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
  return p;
}

/// cudaFree through the counters; never throws (called from destructors). A failure here
/// means an earlier asynchronous error, which the next checked call reports.
inline void device_free(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  (void)cudaFree(p);
  live_bytes_counter().fetch_sub(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
}

}  // namespace detail

/// Number of device allocations ra has made in this process (monotonic).
inline std::int64_t allocation_count() {
  return detail::allocation_counter().load(std::memory_order_relaxed);
}

/// Bytes of device memory ra currently holds (allocations minus frees).
inline std::int64_t allocated_bytes() {
  return detail::live_bytes_counter().load(std::memory_order_relaxed);
}

/// An owning, uninitialised array of `size` elements of T in device memory.
/// Move-only; the memory is freed when the buffer is destroyed or assigned over.
/// A buffer of size 0 holds a null pointer and allocates nothing.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;

  /// Allocates n elements. Throws ra::error on a negative n, ra::cuda_error when cudaMalloc
  /// fails (out of memory, no device).
  explicit DeviceBuffer(index_t n) {
    require_arg(n >= 0, "DeviceBuffer", "n", n, "a non-negative element count");
    data_ = static_cast<T*>(detail::device_malloc(static_cast<std::size_t>(n) * sizeof(T)));
    size_ = n;
  }

  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  ~DeviceBuffer() { release(); }

  T* data() const { return data_; }
  index_t size() const { return size_; }
  std::size_t bytes() const { return static_cast<std::size_t>(size_) * sizeof(T); }
  bool empty() const { return size_ == 0; }

 private:
  void release() noexcept {
    detail::device_free(data_, bytes());
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  index_t size_ = 0;
};

/// The whole buffer copied to the host (waits for the copy; the legacy stream orders it after
/// work queued there). Throws ra::cuda_error when the copy fails.
template <class T>
std::vector<T> copy_to_host(const DeviceBuffer<T>& b) {
  std::vector<T> h(static_cast<std::size_t>(b.size()));
  if (!h.empty()) RA_CUDA_CHECK(cudaMemcpy(h.data(), b.data(), b.bytes(), cudaMemcpyDeviceToHost));
  return h;
}

}  // namespace ra::cuda
