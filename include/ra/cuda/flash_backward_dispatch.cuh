// ra/cuda/flash_backward_dispatch.cuh — the definition of flash_backward_dispatch<T, D>:
// runtime R -> flash_backward_rank<T, D, R>. Included by flash_backward.cuh, or, under
// RA_CUDA_EXTERN_FLASH, only by the per-dtype dispatch units.
#pragma once

#include <ra/core/dispatch.hpp>
#include <ra/cuda/flash_backward.cuh>

namespace ra::cuda::detail {

template <class T, int D>
void flash_backward_dispatch(const AttentionBackwardParams& p, cudaStream_t stream) {
  dispatch_rank(p.fwd.rank, [&](auto r) {
    constexpr int R = static_cast<int>(decltype(r)::value);
    if constexpr (R < D) flash_backward_rank<T, D, R>(p, stream);
  });
}

}  // namespace ra::cuda::detail
