// ra/cuda/flash_dispatch.cuh — the definition of flash_forward_dispatch<T, D>: runtime
// (R, gate mode, restart) -> one kernel instantiation. Included by attention.cuh, or, when
// RA_CUDA_EXTERN_FLASH is defined, only by the per-(D, dtype) instantiation units.
#pragma once

#include <ra/core/dispatch.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/flash_forward.cuh>

namespace ra::cuda::detail {

template <class T, int D>
void flash_forward_dispatch(const AttentionParams& p, cudaStream_t stream) {
  dispatch_rank(p.rank, [&](auto r) {
    constexpr int R = static_cast<int>(decltype(r)::value);
    if constexpr (R < D) {
      auto with_restart = [&]<GateMode G>() {
        if (p.restart.enabled()) {
          flash_forward<T, D, R, G, true>(p, stream);
        } else {
          flash_forward<T, D, R, G, false>(p, stream);
        }
      };
      switch (p.gates.mode) {
        case GateMode::none: with_restart.template operator()<GateMode::none>(); break;
        case GateMode::per_layer: with_restart.template operator()<GateMode::per_layer>(); break;
        case GateMode::per_head: with_restart.template operator()<GateMode::per_head>(); break;
      }
    }
  });
}

}  // namespace ra::cuda::detail
