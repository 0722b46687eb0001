// ra/cuda/decode_rank.cuh — the definition of decode_rank<T, D, R>: runtime (gate mode,
// restart) -> one decode kernel instantiation (ra/cuda/decode.cuh). Included by attention.cuh,
// or, under RA_CUDA_EXTERN_FLASH, only by the per-(dtype, D, R) decode instantiation units.
#pragma once

#include <ra/cuda/attention.cuh>
#include <ra/cuda/decode.cuh>

namespace ra::cuda::detail {

template <class T, int D, int R>
void decode_rank(const AttentionParams& p, cudaStream_t stream) {
  auto with_restart = [&]<GateMode G>() {
    if (p.restart.enabled()) {
      decode_forward<T, D, R, G, true>(p, stream);
    } else {
      decode_forward<T, D, R, G, false>(p, stream);
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
