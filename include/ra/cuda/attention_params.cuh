// ra/cuda/attention_params.cuh — one params struct with every pointer and stride an
// attention kernel reads, so packed and strided inputs are read in place.
//
// Qf, Kf, V, O are (B, H, T, D) with arbitrary batch/head/row strides (in elements) and a
// unit stride along D. For the fused (B,T,3C) buffer the input strides are (3TC, D, 3C);
// for O written in (B,T,C) layout they are (TC, D, C).
//
// With self-restart the forward can also write O, the attention output before the restart
// mix (o_pre); the backward needs it: rebuilding O = (O' − αV)/(1 − α) from the stored 16-bit
// O' carries O''s rounding, u·|αV|/(1 − α), into rowsum(dO' ⊙ O) and from there into every
// gradient, many times the rounding of O itself when |O| ≪ |V| (long rows average V out).
#pragma once

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/cuda/forward_path.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

struct AttentionParams {
  const void* q = nullptr;  // Qf
  const void* k = nullptr;  // Kf
  const void* v = nullptr;  // V
  void* o = nullptr;        // O'
  float* lse = nullptr;     // (B, H, T) natural-log log-sum-exp of the scaled logits; optional

  index_t q_batch_stride = 0, q_head_stride = 0, q_row_stride = 0;
  index_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  index_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  index_t o_batch_stride = 0, o_head_stride = 0, o_row_stride = 0;
  // O before the self-restart mix, written with restart on when not null (the backward
  // reads it then; without restart O' is O and o_pre is unused).
  void* o_pre = nullptr;
  index_t o_pre_batch_stride = 0, o_pre_head_stride = 0, o_pre_row_stride = 0;

  int batch = 0, heads = 0, seq = 0, head_dim = 0, rank = 0;
  float scale = 0.f;  // 1/sqrt(D) of the full head dim

  DType dtype = DType::f16;
  Gates gates{};      // device pointers
  Restart restart{};  // device pointer (H values) or null
  ForwardPath path = ForwardPath::automatic;  // the forward's tensor-core path (fp16/bf16)
};

}  // namespace ra::cuda
