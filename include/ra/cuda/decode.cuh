// ra/cuda/decode.cuh — folded attention of a few new query rows over a KV cache: the decode
// kernel (split-KV, "flash-decoding").
//
// Qf, O are (B, H, T_q, D) with 1 <= T_q <= kDecodeMaxRows; Kf, V are the cache, (B, H,
// max_seq, D) strided views (AttentionParams::seq_k = max_seq rows behind each (b, h)). The
// keys of sequence b are its first n_b = seq_lens[b] rows (device memory, read at run time,
// so a captured CUDA graph sees the lengths grow; clamped to [0, max_seq]); they include the
// T_q new rows, so query row t is the token at key position n_b − T_q + t and attends to keys
// j <= n_b − T_q + t (the causal mask aligned bottom-right, as AttentionSpec describes).
//
//   grid (splits, B·H): block s of (b, h) takes keys [s·w, (s+1)·w), w = ⌈n_b / splits⌉
//   rounded up to a key tile, so the splits of a short sequence share its keys evenly.
//     Q̂ = Qf ⊙ g · log2(e)/√D          gated once, as the Q tile is loaded (fp32, shared)
//     per key tile (Kf, V in shared memory, 16-byte loads):
//       S = Q̂·Kfᵀ (fp32), -inf past each row's last key
//       m' = max(m, rowmax S),  P = 2^(S − m'),  l = l·2^(m − m') + rowsum P,
//       O = O·2^(m − m') + P·V
//   one split: the block finishes its rows itself; else each writes (m, l, O) to the
//   workspace and decode_combine_kernel merges the splits of a row in split order:
//     M = max_s m_s,  L = Σ_s l_s 2^(m_s − M),  O = Σ_s O_s 2^(m_s − M) / L
//   O' = (1 − α_h)·T(O) + α_h·V[own token]      (self-restart, optional; o_pre = T(O))
//   lse = ln 2·(M + log2 L)                     (optional; −inf for a row without keys)
// Every sum runs in a fixed order (no atomics), so equal inputs give equal bits.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include <ra/core/config.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/mma.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

// kDecodeMaxRows, decode_splits() and decode_workspace_floats(): ra/cuda/attention_params.cuh.

namespace detail {

template <class T, int D>
struct DecodeTraits {
  static constexpr int kThreads = 128;
  // Keys per tile: 64 for 16-bit T; 32 for fp32, which keeps the static shared memory (K and
  // V tiles, Q̂, the scores) under 48 KB at D = 128.
  static constexpr int kBlockN = sizeof(T) == 4 ? 32 : 64;
  static constexpr int kChunk = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte load
  // A row pitch of an odd number of 16-byte units: a quarter-warp's 16-byte reads of 8
  // consecutive rows fall in 8 different bank groups.
  static constexpr int kPitch = D + kChunk;
  // (row, d) accumulators per thread: rows·D pairs dealt round-robin over the threads.
  static constexpr int kPairs = (kDecodeMaxRows * D + kThreads - 1) / kThreads;
};

/// The kChunk elements of a 16-byte chunk as floats.
template <class T>
__device__ __forceinline__ void unpack_chunk(const uint4& raw, float* x) {
  if constexpr (sizeof(T) == 4) {
    x[0] = __uint_as_float(raw.x);
    x[1] = __uint_as_float(raw.y);
    x[2] = __uint_as_float(raw.z);
    x[3] = __uint_as_float(raw.w);
  } else {
    const std::uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = mma::unpack<T>(w[i]);
      x[2 * i] = f.x;
      x[2 * i + 1] = f.y;
    }
  }
}

/// Keys in cache for sequence b, clamped to the cache.
__device__ __forceinline__ int decode_keys(const AttentionParams& p, int b) {
  const int n = p.seq_lens[b];
  return n < 0 ? 0 : (n > p.seq_k ? p.seq_k : n);
}

/// Writes element d of query row t of (b, h) from the finished softmax: O = o_sum / l, the
/// restart mix with the row's own V, o_pre, and (for d = 0) lse. `own` is the row's key
/// position (< 0: none, no mix).
template <class T, bool kRestart>
__device__ __forceinline__ void decode_store(const AttentionParams& p, int b, int h, int t, int d,
                                             int own, float o_sum, float m, float l) {
  const float o = l > 0.f ? o_sum / l : 0.f;
  const T o_t = T(o);
  const index_t ob = static_cast<index_t>(b), oh = static_cast<index_t>(h);
  T out = o_t;
  if constexpr (kRestart) {
    const float alpha = effective_restart(p.restart.a[h]);
    const float v =
        own >= 0
            ? static_cast<float>(static_cast<const T*>(
                  p.v)[ob * p.v_batch_stride + oh * p.v_head_stride + own * p.v_row_stride + d])
            : 0.f;
    out = T((1.f - alpha) * static_cast<float>(o_t) + alpha * v);
    if (p.o_pre != nullptr)
      static_cast<T*>(p.o_pre)[ob * p.o_pre_batch_stride + oh * p.o_pre_head_stride +
                               t * p.o_pre_row_stride + d] = o_t;
  }
  static_cast<T*>(p.o)[ob * p.o_batch_stride + oh * p.o_head_stride + t * p.o_row_stride + d] = out;
  if (d == 0 && p.lse != nullptr)
    p.lse[(ob * p.heads + oh) * p.seq + t] =
        l > 0.f ? (m + __log2f(l)) * 0.69314718055994530942f : -INFINITY;
}

template <class T, int D, int R, GateMode G, bool kRestart>
__global__ void __launch_bounds__(DecodeTraits<T, D>::kThreads)
    decode_kernel(const __grid_constant__ AttentionParams p) {
  using Tr = DecodeTraits<T, D>;
  constexpr int kThreads = Tr::kThreads, kBlockN = Tr::kBlockN, kChunk = Tr::kChunk;
  constexpr int kPitch = Tr::kPitch, kStd = D - R;
  __shared__ __align__(16) T sK[kBlockN * kPitch];
  __shared__ __align__(16) T sV[kBlockN * kPitch];
  __shared__ __align__(16) float sQ[kDecodeMaxRows * D];  // Q̂ · log2(e)/√D
  __shared__ float sS[kDecodeMaxRows * kBlockN];          // scores, then P
  __shared__ float sM[kDecodeMaxRows], sL[kDecodeMaxRows], sCorr[kDecodeMaxRows];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int split = blockIdx.x, splits = gridDim.x;
  const int b = blockIdx.y / p.heads, h = blockIdx.y % p.heads;
  const int rows = p.seq;
  const int n_keys = decode_keys(p, b);
  const int offset = n_keys - rows;  // row t sees keys j <= offset + t
  int per_split = (n_keys + splits - 1) / splits;
  per_split = (per_split + kBlockN - 1) / kBlockN * kBlockN;
  const int k_begin = split * per_split;
  const int k_end = min(n_keys, k_begin + per_split);

  const index_t bb = b, hh = h;
  const T* q = static_cast<const T*>(p.q) + bb * p.q_batch_stride + hh * p.q_head_stride;
  const T* k = static_cast<const T*>(p.k) + bb * p.k_batch_stride + hh * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + bb * p.v_batch_stride + hh * p.v_head_stride;

  // Q̂: the gates applied once, on load, with the softmax's scale folded in.
  const float2 gate = load_gates<G != GateMode::none>(p.gates, h);
  const float c = p.scale * 1.44269504088896340736f;
  for (int i = tid; i < rows * D; i += kThreads) {
    const int t = i / D, d = i % D;
    sQ[i] = static_cast<float>(q[t * p.q_row_stride + d]) * (d < kStd ? gate.x : gate.y) * c;
  }
  if (tid < rows) {
    sM[tid] = -INFINITY;
    sL[tid] = 0.f;
  }
  float acc[Tr::kPairs];
#pragma unroll
  for (int i = 0; i < Tr::kPairs; ++i) acc[i] = 0.f;
  __syncthreads();  // Q̂, m and l before any use (a split without keys reads m and l at once)

  for (int n0 = k_begin; n0 < k_end; n0 += kBlockN) {
    // Kf and V tiles, 16 bytes a load; rows past the split's end are zeros.
    constexpr int kChunksPerRow = D / kChunk;
    for (int i = tid; i < kBlockN * kChunksPerRow; i += kThreads) {
      const int r = i / kChunksPerRow, col = (i % kChunksPerRow) * kChunk;
      const int key = n0 + r;
      uint4 kc = make_uint4(0, 0, 0, 0), vc = kc;
      if (key < k_end) {
        kc = *reinterpret_cast<const uint4*>(k + static_cast<index_t>(key) * p.k_row_stride + col);
        vc = *reinterpret_cast<const uint4*>(v + static_cast<index_t>(key) * p.v_row_stride + col);
      }
      *reinterpret_cast<uint4*>(sK + r * kPitch + col) = kc;
      *reinterpret_cast<uint4*>(sV + r * kPitch + col) = vc;
    }
    __syncthreads();

    // S = Q̂·Kfᵀ in the log2 domain, masked past each row's last key.
    for (int i = tid; i < rows * kBlockN; i += kThreads) {
      const int t = i / kBlockN, j = i % kBlockN, key = n0 + j;
      float s = -INFINITY;
      if (key < k_end && key <= offset + t) {
        const float* qr = sQ + t * D;
        const T* kr = sK + j * kPitch;
        s = 0.f;
#pragma unroll
        for (int col = 0; col < D; col += kChunk) {
          float x[kChunk];
          unpack_chunk<T>(*reinterpret_cast<const uint4*>(kr + col), x);
#pragma unroll
          for (int e = 0; e < kChunk; ++e) s = fmaf(qr[col + e], x[e], s);
        }
      }
      sS[i] = s;
    }
    __syncthreads();

    // Online softmax, one warp per row: m, l, and the factor that rescales O.
    for (int t = warp; t < rows; t += kThreads / 32) {
      float* st = sS + t * kBlockN;
      float mx = -INFINITY;
      for (int j = lane; j < kBlockN; j += 32) mx = fmaxf(mx, st[j]);
#pragma unroll
      for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = sM[t];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int j = lane; j < kBlockN; j += 32) {
        const float pj = m_new == -INFINITY ? 0.f : exp2f(st[j] - m_new);
        st[j] = pj;
        sum += pj;
      }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      __syncwarp();
      if (lane == 0) {
        const float corr = m_old == -INFINITY ? 0.f : exp2f(m_old - m_new);
        sCorr[t] = corr;
        sL[t] = sL[t] * corr + sum;
        sM[t] = m_new;
      }
    }
    __syncthreads();

    // O = O·corr + P·V for this thread's (row, d) pairs.
#pragma unroll
    for (int i = 0; i < Tr::kPairs; ++i) {
      const int idx = tid + i * kThreads;
      if (idx < rows * D) {
        const int t = idx / D, d = idx % D;
        const float* pt = sS + t * kBlockN;
        float a = acc[i] * sCorr[t];
#pragma unroll 8
        for (int j = 0; j < kBlockN; ++j)
          a = fmaf(pt[j], static_cast<float>(sV[j * kPitch + d]), a);
        acc[i] = a;
      }
    }
    __syncthreads();
  }

  if (splits == 1) {
#pragma unroll
    for (int i = 0; i < Tr::kPairs; ++i) {
      const int idx = tid + i * kThreads;
      if (idx < rows * D) {
        const int t = idx / D, d = idx % D;
        decode_store<T, kRestart>(p, b, h, t, d, offset + t, acc[i], sM[t], sL[t]);
      }
    }
    return;
  }
  // Partials of this split: O (unnormalised) and (m, l) per row.
  const index_t row0 = static_cast<index_t>(blockIdx.y) * rows;
  float* ws_o = p.split_ws;
  float* ws_ml = p.split_ws + static_cast<index_t>(gridDim.y) * rows * splits * D;
#pragma unroll
  for (int i = 0; i < Tr::kPairs; ++i) {
    const int idx = tid + i * kThreads;
    if (idx < rows * D) {
      const int t = idx / D, d = idx % D;
      ws_o[((row0 + t) * splits + split) * D + d] = acc[i];
    }
  }
  if (tid < rows) {
    ws_ml[((row0 + tid) * splits + split) * 2] = sM[tid];
    ws_ml[((row0 + tid) * splits + split) * 2 + 1] = sL[tid];
  }
}

/// Merges the splits of one query row (block (b·H + h)·T_q + t, thread d) in split order.
template <class T, int D, bool kRestart>
__global__ void __launch_bounds__(D)
    decode_combine_kernel(const __grid_constant__ AttentionParams p) {
  const int rows = p.seq, splits = p.kv_splits;
  const int row = blockIdx.x, d = threadIdx.x;
  const int bh = row / rows, t = row % rows;
  const int b = bh / p.heads, h = bh % p.heads;
  const index_t n_rows = static_cast<index_t>(p.batch) * p.heads * rows;
  const float* ws_o = p.split_ws + static_cast<index_t>(row) * splits * D;
  const float* ws_ml = p.split_ws + n_rows * splits * D + static_cast<index_t>(row) * splits * 2;
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, ws_ml[2 * s]);
  float l = 0.f, o = 0.f;
  if (m != -INFINITY) {
    for (int s = 0; s < splits; ++s) {
      const float ms = ws_ml[2 * s];
      const float f = ms == -INFINITY ? 0.f : exp2f(ms - m);
      l = fmaf(ws_ml[2 * s + 1], f, l);
      o = fmaf(ws_o[s * D + d], f, o);
    }
  }
  const int own = decode_keys(p, b) - rows + t;
  decode_store<T, kRestart>(p, b, h, t, d, own, o, m, l);
}

}  // namespace detail

/// Launches the decode kernel of <T, D, R, G, restart> (and with several splits the combine)
/// for p, already validated (attention_decode in ra/cuda/attention.cuh).
template <class T, int D, int R, GateMode G, bool kRestart>
void decode_forward(const AttentionParams& p, cudaStream_t stream) {
  using Tr = detail::DecodeTraits<T, D>;
  const int splits = p.kv_splits > 1 ? p.kv_splits : 1;
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(p.batch * p.heads));
  detail::decode_kernel<T, D, R, G, kRestart><<<grid, Tr::kThreads, 0, stream>>>(p);
  RA_CUDA_CHECK_LAUNCH();
  if (splits > 1) {
    const auto rows = static_cast<unsigned>(p.batch * p.heads * p.seq);
    detail::decode_combine_kernel<T, D, kRestart><<<rows, D, 0, stream>>>(p);
    RA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace ra::cuda
