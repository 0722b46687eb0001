// ra/cuda/layernorm.cuh — LayerNorm over the last dimension on the GPU (GPT-2's, eps 1e-5),
// the same arithmetic as ra/cpu/layernorm.hpp in fp32:
//
//   forward:   μ_i = mean_c x_ic,  σ²_i = mean_c (x_ic − μ_i)²,  r_i = 1/√(σ²_i + eps)
//              y_ic = (x_ic − μ_i) r_i w_c + b_c            (saves μ, r per row, fp32)
//   backward:  x̂ = (x − μ) r,  g = dy ⊙ w
//              dx_ic = r_i (g_ic − mean_c g_ic − x̂_ic mean_c (g ⊙ x̂)_ic)  (+ a residual
//              gradient, fused: dx = dres + …)
//              dw_c = Σ_i dy_ic x̂_ic,  db_c = Σ_i dy_ic        (fp32, deterministic)
// One warp per row, in 16-byte packs; x, y, dy, dx in T, statistics and accumulation fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/elementwise.cuh>
#include <ra/cuda/reduce.cuh>

namespace ra::cuda {

/// GPT-2's LayerNorm epsilon (ra/cpu/layernorm.hpp's kLayerNormEps).
inline constexpr float kLayerNormEpsF = 1e-5f;

namespace detail {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__global__ void __launch_bounds__(256)
    layernorm_forward_kernel(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd,
                             index_t rows, index_t C) {
  constexpr int P = Pack<T>::N;
  const index_t row = static_cast<index_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const auto* xr = reinterpret_cast<const Pack<T>*>(x + row * C);
  const index_t packs = C / P;
  float s = 0.f;
  for (index_t i = lane; i < packs; i += 32) {
    const Pack<T> v = xr[i];
#pragma unroll
    for (int k = 0; k < P; ++k) s += f32(v.v[k]);
  }
  const float mu = warp_sum(s) / static_cast<float>(C);
  float q = 0.f;
  for (index_t i = lane; i < packs; i += 32) {
    const Pack<T> v = xr[i];
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const float d = f32(v.v[k]) - mu;
      q += d * d;
    }
  }
  const float r = rsqrtf(warp_sum(q) / static_cast<float>(C) + kLayerNormEpsF);
  const auto* wp = reinterpret_cast<const Pack<T>*>(w);
  const auto* bp = reinterpret_cast<const Pack<T>*>(b);
  auto* yr = reinterpret_cast<Pack<T>*>(y + row * C);
  for (index_t i = lane; i < packs; i += 32) {
    const Pack<T> v = xr[i], wv = wp[i];
    Pack<T> out;
    if (b != nullptr) {
      const Pack<T> bv = bp[i];
#pragma unroll
      for (int k = 0; k < P; ++k)
        out.v[k] = T((f32(v.v[k]) - mu) * r * f32(wv.v[k]) + f32(bv.v[k]));
    } else {
#pragma unroll
      for (int k = 0; k < P; ++k) out.v[k] = T((f32(v.v[k]) - mu) * r * f32(wv.v[k]));
    }
    yr[i] = out;
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    layernorm_backward_kernel(const T* dy, const T* x, const T* w, const float* mean,
                              const float* rstd, const T* dres, T* dx, index_t rows, index_t C) {
  constexpr int P = Pack<T>::N;
  const index_t row = static_cast<index_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const auto* dyr = reinterpret_cast<const Pack<T>*>(dy + row * C);
  const auto* xr = reinterpret_cast<const Pack<T>*>(x + row * C);
  const auto* wp = reinterpret_cast<const Pack<T>*>(w);
  const index_t packs = C / P;
  const float mu = mean[row], r = rstd[row];
  float sg = 0.f, sgx = 0.f;
  for (index_t i = lane; i < packs; i += 32) {
    const Pack<T> g = dyr[i], v = xr[i], wv = wp[i];
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const float gk = f32(g.v[k]) * f32(wv.v[k]);
      sg += gk;
      sgx += gk * (f32(v.v[k]) - mu) * r;
    }
  }
  const float mg = warp_sum(sg) / static_cast<float>(C);
  const float mgx = warp_sum(sgx) / static_cast<float>(C);
  const auto* rr = dres != nullptr ? reinterpret_cast<const Pack<T>*>(dres + row * C) : nullptr;
  auto* out = reinterpret_cast<Pack<T>*>(dx + row * C);
  for (index_t i = lane; i < packs; i += 32) {
    const Pack<T> g = dyr[i], v = xr[i], wv = wp[i];
    Pack<T> res{};
    if (dres != nullptr) res = rr[i];
    Pack<T> o;
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const float xhat = (f32(v.v[k]) - mu) * r;
      float d = r * (f32(g.v[k]) * f32(wv.v[k]) - mg - xhat * mgx);
      if (dres != nullptr) d += f32(res.v[k]);
      o.v[k] = T(d);
    }
    out[i] = o;
  }
}

// (dy ⊙ x̂, dy) at (row, col): the summands of dw and db.
template <class T>
struct LayerNormParamGrads {
  const T* dy;
  const T* x;
  const float* mean;
  const float* rstd;
  index_t C;
  __device__ float2 operator()(index_t r, index_t c) const {
    const float g = f32(dy[r * C + c]);
    return make_float2(g * (f32(x[r * C + c]) - mean[r]) * rstd[r], g);
  }
};

template <class T>
void check_layernorm(const char* where, index_t C, std::initializer_list<const void*> ptrs) {
  require_arg(C > 0 && C % Pack<T>::N == 0, where, "C", C,
              ra::detail::concat("a positive multiple of ", Pack<T>::N));
  for (const void* p : ptrs)
    require_arg(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, where, "pointer", p,
                "16-byte alignment");
}

}  // namespace detail

/// y = LayerNorm(x) over rows of C, with weight w (C) and bias b (C, or null); saves the
/// rows' mean and rstd (rows floats each). Throws ra::error on C not a multiple of the pack
/// or a misaligned pointer.
template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd,
                       index_t rows, index_t C, cudaStream_t stream) {
  detail::check_layernorm<T>("cuda::layernorm_forward", C, {x, w, b, y});
  if (rows == 0) return;
  detail::layernorm_forward_kernel<T>
      <<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(x, w, b, y, mean, rstd, rows, C);
  RA_CUDA_CHECK_LAUNCH();
}

/// Floats of scratch layernorm_backward() needs.
inline index_t layernorm_backward_scratch(index_t rows, index_t C) {
  return column_sums_scratch(rows, C, 2);
}

/// dx = dres + LayerNorm'(dy) (dres may be null, and may alias dx); dw, db (fp32, C each;
/// db may be null) are overwritten. x, mean, rstd as the forward saw and wrote them.
/// scratch: layernorm_backward_scratch(rows, C) floats. Deterministic.
template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const float* mean, const float* rstd,
                        const T* dres, T* dx, float* dw, float* db, index_t rows, index_t C,
                        float* scratch, cudaStream_t stream) {
  detail::check_layernorm<T>("cuda::layernorm_backward", C, {dy, x, w, dres, dx});
  if (rows == 0) return;
  detail::layernorm_backward_kernel<T><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(
      dy, x, w, mean, rstd, dres, dx, rows, C);
  RA_CUDA_CHECK_LAUNCH();
  column_sums<2>(detail::LayerNormParamGrads<T>{dy, x, mean, rstd, C}, rows, C, dw, db, scratch,
                 stream);
}

}  // namespace ra::cuda
