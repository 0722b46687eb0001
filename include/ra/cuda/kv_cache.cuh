// ra/cuda/kv_cache.cuh — appending new tokens' Kf and V to a KV cache on the GPU.
//
//   qkv (n·S, 3C): the fused projection of the new rows (Qf | Kf | V, per head h the D columns
//   h·D.. of each block); cache Kf, V: (n, H, max_seq, D) each (the caller points them at the
//   step's first sequence). Row r = i·S + t goes to sequence i at position positions[r] (device
//   int32, read at run time so a captured graph appends where the lengths say):
//     kf[i, h, positions[r], :] = qkv[r, C + h·D : C + (h+1)·D]
//     v [i, h, positions[r], :] = qkv[r, 2C + h·D : 2C + (h+1)·D]
// 16-byte copies; one launch for all rows and heads.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/elementwise.cuh>

namespace ra::cuda {

namespace detail {

template <class T>
__global__ void cache_write_kernel(const T* qkv, T* kf, T* v, const std::int32_t* positions,
                                   index_t rows, index_t S, index_t H, index_t D, index_t max_seq) {
  constexpr int P = 16 / static_cast<int>(sizeof(T));
  const index_t C = H * D, packs_per_row = C / P;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < rows * packs_per_row; i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / packs_per_row, c = (i % packs_per_row) * P;  // column in [0, C)
    const index_t h = c / D, d = c % D;
    const index_t slot =
        ((r / S) * H + h) * max_seq * D + static_cast<index_t>(positions[r]) * D + d;
    const T* row = qkv + r * 3 * C;
    *reinterpret_cast<uint4*>(kf + slot) = *reinterpret_cast<const uint4*>(row + C + c);
    *reinterpret_cast<uint4*>(v + slot) = *reinterpret_cast<const uint4*>(row + 2 * C + c);
  }
}

}  // namespace detail

/// Writes the Kf and V columns of qkv's n·S rows into the cache (see the top of this header).
/// Throws ra::error on D not a multiple of 16 bytes or misaligned pointers.
template <class T>
void cache_write(const T* qkv, T* kf, T* v, const std::int32_t* positions, index_t n, index_t S,
                 index_t H, index_t D, index_t max_seq, cudaStream_t stream) {
  constexpr const char* where = "cuda::cache_write";
  constexpr index_t P = 16 / static_cast<index_t>(sizeof(T));
  require_arg(D % P == 0, where, "D", D,
              ra::detail::concat("a multiple of ", P, " (16-byte rows)"));
  for (const void* p :
       {static_cast<const void*>(qkv), static_cast<const void*>(kf), static_cast<const void*>(v)})
    require_arg(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, where, "pointer", p,
                "16-byte alignment");
  const index_t packs = n * S * H * D / P;
  if (packs == 0) return;
  detail::cache_write_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(
      qkv, kf, v, positions, n * S, S, H, D, max_seq);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
