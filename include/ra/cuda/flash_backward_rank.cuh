// ra/cuda/flash_backward_rank.cuh — the definition of flash_backward_rank<T, D, R>: gated or not
// -> one instantiation of the backward kernels. Included by
// flash_backward.cuh, or, under RA_CUDA_EXTERN_FLASH, only by the per-(dtype, D, R) units.
#pragma once

#include <ra/cuda/flash_backward.cuh>

namespace ra::cuda::detail {

template <class T, int D, int R>
void flash_backward_rank(const AttentionBackwardParams& p, cudaStream_t stream) {
  if (p.fwd.gates.enabled()) {
    flash_backward<T, D, R, true>(p, stream);
  } else {
    flash_backward<T, D, R, false>(p, stream);
  }
}

}  // namespace ra::cuda::detail
