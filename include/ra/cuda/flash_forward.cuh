// ra/cuda/flash_forward.cuh — causal flash attention forward for the folded RA layout.
//
// One CTA computes kBlockM query rows of one (b, h); each warp owns 16 of those rows.
//
//   Q̂  = Qf[rows] ⊙ g           g_d = g_std (d < D-R) or g_rec (d >= D-R), applied once,
//                                 in registers, as the Q tile is loaded
//   for each key tile n ≤ diagonal (K_n, V_n double-buffered in shared memory):
//     S  = Q̂ · K_nᵀ               tensor cores, fp32 accumulate
//     S  = -inf where key > query or key >= T
//     m' = max(m, rowmax(S)·c)    c = log2(e)/sqrt(D)
//     P  = 2^(S·c - m'),  l = l·2^(m-m') + rowsum(P),  O = O·2^(m-m') + P·V_n
//   O' = (1-α_h)·O/l + α_h·V[rows]   (self-restart, optional)
//   lse = ln 2 · (m + log2 l)         natural-log log-sum-exp of the scaled logits
//
// Qf, Kf, V are read in place from any (B,H,T,D) strides (the fused (B,T,3C) buffer gives
// (3TC, D, 3C, 1)); O' is written through its own strides ((TC, D, C, 1) for (B,T,C)).
// fp16/bf16 run on the tensor cores through mma.sync (sm_80+, Hopper included); fp32 runs a
// SIMT path that is correct but slower. (The wgmma variant once grafted into this kernel is
// gone: docs/NOTES.md keeps what it measured and its D = 64 bug.)
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/forward_path.cuh>
#include <ra/cuda/mma.cuh>
#include <ra/cuda/tile_table.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

// The tiles (FlashTile, FlashForwardTraits<D>) and the measurements that chose them:
// ra/cuda/tile_table.cuh.

namespace detail {

/// Effective gates (g_std, g_rec) of head h; (1, 1) without gates. Per layer or per head
/// only chooses which value is read (Gates::index), once per CTA.
template <bool kGated>
__device__ __forceinline__ float2 load_gates(const Gates& gates, int h) {
  if constexpr (kGated) {
    const int i = gates.index(h);
    return make_float2(effective_gate(gates.w_std[i], gates.param),
                       effective_gate(gates.w_rec[i], gates.param));
  } else {
    return make_float2(1.f, 1.f);
  }
}

/// A packed pair of Qf elements at columns (col, col + 1) times their gates: g_std before
/// column kStd = D - R, g_rec from there on. This is where Q̂ = Qf ⊙ g is formed.
template <class T, int kStd>
__device__ __forceinline__ std::uint32_t gate_pair(std::uint32_t pair, int col, float2 gate) {
  const float2 x = mma::unpack<T>(pair);
  return mma::pack<T>(x.x * (col < kStd ? gate.x : gate.y),
                      x.y * (col + 1 < kStd ? gate.x : gate.y));
}

/// Q̂ as the A fragments of one warp's 16 rows (row0 in a shared tile of pitch kPitch),
/// gated once in registers.
template <class T, int D, int kPitch, int kStd, bool kGated>
__device__ __forceinline__ void load_q_fragments(std::uint32_t (&qf)[D / 16][4], const T* tile,
                                                 int row0, float2 gate, int lane) {
  const int mi = lane / 8, r = lane % 8, t = lane % 4;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    mma::ldmatrix_x4(qf[kk], tile + (row0 + (mi & 1) * 8 + r) * kPitch + kk * 16 + (mi >> 1) * 8);
    if constexpr (kGated) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        qf[kk][i] = gate_pair<T, kStd>(qf[kk][i], kk * 16 + (i >> 1) * 8 + 2 * t, gate);
    }
  }
}

/// Writes a warp's 16 x D accumulators (fragment layout) into its rows of a shared tile,
/// rows g and g + 8 scaled by s0 and s1, rounded to T.
template <class T, int D, int kPitch>
__device__ __forceinline__ void stage_rows(T* rows, const float (&acc)[D / 8][4], float s0,
                                           float s1, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    *reinterpret_cast<std::uint32_t*>(rows + g * kPitch + j * 8 + 2 * t) =
        mma::pack<T>(acc[j][0] * s0, acc[j][1] * s0);
    *reinterpret_cast<std::uint32_t*>(rows + (g + 8) * kPitch + j * 8 + 2 * t) =
        mma::pack<T>(acc[j][2] * s1, acc[j][3] * s1);
  }
}

/// The end of the online softmax for this thread's rows row0 and row0 + 8, each spread over
/// the 4 threads of a quad (the mma.sync and wgmma accumulator layouts alike): l summed over
/// the quad, inv_l = 1/l (0 for a row without keys), and lse = ln 2·(m + log2 l) stored where
/// p asks for it (m, l in the log2 domain of the scaled logits).
__device__ __forceinline__ void finish_softmax(const AttentionParams& p, int b, int h, int row0,
                                               const float (&m_run)[2], const float (&l_run)[2],
                                               float (&inv_l)[2], int t) {
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float l = l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv_l[hr] = l > 0.f ? 1.f / l : 0.f;
    const int row = row0 + hr * 8;
    if (p.lse != nullptr && t == 0 && row < p.seq) {
      p.lse[(static_cast<index_t>(b) * p.heads + h) * p.seq + row] =
          l > 0.f ? (m_run[hr] + __log2f(l)) * 0.69314718055994530942f : -INFINITY;
    }
  }
}

/// Stores a warp's 16 staged rows (pitch kPitch) from row row0 on as 16-byte chunks, each
/// element keep · x + mix · extra[row] where extra is not null (self-restart's V, dV's
/// α dO'); rows at or past seq are skipped.
template <class T, int D, int kPitch>
__device__ __forceinline__ void store_rows(const T* staged, T* out, index_t stride, int row0,
                                           int seq, const T* extra, index_t extra_stride,
                                           float keep, float mix, int lane) {
  constexpr int kChunksPerRow = D / 8;
  for (int i = lane; i < 16 * kChunksPerRow; i += 32) {
    const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * 8;
    const int row = row0 + r;
    if (row >= seq) continue;
    uint4 chunk = *reinterpret_cast<const uint4*>(staged + r * kPitch + c);
    if (extra != nullptr) {
      const uint4 ev = *reinterpret_cast<const uint4*>(extra + row * extra_stride + c);
      std::uint32_t* oc = reinterpret_cast<std::uint32_t*>(&chunk);
      const std::uint32_t* ec = reinterpret_cast<const std::uint32_t*>(&ev);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 x = mma::unpack<T>(oc[e]);
        const float2 y = mma::unpack<T>(ec[e]);
        oc[e] = mma::pack<T>(keep * x.x + mix * y.x, keep * x.y + mix * y.y);
      }
    }
    *reinterpret_cast<uint4*>(out + row * stride + c) = chunk;
  }
}

/// Copies `rows` rows of D elements (row stride `stride`) into shared memory with pitch
/// kPitch; rows at or past `valid_rows` are zero-filled. One commit group is NOT closed here.
template <class T, int D, int kPitch, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(T* smem, const T* gmem, index_t stride, int valid_rows,
                                          int tid) {
  constexpr int kChunksPerRow = D / 8;  // 16-byte chunks
  constexpr int kChunks = kRows * kChunksPerRow;
#pragma unroll
  for (int i = tid; i < kChunks; i += kThreads) {
    const int r = i / kChunksPerRow;
    const int c = (i % kChunksPerRow) * 8;
    const bool valid = r < valid_rows;
    const T* src = valid ? gmem + r * stride + c : gmem;
    mma::cp_async_16(smem + r * kPitch + c, src, valid ? 16 : 0);
  }
}

template <class T, int D, int R, GateMode G, bool kRestart, class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    flash_forward_kernel(const __grid_constant__ AttentionParams p) {
  constexpr int kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kPitch = Tr::kPitch;
  constexpr int kThreads = Tr::kThreads;
  constexpr int kStd = D - R;  // columns [0, kStd) carry g_std, the rest g_rec

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // (kBlockM, kPitch)
  T* sK = sQ + kBlockM * kPitch;           // 2 x kKvTile
  T* sV = sK + 2 * Tr::kKvTile;            // 2 x kKvTile

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row group and column pair
  const int bh = blockIdx.x;
  const int b = bh / p.heads, h = bh % p.heads;
  // Heaviest (most key tiles) query blocks are launched first.
  const int m_block = gridDim.y - 1 - blockIdx.y;
  const int m0 = m_block * kBlockM;
  const int T_ = p.seq;

  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;

  const int n_end = min(T_, m0 + kBlockM);  // causal: keys < last query row + 1
  const int n_tiles = (n_end + kBlockN - 1) / kBlockN;

  // Prologue: Q, K_0, V_0 in one group.
  load_tile<T, D, kPitch, kBlockM, kThreads>(sQ, q + m0 * p.q_row_stride, p.q_row_stride, T_ - m0,
                                             tid);
  load_tile<T, D, kPitch, kBlockN, kThreads>(sK, k, p.k_row_stride, T_, tid);
  load_tile<T, D, kPitch, kBlockN, kThreads>(sV, v, p.v_row_stride, T_, tid);
  mma::cp_async_commit();

  const float2 gate = load_gates<G != GateMode::none>(p.gates, h);
  const float scale_log2 = p.scale * 1.44269504088896340736f;
  const int row0 = m0 + warp * 16 + g;  // this thread's rows: row0 and row0 + 8

  std::uint32_t qf[D / 16][4];  // Q̂ as A fragments
  float o[D / 8][4];            // O accumulator, D/8 n-tiles
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;

  for (int n = 0; n < n_tiles; ++n) {
    const int n0 = n * kBlockN;
    const int buf = n & 1;
    if (n + 1 < n_tiles) {  // prefetch the next K/V tile into the other buffer
      const int nn = n0 + kBlockN;
      load_tile<T, D, kPitch, kBlockN, kThreads>(
          sK + (buf ^ 1) * Tr::kKvTile, k + nn * p.k_row_stride, p.k_row_stride, T_ - nn, tid);
      load_tile<T, D, kPitch, kBlockN, kThreads>(
          sV + (buf ^ 1) * Tr::kKvTile, v + nn * p.v_row_stride, p.v_row_stride, T_ - nn, tid);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    __syncthreads();

    if (n == 0)  // Q̂ fragments, gated once
      load_q_fragments<T, D, kPitch, kStd, G != GateMode::none>(qf, sQ, warp * 16, gate, lane);

    // Tiles wholly above the diagonal of this warp add nothing.
    const int first_row = m0 + warp * 16;
    if (n0 <= first_row + 15) {
      const T* sKb = sK + buf * Tr::kKvTile;
      const T* sVb = sV + buf * Tr::kKvTile;
      float s[kBlockN / 8][4];
      const int mi = lane / 8, r = lane % 8;
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int jj = 0; jj < kBlockN / 16; ++jj) {
          std::uint32_t bk[4];
          mma::ldmatrix_x4(bk,
                           sKb + (jj * 16 + (mi >> 1) * 8 + r) * kPitch + kk * 16 + (mi & 1) * 8);
          mma::mma_16816<T>(s[2 * jj], qf[kk], bk[0], bk[1]);
          mma::mma_16816<T>(s[2 * jj + 1], qf[kk], bk[2], bk[3]);
        }
      }

      // Diagonal or ragged tile.
      if (n0 + kBlockN > first_row || n0 + kBlockN > T_) {
#pragma unroll
        for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int col = n0 + j * 8 + 2 * t + (i & 1);
            const int row = row0 + (i >> 1) * 8;
            if (col > row || col >= T_) s[j][i] = -INFINITY;
          }
        }
      }

      // Online softmax; each row is spread over the 4 threads of a quad.
      float corr[2];
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kBlockN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * hr], s[j][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[hr], mx * scale_log2);
        // A row with no valid key so far keeps m = -inf; use 0 so 2^(-inf - 0) = 0.
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        corr[hr] = mma::exp2_approx(m_run[hr] - m_use);
        m_run[hr] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < kBlockN / 8; ++j) {
          s[j][2 * hr] = mma::exp2_approx(s[j][2 * hr] * scale_log2 - m_use);
          s[j][2 * hr + 1] = mma::exp2_approx(s[j][2 * hr + 1] * scale_log2 - m_use);
          sum += s[j][2 * hr] + s[j][2 * hr + 1];
        }
        l_run[hr] = l_run[hr] * corr[hr] + sum;
      }
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[j][0] *= corr[0];
        o[j][1] *= corr[0];
        o[j][2] *= corr[1];
        o[j][3] *= corr[1];
      }

      // O += P · V: the S accumulators are re-packed as A fragments in place.
      std::uint32_t pa[kBlockN / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        pa[kk][0] = mma::pack<T>(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = mma::pack<T>(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = mma::pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = mma::pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      }
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
#pragma unroll
        for (int dd = 0; dd < D / 16; ++dd) {
          std::uint32_t bv[4];
          mma::ldmatrix_x4_trans(
              bv, sVb + (kk * 16 + (mi & 1) * 8 + r) * kPitch + dd * 16 + (mi >> 1) * 8);
          mma::mma_16816<T>(o[2 * dd], pa[kk], bv[0], bv[1]);
          mma::mma_16816<T>(o[2 * dd + 1], pa[kk], bv[2], bv[3]);
        }
      }
    }
    __syncthreads();  // the buffer just read is refilled next iteration
  }

  // Epilogue: normalise, stage the warp's 16 rows in its own slice of sQ, then store
  // 16-byte chunks (mixing in V for self-restart).
  float inv_l[2];
  finish_softmax(p, b, h, row0, m_run, l_run, inv_l, t);
  T* sO = sQ + warp * 16 * kPitch;
  stage_rows<T, D, kPitch>(sO, o, inv_l[0], inv_l[1], lane);
  __syncwarp();
  const float alpha = kRestart ? effective_restart(p.restart.a[h]) : 0.f;
  if (kRestart && p.o_pre != nullptr) {  // O before the mix, for the backward
    T* pre = static_cast<T*>(p.o_pre) + b * p.o_pre_batch_stride + h * p.o_pre_head_stride;
    store_rows<T, D, kPitch>(sO, pre, p.o_pre_row_stride, m0 + warp * 16, T_, nullptr, 0, 1.f, 0.f,
                             lane);
  }
  T* out = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  store_rows<T, D, kPitch>(sO, out, p.o_row_stride, m0 + warp * 16, T_, kRestart ? v : nullptr,
                           p.v_row_stride, 1.f - alpha, alpha, lane);
}

/// fp32 path: one warp per query row, lanes across D, online softmax over keys 0..row.
template <int D, int R, GateMode G, bool kRestart>
__global__ void __launch_bounds__(128)
    flash_forward_simt_kernel(const __grid_constant__ AttentionParams p) {
  constexpr int kPerLane = (D + 31) / 32;
  constexpr int kStd = D - R;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.y * 4 + warp;
  const int bh = blockIdx.x, b = bh / p.heads, h = bh % p.heads;
  if (row >= p.seq) return;
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
  const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
  const float2 gate = load_gates<G != GateMode::none>(p.gates, h);

  // The sums over keys (acc = Σ e·V and l = Σ e) are compensated (Kahan): with one warp per
  // row this path is not compute-bound, and it keeps the fp32 result within a few ulp of the
  // exact one however long the row, instead of carrying u·‖partial sums‖ of rounding.
  float qd[kPerLane], acc[kPerLane], acc_c[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qd[i] = d < D ? q[row * p.q_row_stride + d] * (d < kStd ? gate.x : gate.y) : 0.f;
    acc[i] = acc_c[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f, l_c = 0.f;
  // sum += x with the compensation c (sum + c is the running total).
  auto add = [](float& sum, float& c, float x) {
    const float y = x - c;
    const float t = sum + y;
    c = (t - sum) - y;
    sum = t;
  };
  for (int j = 0; j <= row; ++j) {
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) dot += qd[i] * k[j * p.k_row_stride + d];
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float z = dot * p.scale;
    if (z > m) {  // a new maximum: rescale the sums and their compensations
      const float corr = expf(m - z);
      l *= corr;
      l_c *= corr;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        acc[i] *= corr;
        acc_c[i] *= corr;
      }
      m = z;
    }
    const float e = expf(z - m);
    add(l, l_c, e);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) add(acc[i], acc_c[i], __fmul_rn(e, v[j * p.v_row_stride + d]));
    }
  }
  const float alpha = kRestart ? effective_restart(p.restart.a[h]) : 0.f;
  float* out = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  float* pre = kRestart && p.o_pre != nullptr
                   ? static_cast<float*>(p.o_pre) + b * p.o_pre_batch_stride +
                         h * p.o_pre_head_stride + row * p.o_pre_row_stride
                   : nullptr;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) {
      float y = acc[i] / l;
      if (pre != nullptr) pre[d] = y;
      if (kRestart) y = (1.f - alpha) * y + alpha * v[row * p.v_row_stride + d];
      out[row * p.o_row_stride + d] = y;
    }
  }
  if (p.lse != nullptr && lane == 0)
    p.lse[(static_cast<index_t>(b) * p.heads + h) * p.seq + row] = m + logf(l);
}

}  // namespace detail

/// Launches the forward kernel with tile traits Tr. p must be validated
/// (ra::cuda::attention_forward does that); D and R must match p.
template <class T, int D, int R, GateMode G, bool kRestart, class Tr>
void launch_flash_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(R >= 0 && R < D, "0 <= R < D");
  static_assert(Tr::kHeadDim == D, "tile traits for another head dim");
  auto kernel = detail::flash_forward_kernel<T, D, R, G, kRestart, Tr>;
  constexpr int kSmem = Tr::kSmemElems * static_cast<int>(sizeof(T));
  // Raise the dynamic shared-memory limit once per instantiation (not a stream operation,
  // so it is also safe when the first call happens inside graph capture).
  static const bool configured = [&] {
    RA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    return true;
  }();
  (void)configured;
  const dim3 grid(p.batch * p.heads, (p.seq + Tr::kBlockM - 1) / Tr::kBlockM);
  kernel<<<grid, Tr::kThreads, kSmem, stream>>>(p);
  RA_CUDA_CHECK_LAUNCH();
}

/// The forward kernel specialised for <T, D, R, G, restart>. p.path has one tensor-core
/// path to choose today (mma.sync, also the automatic choice); the sm_90a kernels of the
/// Hopper issue will add theirs.
template <class T, int D, int R, GateMode G, bool kRestart>
void flash_forward(const AttentionParams& p, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    const dim3 grid(p.batch * p.heads, (p.seq + 3) / 4);
    detail::flash_forward_simt_kernel<D, R, G, kRestart><<<grid, 128, 0, stream>>>(p);
    RA_CUDA_CHECK_LAUNCH();
  } else {
    launch_flash_forward<T, D, R, G, kRestart, FlashForwardTraits<D>>(p, stream);
  }
}

}  // namespace ra::cuda
