// ra/cuda/sm90/flash_forward.cuh — the sm_90a causal attention forward for the folded RA
// layout: warp-specialised, TMA loads into a shared-memory ring, wgmma on the tensor cores.
//
// One CTA computes kBlockM = 64·kConsumers query rows of one (b, h), with 1 + kConsumers
// warpgroups:
//
//   producer (warpgroup 0, one thread): TMA copies of the Q tile once, then of K_n and V_n for
//     n = last tile … 0 into a kStages ring; full_k[s] / full_v[s] complete when their bytes
//     land, empty[s] when every consumer thread is done with stage s.
//   consumer c (warpgroups 1..kConsumers, 64 query rows each):
//     Q̂ = Qf[rows] ⊙ g            gated once, in place in shared memory (g_std before column
//                                  D − R, g_rec from there; skipped without gates)
//     S_0 = Q̂ · K_lastᵀ            wgmma, both operands in shared memory
//     for each next tile n:        issue S_n = Q̂ · K_nᵀ, then O += P_prev · V_prev (P from
//                                  registers), and run the online softmax of S_n while
//                                  O's product is still on the tensor cores
//     O' = (1 − α_h)·O/l + α_h·V[rows]  (self-restart), lse = ln 2 · (m + log2 l)
//
// Tiles are read straight from Qf, Kf, V's own strides (the fused (B,T,3C) buffer included):
// each operand has a tensor map (ra/cuda/sm90/tma.cuh) whose boxes are swizzle atoms of
// kAtom columns (64, 32 or 16 for the head dims 64/128, 32/96, 80) and which reads rows past
// T as zero. The keys run from the diagonal tile down, so the masked tile comes first.
// Without sm_90a code (another architecture, or a build without 90a) the kernel body is empty
// and flash_forward_available() is false: ra::cuda::attention_forward then takes mma.sync.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/mma.cuh>
#include <ra/cuda/sm90/support.cuh>
#include <ra/cuda/sm90/tma.cuh>
#include <ra/cuda/wgmma.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda::sm90 {

/// Tile shape and schedule of the sm_90a forward for head dim D: Consumers warpgroups of 64
/// query rows each, and whether they take turns issuing their tensor-core products
/// (PingPong: one warpgroup's softmax runs while the other's products occupy the tensor
/// cores). The default per D is ForwardTraits<D> below; bench/flash_tune times the others.
template <int D, int Consumers = 2, bool PingPong = true>
struct ForwardTile {
  static constexpr int kHeadDim = D;
  static constexpr int kConsumers = Consumers;
  static constexpr bool kPingPong = PingPong;
  static constexpr int kBlockM = 64 * kConsumers;
  static constexpr int kBlockN = 128;
  static constexpr int kStages = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  // 65,536 registers per SM: the producer gives its own back, the consumers share the rest.
  static constexpr int kConsumerRegs = kConsumers == 2 ? 240 : 160;
  static constexpr int kProducerRegs = 24;
  static_assert(kConsumers == 2 || kConsumers == 3, "two or three consumer warpgroups");
  // Columns per swizzle atom: a TMA box row is at most one swizzle width (128, 64, 32 bytes).
  static constexpr int kAtom = D % 64 == 0 ? 64 : (D % 32 == 0 ? 32 : 16);
  static constexpr int kSwizzleBytes = kAtom * 2;
  static constexpr int kAtoms = D / kAtom;
  static constexpr int kQBytes = kBlockM * D * 2;
  static constexpr int kKVBytes = kBlockN * D * 2;
  static constexpr int kPitch = D + 8;  // the output staging tile (ldmatrix-free, 16-byte rows)
  static constexpr int kOBytes = kBlockM * kPitch * 2;
  static constexpr int kBarriers = 1 + 3 * kStages;
  static constexpr int kSmemBytes =
      1024 /* alignment slack */ + kQBytes + 2 * kStages * kKVBytes + kOBytes + 8 * kBarriers;
  static_assert(D % 16 == 0 && kQBytes % 1024 == 0 && kKVBytes % 1024 == 0, "tile alignment");
};

/// The default schedule per head dim: two consumers taking turns (ping-pong). Measured on an
/// H200 (bench/flash_tune, fp16, B=8, H=12, R=4 gated, 2026-12-02; docs/NOTES.md "sm_90a
/// schedules"): turns beat no turns at every T, by 1-2% at D=64 and 2-4% at D=128.
template <int D>
using ForwardTraits = ForwardTile<D, 2, true>;

/// Rows from which the long-row schedule runs (LongRowTraits): at D=64 three consumers (192
/// query rows per CTA, each K/V tile read once for 50% more rows) beat two by 8% at T=2048 and
/// 11% at T=4096, and lose 12% at T=1024, where the 192-row tiles leave too few CTAs.
inline constexpr int kLongRows = 2048;

/// The schedule for rows >= kLongRows: three consumers at D=64; D=128 keeps two (three
/// consumers of 64x128 fp32 accumulators do not fit 160 registers a thread).
template <int D>
using LongRowTraits = ForwardTile<D, D == 64 ? 3 : 2, true>;

/// Everything the kernel reads: the params and one tensor map per input operand.
struct ForwardArgs {
  OperandMap q, k, v;
  AttentionParams p;
};

namespace detail {

/// Byte offset of a 16-byte chunk inside a tile swizzled with rows of kSwizzleBytes (the TMA
/// and wgmma pattern: the chunk index XOR the row index within each 8-row group).
template <int kSwizzleBytes>
__device__ __forceinline__ std::uint32_t swizzle(std::uint32_t offset) {
  constexpr std::uint32_t kMask = (kSwizzleBytes / 16 - 1) << 4;
  return offset ^ ((offset >> 3) & kMask);
}

template <int kSwizzleBytes>
constexpr wgmma::Swizzle swizzle_mode() {
  return kSwizzleBytes == 128 ? wgmma::Swizzle::b128
                              : (kSwizzleBytes == 64 ? wgmma::Swizzle::b64 : wgmma::Swizzle::b32);
}

template <int kSwizzleBytes>
constexpr CUtensorMapSwizzle tma_swizzle() {
  return kSwizzleBytes == 128
             ? CU_TENSOR_MAP_SWIZZLE_128B
             : (kSwizzleBytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_32B);
}

__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Named barriers: 0 is __syncthreads; 1..3 gate one consumer's Q rows; 4..6 are the
// consumers' turns at the tensor cores.
constexpr int kGateBarrier = 1, kTurnBarrier = 4;

/// Gates kRows rows of the Q tile from first_row in place, thread tid of kThreads (one
/// consumer's 64 rows by default): column c times g_std (c < kStd) or g_rec. The tile is
/// kAtoms atoms of (kBlockM rows x kSwizzleBytes), swizzled. The sm_90a backward gates its
/// Q stages with it too.
template <class T, class Tl, int kStd, int kRows = 64, int kThreads = 128>
__device__ __forceinline__ void gate_q_rows(unsigned char* sQ, int first_row, float2 gate,
                                            int tid) {
  constexpr int D = Tl::kHeadDim, kChunksPerRow = D / 8, kChunksPerAtom = Tl::kAtom / 8;
  for (int i = tid; i < kRows * kChunksPerRow; i += kThreads) {
    const int r = first_row + i / kChunksPerRow, c = i % kChunksPerRow;
    const int atom = c / kChunksPerAtom, in_atom = c % kChunksPerAtom;
    unsigned char* chunk = sQ + atom * Tl::kBlockM * Tl::kSwizzleBytes +
                           swizzle<Tl::kSwizzleBytes>(
                               static_cast<std::uint32_t>(r * Tl::kSwizzleBytes + in_atom * 16));
    uint4 v = *reinterpret_cast<const uint4*>(chunk);
    std::uint32_t* e = reinterpret_cast<std::uint32_t*>(&v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = c * 8 + 2 * j;
      const float2 x = mma::unpack<T>(e[j]);
      e[j] = mma::pack<T>(x.x * (col < kStd ? gate.x : gate.y),
                          x.y * (col + 1 < kStd ? gate.x : gate.y));
    }
    *reinterpret_cast<uint4*>(chunk) = v;
  }
}

/// acc = A · Bᵀ over the head dim for one consumer, wgmma SS, issued, not committed: A its
/// 64 rows of a kRowsA-row K-major tile at a_addr (its first row in atom 0), B the kRowsB rows
/// of a K-major tile at b_addr; both in swizzled atoms of Tl::kAtom columns.
template <class T, class Tl, int kRowsA, int kRowsB>
__device__ __forceinline__ void issue_ss_k_major(float (&acc)[kRowsB / 2], std::uint32_t a_addr,
                                                 std::uint32_t b_addr) {
  constexpr int kSw = Tl::kSwizzleBytes;
  constexpr auto kMode = swizzle_mode<kSw>();
#pragma unroll
  for (int kk = 0; kk < Tl::kHeadDim / 16; ++kk) {
    const int col = kk * 16, atom = col / Tl::kAtom;
    const std::uint32_t in_atom = static_cast<std::uint32_t>(col % Tl::kAtom) * 2;
    const std::uint64_t da =
        wgmma::make_desc(a_addr + atom * kRowsA * kSw + in_atom, 16, 8 * kSw, kMode);
    const std::uint64_t db =
        wgmma::make_desc(b_addr + atom * kRowsB * kSw + in_atom, 16, 8 * kSw, kMode);
    wgmma::wgmma_ss<T, kRowsB>(acc, da, db, kk > 0 ? 1 : 0);
  }
}

/// acc += A · B for one consumer, wgmma RS, issued, not committed: A as kK/16 fragments in
/// registers (64 rows x kK), B the (kK rows x D) tile at b_addr read MN-major (the head dim
/// contiguous).
template <class T, class Tl, int kK>
__device__ __forceinline__ void issue_rs_mn_major(float (&acc)[Tl::kHeadDim / 2],
                                                  const std::uint32_t (&a)[kK / 16][4],
                                                  std::uint32_t b_addr) {
  constexpr int kSw = Tl::kSwizzleBytes;
  constexpr auto kMode = swizzle_mode<kSw>();
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    const std::uint64_t db = wgmma::make_desc(b_addr + kk * 16 * kSw, kK * kSw, 8 * kSw, kMode);
    wgmma::wgmma_rs<T, Tl::kHeadDim, 1>(acc, a[kk], db, 1);
  }
}

/// S = Q̂ · Kᵀ for one consumer: 64 rows of Q̂ (at q_addr, the consumer's first row in atom 0)
/// against the kBlockN keys of a K stage (at k_addr), issued and committed, not waited for.
template <class T, class Tl>
__device__ __forceinline__ void issue_qk(float (&s)[Tl::kBlockN / 2], std::uint32_t q_addr,
                                         std::uint32_t k_addr) {
  issue_ss_k_major<T, Tl, Tl::kBlockM, Tl::kBlockN>(s, q_addr, k_addr);
  wgmma::commit();
}

/// O += P · V for one consumer: P as A fragments in registers, V a stage at v_addr read
/// MN-major (rows are keys, the head dim contiguous), issued and committed, not waited for.
template <class T, class Tl>
__device__ __forceinline__ void issue_pv(float (&o)[Tl::kHeadDim / 2],
                                         const std::uint32_t (&pa)[Tl::kBlockN / 16][4],
                                         std::uint32_t v_addr) {
  issue_rs_mn_major<T, Tl, Tl::kBlockN>(o, pa, v_addr);
  wgmma::commit();
}

/// Online softmax of one S tile (keys n0..n0+kBlockN) for this thread's rows row0 and row0+8:
/// masks keys past the row (causal) or at/after T, updates m and l, turns S into P in place
/// and returns the factors the old O must be scaled by.
template <int kBlockN>
__device__ __forceinline__ float2 softmax_tile(float (&s)[kBlockN / 2], float (&m_run)[2],
                                               float (&l_run)[2], int n0, int row0, int T_,
                                               bool mask, float scale_log2, int t) {
  if (mask) {
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = n0 + j * 8 + 2 * t + (i & 1);
        const int row = row0 + (i >> 1) * 8;
        if (col > row || col >= T_) s[4 * j + i] = -INFINITY;
      }
  }
  float corr[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j)
      mx = fmaxf(mx, fmaxf(s[4 * j + 2 * hr], s[4 * j + 2 * hr + 1]));
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
      s[4 * j + 2 * hr] = mma::exp2_approx(s[4 * j + 2 * hr] * scale_log2 - m_use);
      s[4 * j + 2 * hr + 1] = mma::exp2_approx(s[4 * j + 2 * hr + 1] * scale_log2 - m_use);
      sum += s[4 * j + 2 * hr] + s[4 * j + 2 * hr + 1];
    }
    l_run[hr] = l_run[hr] * corr[hr] + sum;
  }
  return make_float2(corr[0], corr[1]);
}

/// P (fp32 accumulator layout) as the A fragments of the P · V product, rounded to T.
template <class T, int kBlockN>
__device__ __forceinline__ void pack_p(std::uint32_t (&pa)[kBlockN / 16][4],
                                       const float (&s)[kBlockN / 2]) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    pa[kk][0] = mma::pack<T>(s[8 * kk + 0], s[8 * kk + 1]);
    pa[kk][1] = mma::pack<T>(s[8 * kk + 2], s[8 * kk + 3]);
    pa[kk][2] = mma::pack<T>(s[8 * kk + 4], s[8 * kk + 5]);
    pa[kk][3] = mma::pack<T>(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

template <class T, int D, int R, GateMode G, bool kRestart, class Tl>
__global__ void __launch_bounds__(Tl::kThreads, 1)
    flash_forward_kernel(const __grid_constant__ ForwardArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBlockM = Tl::kBlockM, kBlockN = Tl::kBlockN, kStages = Tl::kStages;
  constexpr int kAtom = Tl::kAtom, kAtoms = Tl::kAtoms, kSw = Tl::kSwizzleBytes;
  constexpr int kStd = D - R;  // columns [0, kStd) carry g_std, the rest g_rec
  const AttentionParams& p = args.p;

  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) & ~std::uintptr_t{1023});
  unsigned char* sQ = smem;                                   // kAtoms x (kBlockM x kSw)
  unsigned char* sK = sQ + Tl::kQBytes;                       // kStages x kAtoms x (kBlockN x kSw)
  unsigned char* sV = sK + kStages * Tl::kKVBytes;            // same
  T* sO = reinterpret_cast<T*>(sV + kStages * Tl::kKVBytes);  // (kBlockM, kPitch) staging
  std::uint64_t* bar_q =
      reinterpret_cast<std::uint64_t*>(sV + kStages * Tl::kKVBytes + Tl::kOBytes);
  std::uint64_t* full_k = bar_q + 1;
  std::uint64_t* full_v = full_k + kStages;
  std::uint64_t* empty = full_v + kStages;

  const int warpgroup = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int bh = blockIdx.x, b = bh / p.heads, h = bh % p.heads;
  // Heaviest (most key tiles) query blocks are launched first.
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kBlockM;
  const int T_ = p.seq;
  const int n_tiles = (min(T_, m0 + kBlockM) + kBlockN - 1) / kBlockN;

  if (threadIdx.x == 0) {
    tma::barrier_init(bar_q, 1);
    for (int s = 0; s < kStages; ++s) {
      tma::barrier_init(full_k + s, 1);
      tma::barrier_init(full_v + s, 1);
      tma::barrier_init(empty + s, 128 * Tl::kConsumers);
    }
    tma::barrier_init_fence();
  }
  __syncthreads();

  if (warpgroup == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Tl::kProducerRegs));
    if (tid == 0) {
      tma::arrive_expect(bar_q, Tl::kQBytes);
      for (int a = 0; a < kAtoms; ++a)
        tma::load(sQ + a * kBlockM * kSw, args.q, a * kAtom, m0, h, b, bar_q);
      for (int i = 0; i < n_tiles; ++i) {
        const int n0 = (n_tiles - 1 - i) * kBlockN, s = i % kStages;
        tma::wait(empty + s, ((i / kStages) & 1) ^ 1);
        tma::arrive_expect(full_k + s, Tl::kKVBytes);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sK + s * Tl::kKVBytes + a * kBlockN * kSw, args.k, a * kAtom, n0, h, b,
                    full_k + s);
        tma::arrive_expect(full_v + s, Tl::kKVBytes);
        for (int a = 0; a < kAtoms; ++a)
          tma::load(sV + s * Tl::kKVBytes + a * kBlockN * kSw, args.v, a * kAtom, n0, h, b,
                    full_v + s);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Tl::kConsumerRegs));
  const int consumer = warpgroup - 1;
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int r0 = m0 + consumer * 64;    // this warpgroup's first query row
  const int row0 = r0 + warp * 16 + g;  // this thread's rows: row0 and row0 + 8
  const float2 gate = ra::cuda::detail::load_gates<G != GateMode::none>(p.gates, h);
  const float scale_log2 = p.scale * 1.44269504088896340736f;

  tma::wait(bar_q, 0);
  if constexpr (G != GateMode::none) {
    gate_q_rows<T, Tl, kStd>(sQ, consumer * 64, gate, tid);
    tma::fence_shared_to_async();
    named_barrier_sync(kGateBarrier + consumer, 128);
  }
  const std::uint32_t q_addr = tma::smem_addr(sQ) + consumer * 64 * kSw;
  const std::uint32_t k_base = tma::smem_addr(sK), v_base = tma::smem_addr(sV);

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float s[kBlockN / 2];
  std::uint32_t pa[kBlockN / 16][4];
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  // A tile needs the mask when it reaches past this warpgroup's first row or past T.
  auto needs_mask = [&](int n0) { return n0 + kBlockN - 1 > r0 || n0 + kBlockN > T_; };
  // Ping-pong: consumer c issues its products between turn_begin and turn_end, in turn with
  // the others (c waits for c − 1; the last consumer opens the first turn of consumer 0 and
  // skips its final hand-over, so every arrival meets a wait).
  auto turn_begin = [&] {
    if constexpr (Tl::kPingPong) named_barrier_sync(kTurnBarrier + consumer, 256);
  };
  auto turn_end = [&](bool last) {
    if constexpr (Tl::kPingPong) {
      if (!(last && consumer == Tl::kConsumers - 1))
        named_barrier_arrive(kTurnBarrier + (consumer + 1) % Tl::kConsumers, 256);
    }
  };
  if constexpr (Tl::kPingPong) {
    if (consumer == Tl::kConsumers - 1) named_barrier_arrive(kTurnBarrier, 256);
  }

  // The diagonal tile first: S, softmax, P.
  {
    const int n0 = (n_tiles - 1) * kBlockN;
    tma::wait(full_k, 0);
    wgmma::fence_operand(s);
    turn_begin();
    wgmma::fence();
    issue_qk<T, Tl>(s, q_addr, k_base);
    turn_end(false);
    wgmma::wait<0>();
    wgmma::fence_operand(s);
    softmax_tile<kBlockN>(s, m_run, l_run, n0, row0, T_, needs_mask(n0), scale_log2, t);
    pack_p<T, kBlockN>(pa, s);
  }
  for (int i = 1; i < n_tiles; ++i) {
    const int n0 = (n_tiles - 1 - i) * kBlockN;
    const int st = i % kStages, prev = (i - 1) % kStages;
    tma::wait(full_k + st, (i / kStages) & 1);
    tma::wait(full_v + prev, ((i - 1) / kStages) & 1);
    wgmma::fence_operand(s);
    wgmma::fence_operand(o);
    wgmma::fence_operand(pa);
    turn_begin();
    wgmma::fence();
    issue_qk<T, Tl>(s, q_addr, k_base + st * Tl::kKVBytes);
    issue_pv<T, Tl>(o, pa, v_base + prev * Tl::kKVBytes);
    turn_end(false);
    wgmma::wait<1>();  // S_n is in; O's product may still run
    wgmma::fence_operand(s);
    const float2 corr =
        softmax_tile<kBlockN>(s, m_run, l_run, n0, row0, T_, needs_mask(n0), scale_log2, t);
    wgmma::wait<0>();
    wgmma::fence_operand(o);
    wgmma::fence_operand(pa);
    tma::arrive(empty + prev);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[4 * j] *= corr.x;
      o[4 * j + 1] *= corr.x;
      o[4 * j + 2] *= corr.y;
      o[4 * j + 3] *= corr.y;
    }
    pack_p<T, kBlockN>(pa, s);
  }
  {
    const int last = (n_tiles - 1) % kStages;
    tma::wait(full_v + last, ((n_tiles - 1) / kStages) & 1);
    wgmma::fence_operand(o);
    wgmma::fence_operand(pa);
    turn_begin();
    wgmma::fence();
    issue_pv<T, Tl>(o, pa, v_base + last * Tl::kKVBytes);
    turn_end(true);
    wgmma::wait<0>();
    wgmma::fence_operand(o);
    wgmma::fence_operand(pa);
    tma::arrive(empty + last);
  }

  // Epilogue: normalise, stage the warp's 16 rows, store 16-byte chunks (mixing in V for
  // self-restart), as the mma.sync kernel does.
  float inv_l[2];
  ra::cuda::detail::finish_softmax(p, b, h, row0, m_run, l_run, inv_l, t);
  constexpr int kPitch = Tl::kPitch;
  T* staged = sO + (consumer * 64 + warp * 16) * kPitch;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    *reinterpret_cast<std::uint32_t*>(staged + g * kPitch + j * 8 + 2 * t) =
        mma::pack<T>(o[4 * j] * inv_l[0], o[4 * j + 1] * inv_l[0]);
    *reinterpret_cast<std::uint32_t*>(staged + (g + 8) * kPitch + j * 8 + 2 * t) =
        mma::pack<T>(o[4 * j + 2] * inv_l[1], o[4 * j + 3] * inv_l[1]);
  }
  __syncwarp();
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
  const float alpha = kRestart ? effective_restart(p.restart.a[h]) : 0.f;
  if (kRestart && p.o_pre != nullptr) {  // O before the mix, for the backward
    T* pre = static_cast<T*>(p.o_pre) + b * p.o_pre_batch_stride + h * p.o_pre_head_stride;
    ra::cuda::detail::store_rows<T, D, kPitch>(staged, pre, p.o_pre_row_stride, r0 + warp * 16, T_,
                                               nullptr, 0, 1.f, 0.f, lane);
  }
  T* out = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  ra::cuda::detail::store_rows<T, D, kPitch>(staged, out, p.o_row_stride, r0 + warp * 16, T_,
                                             kRestart ? v : nullptr, p.v_row_stride, 1.f - alpha,
                                             alpha, lane);
#else
  (void)args;
#endif
}

}  // namespace detail

/// Launches the sm_90a forward for <T, D, R, G, restart> with schedule Tl. p must be
/// validated and flash_forward_refusal(p) empty.
template <class T, int D, int R, GateMode G, bool kRestart, class Tl = ForwardTraits<D>>
void flash_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "the sm_90a forward takes 16-bit types");
  static_assert(Tl::kHeadDim == D, "tile traits for another head dim");
  constexpr CUtensorMapSwizzle kSwizzle = detail::tma_swizzle<Tl::kSwizzleBytes>();
  ForwardArgs args{};
  args.p = p;
  args.q = make_operand_map(p.dtype, p.q, p.batch, p.heads, p.seq, D, p.q_batch_stride,
                            p.q_head_stride, p.q_row_stride, Tl::kAtom, Tl::kBlockM, kSwizzle);
  args.k = make_operand_map(p.dtype, p.k, p.batch, p.heads, p.seq_k, D, p.k_batch_stride,
                            p.k_head_stride, p.k_row_stride, Tl::kAtom, Tl::kBlockN, kSwizzle);
  args.v = make_operand_map(p.dtype, p.v, p.batch, p.heads, p.seq_k, D, p.v_batch_stride,
                            p.v_head_stride, p.v_row_stride, Tl::kAtom, Tl::kBlockN, kSwizzle);
  auto kernel = detail::flash_forward_kernel<T, D, R, G, kRestart, Tl>;
  static const bool configured = [&] {
    RA_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tl::kSmemBytes));
    return true;
  }();
  (void)configured;
  const dim3 grid(p.batch * p.heads, (p.seq + Tl::kBlockM - 1) / Tl::kBlockM);
  kernel<<<grid, Tl::kThreads, Tl::kSmemBytes, stream>>>(args);
  RA_CUDA_CHECK_LAUNCH();
}

/// The sm_90a forward with the measured schedule for p's rows (ForwardTraits, LongRowTraits).
template <class T, int D, int R, GateMode G, bool kRestart>
void flash_forward_scheduled(const AttentionParams& p, cudaStream_t stream) {
  if constexpr (!std::is_same_v<LongRowTraits<D>, ForwardTraits<D>>) {
    if (p.seq >= kLongRows) {
      sm90::flash_forward<T, D, R, G, kRestart, LongRowTraits<D>>(p, stream);
      return;
    }
  }
  sm90::flash_forward<T, D, R, G, kRestart>(p, stream);
}

}  // namespace ra::cuda::sm90
