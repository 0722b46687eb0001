// ra/cuda/backward_path.cuh — which tensor-core path an fp16/bf16 attention backward takes,
// chosen per call in AttentionBackwardParams::path.
#pragma once

namespace ra::cuda {

/// The tensor-core path of the fp16/bf16 backward: automatic (the measured faster one for the
/// device and head dim: ra/cuda/sm90/support.cuh; mma_sync until the sm_90a backward has been
/// tested and measured on a GPU), mma_sync (ra/cuda/sm80/flash_backward.cuh, sm_80 and later,
/// Hopper included) or tma_wgmma (ra/cuda/sm90/flash_backward.cuh: sm_90 GPUs with a build for
/// 90a, D = 64 or 128; asking for it elsewhere is an ra::unsupported error). fp32 has one
/// (SIMT) path: it takes automatic and mma_sync, and refuses tma_wgmma.
enum class BackwardPath { automatic, mma_sync, tma_wgmma };

}  // namespace ra::cuda
