// ra/cuda/embedding.cuh — GPT-2's token + position embedding on the GPU:
//
//   forward:   out[b,t,:] = wte[tok[b,t], :] + wpe[t, :]                        (T, fp32 add)
//   backward:  dwpe[t,:]  = Σ_b dout[b,t,:]   for t < T, 0 for T <= t < max_seq  (overwrite)
//              dwte[v,:] += Σ_{(b,t): tok = v} dout[b,t,:]                      (accumulate:
//              the tied LM head wrote its part first)
// Deterministic without atomics: the host groups the positions by token (TokenBuckets, built
// from the batch it already holds), and one block per distinct token adds its positions in
// order. Token ids are checked on the host (the model does it before upload).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/elementwise.cuh>

namespace ra::cuda {

/// The positions of a batch grouped by token: token ids[k] occurs at positions
/// rows[start[k] .. start[k+1]) (flat b·T + t, increasing). Built on the host.
struct TokenBuckets {
  std::vector<std::int32_t> ids, start, rows;

  explicit TokenBuckets(std::span<const std::int32_t> tokens) {
    rows.resize(tokens.size());
    std::iota(rows.begin(), rows.end(), 0);
    std::stable_sort(rows.begin(), rows.end(),
                     [&](std::int32_t a, std::int32_t b) { return tokens[a] < tokens[b]; });
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i == 0 || tokens[rows[i]] != tokens[rows[i - 1]]) {
        ids.push_back(tokens[rows[i]]);
        start.push_back(static_cast<std::int32_t>(i));
      }
    }
    start.push_back(static_cast<std::int32_t>(rows.size()));
  }
};

namespace detail {

// Row n at position positions[n] where given, else n % seq.
template <class T>
__global__ void embedding_forward_kernel(const std::int32_t* tokens, const std::int32_t* positions,
                                         const T* wte, const T* wpe, T* out, index_t rows,
                                         index_t seq, index_t C) {
  constexpr int P = Pack<T>::N;
  const index_t packs_per_row = C / P;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < rows * packs_per_row; i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t n = i / packs_per_row, c = i % packs_per_row;
    const Pack<T> a = reinterpret_cast<const Pack<T>*>(wte + tokens[n] * C)[c];
    const index_t pos = positions != nullptr ? positions[n] : n % seq;
    const Pack<T> b = reinterpret_cast<const Pack<T>*>(wpe + pos * C)[c];
    Pack<T> o;
#pragma unroll
    for (int k = 0; k < P; ++k) o.v[k] = T(f32(a.v[k]) + f32(b.v[k]));
    reinterpret_cast<Pack<T>*>(out + n * C)[c] = o;
  }
}

// dwpe rows t (one block row per t, threads over columns).
template <class T>
__global__ void embedding_wpe_grad_kernel(const T* dout, float* dwpe, index_t batch, index_t seq,
                                          index_t max_seq, index_t C) {
  const index_t t = blockIdx.y;
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C || t >= max_seq) return;
  float s = 0.f;
  if (t < seq)
    for (index_t b = 0; b < batch; ++b) s += f32(dout[(b * seq + t) * C + c]);
  dwpe[t * C + c] = s;
}

// dwte rows of the batch's tokens (one block row per distinct token).
template <class T>
__global__ void embedding_wte_grad_kernel(const T* dout, const std::int32_t* ids,
                                          const std::int32_t* start, const std::int32_t* rows,
                                          float* dwte, index_t count, index_t C) {
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (index_t k = blockIdx.y; k < count; k += gridDim.y) {
    float s = 0.f;
    for (std::int32_t j = start[k]; j < start[k + 1]; ++j)
      s += f32(dout[static_cast<index_t>(rows[j]) * C + c]);
    dwte[static_cast<index_t>(ids[k]) * C + c] += s;
  }
}

}  // namespace detail

/// out (B·T, C) = wte[tokens] + wpe[t] for device tokens (B·T int32, each in [0, rows of
/// wte): the caller checks). Throws ra::error on C not a multiple of the pack.
template <class T>
void embedding_forward(const std::int32_t* tokens, const T* wte, const T* wpe, T* out,
                       index_t batch, index_t seq, index_t C, cudaStream_t stream) {
  detail::check_packs<T>("cuda::embedding_forward", C, {wte, wpe, out});
  const index_t packs = batch * seq * (C / Pack<T>::N);
  if (packs == 0) return;
  detail::embedding_forward_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(
      tokens, nullptr, wte, wpe, out, batch * seq, seq, C);
  RA_CUDA_CHECK_LAUNCH();
}

/// out (rows, C) = wte[tokens] + wpe[positions], row by row (decoding: each new token at its
/// own position), for device tokens and positions (rows int32 each, checked by the caller).
/// Throws ra::error on C not a multiple of the pack.
template <class T>
void embedding_at(const std::int32_t* tokens, const std::int32_t* positions, const T* wte,
                  const T* wpe, T* out, index_t rows, index_t C, cudaStream_t stream) {
  detail::check_packs<T>("cuda::embedding_at", C, {wte, wpe, out});
  const index_t packs = rows * (C / Pack<T>::N);
  if (packs == 0) return;
  detail::embedding_forward_kernel<T><<<detail::pack_blocks(packs), 256, 0, stream>>>(
      tokens, positions, wte, wpe, out, rows, 1, C);
  RA_CUDA_CHECK_LAUNCH();
}

/// Device copies of a TokenBuckets (ids, start, rows), as embedding_backward reads them.
struct DeviceTokenBuckets {
  const std::int32_t* ids = nullptr;
  const std::int32_t* start = nullptr;
  const std::int32_t* rows = nullptr;
  index_t count = 0;  // distinct tokens
};

/// dwpe (max_seq, C) overwritten, dwte (V, C) accumulated, from dout (B·T, C); see the top
/// of this header. Deterministic.
template <class T>
void embedding_backward(const T* dout, const DeviceTokenBuckets& buckets, float* dwte, float* dwpe,
                        index_t batch, index_t seq, index_t max_seq, index_t C,
                        cudaStream_t stream) {
  constexpr const char* where = "cuda::embedding_backward";
  require_arg(seq <= max_seq && max_seq <= 65535, where, "max_seq", max_seq,
              ra::detail::concat("at least T = ", seq, " and at most 65535"));
  const unsigned col_blocks = static_cast<unsigned>((C + 255) / 256);
  detail::embedding_wpe_grad_kernel<T>
      <<<dim3(col_blocks, static_cast<unsigned>(max_seq)), 256, 0, stream>>>(dout, dwpe, batch, seq,
                                                                             max_seq, C);
  RA_CUDA_CHECK_LAUNCH();
  if (buckets.count == 0) return;
  detail::embedding_wte_grad_kernel<T>
      <<<dim3(col_blocks, static_cast<unsigned>(std::min<index_t>(buckets.count, 65535))), 256, 0,
         stream>>>(dout, buckets.ids, buckets.start, buckets.rows, dwte, buckets.count, C);
  RA_CUDA_CHECK_LAUNCH();
}

}  // namespace ra::cuda
