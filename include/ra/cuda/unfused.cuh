// ra/cuda/unfused.cuh — folded attention with materialised scores: the GPU analogue of
// PyTorch eager, and the large-size reference for the flash kernels.
//
// For every (b, h), with Qf, Kf, V (T,D) read in place through AttentionParams' strides:
//   1. Q̂ = Qf ⊙ g        g_d = g_std for d < D-R, g_rec for d >= D-R, written compact
//                         (B,H,T,D) in the element type. Without gates there is nothing to
//                         apply and step 2 reads Qf in place (no copy).
//   2. S = Q̂ · Kfᵀ / √D  (T,T) fp32, all (b,h) in ONE cublasGemmBatchedEx (fp32 accumulate)
//   3. P = causal softmax of each row of S (cub::BlockReduce for max and sum, one block per
//      row), in the element type, zero above the diagonal; lse = max + log(sum) per row,
//      natural log, into p.lse (B,H,T) when it is not null
//   4. O = P · V          ONE cublasGemmBatchedEx writing each (T,D) head straight into O's
//                         layout (for a (B,T,C) output: ldc = C, head at o + b·TC + h·D)
//   5. O' = (1 - α_h) O + α_h V   with α_h = clamp(a_h, 0, 0.5), when self-restart is on
//
// Scratch (Q̂, S, P and the batched GEMMs' pointer arrays) is planned once for the largest
// (B, H, T, D); run() allocates nothing. The pointer arrays live in that scratch and step 1's
// kernel fills them from the params on the stream, so any strided input the params describe
// works and a captured CUDA graph replays the same fill.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include <ra/core/dispatch.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/workspace.cuh>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

/// The largest problem an UnfusedAttention is planned for.
struct UnfusedShape {
  index_t batch = 0;
  index_t heads = 0;
  index_t seq = 0;
  index_t head_dim = 0;
  DType dtype = DType::f16;
};

namespace unfused_detail {

// Element <-> float with the hardware conversions (round to nearest even, as ra::fp16/bf16).
__device__ inline float to_float(float x) {
  return x;
}
__device__ inline float to_float(fp16 x) {
  return __half2float(__ushort_as_half(x.bits));
}
__device__ inline float to_float(bf16 x) {
  return __bfloat162float(__ushort_as_bfloat16(x.bits));
}

template <class T>
__device__ inline T from_float(float x);
template <>
__device__ inline float from_float<float>(float x) {
  return x;
}
template <>
__device__ inline fp16 from_float<fp16>(float x) {
  return fp16::from_bits(__half_as_ushort(__float2half_rn(x)));
}
template <>
__device__ inline bf16 from_float<bf16>(float x) {
  return bf16::from_bits(__bfloat16_as_ushort(__float2bfloat16_rn(x)));
}

// The six pointer arrays of the two batched GEMMs, each of B·H entries, back to back.
enum PointerArray : int { kKf = 0, kQhat, kScores, kV, kProbs, kOut, kPointerArrays };

inline constexpr int kPrepareThreads = 256;
// One block per softmax row: 256 threads keep rows of T <= 4096 at <= 16 elements per thread
// while short rows (T = 1, 7) waste little.
inline constexpr int kSoftmaxThreads = 256;
inline constexpr int kRestartThreads = 256;
// gridDim.y and gridDim.z are limited to 65535; loops stride over the rest.
inline constexpr index_t kMaxGridY = 65535;

// Step 1: pointer arrays for (b,h) = blockIdx.x, and Q̂ = Qf ⊙ g when gated.
template <class T, bool kGated>
__global__ void __launch_bounds__(kPrepareThreads)
    prepare(AttentionParams p, T* qhat, float* scores, T* probs, void** ptrs) {
  const index_t bh = blockIdx.x;
  const index_t n = gridDim.x;  // B·H
  const index_t b = bh / p.heads, h = bh % p.heads;
  const index_t T_ = p.seq, D = p.head_dim;
  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  T* qh = qhat + bh * T_ * D;  // (T,D) compact
  if (blockIdx.y == 0 && threadIdx.x == 0) {
    const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    T* o = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
    ptrs[kKf * n + bh] = const_cast<T*>(k);
    ptrs[kQhat * n + bh] = kGated ? static_cast<void*>(qh) : const_cast<T*>(q);
    ptrs[kScores * n + bh] = scores + bh * T_ * T_;
    ptrs[kV * n + bh] = const_cast<T*>(v);
    ptrs[kProbs * n + bh] = probs + bh * T_ * T_;
    ptrs[kOut * n + bh] = o;
  }
  if constexpr (kGated) {
    const int gi = p.gates.index(static_cast<int>(h));
    const float g_std = effective_gate(p.gates.w_std[gi], p.gates.param);
    const float g_rec = effective_gate(p.gates.w_rec[gi], p.gates.param);
    const index_t d_std = D - p.rank;
    const index_t step = static_cast<index_t>(gridDim.y) * blockDim.x;
    for (index_t e = static_cast<index_t>(blockIdx.y) * blockDim.x + threadIdx.x; e < T_ * D;
         e += step) {
      const index_t t = e / D, d = e % D;
      const float g = d < d_std ? g_std : g_rec;
      qh[e] = from_float<T>(to_float(q[t * p.q_row_stride + d]) * g);
    }
  }
}

// Step 3: one block per row r = (b·H + h)·T + i of S (T,T) per head.
template <class T>
__global__ void __launch_bounds__(kSoftmaxThreads)
    causal_softmax(const float* scores, T* probs, float* lse, index_t seq) {
  using Reduce = cub::BlockReduce<float, kSoftmaxThreads>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ float row_max, row_sum;
  const index_t r = blockIdx.x;
  const index_t i = r % seq;  // query position: keys 0..i are visible
  const float* s = scores + r * seq;
  T* pr = probs + r * seq;

  float m = -INFINITY;
  for (index_t j = threadIdx.x; j <= i; j += kSoftmaxThreads) m = fmaxf(m, s[j]);
  m = Reduce(temp).Reduce(m, ::cuda::maximum<>{});
  if (threadIdx.x == 0) row_max = m;
  __syncthreads();  // publishes row_max; temp may be reused after this barrier
  m = row_max;

  float l = 0.f;
  for (index_t j = threadIdx.x; j <= i; j += kSoftmaxThreads) l += expf(s[j] - m);
  l = Reduce(temp).Sum(l);
  if (threadIdx.x == 0) row_sum = l;
  __syncthreads();
  // Row i always holds its diagonal, so l >= exp(0) = 1: no division by zero.
  const float inv = 1.f / row_sum;
  for (index_t j = threadIdx.x; j < seq; j += kSoftmaxThreads)
    pr[j] = from_float<T>(j <= i ? expf(s[j] - m) * inv : 0.f);
  if (lse != nullptr && threadIdx.x == 0) lse[r] = m + logf(row_sum);
}

// Step 5: O' = (1 - α_h) O + α_h V over every (b, h, t, d).
template <class T>
__global__ void __launch_bounds__(kRestartThreads) self_restart(AttentionParams p) {
  const index_t D = p.head_dim, T_ = p.seq, H = p.heads;
  const index_t total = static_cast<index_t>(p.batch) * H * T_ * D;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const index_t d = e % D, row = e / D;
    const index_t t = row % T_, bh = row / T_;
    const index_t h = bh % H, b = bh / H;
    const float alpha = effective_restart(p.restart.a[h]);
    T* o =
        static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride + t * p.o_row_stride + d;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride +
                 t * p.v_row_stride + d;
    *o = from_float<T>((1.f - alpha) * to_float(*o) + alpha * to_float(*v));
  }
}

inline index_t ceil_div(index_t a, index_t b) {
  return (a + b - 1) / b;
}

}  // namespace unfused_detail

/// The unfused attention path, planned for a largest UnfusedShape. Movable, not copyable.
/// run() is not thread-safe (it sets the stream and workspace on the context's cuBLAS
/// handle); the context must outlive the plan.
class UnfusedAttention {
 public:
  /// Scratch regions the path needs for `max` (names start with "unfused."): Q̂ (B,H,T,D)
  /// in the element type, S (B,H,T,T) fp32, P (B,H,T,T) in the element type, and the pointer
  /// arrays. Throws ra::error on a negative or zero extent.
  static std::vector<WorkspaceRegion> regions(const UnfusedShape& max) {
    check_shape(max);
    const index_t bh = max.batch * max.heads;
    const index_t e = static_cast<index_t>(size_of(max.dtype));
    return {{"unfused.qhat", static_cast<std::size_t>(bh * max.seq * max.head_dim * e)},
            region_of<float>("unfused.scores", bh * max.seq * max.seq),
            {"unfused.probs", static_cast<std::size_t>(bh * max.seq * max.seq * e)},
            region_of<void*>("unfused.pointers", unfused_detail::kPointerArrays * bh)};
  }

  UnfusedAttention() = default;

  /// Plans for `max` with its own scratch and cuBLAS workspace (one allocation).
  /// Throws ra::error on a bad shape, ra::cuda_error when the allocation fails.
  UnfusedAttention(const Context& ctx, const UnfusedShape& max) : blas_(ctx.blas()), max_(max) {
    auto r = regions(max);
    r.push_back({"unfused.cublas", kGemmWorkspaceBytes});
    owned_ = Workspace::plan(r);
    bind(owned_, owned_.region<std::byte>("unfused.cublas"), kGemmWorkspaceBytes);
  }

  /// Plans for `max` on regions of a caller's workspace planned with regions(max), and a
  /// caller's cuBLAS workspace (256-byte aligned; may be shared with GEMMs that run on the
  /// same stream, since work on one stream is ordered). Allocates nothing.
  /// Throws ra::error when a region is missing or too small.
  UnfusedAttention(const Context& ctx, const UnfusedShape& max, const Workspace& ws,
                   void* blas_workspace, std::size_t blas_workspace_bytes)
      : blas_(ctx.blas()), max_(max) {
    const auto need = regions(max);
    for (const auto& r : need)
      require_arg(ws.contains(r.name) && ws.region_bytes(r.name) >= r.bytes, "UnfusedAttention",
                  "workspace region", r.name,
                  ra::detail::concat("a region of at least ", r.bytes, " bytes"));
    bind(ws, blas_workspace, blas_workspace_bytes);
  }

  const UnfusedShape& max_shape() const { return max_; }
  /// Device bytes this object owns (0 when it uses a caller's workspace).
  std::size_t device_bytes() const { return owned_.bytes(); }

  /// Enqueues the five steps for the problem p describes (device pointers; O' written in
  /// p's output layout, lse when p.lse is not null). Makes no allocation; graph-capturable.
  /// Throws ra::error when p is invalid or larger than the plan, ra::cuda_error when a launch
  /// or cuBLAS call fails.
  void run(const AttentionParams& p, cudaStream_t stream) const {
    validate(p);
    if (p.batch == 0 || p.seq == 0) return;
    dispatch_dtype(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      run_typed<T>(p, stream);
    });
  }

 private:
  static void check_shape(const UnfusedShape& s) {
    constexpr const char* where = "UnfusedAttention";
    require_arg(s.batch > 0, where, "max batch", s.batch, "> 0");
    require_arg(s.heads > 0, where, "max heads", s.heads, "> 0");
    require_arg(s.seq > 0, where, "max seq", s.seq, "> 0");
    require_arg(s.head_dim > 0, where, "max head_dim", s.head_dim, "> 0");
    // cuBLAS's batched GEMMs take int sizes and batch counts.
    require_arg(s.batch * s.heads <= INT_MAX, where, "max batch * heads", s.batch * s.heads,
                "at most INT_MAX");
    require_arg(s.seq <= INT_MAX, where, "max seq", s.seq, "at most INT_MAX");
    // The softmax launches one block per row of S.
    require_arg(s.batch * s.heads * s.seq <= INT_MAX, where, "max batch * heads * seq",
                s.batch * s.heads * s.seq, "at most INT_MAX");
  }

  void bind(const Workspace& ws, void* blas_workspace, std::size_t blas_workspace_bytes) {
    require_arg(reinterpret_cast<std::uintptr_t>(blas_workspace) % 256 == 0, "UnfusedAttention",
                "cuBLAS workspace", blas_workspace, "a 256-byte aligned pointer");
    require_arg(blas_workspace != nullptr || blas_workspace_bytes == 0, "UnfusedAttention",
                "cuBLAS workspace", "a null pointer", "a device buffer");
    qhat_ = ws.region<std::byte>("unfused.qhat");
    scores_ = ws.region<float>("unfused.scores");
    probs_ = ws.region<std::byte>("unfused.probs");
    pointers_ = ws.region<void*>("unfused.pointers");
    blas_workspace_ = blas_workspace;
    blas_workspace_bytes_ = blas_workspace_bytes;
  }

  void validate(const AttentionParams& p) const {
    constexpr const char* where = "UnfusedAttention::run";
    require(blas_ != nullptr, where, ": the plan is empty (default-constructed or moved from)");
    validate_common(p, where);
    require_arg(p.dtype == max_.dtype, where, "dtype", p.dtype,
                ra::detail::concat(max_.dtype, " (the planned dtype)"));
    require_arg(p.batch >= 0 && p.batch <= max_.batch, where, "batch", p.batch,
                ra::detail::concat("in [0, ", max_.batch, "] (the planned maximum)"));
    require_arg(p.heads > 0 && p.heads <= max_.heads, where, "heads", p.heads,
                ra::detail::concat("in [1, ", max_.heads, "] (the planned maximum)"));
    require_arg(p.seq >= 0 && p.seq <= max_.seq, where, "seq", p.seq,
                ra::detail::concat("in [0, ", max_.seq, "] (the planned maximum)"));
    require_arg(p.head_dim > 0 && p.head_dim <= max_.head_dim, where, "head_dim", p.head_dim,
                ra::detail::concat("in [1, ", max_.head_dim, "] (the planned maximum)"));
    // The batched GEMMs read rows through int leading dimensions of at least D.
    const std::pair<const char*, index_t> rows[] = {{"q_row_stride", p.q_row_stride},
                                                    {"k_row_stride", p.k_row_stride},
                                                    {"v_row_stride", p.v_row_stride},
                                                    {"o_row_stride", p.o_row_stride}};
    for (const auto& [name, s] : rows)
      require_arg(s >= p.head_dim && s <= INT_MAX, where, name, s,
                  ra::detail::concat("in [D = ", p.head_dim, ", INT_MAX]"));
  }

  template <class T>
  void run_typed(const AttentionParams& p, cudaStream_t stream) const {
    namespace ud = unfused_detail;
    const index_t B = p.batch, H = p.heads, T_ = p.seq, D = p.head_dim;
    const index_t bh = B * H;
    T* qhat = reinterpret_cast<T*>(qhat_);
    T* probs = reinterpret_cast<T*>(probs_);
    void** ptrs = pointers_;

    // 1. pointer arrays, and Q̂ when gated
    if (p.gates.enabled()) {
      const dim3 grid(
          static_cast<unsigned>(bh),
          static_cast<unsigned>(std::min(
              ud::kMaxGridY, std::max<index_t>(1, ud::ceil_div(T_ * D, ud::kPrepareThreads)))));
      ud::prepare<T, true><<<grid, ud::kPrepareThreads, 0, stream>>>(p, qhat, scores_, probs, ptrs);
    } else {
      ud::prepare<T, false>
          <<<dim3(static_cast<unsigned>(bh), 1), 32, 0, stream>>>(p, qhat, scores_, probs, ptrs);
    }
    RA_CUDA_CHECK_LAUNCH();

    const cublasHandle_t h = blas_;
    RA_CUBLAS_CHECK(cublasSetStream(h, stream));
    // cublasSetStream resets the workspace to cuBLAS's own pool: set ours after it, every
    // run, so cuBLAS never allocates (and capture sees a fixed workspace).
    RA_CUBLAS_CHECK(cublasSetWorkspace(h, blas_workspace_, blas_workspace_bytes_));
    RA_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    // The handle may be shared: make sure nobody's TF32 setting reaches the fp32 path.
    RA_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    const cudaDataType_t type = cuda_data_type(dtype_v<T>);
    const int t = static_cast<int>(T_), d = static_cast<int>(D), batch = static_cast<int>(bh);
    const auto arr = [&](int i) { return ptrs + i * bh; };

    // 2. S (T,T) = Q̂ · Kfᵀ · scale, row-major. Column-major, Sᵀ = Kf · Q̂ᵀ where Kf (T,D)
    //    row-major is Kfᵀ (D,T) column-major (so op = T) and Q̂ row-major is Q̂ᵀ (D,T) (op = N).
    const float scale = p.scale, zero = 0.f, one = 1.f;
    const int ld_qhat = p.gates.enabled() ? d : static_cast<int>(p.q_row_stride);
    RA_CUBLAS_CHECK(cublasGemmBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, t, t, d, &scale, arr(ud::kKf),
                                        type, static_cast<int>(p.k_row_stride), arr(ud::kQhat),
                                        type, ld_qhat, &zero, arr(ud::kScores), CUDA_R_32F, t,
                                        batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));

    // 3. causal softmax rows, lse
    ud::causal_softmax<T><<<static_cast<unsigned>(bh * T_), ud::kSoftmaxThreads, 0, stream>>>(
        scores_, probs, p.lse, T_);
    RA_CUDA_CHECK_LAUNCH();

    // 4. O (T,D) = P · V, row-major with row stride o_row_stride. Column-major,
    //    Oᵀ (D,T) = Vᵀ · Pᵀ, and both V and P row-major are already Vᵀ, Pᵀ (op = N).
    RA_CUBLAS_CHECK(cublasGemmBatchedEx(
        h, CUBLAS_OP_N, CUBLAS_OP_N, d, t, t, &one, arr(ud::kV), type,
        static_cast<int>(p.v_row_stride), arr(ud::kProbs), type, t, &zero, arr(ud::kOut), type,
        static_cast<int>(p.o_row_stride), batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));

    // 5. self-restart epilogue
    if (p.restart.enabled()) {
      const index_t total = bh * T_ * D;
      const index_t blocks = std::min<index_t>(ud::ceil_div(total, ud::kRestartThreads), 1 << 20);
      ud::self_restart<T><<<static_cast<unsigned>(blocks), ud::kRestartThreads, 0, stream>>>(p);
      RA_CUDA_CHECK_LAUNCH();
    }
  }

  cublasHandle_t blas_ = nullptr;
  UnfusedShape max_{};
  Workspace owned_{};
  std::byte* qhat_ = nullptr;   // (B,H,T,D) of T
  float* scores_ = nullptr;     // (B,H,T,T)
  std::byte* probs_ = nullptr;  // (B,H,T,T) of T
  void** pointers_ = nullptr;   // kPointerArrays x (B·H)
  void* blas_workspace_ = nullptr;
  std::size_t blas_workspace_bytes_ = 0;
};

}  // namespace ra::cuda
