// ra/cuda/reduce.cuh — deterministic reductions for training: column sums of a row-major
// matrix (bias and LayerNorm parameter gradients) and sums / sums of squares of a vector
// (the loss, the global gradient norm).
//
// Deterministic means the same inputs give the same bits on every run: no atomics, and every
// sum is taken in a fixed order —
//   column sums:  rows are cut into chunks of kColumnChunkRows; one thread sums its column
//                 over one chunk in row order, then per column 8 threads add every 8th chunk's
//                 partial sum and one adds their 8 results (a scratch of chunks × columns
//                 floats);
//   vector sums:  kSumBlocks blocks stride over the vector, each thread adds in index order,
//                 each block reduces its threads by a fixed tree, then one block adds the
//                 kSumBlocks partials in order, in double.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>

namespace ra::cuda {

/// Rows per chunk of the column sums.
inline constexpr int kColumnChunkRows = 64;
/// Blocks of the first pass of the vector sums.
inline constexpr int kSumBlocks = 264;

/// Floats of scratch column_sums() needs for an (rows, cols) matrix with `outputs` sums per
/// column (1 or 2).
inline index_t column_sums_scratch(index_t rows, index_t cols, int outputs) {
  return (rows + kColumnChunkRows - 1) / kColumnChunkRows * cols * outputs;
}

namespace detail {

// Pass 1: partial[chunk][output][col] = Σ_{rows of chunk} op(row, col).
template <int kOutputs, class Op>
__global__ void column_partials_kernel(Op op, index_t rows, index_t cols, float* partial) {
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const index_t chunk = blockIdx.y;
  const index_t r0 = chunk * kColumnChunkRows;
  const index_t r1 = r0 + kColumnChunkRows < rows ? r0 + kColumnChunkRows : rows;
  float s0 = 0.f, s1 = 0.f;
  for (index_t r = r0; r < r1; ++r) {
    const float2 v = op(r, c);
    s0 += v.x;
    if constexpr (kOutputs == 2) s1 += v.y;
  }
  float* out = partial + chunk * kOutputs * cols;
  out[c] = s0;
  if constexpr (kOutputs == 2) out[cols + c] = s1;
}

// Pass 2: out_k[col] = Σ_chunks partial[chunk][k][col] (out_k may be null). A block takes 32
// columns; its 8 warps take every 8th chunk (warp w: chunks w, w + 8, ...), then warp 0 adds
// the 8 partial sums in warp order: a fixed order, and 8 loads in flight per column.
template <int kOutputs>
__global__ void __launch_bounds__(256)
    column_finish_kernel(const float* partial, index_t chunks, index_t cols, float* out0,
                         float* out1) {
  __shared__ float part[kOutputs][8][32];
  const int lane = threadIdx.x % 32, group = threadIdx.x / 32;
  const index_t c = static_cast<index_t>(blockIdx.x) * 32 + lane;
  float s0 = 0.f, s1 = 0.f;
  if (c < cols)
    for (index_t k = group; k < chunks; k += 8) {
      s0 += partial[k * kOutputs * cols + c];
      if constexpr (kOutputs == 2) s1 += partial[k * kOutputs * cols + cols + c];
    }
  part[0][group][lane] = s0;
  if constexpr (kOutputs == 2) part[kOutputs - 1][group][lane] = s1;
  __syncthreads();
  if (group != 0 || c >= cols) return;
  float t0 = 0.f, t1 = 0.f;
  for (int w = 0; w < 8; ++w) {
    t0 += part[0][w][lane];
    if constexpr (kOutputs == 2) t1 += part[kOutputs - 1][w][lane];
  }
  if (out0) out0[c] = t0;
  if constexpr (kOutputs == 2)
    if (out1) out1[c] = t1;
}

// Σ over a block of 256 threads, by a fixed tree (shuffles within warps, then warp 0).
__device__ __forceinline__ double block_sum_256(double v) {
  __shared__ double warp_sums[8];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < 8; ++w) s += warp_sums[w];
  __syncthreads();
  return s;  // valid in thread 0
}

template <bool kSquare>
__global__ void __launch_bounds__(256)
    sum_partials_kernel(const float* x, index_t n, double* partial) {
  double s = 0.0;
  for (index_t i = static_cast<index_t>(blockIdx.x) * 256 + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * 256) {
    const double v = x[i];
    s += kSquare ? v * v : v;
  }
  s = block_sum_256(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// A template only so that the header defines no non-inline kernel (one definition per
// program).
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    sum_finish_kernel(const double* partial, int count, double* out) {
  static_assert(kThreads == 256, "block_sum_256 reduces 256 threads");
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += kThreads) s += partial[i];
  s = block_sum_256(s);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace detail

/// For c < cols: out0[c] = Σ_r op(r, c).x and (outputs = 2) out1[c] = Σ_r op(r, c).y, with
/// op a device functor float2(index_t row, index_t col). Overwrites out0 / out1 (fp32; either
/// may be null when not wanted). `scratch` holds column_sums_scratch(rows, cols, outputs)
/// floats. Deterministic. Throws ra::cuda_error when a launch fails.
template <int kOutputs, class Op>
void column_sums(Op op, index_t rows, index_t cols, float* out0, float* out1, float* scratch,
                 cudaStream_t stream) {
  static_assert(kOutputs == 1 || kOutputs == 2, "column_sums: one or two sums per column");
  if (cols == 0) return;
  const index_t chunks = (rows + kColumnChunkRows - 1) / kColumnChunkRows;
  require_arg(chunks <= 65535, "cuda::column_sums", "rows", rows,
              ra::detail::concat("at most ", 65535 * kColumnChunkRows));
  const unsigned col_blocks = static_cast<unsigned>((cols + 255) / 256);
  if (chunks > 0) {
    detail::column_partials_kernel<kOutputs>
        <<<dim3(col_blocks, static_cast<unsigned>(chunks)), 256, 0, stream>>>(op, rows, cols,
                                                                              scratch);
    RA_CUDA_CHECK_LAUNCH();
  }
  detail::column_finish_kernel<kOutputs>
      <<<static_cast<unsigned>((cols + 31) / 32), 256, 0, stream>>>(scratch, chunks, cols, out0,
                                                                    out1);
  RA_CUDA_CHECK_LAUNCH();
}

/// Doubles of scratch sum() needs.
inline constexpr index_t kSumScratch = kSumBlocks;

/// *out = Σ x[i] (or Σ x[i]² with square) over n floats, in double, deterministic.
/// `scratch` holds kSumScratch doubles. Throws ra::cuda_error when a launch fails.
inline void sum(const float* x, index_t n, bool square, double* out, double* scratch,
                cudaStream_t stream) {
  if (square) {
    detail::sum_partials_kernel<true><<<kSumBlocks, 256, 0, stream>>>(x, n, scratch);
  } else {
    detail::sum_partials_kernel<false><<<kSumBlocks, 256, 0, stream>>>(x, n, scratch);
  }
  RA_CUDA_CHECK_LAUNCH();
  detail::sum_finish_kernel<256><<<1, 256, 0, stream>>>(scratch, kSumBlocks, out);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
