// ra/cuda/backward_passes.cuh — the RA pieces of the attention backward that do not depend on
// one MMA layout, shared by every tensor-core path (ra/cuda/sm80/, ra/cuda/sm90/):
//   the row pass      Δ_i = rowsum(dO' ⊙ O)_i, ρ_i = rowsum(dO' ⊙ (V − O))_i (O = o_pre with
//                     self-restart, else O'), one warp per row;
//   the head sums     Σ_{b,t} of the per-row gate sums (gs, gr, written by a dQ kernel) and ρ,
//                     in a fixed order (deterministic);
//   the parameter gradients d w_std, d w_rec (per layer: summed over heads in order), d a.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include <ra/cuda/backward_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

namespace detail {

template <class T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return static_cast<float>(x);
  }
}

__device__ __forceinline__ float restart_alpha(const AttentionParams& p, int h) {
  return p.restart.enabled() ? effective_restart(p.restart.a[h]) : 0.f;
}

/// Row pass: Δ_i and ρ_i, one warp per row.
template <class T, int D>
__global__ void __launch_bounds__(128)
    backward_rows_kernel(const __grid_constant__ AttentionBackwardParams p, BackwardScratch s) {
  constexpr int kPerLane = (D + 31) / 32;
  const AttentionParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.y * 4 + warp;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  if (row >= f.seq) return;
  // O: the output before the restart mix (o_pre) with restart, else O' itself.
  const bool restart = f.restart.enabled();
  const T* o = restart ? static_cast<const T*>(f.o_pre) + b * f.o_pre_batch_stride +
                             h * f.o_pre_head_stride + row * f.o_pre_row_stride
                       : static_cast<const T*>(f.o) + b * f.o_batch_stride + h * f.o_head_stride +
                             row * f.o_row_stride;
  const T* d_o = static_cast<const T*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride +
                 row * p.do_row_stride;
  const T* v = static_cast<const T*>(f.v) + b * f.v_batch_stride + h * f.v_head_stride +
               row * f.v_row_stride;
  float delta = 0.f, rho = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) {
      const float dout = to_float(d_o[d]);
      const float out = to_float(o[d]);
      if (restart) rho += dout * (to_float(v[d]) - out);
      delta += dout * out;
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    delta += __shfl_xor_sync(0xffffffffu, delta, off);
    rho += __shfl_xor_sync(0xffffffffu, rho, off);
  }
  if (lane == 0) {
    const index_t i = static_cast<index_t>(bh) * f.seq + row;
    s.delta[i] = delta;
    s.rho[i] = rho;
  }
}

/// Per-head sums of gs, gr, rho over (b, t), in a fixed order (one block of 1024 threads per
/// head). (A template only so that this header-only kernel has one definition per program.)
template <class T>
__global__ void __launch_bounds__(1024)
    backward_head_sums_kernel(int batch, int heads, int seq, BackwardScratch s) {
  __shared__ float red[3][1024];
  const int h = blockIdx.x;
  float acc[3] = {0.f, 0.f, 0.f};
  for (int b = 0; b < batch; ++b) {
    const index_t base = (static_cast<index_t>(b) * heads + h) * seq;
    for (int t = threadIdx.x; t < seq; t += blockDim.x) {
      acc[0] += s.gs[base + t];
      acc[1] += s.gr[base + t];
      acc[2] += s.rho[base + t];
    }
  }
  for (int i = 0; i < 3; ++i) red[i][threadIdx.x] = acc[i];
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w)
      for (int i = 0; i < 3; ++i) red[i][threadIdx.x] += red[i][threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int i = 0; i < 3; ++i) s.heads[3 * h + i] = red[i][0];
}

/// Parameter gradients from the head sums (per layer: summed over heads in order).
template <class T>
__global__ void backward_parameter_grads_kernel(const __grid_constant__ AttentionBackwardParams p,
                                                BackwardScratch s) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const AttentionParams& f = p.fwd;
  const Gates& gates = f.gates;
  if (gates.enabled()) {
    const int n = gates.mode == GateMode::per_head ? f.heads : 1;
    for (int i = 0; i < n; ++i) {
      float sum_std = 0.f, sum_rec = 0.f;
      for (int h = (n == 1 ? 0 : i); h < (n == 1 ? f.heads : i + 1); ++h) {
        sum_std += s.heads[3 * h];
        sum_rec += s.heads[3 * h + 1];
      }
      if (p.d_w_std) p.d_w_std[i] = effective_gate_grad(gates.w_std[i], gates.param) * sum_std;
      if (p.d_w_rec) p.d_w_rec[i] = effective_gate_grad(gates.w_rec[i], gates.param) * sum_rec;
    }
  }
  if (f.restart.enabled() && p.d_a)
    for (int h = 0; h < f.heads; ++h)
      p.d_a[h] = effective_restart_grad(f.restart.a[h]) * s.heads[3 * h + 2];
}

template <class Kernel>
void set_smem_limit(Kernel kernel, int bytes) {
  RA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

/// The row pass (Δ, ρ) into p's scratch.
template <class T, int D>
void launch_backward_rows(const AttentionBackwardParams& p, cudaStream_t stream) {
  const AttentionParams& f = p.fwd;
  backward_rows_kernel<T, D>
      <<<dim3(f.batch * f.heads, (f.seq + 3) / 4), 128, 0, stream>>>(p, scratch_of(p));
  RA_CUDA_CHECK_LAUNCH();
}

/// One column pair (c, c + 1) of a dQ epilogue, whatever the MMA layout: dqh = dQ̂ of the
/// pair, qraw the same pair of raw Qf. Adds dQ̂ ⊙ Qf to the row's g_std sum (columns < kStd)
/// or g_rec sum and returns dQf = g ⊙ dQ̂ for the pair.
template <int kStd>
__device__ __forceinline__ float2 gate_dq_pair(float2 dqh, float2 qraw, int c, float2 gate,
                                               float& gsum, float& rsum) {
  gsum += (c < kStd ? dqh.x * qraw.x : 0.f) + (c + 1 < kStd ? dqh.y * qraw.y : 0.f);
  rsum += (c < kStd ? 0.f : dqh.x * qraw.x) + (c + 1 < kStd ? 0.f : dqh.y * qraw.y);
  return make_float2(dqh.x * (c < kStd ? gate.x : gate.y),
                     dqh.y * (c + 1 < kStd ? gate.x : gate.y));
}

/// The per-row gate sums of a warp's 16 dQ rows (row0 and row0 + 8 for this lane; the four
/// lanes t = 0..3 of a quad share a row): summed over the quad, stored by t = 0 into the
/// scratch the parameter-gradient pass reads (rows at or past T are not stored).
__device__ __forceinline__ void store_gate_row_sums(float (&gsum)[2], float (&rsum)[2],
                                                    const BackwardScratch& s, int bh, int T_,
                                                    int row0, int t) {
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    gsum[hr] += __shfl_xor_sync(0xffffffffu, gsum[hr], 1);
    gsum[hr] += __shfl_xor_sync(0xffffffffu, gsum[hr], 2);
    rsum[hr] += __shfl_xor_sync(0xffffffffu, rsum[hr], 1);
    rsum[hr] += __shfl_xor_sync(0xffffffffu, rsum[hr], 2);
    const int row = row0 + hr * 8;
    if (t == 0 && row < T_) {
      s.gs[static_cast<index_t>(bh) * T_ + row] = gsum[hr];
      s.gr[static_cast<index_t>(bh) * T_ + row] = rsum[hr];
    }
  }
}

/// The head sums and the parameter gradients, after a dQ kernel wrote the per-row gate sums
/// (nothing to do without gates and restart).
template <class T>
void launch_backward_parameter_grads(const AttentionBackwardParams& p, cudaStream_t stream) {
  const AttentionParams& f = p.fwd;
  if (!f.gates.enabled() && !f.restart.enabled()) return;  // no parameter to differentiate
  const BackwardScratch s = scratch_of(p);
  backward_head_sums_kernel<T><<<f.heads, 1024, 0, stream>>>(f.batch, f.heads, f.seq, s);
  RA_CUDA_CHECK_LAUNCH();
  backward_parameter_grads_kernel<T><<<1, 32, 0, stream>>>(p, s);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

}  // namespace ra::cuda
