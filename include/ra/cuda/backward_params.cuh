// ra/cuda/backward_params.cuh — the one params struct of the attention backward (every
// pointer and stride it reads and writes, on top of the forward's AttentionParams) and the
// fp32 scratch it plans: shared by the mma.sync and the sm_90a kernels.
#pragma once

#include <ra/core/config.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/backward_path.cuh>

namespace ra::cuda {

/// Everything the backward reads and writes. fwd describes the forward call (o = O', lse as
/// the forward wrote it); gradients are (B,H,T,D) strided views like the inputs, so dQf, dKf
/// and dV can be the folded views of a (B,T,3C) gradient buffer.
struct AttentionBackwardParams {
  AttentionParams fwd;
  const void* d_out = nullptr;  // dO'
  index_t do_batch_stride = 0, do_head_stride = 0, do_row_stride = 0;
  void* dq = nullptr;
  index_t dq_batch_stride = 0, dq_head_stride = 0, dq_row_stride = 0;
  void* dk = nullptr;
  index_t dk_batch_stride = 0, dk_head_stride = 0, dk_row_stride = 0;
  void* dv = nullptr;
  index_t dv_batch_stride = 0, dv_head_stride = 0, dv_row_stride = 0;
  float* d_w_std = nullptr;  // gate_count values, overwritten (null: not wanted)
  float* d_w_rec = nullptr;
  float* d_a = nullptr;                         // H values, overwritten, when restart is on
  float* workspace = nullptr;                   // backward_workspace_floats(B, H, T) floats
  BackwardPath path = BackwardPath::automatic;  // the tensor-core path (fp16/bf16)
};

/// fp32 scratch the backward needs: four per-row arrays and three per-head sums.
inline index_t backward_workspace_floats(index_t B, index_t H, index_t T) {
  return 4 * B * H * T + 3 * H;
}

namespace detail {

struct BackwardScratch {
  float* delta;  // (B,H,T) rowsum(dO' ⊙ O)
  float* rho;    // (B,H,T) rowsum(dO' ⊙ (V - O))
  float* gs;     // (B,H,T) Σ_{d<D-R} dQ̂ ⊙ Qf
  float* gr;     // (B,H,T) Σ_{d>=D-R} dQ̂ ⊙ Qf
  float* heads;  // (H,3) per-head sums of gs, gr, rho
};

inline BackwardScratch scratch_of(const AttentionBackwardParams& p) {
  const index_t n = static_cast<index_t>(p.fwd.batch) * p.fwd.heads * p.fwd.seq;
  return {p.workspace, p.workspace + n, p.workspace + 2 * n, p.workspace + 3 * n,
          p.workspace + 4 * n};
}

}  // namespace detail

}  // namespace ra::cuda
