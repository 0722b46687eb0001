// ra/cuda/sm90/flash_backward.cuh — the sm_90a attention backward for the folded RA layout:
// warp-specialised dKf/dV and dQf passes (TMA loads into a shared-memory ring, wgmma on the
// tensor cores), with the row pass and the parameter gradients the mma.sync backward uses too
// (ra/cuda/backward_passes.cuh; the formulas: ra/cuda/sm80/flash_backward.cuh).
//
// dK/dV: one CTA per kBlockN = 64·kConsumers keys of one (b, h), 1 + kConsumers warpgroups:
//
//   producer (warpgroup 0): thread 0 issues TMA copies of the CTA's K and V tiles once, then
//     of Q_m and dO'_m (kBlockM queries) for m = the diagonal block … the last, into a
//     kStages ring; warp 1 writes the same rows' lse (log2 units) and Δ into the stage beside
//     them. full[s] completes on the TMA bytes and warp 1's 32 arrivals, empty[s] when every
//     consumer thread is done with stage s.
//   consumer c (warpgroups 1..kConsumers, keys k0 = n0 + 64c .. k0 + 63 each), per stage:
//     Q̂ = Qf ⊙ g                 the consumers gate half of the stage's rows each, in place
//                                 (then fence.proxy.async and a named barrier of both)
//     Sᵀ = Kf[keys] · Q̂ᵀ         wgmma SS, m64n64k16 (the keys are M: no transposed operand)
//     dP'ᵀ = V[keys] · dO'ᵀ      wgmma SS
//     Pᵀ = 2^(Sᵀ·c − lse₂),  dSᵀ = Pᵀ ⊙ (dP'ᵀ − Δ)   masked where query < key or query ≥ T
//     dV += Pᵀ · dO',  dK += dSᵀ · Q̂   wgmma RS (A from registers), dO' and Q̂ read N-major
//   epilogue: dKf = (1 − α)/√D · dK, dV = (1 − α)·dV + α·dO'[keys], staged and stored as the
//     mma.sync kernel does.
//
// dQ: one CTA per kBlockM = 64·kConsumers queries of one (b, h), 1 + kConsumers warpgroups:
//
//   producer (warpgroup 0, thread 0): TMA copies of the CTA's Qf and dO' tiles once, then of
//     K_n and V_n (kBlockN keys) for n = 0 … the diagonal block into a kStages ring; full[s]
//     completes on the TMA bytes, empty[s] when every consumer thread is done with stage s.
//   consumer c (warpgroups 1..kConsumers, queries r0 = m0 + 64c .. r0 + 63 each):
//     Q̂ = Qf ⊙ g                 gated once, in place, its own 64 rows (as the forward does)
//     per stage, unless every key of it lies past the consumer's last query:
//       S = Q̂ · Kfᵀ,  dP' = dO' · Vᵀ      wgmma SS (the forward's S product, twice)
//       P = 2^(S·c − lse₂),  dS = P ⊙ (dP' − Δ)   masked where key > query or key ≥ T
//       dQ̂ += dS · Kf            wgmma RS, Kf read N-major (the forward's P·V product)
//   epilogue: dQ̂ ·= (1 − α)/√D; the per-row gate sums Σ dQ̂ ⊙ Qf split at D − R (raw Qf read
//     back from global memory) into the scratch the mma.sync dQ kernel writes; dQf = g ⊙ dQ̂
//     staged and stored in rows of 16-byte chunks.
//
// Deterministic: every dKf/dV/dQf element and every per-row gate sum is one CTA's fixed-order
// sum; no atomics, and the head sums after them keep their fixed order. Head dims 64 and 128
// (one 128-byte swizzle atom of 64 columns per box, as the sm_90a forward's). Without sm_90a
// code the kernel bodies are empty and flash_backward_refusal() says why.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include <ra/cuda/backward_params.cuh>
#include <ra/cuda/backward_passes.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/mma.cuh>
#include <ra/cuda/sm80/flash_backward.cuh>
#include <ra/cuda/sm90/flash_forward.cuh>
#include <ra/cuda/sm90/support.cuh>
#include <ra/cuda/sm90/tma.cuh>
#include <ra/cuda/wgmma.cuh>

namespace ra::cuda::sm90 {

/// Tile shape of the sm_90a dK/dV pass for head dim D: two consumer warpgroups of 64 keys
/// each against kBlockM = 64 queries per step (the Sᵀ and dP'ᵀ accumulators, 32 floats each,
/// beside dK and dV's D floats each fit the 240 registers of a consumer at D = 128), a 2-stage
/// ring. Not tuned yet: the first kernel is the simple one (docs/NOTES.md, "The sm_90a
/// backward").
template <int D>
struct BackwardTile {
  static constexpr int kHeadDim = D;
  static constexpr int kConsumers = 2;
  static constexpr int kBlockN = 64 * kConsumers;  // keys per CTA
  static constexpr int kBlockM = 64;               // queries per step
  static constexpr int kStages = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kConsumerRegs = 240;
  static constexpr int kProducerRegs = 24;
  static_assert(D == 64 || D == 128, "the sm_90a backward takes D = 64 and 128");
  static constexpr int kAtom = 64;  // columns per 128-byte swizzle atom
  static constexpr int kSwizzleBytes = kAtom * 2;
  static constexpr int kAtoms = D / kAtom;
  static constexpr int kKVBytes = kBlockN * D * 2;  // the K tile, and the V tile
  static constexpr int kQBytes = kBlockM * D * 2;   // one stage of Q, and of dO'
  static constexpr int kPitch = D + 8;              // the output staging tile (16-byte rows)
  static constexpr int kOutBytes = kBlockN * kPitch * 2;
  static constexpr int kRowBytes = kStages * kBlockM * 4;  // lse₂ (and Δ) of every stage
  static constexpr int kBarriers = 1 + 2 * kStages;
  static constexpr int kSmemBytes = 1024 /* alignment slack */ + 2 * kKVBytes +
                                    2 * kStages * kQBytes + kOutBytes + 2 * kRowBytes +
                                    8 * kBarriers;
  static_assert(kKVBytes % 1024 == 0 && kQBytes % 1024 == 0 && kOutBytes % 16 == 0,
                "tile alignment");
  static_assert(kBlockN % kBlockM == 0, "a key block starts a query block");
};

/// Tile shape of the sm_90a dQ pass for head dim D: two consumer warpgroups of 64 queries each
/// against kBlockN = 64 keys per step (S and dP' accumulators, 32 floats each, the dS fragments
/// and dQ's D floats fit a consumer's 240 registers at D = 128; 128 keys per step would not),
/// a 2-stage ring of K and V. Not tuned yet (docs/NOTES.md, "The sm_90a dQ pass").
template <int D>
struct BackwardDqTile {
  static constexpr int kHeadDim = D;
  static constexpr int kConsumers = 2;
  static constexpr int kBlockM = 64 * kConsumers;  // queries per CTA
  static constexpr int kBlockN = 64;               // keys per step
  static constexpr int kStages = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kConsumerRegs = 240;
  static constexpr int kProducerRegs = 24;
  static_assert(D == 64 || D == 128, "the sm_90a backward takes D = 64 and 128");
  static constexpr int kAtom = 64;  // columns per 128-byte swizzle atom
  static constexpr int kSwizzleBytes = kAtom * 2;
  static constexpr int kAtoms = D / kAtom;
  static constexpr int kQBytes = kBlockM * D * 2;   // the Q̂ tile, and the dO' tile
  static constexpr int kKVBytes = kBlockN * D * 2;  // one stage of K, and of V
  static constexpr int kPitch = D + 8;              // the output staging tile (16-byte rows)
  static constexpr int kOutBytes = kBlockM * kPitch * 2;
  static constexpr int kBarriers = 1 + 2 * kStages;
  static constexpr int kSmemBytes =
      1024 /* alignment slack */ + 2 * kQBytes + 2 * kStages * kKVBytes + kOutBytes + 8 * kBarriers;
  static_assert(kKVBytes % 1024 == 0 && kQBytes % 1024 == 0 && kOutBytes % 16 == 0,
                "tile alignment");
};

/// Everything the dK/dV and dQ kernels read: the params, the scratch (Δ; the dQ kernel writes
/// the per-row gate sums there) and one tensor map per TMA-loaded operand.
struct BackwardArgs {
  OperandMap q, d_o, k, v;
  AttentionBackwardParams p;
  ra::cuda::detail::BackwardScratch s;
};

namespace detail {

// Named barrier 1: both consumers have gated their halves of a Q stage.
constexpr int kBackwardGateBarrier = 1;

/// Stages this warp's 16 rows of a (64 x D) wgmma accumulator, times `scale`, into shared
/// memory with pitch kPitch (the layout store_rows reads). With `mix` non-null, adds
/// mix_scale times mix's element of the same (row, column) first — row0 + the staged row of
/// mix, rows at or past `seq` read as zero — so the sum is rounded to T once (the
/// self-restart term of dV).
template <class T, int D, int kPitch>
__device__ __forceinline__ void stage_accumulator(T* rows, const float (&acc)[D / 2], float scale,
                                                  int lane, const T* mix = nullptr,
                                                  index_t mix_stride = 0, int row0 = 0,
                                                  int seq = 0, float mix_scale = 0.f) {
  const int g = lane / 4, t = lane % 4;
  const auto extra = [&](int r, int c) {
    if (mix == nullptr || row0 + r >= seq) return float2{0.f, 0.f};
    return mma::unpack<T>(
        *reinterpret_cast<const std::uint32_t*>(mix + (row0 + r) * mix_stride + c));
  };
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    const int c = j * 8 + 2 * t;
    const float2 lo = extra(g, c), hi = extra(g + 8, c);
    *reinterpret_cast<std::uint32_t*>(rows + g * kPitch + c) =
        mma::pack<T>(acc[4 * j] * scale + mix_scale * lo.x, acc[4 * j + 1] * scale + mix_scale * lo.y);
    *reinterpret_cast<std::uint32_t*>(rows + (g + 8) * kPitch + c) = mma::pack<T>(
        acc[4 * j + 2] * scale + mix_scale * hi.x, acc[4 * j + 3] * scale + mix_scale * hi.y);
  }
}

template <class T, int D, int R, bool kGated, class Tl>
__global__ void __launch_bounds__(Tl::kThreads, 1)
    backward_dkdv_kernel(const __grid_constant__ BackwardArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBlockM = Tl::kBlockM, kBlockN = Tl::kBlockN, kStages = Tl::kStages;
  constexpr int kAtom = Tl::kAtom, kAtoms = Tl::kAtoms, kSw = Tl::kSwizzleBytes;
  constexpr int kStd = D - R;  // columns [0, kStd) carry g_std, the rest g_rec
  const AttentionBackwardParams& p = args.p;
  const AttentionParams& f = p.fwd;

  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) & ~std::uintptr_t{1023});
  unsigned char* sK = smem;                         // kAtoms x (kBlockN x kSw)
  unsigned char* sV = sK + Tl::kKVBytes;            // same
  unsigned char* sQ = sV + Tl::kKVBytes;            // kStages x kAtoms x (kBlockM x kSw), gated
  unsigned char* sdO = sQ + kStages * Tl::kQBytes;  // kStages x kAtoms x (kBlockM x kSw)
  T* sOut = reinterpret_cast<T*>(sdO + kStages * Tl::kQBytes);  // (kBlockN, kPitch) staging
  float* sLse = reinterpret_cast<float*>(sdO + kStages * Tl::kQBytes + Tl::kOutBytes);
  float* sDelta = sLse + kStages * kBlockM;  // kStages x kBlockM each
  std::uint64_t* bar_kv = reinterpret_cast<std::uint64_t*>(sDelta + kStages * kBlockM);
  std::uint64_t* full = bar_kv + 1;
  std::uint64_t* empty = full + kStages;

  const int warpgroup = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  const int n0 = blockIdx.y * kBlockN;  // the CTA's first key; the heaviest blocks come first
  const int T_ = f.seq;
  const int m_tiles = (T_ - n0 + kBlockM - 1) / kBlockM;  // query blocks from the diagonal on

  if (threadIdx.x == 0) {
    tma::barrier_init(bar_kv, 1);
    for (int s = 0; s < kStages; ++s) {
      tma::barrier_init(full + s, 1 + 32);  // the TMA thread and warp 1's lanes
      tma::barrier_init(empty + s, 128 * Tl::kConsumers);
    }
    tma::barrier_init_fence();
  }
  __syncthreads();

  if (warpgroup == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Tl::kProducerRegs));
    const int warp = tid / 32, lane = tid % 32;
    if (tid == 0) {
      tma::arrive_expect(bar_kv, 2 * Tl::kKVBytes);
      for (int a = 0; a < kAtoms; ++a)
        tma::load(sK + a * kBlockN * kSw, args.k, a * kAtom, n0, h, b, bar_kv);
      for (int a = 0; a < kAtoms; ++a)
        tma::load(sV + a * kBlockN * kSw, args.v, a * kAtom, n0, h, b, bar_kv);
      for (int i = 0; i < m_tiles; ++i) {
        const int m0 = n0 + i * kBlockM, s = i % kStages;
        tma::wait(empty + s, ((i / kStages) & 1) ^ 1);
        tma::arrive_expect(full + s, 2 * Tl::kQBytes);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sQ + s * Tl::kQBytes + a * kBlockM * kSw, args.q, a * kAtom, m0, h, b,
                    full + s);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sdO + s * Tl::kQBytes + a * kBlockM * kSw, args.d_o, a * kAtom, m0, h, b,
                    full + s);
      }
    } else if (warp == 1) {
      const float* lse = f.lse + static_cast<index_t>(bh) * T_;
      const float* delta = args.s.delta + static_cast<index_t>(bh) * T_;
      for (int i = 0; i < m_tiles; ++i) {
        const int m0 = n0 + i * kBlockM, s = i % kStages;
        tma::wait(empty + s, ((i / kStages) & 1) ^ 1);
        for (int r = lane; r < kBlockM; r += 32) {
          const bool valid = m0 + r < T_;
          // Rows past T get lse = +inf, so P = 0 there (they are masked as well).
          sLse[s * kBlockM + r] = valid ? lse[m0 + r] * 1.44269504088896340736f : INFINITY;
          sDelta[s * kBlockM + r] = valid ? delta[m0 + r] : 0.f;
        }
        tma::arrive(full + s);  // release: this lane's writes are seen by the waiting consumers
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Tl::kConsumerRegs));
  const int consumer = warpgroup - 1;
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int k0 = n0 + consumer * 64;    // this warpgroup's first key
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0 and key0 + 8
  const float2 gate = ra::cuda::detail::load_gates<kGated>(f.gates, h);
  const float scale_log2 = f.scale * 1.44269504088896340736f;
  const std::uint32_t k_addr = tma::smem_addr(sK) + consumer * 64 * kSw;
  const std::uint32_t v_addr = tma::smem_addr(sV) + consumer * 64 * kSw;
  const std::uint32_t q_base = tma::smem_addr(sQ), do_base = tma::smem_addr(sdO);

  float dk[D / 2], dv[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;
  float st[kBlockM / 2], dpt[kBlockM / 2];
  std::uint32_t pa[kBlockM / 16][4], da[kBlockM / 16][4];

  tma::wait(bar_kv, 0);
  for (int i = 0; i < m_tiles; ++i) {
    const int m0 = n0 + i * kBlockM, s = i % kStages;
    tma::wait(full + s, (i / kStages) & 1);
    if constexpr (kGated) {
      gate_q_rows<T, Tl, kStd, Tl::kBlockM, 128 * Tl::kConsumers>(sQ + s * Tl::kQBytes, 0, gate,
                                                                 consumer * 128 + tid);
      tma::fence_shared_to_async();
      named_barrier_sync(kBackwardGateBarrier, 128 * Tl::kConsumers);
    }
    // A query block wholly above this warpgroup's keys (every query < k0) sees none of them.
    if (m0 + kBlockM - 1 >= k0) {
      const std::uint32_t q_addr = q_base + s * Tl::kQBytes;
      const std::uint32_t o_addr = do_base + s * Tl::kQBytes;
      wgmma::fence_operand(st);
      wgmma::fence_operand(dpt);
      wgmma::fence();
      // Sᵀ = Kf · Q̂ᵀ and dP'ᵀ = V · dO'ᵀ: the keys as M, the stage's queries as N.
      issue_ss_k_major<T, Tl, kBlockN, Tl::kBlockM>(st, k_addr, q_addr);
      issue_ss_k_major<T, Tl, kBlockN, Tl::kBlockM>(dpt, v_addr, o_addr);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operand(st);
      wgmma::fence_operand(dpt);
      // Pᵀ and dSᵀ: accumulator element (key row, query column) of this thread.
      const float* lse2 = sLse + s * kBlockM;
      const float* dlt = sDelta + s * kBlockM;
#pragma unroll
      for (int j = 0; j < kBlockM / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qc = j * 8 + 2 * t + (e & 1);
          const int kr = key0 + (e >> 1) * 8;
          const bool masked = m0 + qc < kr || m0 + qc >= T_;
          const float pt = masked ? 0.f : mma::exp2_approx(st[4 * j + e] * scale_log2 - lse2[qc]);
          st[4 * j + e] = pt;
          dpt[4 * j + e] = pt * (dpt[4 * j + e] - dlt[qc]);
        }
      }
      pack_p<T, kBlockM>(pa, st);
      pack_p<T, kBlockM>(da, dpt);
      wgmma::fence_operand(pa);
      wgmma::fence_operand(da);
      wgmma::fence_operand(dv);
      wgmma::fence_operand(dk);
      wgmma::fence();
      issue_rs_mn_major<T, Tl, Tl::kBlockM>(dv, pa, o_addr);  // dV += Pᵀ · dO'
      issue_rs_mn_major<T, Tl, Tl::kBlockM>(dk, da, q_addr);  // dK += dSᵀ · Q̂
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operand(dv);
      wgmma::fence_operand(dk);
      wgmma::fence_operand(pa);
      wgmma::fence_operand(da);
    }
    tma::arrive(empty + s);
  }

  // Epilogue: scale, stage the warp's 16 rows in its own rows of sOut, store (dV mixes in
  // α·dO' of its key rows with self-restart).
  constexpr int kPitch = Tl::kPitch;
  const float alpha = ra::cuda::detail::restart_alpha(f, h);
  T* staged = sOut + (consumer * 64 + warp * 16) * kPitch;
  T* out_k = static_cast<T*>(p.dk) + b * p.dk_batch_stride + h * p.dk_head_stride;
  T* out_v = static_cast<T*>(p.dv) + b * p.dv_batch_stride + h * p.dv_head_stride;
  const T* d_o = static_cast<const T*>(p.d_out) + b * p.do_batch_stride + h * p.do_head_stride;
  stage_accumulator<T, D, kPitch>(staged, dk, f.scale * (1.f - alpha), lane);
  __syncwarp();
  ra::cuda::detail::store_rows<T, D, kPitch>(staged, out_k, p.dk_row_stride, k0 + warp * 16, T_,
                                             nullptr, 0, 1.f, 0.f, lane);
  __syncwarp();  // every lane has stored its dK chunks before dV overwrites the rows
  // dV = (1 − α)·PᵀdO' + α·dO' summed in fp32 and rounded once.
  stage_accumulator<T, D, kPitch>(staged, dv, 1.f - alpha, lane,
                                  f.restart.enabled() ? d_o : nullptr, p.do_row_stride,
                                  k0 + warp * 16, T_, alpha);
  __syncwarp();
  ra::cuda::detail::store_rows<T, D, kPitch>(staged, out_v, p.dv_row_stride, k0 + warp * 16, T_,
                                             nullptr, 0, 1.f, 0.f, lane);
#else
  (void)args;
#endif
}

template <class T, int D, int R, bool kGated, class Tl>
__global__ void __launch_bounds__(Tl::kThreads, 1)
    backward_dq_kernel(const __grid_constant__ BackwardArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBlockM = Tl::kBlockM, kBlockN = Tl::kBlockN, kStages = Tl::kStages;
  constexpr int kAtom = Tl::kAtom, kAtoms = Tl::kAtoms, kSw = Tl::kSwizzleBytes;
  constexpr int kStd = D - R;  // columns [0, kStd) carry g_std, the rest g_rec
  const AttentionBackwardParams& p = args.p;
  const AttentionParams& f = p.fwd;

  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) & ~std::uintptr_t{1023});
  unsigned char* sQ = smem;                         // kAtoms x (kBlockM x kSw), gated
  unsigned char* sdO = sQ + Tl::kQBytes;            // same
  unsigned char* sK = sdO + Tl::kQBytes;            // kStages x kAtoms x (kBlockN x kSw)
  unsigned char* sV = sK + kStages * Tl::kKVBytes;  // same
  T* sOut = reinterpret_cast<T*>(sV + kStages * Tl::kKVBytes);  // (kBlockM, kPitch) staging
  std::uint64_t* bar_q =
      reinterpret_cast<std::uint64_t*>(sV + kStages * Tl::kKVBytes + Tl::kOutBytes);
  std::uint64_t* full = bar_q + 1;
  std::uint64_t* empty = full + kStages;

  const int warpgroup = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int bh = blockIdx.x, b = bh / f.heads, h = bh % f.heads;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kBlockM;  // heaviest blocks first
  const int T_ = f.seq;
  const int n_tiles = (min(T_, m0 + kBlockM) + kBlockN - 1) / kBlockN;  // keys to the diagonal

  if (threadIdx.x == 0) {
    tma::barrier_init(bar_q, 1);
    for (int s = 0; s < kStages; ++s) {
      tma::barrier_init(full + s, 1);
      tma::barrier_init(empty + s, 128 * Tl::kConsumers);
    }
    tma::barrier_init_fence();
  }
  __syncthreads();

  if (warpgroup == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Tl::kProducerRegs));
    if (tid == 0) {
      tma::arrive_expect(bar_q, 2 * Tl::kQBytes);
      for (int a = 0; a < kAtoms; ++a)
        tma::load(sQ + a * kBlockM * kSw, args.q, a * kAtom, m0, h, b, bar_q);
      for (int a = 0; a < kAtoms; ++a)
        tma::load(sdO + a * kBlockM * kSw, args.d_o, a * kAtom, m0, h, b, bar_q);
      for (int i = 0; i < n_tiles; ++i) {
        const int n0 = i * kBlockN, s = i % kStages;
        tma::wait(empty + s, ((i / kStages) & 1) ^ 1);
        tma::arrive_expect(full + s, 2 * Tl::kKVBytes);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sK + s * Tl::kKVBytes + a * kBlockN * kSw, args.k, a * kAtom, n0, h, b,
                    full + s);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sV + s * Tl::kKVBytes + a * kBlockN * kSw, args.v, a * kAtom, n0, h, b,
                    full + s);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Tl::kConsumerRegs));
  const int consumer = warpgroup - 1;
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int r0 = m0 + consumer * 64;    // this warpgroup's first query
  const int row0 = r0 + warp * 16 + g;  // this thread's queries: row0 and row0 + 8
  const float2 gate = ra::cuda::detail::load_gates<kGated>(f.gates, h);
  const float scale_log2 = f.scale * 1.44269504088896340736f;
  float lse2[2], dlt[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int row = row0 + hr * 8;
    const index_t i = static_cast<index_t>(bh) * T_ + row;
    // Rows past T get lse = +inf, so P = 0 there.
    lse2[hr] = row < T_ ? f.lse[i] * 1.44269504088896340736f : INFINITY;
    dlt[hr] = row < T_ ? args.s.delta[i] : 0.f;
  }

  tma::wait(bar_q, 0);
  if constexpr (kGated) {
    gate_q_rows<T, Tl, kStd>(sQ, consumer * 64, gate, tid);
    tma::fence_shared_to_async();
    named_barrier_sync(kGateBarrier + consumer, 128);
  }
  const std::uint32_t q_addr = tma::smem_addr(sQ) + consumer * 64 * kSw;
  const std::uint32_t do_addr = tma::smem_addr(sdO) + consumer * 64 * kSw;
  const std::uint32_t k_base = tma::smem_addr(sK), v_base = tma::smem_addr(sV);

  float dq[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) dq[i] = 0.f;
  float sc[kBlockN / 2], dp[kBlockN / 2];
  std::uint32_t ds[kBlockN / 16][4];

  for (int i = 0; i < n_tiles; ++i) {
    const int n0 = i * kBlockN, s = i % kStages;
    tma::wait(full + s, (i / kStages) & 1);
    // Skipped (warpgroup-uniformly) when every key lies past this warpgroup's last query, or
    // every query of it lies past T; the stage is released either way.
    if (n0 <= r0 + 63 && r0 < T_) {
      const std::uint32_t k_addr = k_base + s * Tl::kKVBytes;
      const std::uint32_t v_addr = v_base + s * Tl::kKVBytes;
      wgmma::fence_operand(sc);
      wgmma::fence_operand(dp);
      wgmma::fence();
      issue_qk<T, Tl>(sc, q_addr, k_addr);   // S = Q̂ · Kfᵀ
      issue_qk<T, Tl>(dp, do_addr, v_addr);  // dP' = dO' · Vᵀ
      wgmma::wait<1>();                      // S is in; dP' may still run
      wgmma::fence_operand(sc);
      const bool mask = n0 + kBlockN - 1 > r0 || n0 + kBlockN > T_;
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + j * 8 + 2 * t + (e & 1);
          const int row = row0 + (e >> 1) * 8;
          const bool masked = mask && (col > row || col >= T_);
          sc[4 * j + e] =
              masked ? 0.f : mma::exp2_approx(sc[4 * j + e] * scale_log2 - lse2[e >> 1]);
        }
      }
      wgmma::wait<0>();
      wgmma::fence_operand(dp);
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dp[4 * j + e] = sc[4 * j + e] * (dp[4 * j + e] - dlt[e >> 1]);
      pack_p<T, kBlockN>(ds, dp);
      wgmma::fence_operand(ds);
      wgmma::fence_operand(dq);
      wgmma::fence();
      issue_pv<T, Tl>(dq, ds, k_addr);  // dQ̂ += dS · Kf, Kf read N-major
      wgmma::wait<0>();
      wgmma::fence_operand(dq);
      wgmma::fence_operand(ds);
    }
    tma::arrive(empty + s);
  }

  // Epilogue: dQ̂ = (1 − α)/√D · dQ; the gate sums against raw Qf (the same 16-bit values the
  // TMA copied, read back from global memory: the shared tile holds Q̂); dQf = g ⊙ dQ̂.
  const float alpha = ra::cuda::detail::restart_alpha(f, h);
  const float q_scale = f.scale * (1.f - alpha);
  const T* q = static_cast<const T*>(f.q) + b * f.q_batch_stride + h * f.q_head_stride;
  float gsum[2] = {0.f, 0.f}, rsum[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int c = j * 8 + 2 * t, row = row0 + hr * 8;
      const float2 qraw = row < T_ ? mma::unpack<T>(*reinterpret_cast<const std::uint32_t*>(
                                         q + static_cast<index_t>(row) * f.q_row_stride + c))
                                   : make_float2(0.f, 0.f);
      const float2 dqf = ra::cuda::detail::gate_dq_pair<kStd>(
          make_float2(dq[4 * j + 2 * hr] * q_scale, dq[4 * j + 2 * hr + 1] * q_scale), qraw, c,
          gate, gsum[hr], rsum[hr]);
      dq[4 * j + 2 * hr] = dqf.x;
      dq[4 * j + 2 * hr + 1] = dqf.y;
    }
  }
  ra::cuda::detail::store_gate_row_sums(gsum, rsum, args.s, bh, T_, row0, t);
  constexpr int kPitch = Tl::kPitch;
  T* staged = sOut + (consumer * 64 + warp * 16) * kPitch;
  stage_accumulator<T, D, kPitch>(staged, dq, 1.f, lane);
  __syncwarp();
  T* out = static_cast<T*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
  ra::cuda::detail::store_rows<T, D, kPitch>(staged, out, p.dq_row_stride, r0 + warp * 16, T_,
                                             nullptr, 0, 1.f, 0.f, lane);
#else
  (void)args;
#endif
}

}  // namespace detail

/// Launches one sm_90a backward pass: kKernel of schedule Tl over p (the row pass ran
/// before; p validated and flash_backward_refusal(p) empty), one CTA per (b, h) and block of
/// `block_rows` rows (keys for dKf/dV, queries for dQf). The kernel is a template argument so
/// that each kernel sets its shared-memory limit once.
template <class Tl, auto kKernel>
void launch_backward_pass(int block_rows, const AttentionBackwardParams& p, cudaStream_t stream) {
  constexpr int D = Tl::kHeadDim;
  constexpr CUtensorMapSwizzle kSwizzle = detail::tma_swizzle<Tl::kSwizzleBytes>();
  const AttentionParams& f = p.fwd;
  BackwardArgs args{};
  args.p = p;
  args.s = ra::cuda::detail::scratch_of(p);
  args.q = make_operand_map(f.dtype, f.q, f.batch, f.heads, f.seq, D, f.q_batch_stride,
                            f.q_head_stride, f.q_row_stride, Tl::kAtom, Tl::kBlockM, kSwizzle);
  args.d_o = make_operand_map(f.dtype, p.d_out, f.batch, f.heads, f.seq, D, p.do_batch_stride,
                              p.do_head_stride, p.do_row_stride, Tl::kAtom, Tl::kBlockM, kSwizzle);
  args.k = make_operand_map(f.dtype, f.k, f.batch, f.heads, f.seq_k, D, f.k_batch_stride,
                            f.k_head_stride, f.k_row_stride, Tl::kAtom, Tl::kBlockN, kSwizzle);
  args.v = make_operand_map(f.dtype, f.v, f.batch, f.heads, f.seq_k, D, f.v_batch_stride,
                            f.v_head_stride, f.v_row_stride, Tl::kAtom, Tl::kBlockN, kSwizzle);
  static const bool configured = [&] {
    RA_CUDA_CHECK(
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tl::kSmemBytes));
    return true;
  }();
  (void)configured;
  const dim3 grid(f.batch * f.heads, (f.seq + block_rows - 1) / block_rows);
  kKernel<<<grid, Tl::kThreads, Tl::kSmemBytes, stream>>>(args);
  RA_CUDA_CHECK_LAUNCH();
}

/// dKf and dV on the sm_90a kernel (one CTA per kBlockN keys).
template <class T, int D, int R, bool kGated, class Tl = BackwardTile<D>>
void launch_backward_dkdv(const AttentionBackwardParams& p, cudaStream_t stream) {
  static_assert(Tl::kHeadDim == D, "tile traits for another head dim");
  launch_backward_pass<Tl, detail::backward_dkdv_kernel<T, D, R, kGated, Tl>>(Tl::kBlockN, p,
                                                                           stream);
}

/// dQf and the per-row gate sums on the sm_90a kernel (one CTA per kBlockM queries).
template <class T, int D, int R, bool kGated, class Tl = BackwardDqTile<D>>
void launch_backward_dq(const AttentionBackwardParams& p, cudaStream_t stream) {
  static_assert(Tl::kHeadDim == D, "tile traits for another head dim");
  launch_backward_pass<Tl, detail::backward_dq_kernel<T, D, R, kGated, Tl>>(Tl::kBlockM, p,
                                                                         stream);
}

/// The backward of <T, D, R, gated> on the sm_90a kernels: the row pass (Δ, ρ), dKf and dV,
/// dQf and the per-row gate sums (on the mma.sync dQ kernel for BackwardPath::tma_wgmma_dkdv),
/// then the parameter gradients. p validated and flash_backward_refusal(p) empty.
template <class T, int D, int R, bool kGated>
void flash_backward(const AttentionBackwardParams& p, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "the sm_90a backward takes 16-bit types");
  static_assert(R >= 0 && R < D, "0 <= R < D");
  ra::cuda::detail::launch_backward_rows<T, D>(p, stream);
  launch_backward_dkdv<T, D, R, kGated>(p, stream);
  if (p.path == BackwardPath::tma_wgmma_dkdv) {
    ra::cuda::detail::launch_backward_dq_mma<T, D, R, kGated>(p, stream);
  } else {
    launch_backward_dq<T, D, R, kGated>(p, stream);
  }
  ra::cuda::detail::launch_backward_parameter_grads<T>(p, stream);
}

}  // namespace ra::cuda::sm90
