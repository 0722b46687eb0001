// ra/cuda/sm90/support.cuh — whether the sm_90a attention kernels (forward and backward) can
// run here and take a given call, and which path the automatic choice takes per head dim
// (measured; see docs/NOTES.md "sm_90a forward" and "sm_90a backward").
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <string>

#include <ra/core/dtype.hpp>
#include <ra/cuda/attention_params.cuh>
#include <ra/cuda/backward_params.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/sm90/tma.cuh>

namespace ra::cuda::sm90 {

namespace detail {

/// A kernel that is only ever inspected: its static shared memory is 256 bytes exactly when
/// this translation unit was compiled with sm_90a features for the device it runs on.
template <int = 0>
__global__ void sm90a_probe(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ int mark[64];
  mark[threadIdx.x % 64] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = mark[(threadIdx.x + 1) % 64];
#else
  (void)out;
#endif
}

}  // namespace detail

/// True when this build has sm_90a code for the current device (an sm_90 GPU and kernels
/// compiled for 90a): the sm_90a forward can run.
inline bool flash_forward_available() {
  int device = 0;
  RA_CUDA_CHECK(cudaGetDevice(&device));
  static std::atomic<int> cached[64] = {};  // per device: 0 unknown, 1 yes, 2 no
  if (device < 64 && cached[device].load() != 0) return cached[device].load() == 1;
  cudaFuncAttributes attr{};
  RA_CUDA_CHECK(cudaFuncGetAttributes(&attr, detail::sm90a_probe<>));
  int major = 0, minor = 0;
  RA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const bool yes = major == 9 && minor == 0 && attr.sharedSizeBytes == 64 * sizeof(int);
  if (device < 64) cached[device].store(yes ? 1 : 2);
  return yes;
}

/// Why the sm_90a forward cannot take p (an empty string when it can): the dtype, the device
/// or build, or an operand TMA cannot read (unaligned base, strides not multiples of 16 bytes).
inline std::string flash_forward_refusal(const AttentionParams& p) {
  if (p.dtype != DType::f16 && p.dtype != DType::bf16)
    return "the sm_90a forward takes fp16 and bf16 only";
  if (!flash_forward_available())
    return "no sm_90a code for this device (needs an sm_90 GPU and a build for 90a)";
  auto readable = [&](const void* ptr, index_t rows, index_t bs, index_t hs, index_t rs) {
    return tma_readable(ptr, p.batch, p.heads, rows, bs, hs, rs);
  };
  if (!readable(p.q, p.seq, p.q_batch_stride, p.q_head_stride, p.q_row_stride) ||
      !readable(p.k, p.seq_k, p.k_batch_stride, p.k_head_stride, p.k_row_stride) ||
      !readable(p.v, p.seq_k, p.v_batch_stride, p.v_head_stride, p.v_row_stride))
    return "TMA needs 16-byte aligned Qf, Kf, V with strides that are multiples of 16 bytes";
  return {};
}

/// The automatic path's choice for head dim D on an sm_90 GPU: the sm_90a forward where it
/// was tested and measured faster than mma.sync on the device, mma.sync elsewhere. H200,
/// fp16, B=8, H=12, causal (docs/NOTES.md, "The sm_90a forward"): D = 64 at T = 1024 / 2048 /
/// 4096: 61.2 / 184.9 / 664.6 µs against mma.sync's 72.5 / 236.1 / 884.1 µs. D = 128 passed
/// its tests there too; D = 32, 80, 96 compile but have not run on a GPU yet.
constexpr bool automatic_prefers_sm90(int head_dim) { return head_dim == 64 || head_dim == 128; }

/// Whether the forward of p runs the sm_90a kernel: always for ForwardPath::tma_wgmma
/// (validate refused it earlier when it cannot), never for mma_sync, and for automatic when
/// the kernel can take p and measured faster for its head dim.
inline bool use_sm90_forward(const AttentionParams& p) {
  switch (p.path) {
    case ForwardPath::tma_wgmma:
      return true;
    case ForwardPath::mma_sync:
      return false;
    case ForwardPath::automatic:
      break;
  }
  return automatic_prefers_sm90(p.head_dim) && flash_forward_refusal(p).empty();
}

/// The head dims the sm_90a backward is built for (its tiles and register budget are sized for
/// them; other head dims take mma.sync).
constexpr bool backward_head_dim_supported(int head_dim) {
  return head_dim == 64 || head_dim == 128;
}

/// Why the sm_90a backward cannot take p (an empty string when it can): the dtype, the head
/// dim, the device or build, or an operand TMA cannot read (Qf, dO', Kf, V).
inline std::string flash_backward_refusal(const AttentionBackwardParams& p) {
  const AttentionParams& f = p.fwd;
  if (f.dtype != DType::f16 && f.dtype != DType::bf16)
    return "the sm_90a backward takes fp16 and bf16 only";
  if (!backward_head_dim_supported(f.head_dim))
    return ra::detail::concat("the sm_90a backward takes D = 64 and 128 only, not D = ",
                              f.head_dim);
  if (!flash_forward_available())
    return "no sm_90a code for this device (needs an sm_90 GPU and a build for 90a)";
  auto readable = [&](const void* ptr, index_t rows, index_t bs, index_t hs, index_t rs) {
    return tma_readable(ptr, f.batch, f.heads, rows, bs, hs, rs);
  };
  if (!readable(f.q, f.seq, f.q_batch_stride, f.q_head_stride, f.q_row_stride) ||
      !readable(p.d_out, f.seq, p.do_batch_stride, p.do_head_stride, p.do_row_stride) ||
      !readable(f.k, f.seq_k, f.k_batch_stride, f.k_head_stride, f.k_row_stride) ||
      !readable(f.v, f.seq_k, f.v_batch_stride, f.v_head_stride, f.v_row_stride))
    return "TMA needs 16-byte aligned Qf, dO', Kf, V with strides that are multiples of 16 "
           "bytes";
  return {};
}

/// The automatic backward's choice for head dim D on an sm_90 GPU: mma.sync everywhere until
/// the sm_90a backward has passed its GPU tests and measured faster on the device (docs/NOTES.md,
/// "The sm_90a backward"), so an untested kernel never reaches a caller who did not ask for it.
constexpr bool automatic_prefers_sm90_backward(int) {
  return false;
}

/// Whether the backward of p runs the sm_90a kernels: always for BackwardPath::tma_wgmma and
/// tma_wgmma_dkdv (validate refused them earlier when they cannot), never for mma_sync, and for
/// automatic when the kernels can take p and measured faster for its head dim.
inline bool use_sm90_backward(const AttentionBackwardParams& p) {
  switch (p.path) {
    case BackwardPath::tma_wgmma:
    case BackwardPath::tma_wgmma_dkdv:
      return true;
    case BackwardPath::mma_sync:
      return false;
    case BackwardPath::automatic:
      break;
  }
  return automatic_prefers_sm90_backward(p.fwd.head_dim) && flash_backward_refusal(p).empty();
}

}  // namespace ra::cuda::sm90
