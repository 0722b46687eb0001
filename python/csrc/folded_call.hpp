// python/csrc/folded_call.hpp — what the PyTorch binding hands to ra: plain pointers, sizes and
// strides of one folded-attention call, with no torch and no ra type in it. The binding (ops*.cpp,
// ops_cuda.cu) fills these from tensors; ra_adapter.hpp, the only file that calls ra's C++
// attention API, turns them into ra's views and parameters.
#pragma once

#include <cstdint>

namespace ra_torch {

enum class Dtype { f32, f16, bf16, f64 };
enum class GateMode { none, per_layer, per_head };
enum class GateParam { clamp, softplus };

/// One forward or backward call on the fused (B,T,3C) projection, C = H·D.
/// Element strides of fused are (stride_b, stride_t, 1). Gate and restart pointers address host
/// memory for the CPU and device memory for CUDA: gate_count floats each (1 per layer, H per
/// head; null without gates), restart H floats or null.
struct FoldedCall {
  Dtype dtype = Dtype::f32;
  std::int64_t B = 0, T = 0, H = 0, D = 0;
  int R = 0;
  const void* fused = nullptr;
  std::int64_t fused_stride_b = 0, fused_stride_t = 0;
  GateMode gate_mode = GateMode::none;
  GateParam gate_param = GateParam::clamp;
  const float* w_std = nullptr;
  const float* w_rec = nullptr;
  const float* restart = nullptr;
};

/// A (B,T,C) buffer of the call's dtype with element strides (stride_b, stride_t, 1).
struct Btc {
  void* data = nullptr;
  std::int64_t stride_b = 0, stride_t = 0;
};

/// Forward outputs: O' and its (B,H,T) float lse; with restart also O before the mix (out_pre),
/// which the CUDA backward reads (null: not written).
struct ForwardOutputs {
  Btc out;
  float* lse = nullptr;
  Btc out_pre;
};

/// Backward inputs (the forward's outputs and dO') and outputs (dfused (B,T,3C) with strides
/// (stride_b, stride_t, 1); gate and restart gradients, overwritten, null when not wanted).
struct BackwardArgs {
  Btc grad_out;
  Btc out;
  Btc out_pre;
  const float* lse = nullptr;
  void* grad_fused = nullptr;
  std::int64_t grad_fused_stride_b = 0, grad_fused_stride_t = 0;
  float* grad_w_std = nullptr;
  float* grad_w_rec = nullptr;
  float* grad_restart = nullptr;
  float* workspace = nullptr;  // CUDA only: cuda_backward_workspace_floats(B, H, T) floats
};

}  // namespace ra_torch
