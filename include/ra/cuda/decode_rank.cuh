// ra/cuda/decode_rank.cuh — the definition of decode_rank<T, D, R>: runtime (gate mode,
// restart) -> one decode kernel instantiation (ra/cuda/decode.cuh). Included by attention.cuh,
// or, under RA_CUDA_EXTERN_FLASH, only by the per-(dtype, D, R) decode instantiation units.
#pragma once

#include <ra/cuda/attention.cuh>
#include <ra/cuda/decode.cuh>

namespace ra::cuda::detail {

template <class T, int D, int R>
void decode_rank(const AttentionParams& p, cudaStream_t stream) {
  dispatch_gates_restart(
      p, [&]<GateMode G, bool kRestart>() { decode_forward<T, D, R, G, kRestart>(p, stream); });
}

}  // namespace ra::cuda::detail
