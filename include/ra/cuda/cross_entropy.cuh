// ra/cuda/cross_entropy.cuh — fused softmax + cross-entropy (+ its gradient, in place) over
// the logits of the tied LM head, the GPU form of ra/cpu/cross_entropy.hpp:
//
//   logits z (N, Vp) in T, of which the first V columns are real; targets (N) int32, -1 = ignore.
//   lse_i   = log Σ_{j<V} exp z_ij                          (fp32, online max and sum)
//   loss_i  = lse_i − z_{i,t_i}   (0 for an ignored row)     written per row (fp32)
//   dz_ij   = (exp(z_ij − lse_i) − [j = t_i]) · inv_n   for j < V and t_i ≠ -1; 0 otherwise
// where inv_n = 1/n, n the count of non-ignored targets (the host knows it). With grad = true
// the gradient overwrites the logits in place (the logits are then gone); the mean loss is
// Σ loss_i / n (ra/cuda/reduce.cuh's sum, deterministic).
// One block of 256 threads per row; every reduction is a fixed tree, so results are
// deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/elementwise.cuh>

namespace ra::cuda {

namespace detail {

// Combines two (max, Σ exp(z − max)) pairs.
__device__ __forceinline__ float2 combine_lse(float2 a, float2 b) {
  const float m = fmaxf(a.x, b.x);
  if (m == -INFINITY) return make_float2(m, 0.f);
  return make_float2(m, a.y * __expf(a.x - m) + b.y * __expf(b.x - m));
}

template <class T>
__global__ void __launch_bounds__(256)
    cross_entropy_kernel(T* logits, const std::int32_t* targets, float* loss, index_t vocab,
                         index_t padded, float inv_n, bool grad) {
  constexpr int P = Pack<T>::N;
  __shared__ float2 warp_parts[8];
  __shared__ float row_lse;
  const index_t row = blockIdx.x;
  T* z = logits + row * padded;
  auto* zp = reinterpret_cast<Pack<T>*>(z);
  const std::int32_t target = targets[row];
  const index_t packs = padded / P;
  if (target < 0) {  // ignored: no loss, no gradient
    if (threadIdx.x == 0) loss[row] = 0.f;
    if (grad) {
      Pack<T> zero;
#pragma unroll
      for (int k = 0; k < P; ++k) zero.v[k] = T(0.f);
      for (index_t i = threadIdx.x; i < packs; i += 256) zp[i] = zero;
    }
    return;
  }
  float2 acc = make_float2(-INFINITY, 0.f);
  for (index_t i = threadIdx.x; i < packs; i += 256) {
    const Pack<T> v = zp[i];
#pragma unroll
    for (int k = 0; k < P; ++k) {
      if (i * P + k >= vocab) continue;
      const float x = f32(v.v[k]);  // one exp per element: rescale only on a new maximum
      if (x > acc.x) {
        acc.y = acc.y * __expf(acc.x - x) + 1.f;
        acc.x = x;
      } else {
        acc.y += __expf(x - acc.x);
      }
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float2 other =
        make_float2(__shfl_xor_sync(0xffffffffu, acc.x, o), __shfl_xor_sync(0xffffffffu, acc.y, o));
    acc = combine_lse(acc, other);
  }
  if ((threadIdx.x & 31) == 0) warp_parts[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float2 total = warp_parts[0];
    for (int w = 1; w < 8; ++w) total = combine_lse(total, warp_parts[w]);
    const float lse = total.x + logf(total.y);
    row_lse = lse;
    loss[row] = lse - f32(z[target]);
  }
  __syncthreads();
  if (!grad) return;
  const float lse = row_lse;
  for (index_t i = threadIdx.x; i < packs; i += 256) {
    Pack<T> v = zp[i];
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const index_t j = i * P + k;
      float d = 0.f;
      if (j < vocab) d = (__expf(f32(v.v[k]) - lse) - (j == target ? 1.f : 0.f)) * inv_n;
      v.v[k] = T(d);
    }
    zp[i] = v;
  }
}

}  // namespace detail

/// Per-row losses of logits (rows, padded) against targets (rows) over the first `vocab`
/// columns, and with grad the gradient of (Σ loss)·inv_n written over the logits (see the top
/// of this header). Targets must be -1 or in [0, vocab) (the caller checks them on the host).
/// Throws ra::error on a bad vocab or padded width, ra::cuda_error when the launch fails.
template <class T>
void cross_entropy(T* logits, const std::int32_t* targets, float* loss, index_t rows, index_t vocab,
                   index_t padded, float inv_n, bool grad, cudaStream_t stream) {
  constexpr const char* where = "cuda::cross_entropy";
  require_arg(vocab >= 1 && vocab <= padded, where, "vocab", vocab,
              ra::detail::concat("in [1, ", padded, "] (the padded width)"));
  detail::check_packs<T>(where, padded, {logits});
  if (rows == 0) return;
  detail::cross_entropy_kernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(
      logits, targets, loss, vocab, padded, inv_n, grad);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
