// ra/cuda/adamw.cuh — AdamW (and AdamW with SPAM) on the GPU over one flat fp32 parameter
// buffer: the update of ra/model/adamw.hpp (global-norm clipping, decoupled weight decay on the
// tensors the table marks, bias-corrected moments; with kind adamw_spam also SPAM's momentum
// reset, spike clipping and warm-up, whose per-step phase the host computes from the step count
// as the CPU optimizer (ra/cpu/adamw.hpp) does), fused into one pass that also refreshes the
// model's 16-bit working copy:
//
//   norm  = √Σ g²                          ra/cuda/reduce.cuh's sum (deterministic), in double
//   s     = min(1, clip / (norm + 1e-6))   read by the update kernel from device memory
//   m, v, p as in ra/model/adamw.hpp;  work = T(p)
//
// SPAM's count of clipped elements is an integer sum (one atomic add per warp): exact, so the
// same in every run; the parameters and moments never go through an atomic.
//
// The element update runs in fp32 (the CPU optimizer's in double; the pass is memory-bound,
// 30 bytes per parameter): the two agree to a few fp32 roundings per step. A non-finite norm
// leaves every parameter and moment unchanged (the kernel checks it) and step() throws
// ra::error, as the CPU optimizer does. step() waits for the norm (one device-to-host copy of
// 8 bytes) to report it.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/model/adamw.hpp>

namespace ra::cuda {

namespace detail {

struct AdamWArgs {
  float lr, beta1, beta2, c1, c2, eps, weight_decay, clip;
  // SPAM (ra/model/adamw.hpp): this step's phase; reset = clip = false and warmup = 1 for AdamW.
  bool reset, spike_clip;
  float threshold, warmup;
};

// One element: the update of ra/model/adamw.hpp in fp32 arithmetic. Returns 1 when SPAM clipped
// the element's gradient.
__device__ __forceinline__ unsigned adamw_element(float& p, float g, float& m, float& v, bool decay,
                                                  float s, const AdamWArgs& a) {
  g *= s;
  if (a.reset) {
    m = 0.f;
    v = 0.f;
  }
  unsigned spike = 0;
  if (a.spike_clip && v > 0.f && g * g > a.threshold * v) {
    g = copysignf(sqrtf(a.threshold * v), g);
    spike = 1;
  }
  m = a.beta1 * m + (1.f - a.beta1) * g;
  v = a.beta2 * v + (1.f - a.beta2) * g * g;
  const float wd = decay ? a.weight_decay : 0.f;
  p = p - a.lr * (a.warmup * ((m / a.c1) / (sqrtf(v / a.c2) + a.eps)) + wd * p);
  return spike;
}

// Four elements per thread and iteration, in 16-byte loads (the buffers come from
// cudaMalloc, so element 4q is 16-byte aligned); the last n % 4 elements one by one.
template <class T>
__global__ void __launch_bounds__(256)
    adamw_kernel(float* params, const float* grads, float* m, float* v, const std::uint8_t* decay,
                 T* work, index_t n, const double* norm, unsigned long long* spikes, AdamWArgs a) {
  const double nrm = sqrt(*norm);  // *norm holds Σ g²
  if (!isfinite(nrm)) return;
  const float s = static_cast<float>(a.clip > 0.f ? fmin(1.0, a.clip / (nrm + 1e-6)) : 1.0);
  const index_t quads = n / 4;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  unsigned clipped = 0;
  for (index_t q = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads;
       q += stride) {
    float4 p4 = reinterpret_cast<float4*>(params)[q];
    const float4 g4 = reinterpret_cast<const float4*>(grads)[q];
    float4 m4 = reinterpret_cast<float4*>(m)[q];
    float4 v4 = reinterpret_cast<float4*>(v)[q];
    const uchar4 d4 = reinterpret_cast<const uchar4*>(decay)[q];
    clipped += adamw_element(p4.x, g4.x, m4.x, v4.x, d4.x, s, a);
    clipped += adamw_element(p4.y, g4.y, m4.y, v4.y, d4.y, s, a);
    clipped += adamw_element(p4.z, g4.z, m4.z, v4.z, d4.z, s, a);
    clipped += adamw_element(p4.w, g4.w, m4.w, v4.w, d4.w, s, a);
    reinterpret_cast<float4*>(params)[q] = p4;
    reinterpret_cast<float4*>(m)[q] = m4;
    reinterpret_cast<float4*>(v)[q] = v4;
    if (work != nullptr) {
      T* w = work + 4 * q;
      w[0] = T(p4.x);
      w[1] = T(p4.y);
      w[2] = T(p4.z);
      w[3] = T(p4.w);
    }
  }
  for (index_t i = 4 * quads + static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    clipped += adamw_element(params[i], grads[i], m[i], v[i], decay[i] != 0, s, a);
    if (work != nullptr) work[i] = T(params[i]);
  }
  if (spikes == nullptr) return;
  // Every thread of the block gets here (the loops above only skip iterations): a warp sum,
  // then one integer add per warp.
  for (int offset = 16; offset > 0; offset /= 2)
    clipped += __shfl_down_sync(0xffffffffu, clipped, offset);
  if ((threadIdx.x & 31) == 0 && clipped > 0) atomicAdd(spikes, clipped);
}

}  // namespace detail

/// AdamW (or AdamW with SPAM, by config().kind) state on the device: fp32 moments, the decay
/// mask, and the norm and spike-count scratch.
class AdamW {
 public:
  /// `table`: the tensors of the buffer, each with .offset, .size() and .decay (a model's
  /// parameter_table()). Throws ra::error on a bad config or a tensor outside [0, n).
  template <class Table>
  AdamW(std::size_t size, const Table& table, const model::AdamWConfig& cfg = {})
      : cfg_(cfg),
        n_(static_cast<index_t>(size)),
        m_(n_),
        v_(n_),
        decay_(n_),
        norm_(1),
        scratch_(kSumScratch),
        spike_count_(1) {
    cfg_.validate("cuda::AdamW");
    const std::vector<std::uint8_t> decay = model::decay_mask(size, table, "cuda::AdamW");
    RA_CUDA_CHECK(cudaMemcpy(decay_.data(), decay.data(), decay.size(), cudaMemcpyHostToDevice));
    RA_CUDA_CHECK(cudaMemset(m_.data(), 0, m_.bytes()));
    RA_CUDA_CHECK(cudaMemset(v_.data(), 0, v_.bytes()));
    // Complete before any stream (also a non-blocking one) runs step().
    RA_CUDA_CHECK(cudaDeviceSynchronize());
  }

  const model::AdamWConfig& config() const { return cfg_; }
  std::size_t size() const { return static_cast<std::size_t>(n_); }
  std::uint64_t steps() const { return t_; }
  /// Elements whose gradient SPAM clipped, over all steps (0 for adamw).
  std::uint64_t spikes() const { return spikes_; }

  /// One step at learning rate lr on device buffers of size(): params updated in place from
  /// grads, and work (may be null) set to T(params). Throws ra::error on a non-finite gradient
  /// norm (nothing is changed then), ra::cuda_error when a CUDA call fails.
  template <class T>
  model::AdamWStep step(float* params, const float* grads, T* work, double lr,
                        cudaStream_t stream) {
    sum(grads, n_, true, norm_.data(), scratch_.data(), stream);
    ++t_;
    const model::SpamPhase phase = cfg_.phase(t_);
    const bool spam = cfg_.kind == model::OptimizerKind::adamw_spam;
    if (spam)
      RA_CUDA_CHECK(cudaMemsetAsync(spike_count_.data(), 0, sizeof(unsigned long long), stream));
    auto f = [](double x) { return static_cast<float>(x); };
    detail::AdamWArgs a{};
    a.lr = f(lr);
    a.beta1 = f(cfg_.beta1);
    a.beta2 = f(cfg_.beta2);
    a.c1 = f(1.0 - std::pow(cfg_.beta1, static_cast<double>(t_)));
    a.c2 = f(1.0 - std::pow(cfg_.beta2, static_cast<double>(t_)));
    a.eps = f(cfg_.eps);
    a.weight_decay = f(cfg_.weight_decay);
    a.clip = f(cfg_.grad_clip);
    a.reset = phase.reset;
    a.spike_clip = phase.clip;
    a.threshold = f(cfg_.spam.threshold);
    a.warmup = f(phase.warmup_scale);
    if (n_ > 0) {
      const index_t blocks = std::min<index_t>((n_ / 4 + 255) / 256 + 1, 132 * 8);
      detail::adamw_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
          params, grads, m_.data(), v_.data(), decay_.data(), work, n_, norm_.data(),
          spam ? spike_count_.data() : nullptr, a);
      RA_CUDA_CHECK_LAUNCH();
    }
    double sq = 0.0;
    unsigned long long spikes = 0;
    RA_CUDA_CHECK(cudaMemcpyAsync(&sq, norm_.data(), sizeof sq, cudaMemcpyDeviceToHost, stream));
    if (spam)
      RA_CUDA_CHECK(cudaMemcpyAsync(&spikes, spike_count_.data(), sizeof spikes,
                                    cudaMemcpyDeviceToHost, stream));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    model::AdamWStep r;
    r.grad_norm = std::sqrt(sq);
    r.spam = phase;
    if (!std::isfinite(r.grad_norm)) {
      --t_;
      throw error(ra::detail::concat("cuda::AdamW::step: the gradient norm is ", r.grad_norm,
                                     ", expected a finite value (the loss diverged or a "
                                     "gradient overflowed)"));
    }
    if (cfg_.grad_clip > 0.0) r.clip_scale = std::min(1.0, cfg_.grad_clip / (r.grad_norm + 1e-6));
    r.spikes = spikes;
    spikes_ += spikes;
    return r;
  }

  /// The moments, copied to the host (for checkpoints).
  std::vector<float> first_moment() const { return copy_to_host(m_); }
  std::vector<float> second_moment() const { return copy_to_host(v_); }

  /// Restores the state saved from first_moment(), second_moment(), steps(), spikes().
  /// Throws ra::error on a size mismatch.
  void restore(std::span<const float> m, std::span<const float> v, std::uint64_t t,
               std::uint64_t spikes = 0) {
    require(static_cast<index_t>(m.size()) == n_ && static_cast<index_t>(v.size()) == n_,
            "cuda::AdamW::restore: got ", m.size(), " and ", v.size(), " moment values, expected ",
            n_, " each");
    RA_CUDA_CHECK(cudaMemcpy(m_.data(), m.data(), m_.bytes(), cudaMemcpyHostToDevice));
    RA_CUDA_CHECK(cudaMemcpy(v_.data(), v.data(), v_.bytes(), cudaMemcpyHostToDevice));
    RA_CUDA_CHECK(cudaDeviceSynchronize());
    t_ = t;
    spikes_ = spikes;
  }

 private:
  model::AdamWConfig cfg_;
  index_t n_ = 0;
  DeviceBuffer<float> m_, v_;
  DeviceBuffer<std::uint8_t> decay_;
  DeviceBuffer<double> norm_, scratch_;
  DeviceBuffer<unsigned long long> spike_count_;
  std::uint64_t t_ = 0, spikes_ = 0;
};

}  // namespace ra::cuda
