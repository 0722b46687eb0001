// ra/cuda/flash_backward_rank.cuh — the definition of flash_backward_rank<T, D, R>: runtime
// (gates, path) -> one instantiation of the backward kernels (mma.sync or sm_90a). Included by
// flash_backward.cuh, or, under RA_CUDA_EXTERN_FLASH, only by the per-(dtype, D, R) units.
#pragma once

#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/sm80/flash_backward.cuh>
#include <ra/cuda/sm90/flash_backward.cuh>
#include <ra/cuda/sm90/support.cuh>

namespace ra::cuda::detail {

/// The backward of <T, D, R, gated> on the path p asks for (ra/cuda/backward_path.cuh).
template <class T, int D, int R, bool kGated>
void flash_backward_on_path(const AttentionBackwardParams& p, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2 && sm90::backward_head_dim_supported(D)) {
    if (sm90::use_sm90_backward(p)) {
      sm90::flash_backward<T, D, R, kGated>(p, stream);
      return;
    }
  }
  flash_backward<T, D, R, kGated>(p, stream);
}

template <class T, int D, int R>
void flash_backward_rank(const AttentionBackwardParams& p, cudaStream_t stream) {
  if (p.fwd.gates.enabled()) {
    flash_backward_on_path<T, D, R, true>(p, stream);
  } else {
    flash_backward_on_path<T, D, R, false>(p, stream);
  }
}

}  // namespace ra::cuda::detail
