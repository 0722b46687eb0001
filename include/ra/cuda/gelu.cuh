// ra/cuda/gelu.cuh — GPT-2's GELU (tanh form) on the device, in fp32 arithmetic: the element
// math every GELU kernel of ra uses, and two passes over row-strided matrices:
//
//   gelu(x)  = ½ x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³)
//   gelu'(x) = ½ (1 + tanh u) + ½ x (1 − tanh² u) √(2/π) (1 + 3·0.044715 x²)
//
//   gelu_rows       y = gelu(x)          x (rows, cols) row stride ldx, y row stride ldy
//   gelu_grad_rows  dy = dy ⊙ gelu'(x)   in place; x row stride ldx, dy row stride lddy
//
// The row passes finish an fp32 GEMM whose GELU ra applies itself instead of cuBLASLt's
// epilogue (ra/cuda/gemm.cuh says why); ra/cuda/elementwise.cuh's packed kernels use the same
// element math, so both paths give the same bits for the same fp32 input. Rows may be
// strided and of any length: one thread per element, consecutive threads on consecutive
// columns (coalesced), blocks striding over rows and columns.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>

namespace ra::cuda {

namespace detail {

inline constexpr float kGeluScale = 0.7978845608028654f;  // √(2/π)
inline constexpr float kGeluCoeff = 0.044715f;

__device__ __forceinline__ float gelu(float x) {
  const float u = kGeluScale * (x + kGeluCoeff * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float t = tanhf(kGeluScale * (x + kGeluCoeff * x * x * x));
  return 0.5f * (1.f + t) +
         0.5f * x * (1.f - t * t) * kGeluScale * (1.f + 3.f * kGeluCoeff * x * x);
}

template <class T>
__global__ void __launch_bounds__(256)
    gelu_rows_kernel(const T* x, index_t ldx, T* y, index_t ldy, index_t rows, index_t cols) {
  for (index_t i = blockIdx.y; i < rows; i += gridDim.y)
    for (index_t j = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x)
      y[i * ldy + j] = T(gelu(static_cast<float>(x[i * ldx + j])));
}

template <class T>
__global__ void __launch_bounds__(256)
    gelu_grad_rows_kernel(const T* x, index_t ldx, T* dy, index_t lddy, index_t rows,
                          index_t cols) {
  for (index_t i = blockIdx.y; i < rows; i += gridDim.y)
    for (index_t j = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x) {
      T& d = dy[i * lddy + j];
      d = T(static_cast<float>(d) * gelu_grad(static_cast<float>(x[i * ldx + j])));
    }
}

// Validates a row pass and returns its grid (x: column blocks of 256, y: rows).
inline dim3 gelu_rows_grid(const char* where, const void* x, index_t ldx, const char* out_name,
                           const void* out, index_t ld_out, const char* ld_out_name, index_t rows,
                           index_t cols) {
  require_arg(rows >= 0, where, "rows", rows, "rows >= 0");
  require_arg(cols >= 0, where, "cols", cols, "cols >= 0");
  require_arg(ldx >= cols, where, "ldx", ldx, ra::detail::concat("ldx >= cols = ", cols));
  require_arg(ld_out >= cols, where, ld_out_name, ld_out,
              ra::detail::concat(ld_out_name, " >= cols = ", cols));
  if (rows > 0 && cols > 0) {
    require_arg(x != nullptr, where, "x", "a null pointer", "a device pointer");
    require_arg(out != nullptr, where, out_name, "a null pointer", "a device pointer");
  }
  const index_t col_blocks = std::min<index_t>((cols + 255) / 256, 64);
  const index_t row_blocks = std::min<index_t>(rows, 65535);
  return dim3(static_cast<unsigned>(std::max<index_t>(col_blocks, 1)),
              static_cast<unsigned>(std::max<index_t>(row_blocks, 1)));
}

}  // namespace detail

/// y = gelu(x) over a (rows, cols) matrix with row strides ldx and ldy (elements); y may be x
/// when ldy == ldx. Enqueued on `stream`; no allocation, graph-capturable. Throws ra::error
/// naming a negative size, a row stride below cols or a null pointer (rows, cols > 0),
/// ra::cuda_error when the launch fails.
template <class T>
void gelu_rows(const T* x, index_t ldx, T* y, index_t ldy, index_t rows, index_t cols,
               cudaStream_t stream) {
  const dim3 grid =
      detail::gelu_rows_grid("cuda::gelu_rows", x, ldx, "y", y, ldy, "ldy", rows, cols);
  if (rows == 0 || cols == 0) return;
  detail::gelu_rows_kernel<T><<<grid, 256, 0, stream>>>(x, ldx, y, ldy, rows, cols);
  RA_CUDA_CHECK_LAUNCH();
}

/// dy = dy ⊙ gelu'(x) in place over a (rows, cols) matrix with row strides ldx and lddy.
/// Throws as gelu_rows().
template <class T>
void gelu_grad_rows(const T* x, index_t ldx, T* dy, index_t lddy, index_t rows, index_t cols,
                    cudaStream_t stream) {
  const dim3 grid =
      detail::gelu_rows_grid("cuda::gelu_grad_rows", x, ldx, "dy", dy, lddy, "lddy", rows, cols);
  if (rows == 0 || cols == 0) return;
  detail::gelu_grad_rows_kernel<T><<<grid, 256, 0, stream>>>(x, ldx, dy, lddy, rows, cols);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
