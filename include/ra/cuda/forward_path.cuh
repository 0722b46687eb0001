// ra/cuda/forward_path.cuh — which tensor-core path an fp16/bf16 attention forward takes,
// chosen per call in AttentionParams::path.
#pragma once

namespace ra::cuda {

/// The tensor-core path of the fp16/bf16 forward: automatic (the measured faster one for the
/// device and head dim: ra/cuda/sm90/support.cuh), mma_sync (ra/cuda/flash_forward.cuh, sm_80
/// and later, Hopper included) or tma_wgmma (ra/cuda/sm90/flash_forward.cuh: sm_90 GPUs with
/// a build for 90a; asking for it elsewhere is an ra::unsupported error). fp32 has one (SIMT)
/// path: it takes automatic and mma_sync, and refuses tma_wgmma.
enum class ForwardPath { automatic, mma_sync, tma_wgmma };

}  // namespace ra::cuda
