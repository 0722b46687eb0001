// ra/cuda/flash_rank.cuh — the definition of flash_forward_rank<T, D, R>: runtime (gate
// mode, restart, path) -> one kernel instantiation (mma.sync or sm_90a). Included by attention.cuh,
// or, under RA_CUDA_EXTERN_FLASH, only by the per-(dtype, D, R) instantiation units.
#pragma once

#include <ra/cuda/attention.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/sm90/flash_forward.cuh>

namespace ra::cuda::detail {

/// The forward of <T, D, R, G, restart> on the path p asks for (ra/cuda/forward_path.cuh).
template <class T, int D, int R, GateMode G, bool kRestart>
void flash_forward_on_path(const AttentionParams& p, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    if (sm90::use_sm90_forward(p)) {
      sm90::flash_forward_scheduled<T, D, R, G, kRestart>(p, stream);
      return;
    }
  }
  flash_forward<T, D, R, G, kRestart>(p, stream);
}

template <class T, int D, int R>
void flash_forward_rank(const AttentionParams& p, cudaStream_t stream) {
  dispatch_gates_restart(p, [&]<GateMode G, bool kRestart>() {
    flash_forward_on_path<T, D, R, G, kRestart>(p, stream);
  });
}

}  // namespace ra::cuda::detail
