// ra/cuda/flash_dispatch.cuh — the definitions of flash_forward_dispatch<T, D> and
// decode_dispatch<T, D>: runtime R -> flash_forward_rank<T, D, R> / decode_rank<T, D, R>. Included
// by attention.cuh, or, under RA_CUDA_EXTERN_FLASH, only by the per-dtype dispatch units (which
// then see the per-rank launchers as declarations and instantiate no kernel).
#pragma once

#include <ra/core/dispatch.hpp>
#include <ra/cuda/attention.cuh>

namespace ra::cuda::detail {

template <class T, int D>
void flash_forward_dispatch(const AttentionParams& p, cudaStream_t stream) {
  dispatch_rank(p.rank, [&](auto r) {
    constexpr int R = static_cast<int>(decltype(r)::value);
    if constexpr (R < D) flash_forward_rank<T, D, R>(p, stream);
  });
}

template <class T, int D>
void decode_dispatch(const AttentionParams& p, cudaStream_t stream) {
  dispatch_rank(p.rank, [&](auto r) {
    constexpr int R = static_cast<int>(decltype(r)::value);
    if constexpr (R < D) decode_rank<T, D, R>(p, stream);
  });
}

}  // namespace ra::cuda::detail
