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
  auto with_restart = [&]<GateMode G>() {
    if (p.restart.enabled()) {
      flash_forward_on_path<T, D, R, G, true>(p, stream);
    } else {
      flash_forward_on_path<T, D, R, G, false>(p, stream);
    }
  };
  switch (p.gates.mode) {
    case GateMode::none:
      with_restart.template operator()<GateMode::none>();
      break;
    case GateMode::per_layer:
      with_restart.template operator()<GateMode::per_layer>();
      break;
    case GateMode::per_head:
      with_restart.template operator()<GateMode::per_head>();
      break;
  }
}

}  // namespace ra::cuda::detail
