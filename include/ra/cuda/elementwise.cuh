// ra/cuda/elementwise.cuh — the element-wise kernels of training, each one pass over memory in
// 16-byte packs (8 bf16 or 4 fp32 per load), computing in fp32:
//
//   add           c = a + b                                   (residual connections)
//   gelu_forward  y = gelu(x)         (tanh form; the element math of ra/cuda/gelu.cuh)
//   gelu_backward dx = dy · gelu'(x)
//   dropout       x_i = x_i · [u(seed, site, i) >= p] / (1 − p)   in place (ra/model/dropout.hpp:
//                 the same hash, so the same mask as the CPU model)
//   round_to      y = T(x) from fp32 (the working copy of the master parameters)
//
// Lengths must be multiples of the pack (16 / sizeof(T) elements) and pointers 16-byte
// aligned; the host functions check both and throw ra::error naming the argument.
#pragma once

#include <cuda_runtime.h>

#include <initializer_list>
#include <cstdint>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/gelu.cuh>
#include <ra/model/dropout.hpp>

namespace ra::cuda {

/// 16 bytes of T.
template <class T>
struct alignas(16) Pack {
  static constexpr int N = static_cast<int>(16 / sizeof(T));
  T v[N];
};

namespace detail {

/// Throws ra::error unless n is a multiple of T's pack and every pointer is 16-byte aligned.
template <class T>
void check_packs(const char* where, index_t n, std::initializer_list<const void*> ptrs) {
  require_arg(
      n % Pack<T>::N == 0, where, "length", n,
      ra::detail::concat("a multiple of ", Pack<T>::N, " (16-byte packs of ", dtype_v<T>, ")"));
  for (const void* p : ptrs)
    require_arg(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, where, "pointer", p,
                "16-byte alignment");
}

inline unsigned pack_blocks(index_t packs) {
  const index_t b = (packs + 255) / 256;
  return static_cast<unsigned>(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

template <class T>
__device__ __forceinline__ float f32(T x) {
  return static_cast<float>(x);
}

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* c, index_t packs) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[i];
    const Pack<T> y = reinterpret_cast<const Pack<T>*>(b)[i];
    Pack<T> z;
#pragma unroll
    for (int k = 0; k < Pack<T>::N; ++k) z.v[k] = T(f32(x.v[k]) + f32(y.v[k]));
    reinterpret_cast<Pack<T>*>(c)[i] = z;
  }
}

template <class T>
__global__ void gelu_forward_kernel(const T* x, T* y, index_t packs) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Pack<T> in = reinterpret_cast<const Pack<T>*>(x)[i];
    Pack<T> out;
#pragma unroll
    for (int k = 0; k < Pack<T>::N; ++k) out.v[k] = T(gelu(f32(in.v[k])));
    reinterpret_cast<Pack<T>*>(y)[i] = out;
  }
}

template <class T>
__global__ void gelu_backward_kernel(const T* dy, const T* x, T* dx, index_t packs) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Pack<T> g = reinterpret_cast<const Pack<T>*>(dy)[i];
    const Pack<T> in = reinterpret_cast<const Pack<T>*>(x)[i];
    Pack<T> out;
#pragma unroll
    for (int k = 0; k < Pack<T>::N; ++k) out.v[k] = T(f32(g.v[k]) * gelu_grad(f32(in.v[k])));
    reinterpret_cast<Pack<T>*>(dx)[i] = out;
  }
}

template <class T>
__global__ void dropout_kernel(T* x, index_t packs, float p, double scale, std::uint64_t seed,
                               std::uint64_t site) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    Pack<T> v = reinterpret_cast<Pack<T>*>(x)[i];
#pragma unroll
    for (int k = 0; k < Pack<T>::N; ++k) {
      const auto flat = static_cast<std::uint64_t>(i * Pack<T>::N + k);
      const bool keep = model::Dropout::uniform(seed, site, flat) >= static_cast<double>(p);
      // Scaled in double and rounded through float, as model::Dropout does: the same bits.
      v.v[k] = keep ? T(static_cast<float>(static_cast<double>(f32(v.v[k])) * scale)) : T(0.f);
    }
    reinterpret_cast<Pack<T>*>(x)[i] = v;
  }
}

template <class T>
__global__ void round_kernel(const float* x, T* y, index_t n) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    y[i] = T(x[i]);
}

}  // namespace detail

/// c = a + b over n elements (c may alias a or b).
template <class T>
void add(const T* a, const T* b, T* c, index_t n, cudaStream_t stream) {
  detail::check_packs<T>("cuda::add", n, {a, b, c});
  const index_t packs = n / Pack<T>::N;
  detail::add_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(a, b, c, packs);
  RA_CUDA_CHECK_LAUNCH();
}

/// y = gelu(x) (tanh form) over n elements.
template <class T>
void gelu_forward(const T* x, T* y, index_t n, cudaStream_t stream) {
  detail::check_packs<T>("cuda::gelu_forward", n, {x, y});
  const index_t packs = n / Pack<T>::N;
  detail::gelu_forward_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(x, y, packs);
  RA_CUDA_CHECK_LAUNCH();
}

/// dx = dy · gelu'(x) over n elements (dx may alias dy).
template <class T>
void gelu_backward(const T* dy, const T* x, T* dx, index_t n, cudaStream_t stream) {
  detail::check_packs<T>("cuda::gelu_backward", n, {dy, x, dx});
  const index_t packs = n / Pack<T>::N;
  detail::gelu_backward_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(dy, x, dx, packs);
  RA_CUDA_CHECK_LAUNCH();
}

/// Inverted dropout of probability p in place over n elements, with the mask of
/// model::Dropout{p}.apply(x, seed, site) (flat index i). A no-op for p = 0.
template <class T>
void dropout(T* x, index_t n, float p, std::uint64_t seed, std::uint64_t site,
             cudaStream_t stream) {
  if (p == 0.f) return;
  model::Dropout{p}.validate("cuda::dropout");
  detail::check_packs<T>("cuda::dropout", n, {x});
  const index_t packs = n / Pack<T>::N;
  const double scale = 1.0 / (1.0 - static_cast<double>(p));
  detail::dropout_kernel<T>
      <<<detail::pack_blocks(packs), 256, 0, stream>>>(x, packs, p, scale, seed, site);
  RA_CUDA_CHECK_LAUNCH();
}

/// y = T(x) over n elements (round to nearest even).
template <class T>
void round_to(const float* x, T* y, index_t n, cudaStream_t stream) {
  if (n == 0) return;
  detail::round_kernel<T><<<detail::pack_blocks(n), 256, 0, stream>>>(x, y, n);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
