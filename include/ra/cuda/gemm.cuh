// ra/cuda/gemm.cuh — Y = A · Wᵀ + bias on the GPU through cuBLASLt, planned once.
//
//   A (M,K), W (N,K) (rows are outputs, as nn.Linear), bias (N) or none, Y (M,N); row-major
//   with row strides lda, ldw, ldy (elements) and unit column stride.
//   fp16 / bf16: inputs and output in the element type, fp32 accumulate (CUBLAS_COMPUTE_32F).
//   fp32: CUBLAS_COMPUTE_32F, or CUBLAS_COMPUTE_32F_FAST_TF32 when GemmShape::tf32 is set.
//   The bias is added in cuBLASLt's epilogue (CUBLASLT_EPILOGUE_BIAS). Its element type is
//   the output's: that is what cuBLASLt reads for 16-bit and fp32 outputs (the exceptions
//   in CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE's documentation concern int8 and fp8 only).
//
// Row-major to cuBLASLt's column-major. A row-major (R,C) matrix with row stride ld is, read
// column-major, its transpose: a (C,R) matrix with leading dimension ld. So
//   Y (M,N) row-major  =  Yᵀ (N,M) column-major, ld = ldy       (cuBLASLt's C and D)
//   W (N,K) row-major  =  Wᵀ (K,N) column-major, ld = ldw       (cuBLASLt's A, op = T)
//   A (M,K) row-major  =  Aᵀ (K,M) column-major, ld = lda       (cuBLASLt's B, op = N)
// and the column-major product cuBLASLt computes is
//   D (N,M) = op(Wᵀ) · Aᵀ = W · Aᵀ = (A · Wᵀ)ᵀ = Yᵀ,
// with m = N, n = M, k = K. The epilogue's bias has one value per row of D, i.e. per column
// of Y, broadcast over the M rows of Y: exactly nn.Linear's bias. No transpose is ever
// materialised.
//
// Training needs the other two products of a linear layer, Y = dY·W and dW = dYᵀ·X; the
// shape flags say how A and W are stored, so neither is ever transposed in memory:
//   w_kn  W is stored (K,N) row-major (ld >= N): Y = A · W        (cuBLASLt's A, op = N)
//   a_km  A is stored (K,M) row-major (ld >= M): Y = Aᵀ · W(ᵀ)    (cuBLASLt's B, op = T)
//   y_f32 Y is fp32 while A and W are 16-bit (fp32 gradients of 16-bit weights)
//   accumulate  Y += product (beta = 1) instead of Y = product
// So for a layer y = x·Wᵀ + b with x (M,K), W (N,K):  dx (M,K) = dy·W is {m=M, n=K, k=N, w_kn},
// and dW (N,K) = dyᵀ·x is {m=N, n=K, k=M, a_km, w_kn}.
// The GELU of an MLP rides in the epilogue (GemmEpilogue, run_with_aux): gelu_aux writes
// Y = gelu(A·Wᵀ + b) and the pre-activation to an aux matrix (cuBLASLt's GELU_AUX[_BIAS]);
// dgelu writes Y = (A·W(ᵀ)) ⊙ gelu'(aux) (DGELU). aux has Y's shape, row stride aux_ld.
// For fp32 the GELU is ra's own, the tanh form of ra/cuda/gelu.cuh, applied by one row pass
// after the product: cuBLASLt's fp32 GELU and DGELU epilogues are not the tanh form to fp32
// accuracy (on an H200, CUDA 13: 14x and 17x the error of a naive fp32 GELU, rel L2 2.2e-6 and
// 2.7e-6), so gelu_aux runs the product (+ bias) into aux and then Y = gelu(aux), and dgelu
// runs the product into Y and then Y ⊙= gelu'(aux). Same buffers, nothing allocated, still
// graph-capturable; one more pass over Y and aux. For fp16 and bf16 cuBLASLt's epilogue stays:
// its error hides under the 16-bit rounding of Y (within the precision rule: e/n <= 1.41 on an
// H200) and the fused epilogue is the fast path the bf16 model trains with.
// A bias gradient rides in the epilogue of the weight-gradient product too: bias_grad (with
// a_km, A = dY stored (K,M)) also writes aux (M values, Y's type) = Σ_k A[k, :], the column
// sums of dY (cuBLASLt's BGRADB).
//
// A GemmPlan holds the descriptors, the heuristic's algorithm and the workspace for one
// problem (M, N, K, strides, dtype, bias); run() only enqueues cublasLtMatmul: no
// allocation, no synchronisation, so it can be captured in a CUDA graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <type_traits>
#include <utility>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/gelu.cuh>
#include <ra/expr/gemm.hpp>

namespace ra::cuda {

/// cuBLAS workspace size for the GEMMs and batched GEMMs of one block: NVIDIA recommends
/// 32 MiB on Hopper (4 MiB suffices elsewhere); split-K and stream-K algorithms need it.
inline constexpr std::size_t kGemmWorkspaceBytes = std::size_t{32} << 20;

/// The cudaDataType of an element type.
inline cudaDataType_t cuda_data_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::f16:
      return CUDA_R_16F;
    case DType::bf16:
      return CUDA_R_16BF;
  }
  throw unsupported(ra::detail::concat("cuda_data_type: unsupported dtype code ",
                                       static_cast<int>(t), ", expected fp32, fp16 or bf16"));
}

/// The cuBLAS and cuBLASLt handles, created once (for the device current at construction)
/// and shared by every plan built from this context. Handles are not thread-safe: use one
/// context per host thread. Neither copyable nor movable (plans keep the handles).
class Context {
 public:
  /// Creates both handles. Throws ra::cuda_error when there is no usable device.
  Context() {
    RA_CUBLAS_CHECK(cublasLtCreate(&lt_));
    try {
      RA_CUBLAS_CHECK(cublasCreate(&blas_));
    } catch (...) {
      (void)cublasLtDestroy(lt_);
      throw;
    }
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Errors are ignored: a destructor must not throw, and at process exit the driver may
  // already be shutting down.
  ~Context() {
    (void)cublasDestroy(blas_);
    (void)cublasLtDestroy(lt_);
  }

  cublasLtHandle_t lt() const { return lt_; }
  cublasHandle_t blas() const { return blas_; }

 private:
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
};

namespace detail {

// The slot of the process-wide context. Its constructor initialises the CUDA runtime first,
// so that it is destroyed at exit before the runtime (and cuBLAS) are torn down: static
// objects are destroyed in the reverse order of their construction.
struct DefaultContextSlot {
  DefaultContextSlot() { (void)cudaFree(nullptr); }
  std::mutex mutex;
  std::unique_ptr<Context> context;
};

inline DefaultContextSlot& default_context_slot() {
  static DefaultContextSlot slot;
  return slot;
}

}  // namespace detail

/// A process-wide context for callers that bring none (ra::cuda::device{} without ctx, the
/// models' default argument). Created on first use, for the device current then; destroyed at
/// exit, or earlier by release_default_context().
inline Context& default_context() {
  auto& slot = detail::default_context_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  if (!slot.context) slot.context = std::make_unique<Context>();
  return *slot.context;
}

/// Destroys the process-wide context now (its cuBLAS and cuBLASLt handles and their device
/// memory); the next default_context() creates a new one. Only when nothing made from it is
/// in use any more: plans, blocks and models keep a reference to the context they were made
/// with.
inline void release_default_context() {
  auto& slot = detail::default_context_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  slot.context.reset();
}

/// A pointwise step fused after the product (see the top of this header).
enum class GemmEpilogue : std::uint8_t { none, gelu_aux, dgelu, bias_grad };

/// One GEMM problem: Y (M,N) = A (M,K) · W (N,K)ᵀ (+ bias (N)), row-major with row strides.
struct GemmShape {
  index_t m = 0, n = 0, k = 0;
  index_t lda = 0;  // row stride of A, >= K
  index_t ldw = 0;  // row stride of W, >= K
  index_t ldy = 0;  // row stride of Y, >= N
  DType dtype = DType::f16;
  bool bias = false;
  bool tf32 = false;             // fp32 only: allow TF32 tensor cores (off: exact fp32)
  std::uint32_t alignment = 16;  // bytes every pointer passed to run() is aligned to
  bool w_kn = false;             // W stored (K,N), ldw >= N (see the top of this header)
  bool a_km = false;             // A stored (K,M), lda >= M
  bool y_f32 = false;            // Y in fp32 (16-bit A and W)
  bool accumulate = false;       // Y += A·W (beta = 1)
  GemmEpilogue epilogue = GemmEpilogue::none;
  index_t aux_ld = 0;  // row stride of the aux matrix (gelu_aux, dgelu), >= N

  /// Same problem, same plan (plans are cached by shape).
  bool operator==(const GemmShape&) const = default;

  /// Y, A and W compact: lda = ldw = K, ldy = N.
  static GemmShape compact(index_t m, index_t n, index_t k, DType dtype, bool bias) {
    return {m, n, k, k, k, n, dtype, bias};
  }
};

inline std::ostream& operator<<(std::ostream& os, const GemmShape& s) {
  return os << "(M=" << s.m << ", N=" << s.n << ", K=" << s.k << ", lda=" << s.lda
            << ", ldw=" << s.ldw << ", ldy=" << s.ldy << ", " << s.dtype << (s.bias ? ", bias" : "")
            << (s.tf32 ? ", tf32" : "") << (s.w_kn ? ", W (K,N)" : "")
            << (s.a_km ? ", A (K,M)" : "") << (s.y_f32 ? ", fp32 Y" : "")
            << (s.accumulate ? ", Y +=" : "")
            << (s.epilogue == GemmEpilogue::gelu_aux    ? ", gelu aux"
                : s.epilogue == GemmEpilogue::dgelu     ? ", dgelu"
                : s.epilogue == GemmEpilogue::bias_grad ? ", bias grad"
                                                        : "")
            << ", align " << s.alignment << ")";
}

/// A planned cuBLASLt GEMM (see the top of this header for the mapping). Move-only.
/// run() is not thread-safe (it sets the bias pointer on the plan's descriptor).
class GemmPlan {
 public:
  GemmPlan() = default;

  /// Plans `s` on ctx's cuBLASLt handle with a caller-owned workspace of workspace_bytes
  /// (may be 0: then only algorithms that need none are considered).
  /// Throws ra::error on bad sizes or strides, ra::unsupported when cuBLASLt has no
  /// algorithm for the problem, ra::cuda_error when a cuBLASLt call fails.
  GemmPlan(const Context& ctx, const GemmShape& s, void* workspace, std::size_t workspace_bytes)
      : lt_(ctx.lt()), shape_(s), workspace_(workspace), workspace_bytes_(workspace_bytes) {
    constexpr const char* where = "GemmPlan";
    require_arg(s.m >= 0, where, "M", s.m, "M >= 0");
    require_arg(s.n > 0, where, "N", s.n, "N > 0");
    require_arg(s.k > 0, where, "K", s.k, "K > 0");
    const index_t a_cols = s.a_km ? s.m : s.k, w_cols = s.w_kn ? s.n : s.k;
    require_arg(s.lda >= a_cols, where, "lda", s.lda,
                ra::detail::concat("lda >= ", s.a_km ? "M = " : "K = ", a_cols));
    require_arg(s.ldw >= w_cols, where, "ldw", s.ldw,
                ra::detail::concat("ldw >= ", s.w_kn ? "N = " : "K = ", w_cols));
    require_arg(s.ldy >= s.n, where, "ldy", s.ldy, ra::detail::concat("ldy >= N = ", s.n));
    require_arg(s.alignment >= size_of(s.dtype) && s.alignment <= 256 &&
                    (s.alignment & (s.alignment - 1)) == 0,
                where, "alignment", s.alignment,
                ra::detail::concat("a power of two in [", size_of(s.dtype), ", 256]"));
    require_arg(!s.tf32 || s.dtype == DType::f32, where, "tf32", "true",
                "false for 16-bit element types");
    require_arg(!s.y_f32 || s.dtype != DType::f32, where, "y_f32", "true",
                "false for fp32 inputs (Y is fp32 already)");
    require_arg(!s.bias || (!s.y_f32 && !s.accumulate), where, "bias", "true",
                "false with y_f32 or accumulate (the bias epilogue is for forward products)");
    if (s.epilogue == GemmEpilogue::bias_grad) {
      require_arg(s.a_km && !s.bias && !s.accumulate, where, "epilogue", "bias_grad",
                  "A stored (K,M) (a_km), without bias or accumulate");
    } else if (s.epilogue != GemmEpilogue::none) {
      require_arg(!s.y_f32 && !s.accumulate, where, "epilogue", "gelu_aux/dgelu",
                  "none with y_f32 or accumulate");
      require_arg(s.epilogue != GemmEpilogue::dgelu || !s.bias, where, "bias", "true",
                  "false with the dgelu epilogue");
      require_arg(s.aux_ld >= s.n && s.aux_ld % 8 == 0, where, "aux_ld", s.aux_ld,
                  ra::detail::concat("a multiple of 8, >= N = ", s.n));
    }
    require_arg(workspace != nullptr || workspace_bytes == 0, where, "workspace", "a null pointer",
                "a device buffer of workspace_bytes");
    if (s.m == 0) return;  // nothing to compute; run() is a no-op
    try {
      build();
    } catch (...) {
      destroy();
      throw;
    }
  }

  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;
  GemmPlan(GemmPlan&& o) noexcept { steal(o); }
  GemmPlan& operator=(GemmPlan&& o) noexcept {
    if (this != &o) {
      destroy();
      steal(o);
    }
    return *this;
  }
  ~GemmPlan() { destroy(); }

  const GemmShape& shape() const { return shape_; }
  /// Workspace bytes the chosen algorithm uses (<= the workspace given).
  std::size_t algo_workspace_bytes() const { return algo_workspace_bytes_; }

  /// Enqueues Y = A · Wᵀ (+ bias) on `stream` (device pointers, the plan's dtype). bias must
  /// be null exactly when the plan has none. Makes no allocation; graph-capturable.
  /// Throws ra::error on a null or misaligned pointer, ra::cuda_error when cuBLASLt fails.
  void run(const void* a, const void* w, const void* bias, void* y, cudaStream_t stream) const {
    require(shape_.epilogue == GemmEpilogue::none,
            "GemmPlan::run: the plan has an epilogue output or input, expected run_with_aux() "
            "with its aux");
    enqueue(a, w, bias, y, stream);
  }

  /// run() for a plan with an epilogue: aux (M,N), row stride aux_ld, receives the
  /// pre-activation (gelu_aux) or provides it (dgelu); with bias_grad aux receives the M
  /// column sums of A. Throws as run(), and on a null or misaligned aux.
  void run_with_aux(const void* a, const void* w, const void* bias, void* y, const void* aux,
                    cudaStream_t stream) const {
    constexpr const char* where = "GemmPlan::run_with_aux";
    require(shape_.epilogue != GemmEpilogue::none, where,
            ": the plan has no epilogue, expected run()");
    if (shape_.m == 0) return;
    require(op_ != nullptr, where, ": the plan is empty (default-constructed or moved from)");
    check_pointer(where, "aux", aux);
    if (own_gelu()) {  // fp32: the product, then ra's GELU pass (see the top of this header)
      check_pointer(where, "Y", y);
      const auto* x = static_cast<const float*>(aux);
      if (shape_.epilogue == GemmEpilogue::gelu_aux) {
        enqueue(a, w, bias, const_cast<void*>(aux), stream);  // aux is the product's output
        gelu_rows(x, shape_.aux_ld, static_cast<float*>(y), shape_.ldy, shape_.m, shape_.n, stream);
      } else {
        enqueue(a, w, bias, y, stream);
        gelu_grad_rows(x, shape_.aux_ld, static_cast<float*>(y), shape_.ldy, shape_.m, shape_.n,
                       stream);
      }
      return;
    }
    const auto attr = shape_.epilogue == GemmEpilogue::bias_grad
                          ? CUBLASLT_MATMUL_DESC_BIAS_POINTER
                          : CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER;
    RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, attr, &aux, sizeof(aux)));
    enqueue(a, w, bias, y, stream);
  }

 private:
  // The GELU epilogues of an fp32 plan are ra's row passes, not cuBLASLt's (see the top).
  bool own_gelu() const {
    return shape_.dtype == DType::f32 &&
           (shape_.epilogue == GemmEpilogue::gelu_aux || shape_.epilogue == GemmEpilogue::dgelu);
  }

  // cublasLtMatmul into d (Y, or aux for an fp32 gelu_aux plan), laid out as y_layout_.
  void enqueue(const void* a, const void* w, const void* bias, void* d, cudaStream_t stream) const {
    constexpr const char* where = "GemmPlan::run";
    if (shape_.m == 0) return;
    require(op_ != nullptr, where, ": the plan is empty (default-constructed or moved from)");
    check_pointer(where, "A", a);
    check_pointer(where, "W", w);
    check_pointer(where, "Y", d);
    if (shape_.bias) {
      check_pointer(where, "bias", bias);
      RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                     sizeof(bias)));
    } else {
      require_arg(bias == nullptr, where, "bias", bias, "null: the plan has no bias");
    }
    // cuBLASLt's A is our W and its B is our A (see the top of this header).
    RA_CUBLAS_CHECK(cublasLtMatmul(lt_, op_, &alpha_, w, w_layout_, a, a_layout_, &beta_, d,
                                   y_layout_, d, y_layout_, &algo_, workspace_, workspace_bytes_,
                                   stream));
  }

 public:
  /// Typed run: T must be the plan's element type (and Y fp32 for a y_f32 plan).
  template <Element T, class Y>
  void run(const T* a, const T* w, const T* bias, Y* y, cudaStream_t stream) const {
    require_arg(dtype_v<T> == shape_.dtype, "GemmPlan::run", "element type", dtype_v<T>,
                ra::detail::concat(shape_.dtype, " (the planned dtype)"));
    require_arg(dtype_v<Y> == (shape_.y_f32 ? DType::f32 : shape_.dtype), "GemmPlan::run",
                "output element type", dtype_v<Y>,
                ra::detail::concat(shape_.y_f32 ? DType::f32 : shape_.dtype, " (the planned Y)"));
    run(static_cast<const void*>(a), static_cast<const void*>(w), static_cast<const void*>(bias),
        static_cast<void*>(y), stream);
  }

  /// Runs a Gemm node into y (M,N). The node's shapes and strides must be the planned ones.
  /// Throws ra::error on any mismatch.
  template <class AV, class WV, class BiasV, View YV>
  void run(const Gemm<AV, WV, BiasV>& node, const YV& y, cudaStream_t stream) const {
    constexpr const char* where = "GemmPlan::run";
    using T = typename AV::value_type;
    static_assert(
        std::is_same_v<T, typename WV::value_type> && std::is_same_v<T, typename YV::value_type>,
        "gemm: A, W and Y must have one element type");
    node.validate(where);
    node.validate_output(y, where);
    require(node.m() == shape_.m && node.n() == shape_.n && node.k() == shape_.k, where,
            ": the node is (M=", node.m(), ", N=", node.n(), ", K=", node.k(),
            "), expected the planned ", shape_);
    check_ld(where, "A", node.a, shape_.lda);
    check_ld(where, "W", node.w, shape_.ldw);
    check_ld(where, "Y", y, shape_.ldy);
    const T* bias = nullptr;
    if constexpr (Gemm<AV, WV, BiasV>::kHasBias) {
      static_assert(std::is_same_v<T, typename BiasV::value_type>,
                    "gemm: the bias has the element type of Y");
      require_arg(node.bias.stride(0) == 1 || node.bias.extent(0) == 1, where, "bias.stride(0)",
                  node.bias.stride(0), "1 (a packed bias vector)");
      bias = node.bias.data();
    }
    run(node.a.data(), node.w.data(), bias, y.data(), stream);
  }

 private:
  void build() {
    const cudaDataType_t type = cuda_data_type(shape_.dtype);
    const cudaDataType_t y_type = shape_.y_f32 ? CUDA_R_32F : type;
    const cublasComputeType_t compute =
        shape_.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    RA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, compute, CUDA_R_32F));
    const cublasOperation_t trans_w = shape_.w_kn ? CUBLAS_OP_N : CUBLAS_OP_T;
    const cublasOperation_t trans_a = shape_.a_km ? CUBLAS_OP_T : CUBLAS_OP_N;
    RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &trans_w,
                                                   sizeof(trans_w)));
    RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &trans_a,
                                                   sizeof(trans_a)));
    cublasLtEpilogue_t epilogue = shape_.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    if (shape_.epilogue == GemmEpilogue::gelu_aux && !own_gelu())
      epilogue = shape_.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    if (shape_.epilogue == GemmEpilogue::dgelu && !own_gelu()) epilogue = CUBLASLT_EPILOGUE_DGELU;
    // cuBLASLt's B is our A (see above): the bias gradient of B sums over k.
    if (shape_.epilogue == GemmEpilogue::bias_grad) epilogue = CUBLASLT_EPILOGUE_BGRADB;
    RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                   sizeof(epilogue)));
    if ((shape_.epilogue == GemmEpilogue::gelu_aux || shape_.epilogue == GemmEpilogue::dgelu) &&
        !own_gelu()) {
      const std::int64_t ld = shape_.aux_ld;  // aux is Yᵀ-shaped (N,M) column-major
      RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                                     sizeof(ld)));
    }
    const auto u = [](index_t v) { return static_cast<std::uint64_t>(v); };
    // Column-major views of the row-major storage: W (N,K) is Wᵀ (K,N), W (K,N) is (N,K);
    // A (M,K) is Aᵀ (K,M), A (K,M) is (M,K); Y (M,N) is Yᵀ (N,M).
    const index_t w_rows = shape_.w_kn ? shape_.n : shape_.k;
    const index_t w_cols = shape_.w_kn ? shape_.k : shape_.n;
    const index_t a_rows = shape_.a_km ? shape_.m : shape_.k;
    const index_t a_cols = shape_.a_km ? shape_.k : shape_.m;
    RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&w_layout_, type, u(w_rows), u(w_cols), shape_.ldw));
    RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout_, type, u(a_rows), u(a_cols), shape_.lda));
    // The product's output: Y, or aux (row stride aux_ld) where an fp32 gelu_aux plan applies
    // its GELU from aux into Y afterwards.
    const index_t d_ld =
        own_gelu() && shape_.epilogue == GemmEpilogue::gelu_aux ? shape_.aux_ld : shape_.ldy;
    RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&y_layout_, y_type, u(shape_.n), u(shape_.m), d_ld));

    cublasLtMatmulPreference_t pref = nullptr;
    RA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    try {
      const std::uint64_t ws = workspace_bytes_;
      RA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
      // cuBLASLt assumes 256-byte aligned pointers unless told otherwise; an algorithm chosen
      // under that assumption can fail on the 16-byte aligned views a block passes.
      const std::uint32_t align = shape_.alignment;
      for (auto attr :
           {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        RA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)));
      RA_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, op_, w_layout_, a_layout_, y_layout_,
                                                     y_layout_, pref, 1, &result, &found));
    } catch (...) {
      (void)cublasLtMatmulPreferenceDestroy(pref);
      throw;
    }
    RA_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
      std::ostringstream os;
      os << shape_;
      throw unsupported(ra::detail::concat("GemmPlan: cuBLASLt has no algorithm for ", os.str(),
                                           " with a workspace of ", workspace_bytes_, " bytes"));
    }
    algo_ = result.algo;
    algo_workspace_bytes_ = result.workspaceSize;
    beta_ = shape_.accumulate ? 1.f : 0.f;
  }

  void check_pointer(const char* where, const char* name, const void* p) const {
    require_arg(p != nullptr, where, name, "a null pointer", "a device pointer");
    require_arg(reinterpret_cast<std::uintptr_t>(p) % shape_.alignment == 0, where, name, p,
                ra::detail::concat("a pointer aligned to ", shape_.alignment,
                                   " bytes (the plan's alignment)"));
  }

  template <View V>
  static void check_ld(const char* where, const char* name, const V& v, index_t ld) {
    require_arg(v.stride(1) == 1 || v.extent(1) == 1, where, ra::detail::concat(name, ".stride(1)"),
                v.stride(1), "1 (row-major rows)");
    // A single row has no row stride to speak of (reshapes give it stride 1).
    require_arg(v.stride(0) == ld || v.extent(0) == 1, where,
                ra::detail::concat(name, ".stride(0)"), v.stride(0),
                ra::detail::concat(ld, " (the planned row stride)"));
  }

  void destroy() noexcept {
    if (y_layout_) (void)cublasLtMatrixLayoutDestroy(y_layout_);
    if (a_layout_) (void)cublasLtMatrixLayoutDestroy(a_layout_);
    if (w_layout_) (void)cublasLtMatrixLayoutDestroy(w_layout_);
    if (op_) (void)cublasLtMatmulDescDestroy(op_);
    y_layout_ = a_layout_ = w_layout_ = nullptr;
    op_ = nullptr;
  }

  void steal(GemmPlan& o) noexcept {
    lt_ = o.lt_;
    op_ = std::exchange(o.op_, nullptr);
    w_layout_ = std::exchange(o.w_layout_, nullptr);
    a_layout_ = std::exchange(o.a_layout_, nullptr);
    y_layout_ = std::exchange(o.y_layout_, nullptr);
    algo_ = o.algo_;
    shape_ = o.shape_;
    workspace_ = o.workspace_;
    workspace_bytes_ = o.workspace_bytes_;
    algo_workspace_bytes_ = o.algo_workspace_bytes_;
    beta_ = o.beta_;
  }

  cublasLtHandle_t lt_ = nullptr;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t w_layout_ = nullptr;  // cuBLASLt's A
  cublasLtMatrixLayout_t a_layout_ = nullptr;  // cuBLASLt's B
  cublasLtMatrixLayout_t y_layout_ = nullptr;  // cuBLASLt's C and D
  cublasLtMatmulAlgo_t algo_{};
  GemmShape shape_{};
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  std::size_t algo_workspace_bytes_ = 0;
  float alpha_ = 1.f, beta_ = 0.f;
};

namespace detail {

// Row stride for cuBLAS: a view with one row may carry any stride (reshape gives 1); any
// value >= the row length is then valid, and the row length is the natural one.
template <View V>
index_t leading_dim(const V& v) {
  return v.extent(0) == 1 ? v.extent(1) : v.stride(0);
}

// The largest power of two <= 16 that divides every address (16 bytes is the widest vector
// access cuBLASLt kernels make).
inline std::uint32_t common_alignment(std::initializer_list<const void*> ptrs) {
  std::uint32_t a = 16;
  for (const void* p : ptrs) {
    if (p == nullptr) continue;
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    while (a > 1 && v % a != 0) a /= 2;
  }
  return a;
}

}  // namespace detail

/// The GemmShape of a Gemm node evaluated into y (M,N): strides and alignment read from the
/// views. Throws ra::error when a view's last stride is not 1 or the shapes disagree.
template <class AV, class WV, class BiasV, View YV>
GemmShape gemm_shape(const Gemm<AV, WV, BiasV>& node, const YV& y, bool tf32 = false) {
  constexpr const char* where = "cuda::gemm";
  using T = typename AV::value_type;
  node.validate(where);
  node.validate_output(y, where);
  const auto unit = [&](const char* name, index_t stride, index_t extent) {
    require_arg(stride == 1 || extent == 1, where, ra::detail::concat(name, ".stride(1)"), stride,
                "1 (cuBLASLt reads row-major rows)");
  };
  unit("A", node.a.stride(1), node.a.extent(1));
  unit("W", node.w.stride(1), node.w.extent(1));
  unit("Y", y.stride(1), y.extent(1));
  if constexpr (Gemm<AV, WV, BiasV>::kHasBias)
    require_arg(node.bias.stride(0) == 1 || node.bias.extent(0) == 1, where, "bias.stride(0)",
                node.bias.stride(0), "1 (cuBLASLt reads a packed bias vector)");
  GemmShape s;
  s.m = node.m();
  s.n = node.n();
  s.k = node.k();
  s.lda = detail::leading_dim(node.a);
  s.ldw = detail::leading_dim(node.w);
  s.ldy = detail::leading_dim(y);
  s.dtype = dtype_v<T>;
  s.bias = Gemm<AV, WV, BiasV>::kHasBias;
  s.tf32 = tf32;
  const void* bias = nullptr;
  if constexpr (Gemm<AV, WV, BiasV>::kHasBias) bias = node.bias.data();
  s.alignment = detail::common_alignment({node.a.data(), node.w.data(), y.data(), bias});
  require_arg(s.alignment >= sizeof(T), where, "pointer alignment", s.alignment,
              ra::detail::concat("at least the element size ", sizeof(T)));
  return s;
}

}  // namespace ra::cuda
