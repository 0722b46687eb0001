// ra/cuda/sm80/flash_backward.cuh — the mma.sync (sm_80 and later, Hopper included) causal
// flash attention backward for the folded RA layout, and its fp32 SIMT twin.
//
// Given the forward's inputs, its output O' (and with self-restart O, the output before the
// mix, which the forward wrote to o_pre), its per-row lse, and dO', with α = α_h:
//   Δ_i   = rowsum(dO' ⊙ O)_i,   ρ_i = rowsum(dO' ⊙ (V - O))_i      (O = O' without restart)
//   P     = exp(Q̂ Kfᵀ / √D - lse)  (causal),   dP' = dO' Vᵀ
//   dS    = P ⊙ (dP' - Δ)                         (dO = (1-α) dO' scales everything below)
//   dQ̂    = (1-α) dS Kf / √D,   dQf = g ⊙ dQ̂,   dKf = (1-α) dSᵀ Q̂ / √D
//   dV    = (1-α) Pᵀ dO' + α dO'
//   d w_std = g'(w_std) Σ_{b,t,d<D-R} dQ̂ ⊙ Qf  (w_rec likewise over d >= D-R; per layer: Σ_h)
//   d a_h   = clamp'(a_h) Σ_{b,t} ρ
// Four launches: the row pass (Δ, ρ: ra/cuda/backward_passes.cuh), one CTA per key block for
// dKf and dV, one CTA per query block for dQf (recomputing P; no atomics), and the fixed-order
// reduction for the parameter gradients (backward_passes.cuh). Every result is deterministic:
// the same inputs give the same bits. fp16/bf16 run on mma.sync; fp32 on a SIMT path
// (correct, slower). Kernels are specialised on <dtype, D, R, gated>.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <ra/cuda/backward_params.cuh>
#include <ra/cuda/backward_passes.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/mma.cuh>
#include <ra/cuda/tile_table.cuh>

namespace ra::cuda {

namespace detail {

// The tiles (FlashBackwardTile<D>) and why: ra/cuda/tile_table.cuh.

/// Scales the chunks this thread copied (load_tile's iteration) by the gate of their column,
/// turning a raw Qf tile into Q̂ once, in shared memory.
template <class T, int D, int kPitch, int kRows, int kThreads, int kStd>
__device__ __forceinline__ void gate_tile(T* smem, float2 gate, int tid) {
  constexpr int kChunksPerRow = D / 8;
#pragma unroll
  for (int i = tid; i < kRows * kChunksPerRow; i += kThreads) {
    const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * 8;
    std::uint32_t* w = reinterpret_cast<std::uint32_t*>(smem + r * kPitch + c);
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] = gate_pair<T, kStd>(w[e], c + 2 * e, gate);
  }
}

/// dKf and dV for 64 keys (16 per warp): loops over the query blocks at or below the diagonal.
/// Per warp, with the key rows as the M dimension:
///   Sᵀ = K Q̂ᵀ,  Pᵀ = 2^(Sᵀ c - lse₂),  dP'ᵀ = V dO'ᵀ,  dSᵀ = Pᵀ ⊙ (dP'ᵀ - Δ)
///   dV += Pᵀ dO',  dK += dSᵀ Q̂
template <class T, int D, int R, bool kGated>
__global__ void __launch_bounds__(FlashBackwardTile<D>::kThreads)
    backward_dkdv_kernel(const __grid_constant__ AttentionBackwardParams p, BackwardScratch s) {
  using Tile = FlashBackwardTile<D>;
  constexpr int kKeys = Tile::kRows, kQ = Tile::kCols, kPitch = Tile::kPitch;
  constexpr int kThreads = Tile::kThreads, kStd = D - R;
  const AttentionParams& f = p.fwd;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);  // (kKeys, kPitch)
  T* sV = sK + kKeys * kPitch;             // (kKeys, kPitch)
  T* sQ = sV + kKeys * kPitch;             // 2 x (kQ, kPitch), gated in place
  T* sdO = sQ + 2 * kQ * kPitch;           // 2 x (kQ, kPitch)
  float* sLse = reinterpret_cast<float*>(sdO + 2 * kQ * kPitch);  // 2 x kQ, log2 units
  float* sDelta = sLse + 2 * kQ;                                  // 2 x kQ

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4, mi = lane / 8, r = lane % 8;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  const int n0 = blockIdx.y * kKeys;
  const int T_ = f.seq;

  const T* q = static_cast<const T*>(f.q) + b * f.q_batch_stride + h * f.q_head_stride;
  const T* k = static_cast<const T*>(f.k) + b * f.k_batch_stride + h * f.k_head_stride;
  const T* v = static_cast<const T*>(f.v) + b * f.v_batch_stride + h * f.v_head_stride;
  const T* d_o = static_cast<const T*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride;
  const float* lse = f.lse + static_cast<index_t>(bh) * T_;
  const float* delta = s.delta + static_cast<index_t>(bh) * T_;
  const float2 gate = load_gates<kGated>(f.gates, h);
  const float scale_log2 = f.scale * 1.44269504088896340736f;

  const int m_first = (n0 / kQ) * kQ;  // first query block that sees these keys
  const int m_tiles = (T_ - m_first + kQ - 1) / kQ;

  auto load_queries = [&](int m, int buf) {
    const int m0 = m_first + m * kQ;
    load_tile<T, D, kPitch, kQ, kThreads>(sQ + buf * kQ * kPitch, q + m0 * f.q_row_stride,
                                          f.q_row_stride, T_ - m0, tid);
    load_tile<T, D, kPitch, kQ, kThreads>(sdO + buf * kQ * kPitch, d_o + m0 * p.do_row_stride,
                                          p.do_row_stride, T_ - m0, tid);
    for (int i = tid; i < kQ; i += kThreads) {
      const bool valid = m0 + i < T_;
      // Rows past T get lse = +inf, so P = 0 there.
      sLse[buf * kQ + i] = valid ? lse[m0 + i] * 1.44269504088896340736f : INFINITY;
      sDelta[buf * kQ + i] = valid ? delta[m0 + i] : 0.f;
    }
  };

  load_tile<T, D, kPitch, kKeys, kThreads>(sK, k + n0 * f.k_row_stride, f.k_row_stride, T_ - n0,
                                           tid);
  load_tile<T, D, kPitch, kKeys, kThreads>(sV, v + n0 * f.v_row_stride, f.v_row_stride, T_ - n0,
                                           tid);
  load_queries(0, 0);
  mma::cp_async_commit();

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[j][i] = dv[j][i] = 0.f;

  const int key_row0 = n0 + warp * 16;
  for (int m = 0; m < m_tiles; ++m) {
    const int buf = m & 1;
    const int m0 = m_first + m * kQ;
    if (m + 1 < m_tiles) {
      load_queries(m + 1, buf ^ 1);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    if constexpr (kGated)
      gate_tile<T, D, kPitch, kQ, kThreads, kStd>(sQ + buf * kQ * kPitch, gate, tid);
    __syncthreads();

    // Query blocks wholly above this warp's keys see none of them.
    if (m0 + kQ - 1 >= key_row0) {
      const T* sQb = sQ + buf * kQ * kPitch;
      const T* sdOb = sdO + buf * kQ * kPitch;
      float st[kQ / 8][4], dpt[kQ / 8][4];
#pragma unroll
      for (int j = 0; j < kQ / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) st[j][i] = dpt[j][i] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        std::uint32_t ak[4], av[4];
        mma::ldmatrix_x4(ak,
                         sK + (warp * 16 + (mi & 1) * 8 + r) * kPitch + kk * 16 + (mi >> 1) * 8);
        mma::ldmatrix_x4(av,
                         sV + (warp * 16 + (mi & 1) * 8 + r) * kPitch + kk * 16 + (mi >> 1) * 8);
#pragma unroll
        for (int jj = 0; jj < kQ / 16; ++jj) {
          std::uint32_t bq[4], bo[4];
          mma::ldmatrix_x4(bq,
                           sQb + (jj * 16 + (mi >> 1) * 8 + r) * kPitch + kk * 16 + (mi & 1) * 8);
          mma::ldmatrix_x4(bo,
                           sdOb + (jj * 16 + (mi >> 1) * 8 + r) * kPitch + kk * 16 + (mi & 1) * 8);
          mma::mma_16816<T>(st[2 * jj], ak, bq[0], bq[1]);
          mma::mma_16816<T>(st[2 * jj + 1], ak, bq[2], bq[3]);
          mma::mma_16816<T>(dpt[2 * jj], av, bo[0], bo[1]);
          mma::mma_16816<T>(dpt[2 * jj + 1], av, bo[2], bo[3]);
        }
      }
      // Pᵀ and dSᵀ; masked where query < key or query >= T.
#pragma unroll
      for (int j = 0; j < kQ / 8; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int qc = j * 8 + 2 * t + (i & 1);
          const int kr = key_row0 + g + (i >> 1) * 8;
          const bool masked = m0 + qc < kr || m0 + qc >= T_;
          const float pt =
              masked ? 0.f : mma::exp2_approx(st[j][i] * scale_log2 - sLse[buf * kQ + qc]);
          st[j][i] = pt;
          dpt[j][i] = pt * (dpt[j][i] - sDelta[buf * kQ + qc]);
        }
      }
      // dV += Pᵀ dO', dK += dSᵀ Q̂ (queries are the reduction dimension).
#pragma unroll
      for (int kk = 0; kk < kQ / 16; ++kk) {
        const std::uint32_t ap[4] = {mma::pack<T>(st[2 * kk][0], st[2 * kk][1]),
                                     mma::pack<T>(st[2 * kk][2], st[2 * kk][3]),
                                     mma::pack<T>(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                                     mma::pack<T>(st[2 * kk + 1][2], st[2 * kk + 1][3])};
        const std::uint32_t as[4] = {mma::pack<T>(dpt[2 * kk][0], dpt[2 * kk][1]),
                                     mma::pack<T>(dpt[2 * kk][2], dpt[2 * kk][3]),
                                     mma::pack<T>(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                                     mma::pack<T>(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
        for (int dd = 0; dd < D / 16; ++dd) {
          std::uint32_t bo[4], bq[4];
          mma::ldmatrix_x4_trans(
              bo, sdOb + (kk * 16 + (mi & 1) * 8 + r) * kPitch + dd * 16 + (mi >> 1) * 8);
          mma::ldmatrix_x4_trans(
              bq, sQb + (kk * 16 + (mi & 1) * 8 + r) * kPitch + dd * 16 + (mi >> 1) * 8);
          mma::mma_16816<T>(dv[2 * dd], ap, bo[0], bo[1]);
          mma::mma_16816<T>(dv[2 * dd + 1], ap, bo[2], bo[3]);
          mma::mma_16816<T>(dk[2 * dd], as, bq[0], bq[1]);
          mma::mma_16816<T>(dk[2 * dd + 1], as, bq[2], bq[3]);
        }
      }
    }
    __syncthreads();  // the buffer just read is refilled next iteration
  }

  // Epilogue: scale, stage the warp's 16 rows in its own rows of sK / sV, store.
  const float alpha = restart_alpha(f, h);
  const float k_scale = f.scale * (1.f - alpha), v_scale = 1.f - alpha;
  T* stage_k = sK + warp * 16 * kPitch;
  T* stage_v = sV + warp * 16 * kPitch;
  stage_rows<T, D, kPitch>(stage_k, dk, k_scale, k_scale, lane);
  stage_rows<T, D, kPitch>(stage_v, dv, v_scale, v_scale, lane);
  __syncwarp();
  T* out_k = static_cast<T*>(p.dk) + b * p.dk_batch_stride + h * p.dk_head_stride;
  T* out_v = static_cast<T*>(p.dv) + b * p.dv_batch_stride + h * p.dv_head_stride;
  store_rows<T, D, kPitch>(stage_k, out_k, p.dk_row_stride, key_row0, T_, nullptr, 0, 1.f, 0.f,
                           lane);
  store_rows<T, D, kPitch>(stage_v, out_v, p.dv_row_stride, key_row0, T_,
                           f.restart.enabled() ? d_o : nullptr, p.do_row_stride, 1.f, alpha, lane);
}

/// dQf for 64 query rows (16 per warp), recomputing P per key block (no atomics):
///   S = Q̂ Kᵀ,  P = 2^(S c - lse₂),  dP' = dO' Vᵀ,  dS = P ⊙ (dP' - Δ),  dQ += dS K
/// and the per-row gate sums Σ dQ̂ ⊙ Qf split at D - R.
template <class T, int D, int R, bool kGated>
__global__ void __launch_bounds__(FlashBackwardTile<D>::kThreads)
    backward_dq_kernel(const __grid_constant__ AttentionBackwardParams p, BackwardScratch s) {
  using Tile = FlashBackwardTile<D>;
  constexpr int kQ = Tile::kRows, kKeys = Tile::kCols, kPitch = Tile::kPitch;
  constexpr int kThreads = Tile::kThreads, kStd = D - R;
  const AttentionParams& f = p.fwd;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // (kQ, kPitch), raw Qf
  T* sdO = sQ + kQ * kPitch;               // (kQ, kPitch)
  T* sK = sdO + kQ * kPitch;               // 2 x (kKeys, kPitch)
  T* sV = sK + 2 * kKeys * kPitch;         // 2 x (kKeys, kPitch)

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4, mi = lane / 8, r = lane % 8;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kQ;  // heaviest blocks first
  const int T_ = f.seq;

  const T* q = static_cast<const T*>(f.q) + b * f.q_batch_stride + h * f.q_head_stride;
  const T* k = static_cast<const T*>(f.k) + b * f.k_batch_stride + h * f.k_head_stride;
  const T* v = static_cast<const T*>(f.v) + b * f.v_batch_stride + h * f.v_head_stride;
  const T* d_o = static_cast<const T*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride;
  const float2 gate = load_gates<kGated>(f.gates, h);
  const float scale_log2 = f.scale * 1.44269504088896340736f;

  const int n_end = min(T_, m0 + kQ);
  const int n_tiles = (n_end + kKeys - 1) / kKeys;

  load_tile<T, D, kPitch, kQ, kThreads>(sQ, q + m0 * f.q_row_stride, f.q_row_stride, T_ - m0, tid);
  load_tile<T, D, kPitch, kQ, kThreads>(sdO, d_o + m0 * p.do_row_stride, p.do_row_stride, T_ - m0,
                                        tid);
  load_tile<T, D, kPitch, kKeys, kThreads>(sK, k, f.k_row_stride, T_, tid);
  load_tile<T, D, kPitch, kKeys, kThreads>(sV, v, f.v_row_stride, T_, tid);
  mma::cp_async_commit();

  const int row0 = m0 + warp * 16 + g;  // this thread's rows: row0, row0 + 8
  float lse2[2], dlt[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int row = row0 + hr * 8;
    const index_t i = static_cast<index_t>(bh) * T_ + row;
    lse2[hr] = row < T_ ? f.lse[i] * 1.44269504088896340736f : INFINITY;
    dlt[hr] = row < T_ ? s.delta[i] : 0.f;
  }

  std::uint32_t qf[D / 16][4], of[D / 16][4];
  float dq[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.f;

  for (int n = 0; n < n_tiles; ++n) {
    const int n0 = n * kKeys, buf = n & 1;
    if (n + 1 < n_tiles) {
      const int nn = n0 + kKeys;
      load_tile<T, D, kPitch, kKeys, kThreads>(
          sK + (buf ^ 1) * kKeys * kPitch, k + nn * f.k_row_stride, f.k_row_stride, T_ - nn, tid);
      load_tile<T, D, kPitch, kKeys, kThreads>(
          sV + (buf ^ 1) * kKeys * kPitch, v + nn * f.v_row_stride, f.v_row_stride, T_ - nn, tid);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    __syncthreads();

    if (n == 0) {  // Q̂ (gated in registers) and dO' fragments
      load_q_fragments<T, D, kPitch, kStd, kGated>(qf, sQ, warp * 16, gate, lane);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        mma::ldmatrix_x4(of[kk],
                         sdO + (warp * 16 + (mi & 1) * 8 + r) * kPitch + kk * 16 + (mi >> 1) * 8);
    }

    if (n0 <= m0 + warp * 16 + 15) {
      const T* sKb = sK + buf * kKeys * kPitch;
      const T* sVb = sV + buf * kKeys * kPitch;
      float sc[kKeys / 8][4], dp[kKeys / 8][4];
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) sc[j][i] = dp[j][i] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int jj = 0; jj < kKeys / 16; ++jj) {
          std::uint32_t bk[4], bv[4];
          mma::ldmatrix_x4(bk,
                           sKb + (jj * 16 + (mi >> 1) * 8 + r) * kPitch + kk * 16 + (mi & 1) * 8);
          mma::ldmatrix_x4(bv,
                           sVb + (jj * 16 + (mi >> 1) * 8 + r) * kPitch + kk * 16 + (mi & 1) * 8);
          mma::mma_16816<T>(sc[2 * jj], qf[kk], bk[0], bk[1]);
          mma::mma_16816<T>(sc[2 * jj + 1], qf[kk], bk[2], bk[3]);
          mma::mma_16816<T>(dp[2 * jj], of[kk], bv[0], bv[1]);
          mma::mma_16816<T>(dp[2 * jj + 1], of[kk], bv[2], bv[3]);
        }
      }
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int col = n0 + j * 8 + 2 * t + (i & 1);
          const int row = row0 + (i >> 1) * 8;
          const bool masked = col > row || col >= T_;
          const float pv = masked ? 0.f : mma::exp2_approx(sc[j][i] * scale_log2 - lse2[i >> 1]);
          dp[j][i] = pv * (dp[j][i] - dlt[i >> 1]);
        }
      }
      // dQ += dS · K (keys are the reduction dimension).
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const std::uint32_t as[4] = {mma::pack<T>(dp[2 * kk][0], dp[2 * kk][1]),
                                     mma::pack<T>(dp[2 * kk][2], dp[2 * kk][3]),
                                     mma::pack<T>(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                                     mma::pack<T>(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
        for (int dd = 0; dd < D / 16; ++dd) {
          std::uint32_t bk[4];
          mma::ldmatrix_x4_trans(
              bk, sKb + (kk * 16 + (mi & 1) * 8 + r) * kPitch + dd * 16 + (mi >> 1) * 8);
          mma::mma_16816<T>(dq[2 * dd], as, bk[0], bk[1]);
          mma::mma_16816<T>(dq[2 * dd + 1], as, bk[2], bk[3]);
        }
      }
    }
    __syncthreads();
  }

  // dQ̂ = (1-α) dQ / √D; gate sums against raw Qf (still in sQ); then dQf = g ⊙ dQ̂.
  const float alpha = restart_alpha(f, h);
  const float q_scale = f.scale * (1.f - alpha);
  float gsum[2] = {0.f, 0.f}, rsum[2] = {0.f, 0.f};
  T* stage = sQ + warp * 16 * kPitch;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int c = j * 8 + 2 * t;
      const float2 qraw = mma::unpack<T>(
          *reinterpret_cast<const std::uint32_t*>(stage + (g + hr * 8) * kPitch + c));
      const float2 dqf =
          gate_dq_pair<kStd>(make_float2(dq[j][2 * hr] * q_scale, dq[j][2 * hr + 1] * q_scale),
                             qraw, c, gate, gsum[hr], rsum[hr]);
      dq[j][2 * hr] = dqf.x;
      dq[j][2 * hr + 1] = dqf.y;
    }
  }
  store_gate_row_sums(gsum, rsum, s, bh, T_, row0, t);
  __syncwarp();  // every lane has read its raw Qf before the rows are overwritten
  stage_rows<T, D, kPitch>(stage, dq, 1.f, 1.f, lane);
  __syncwarp();
  T* out = static_cast<T*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
  store_rows<T, D, kPitch>(stage, out, p.dq_row_stride, m0 + warp * 16, T_, nullptr, 0, 1.f, 0.f,
                           lane);
}

/// fp32: dQf and the gate sums, one warp per query row.
template <int D, int R, bool kGated>
__global__ void __launch_bounds__(128)
    backward_dq_simt_kernel(const __grid_constant__ AttentionBackwardParams p, BackwardScratch s) {
  constexpr int kPerLane = (D + 31) / 32, kStd = D - R;
  const AttentionParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.y * 4 + warp;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  if (row >= f.seq) return;
  const float* q = static_cast<const float*>(f.q) + b * f.q_batch_stride + h * f.q_head_stride;
  const float* k = static_cast<const float*>(f.k) + b * f.k_batch_stride + h * f.k_head_stride;
  const float* v = static_cast<const float*>(f.v) + b * f.v_batch_stride + h * f.v_head_stride;
  const float* d_o =
      static_cast<const float*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride;
  const float2 gate = load_gates<kGated>(f.gates, h);
  const index_t ri = static_cast<index_t>(bh) * f.seq + row;
  const float lse = f.lse[ri], dlt = s.delta[ri];
  float qr[kPerLane], qh[kPerLane], od[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < D ? q[row * f.q_row_stride + d] : 0.f;
    qh[i] = qr[i] * (d < kStd ? gate.x : gate.y);
    od[i] = d < D ? d_o[row * p.do_row_stride + d] : 0.f;
    acc[i] = 0.f;
  }
  for (int j = 0; j <= row; ++j) {
    float sc = 0.f, dp = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        sc += qh[i] * k[j * f.k_row_stride + d];
        dp += od[i] * v[j * f.v_row_stride + d];
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      sc += __shfl_xor_sync(0xffffffffu, sc, off);
      dp += __shfl_xor_sync(0xffffffffu, dp, off);
    }
    const float ds = expf(sc * f.scale - lse) * (dp - dlt);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) acc[i] += ds * k[j * f.k_row_stride + d];
    }
  }
  const float q_scale = f.scale * (1.f - restart_alpha(f, h));
  float gsum = 0.f, rsum = 0.f;
  float* out = static_cast<float*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) {
      const float dqh = acc[i] * q_scale;
      (d < kStd ? gsum : rsum) += dqh * qr[i];
      out[row * p.dq_row_stride + d] = dqh * (d < kStd ? gate.x : gate.y);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    gsum += __shfl_xor_sync(0xffffffffu, gsum, off);
    rsum += __shfl_xor_sync(0xffffffffu, rsum, off);
  }
  if (lane == 0) {
    s.gs[ri] = gsum;
    s.gr[ri] = rsum;
  }
}

/// fp32: dKf and dV, one warp per key row.
template <int D, int R, bool kGated>
__global__ void __launch_bounds__(128)
    backward_dkdv_simt_kernel(const __grid_constant__ AttentionBackwardParams p,
                              BackwardScratch s) {
  constexpr int kPerLane = (D + 31) / 32, kStd = D - R;
  const AttentionParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int col = blockIdx.y * 4 + warp;  // key row j
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  if (col >= f.seq) return;
  const float* q = static_cast<const float*>(f.q) + b * f.q_batch_stride + h * f.q_head_stride;
  const float* k = static_cast<const float*>(f.k) + b * f.k_batch_stride + h * f.k_head_stride;
  const float* v = static_cast<const float*>(f.v) + b * f.v_batch_stride + h * f.v_head_stride;
  const float* d_o =
      static_cast<const float*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride;
  const float2 gate = load_gates<kGated>(f.gates, h);
  float kj[kPerLane], vj[kPerLane], dk[kPerLane], dv[kPerLane], gd[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    kj[i] = d < D ? k[col * f.k_row_stride + d] : 0.f;
    vj[i] = d < D ? v[col * f.v_row_stride + d] : 0.f;
    gd[i] = d < kStd ? gate.x : gate.y;
    dk[i] = dv[i] = 0.f;
  }
  for (int row = col; row < f.seq; ++row) {
    float sc = 0.f, dp = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        sc += q[row * f.q_row_stride + d] * gd[i] * kj[i];
        dp += d_o[row * p.do_row_stride + d] * vj[i];
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      sc += __shfl_xor_sync(0xffffffffu, sc, off);
      dp += __shfl_xor_sync(0xffffffffu, dp, off);
    }
    const index_t ri = static_cast<index_t>(bh) * f.seq + row;
    const float pv = expf(sc * f.scale - f.lse[ri]);
    const float ds = pv * (dp - s.delta[ri]);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        dk[i] += ds * q[row * f.q_row_stride + d] * gd[i];
        dv[i] += pv * d_o[row * p.do_row_stride + d];
      }
    }
  }
  const float alpha = restart_alpha(f, h);
  float* out_k = static_cast<float*>(p.dk) + b * p.dk_batch_stride + h * p.dk_head_stride;
  float* out_v = static_cast<float*>(p.dv) + b * p.dv_batch_stride + h * p.dv_head_stride;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) {
      out_k[col * p.dk_row_stride + d] = dk[i] * f.scale * (1.f - alpha);
      const float y = dv[i] * (1.f - alpha) + alpha * d_o[col * p.do_row_stride + d];
      out_v[col * p.dv_row_stride + d] = y;
    }
  }
}

/// dKf and dV (16-bit types, mma.sync) into p's gradients; the row pass ran before.
template <class T, int D, int R, bool kGated>
void launch_backward_dkdv_mma(const AttentionBackwardParams& p, cudaStream_t stream) {
  using Tile = FlashBackwardTile<D>;
  constexpr int kPitchBytes = Tile::kPitch * static_cast<int>(sizeof(T));
  constexpr int kSmem = (2 * Tile::kRows + 4 * Tile::kCols) * kPitchBytes + 4 * Tile::kCols * 4;
  auto kernel = backward_dkdv_kernel<T, D, R, kGated>;
  static const bool configured = [&] {
    set_smem_limit(kernel, kSmem);
    return true;
  }();
  (void)configured;
  const AttentionParams& f = p.fwd;
  const dim3 grid(f.batch * f.heads, (f.seq + Tile::kRows - 1) / Tile::kRows);
  kernel<<<grid, Tile::kThreads, kSmem, stream>>>(p, scratch_of(p));
  RA_CUDA_CHECK_LAUNCH();
}

/// dQf and the per-row gate sums (16-bit types, mma.sync); the row pass ran before.
template <class T, int D, int R, bool kGated>
void launch_backward_dq_mma(const AttentionBackwardParams& p, cudaStream_t stream) {
  using Tile = FlashBackwardTile<D>;
  constexpr int kPitchBytes = Tile::kPitch * static_cast<int>(sizeof(T));
  constexpr int kSmem = (2 * Tile::kRows + 4 * Tile::kCols) * kPitchBytes;
  auto kernel = backward_dq_kernel<T, D, R, kGated>;
  static const bool configured = [&] {
    set_smem_limit(kernel, kSmem);
    return true;
  }();
  (void)configured;
  const AttentionParams& f = p.fwd;
  const dim3 grid(f.batch * f.heads, (f.seq + Tile::kRows - 1) / Tile::kRows);
  kernel<<<grid, Tile::kThreads, kSmem, stream>>>(p, scratch_of(p));
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

/// Launches the backward specialised for <T, D, R, gated> on mma.sync (SIMT for fp32); p must
/// be validated. Gate mode (per layer / per head) and self-restart are run-time values here:
/// they only choose which gate to read and scale the epilogue, so more instantiations would
/// buy nothing.
template <class T, int D, int R, bool kGated>
void flash_backward(const AttentionBackwardParams& p, cudaStream_t stream) {
  static_assert(R >= 0 && R < D, "0 <= R < D");
  detail::launch_backward_rows<T, D>(p, stream);
  if constexpr (std::is_same_v<T, float>) {
    const AttentionParams& f = p.fwd;
    const detail::BackwardScratch s = detail::scratch_of(p);
    const dim3 grid(f.batch * f.heads, (f.seq + 3) / 4);
    detail::backward_dkdv_simt_kernel<D, R, kGated><<<grid, 128, 0, stream>>>(p, s);
    RA_CUDA_CHECK_LAUNCH();
    detail::backward_dq_simt_kernel<D, R, kGated><<<grid, 128, 0, stream>>>(p, s);
    RA_CUDA_CHECK_LAUNCH();
  } else {
    detail::launch_backward_dkdv_mma<T, D, R, kGated>(p, stream);
    detail::launch_backward_dq_mma<T, D, R, kGated>(p, stream);
  }
  detail::launch_backward_parameter_grads<T>(p, stream);
}

}  // namespace ra::cuda
