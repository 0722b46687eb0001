// ra/cuda/forward_path.cuh — which tensor-core path an fp16/bf16 attention forward takes,
// chosen per call in AttentionParams::path.
#pragma once

namespace ra::cuda {

/// The tensor-core path of the fp16/bf16 forward: automatic (the measured faster one for the
/// device and head dim: today mma.sync everywhere, see flash_forward.cuh), mma_sync, or wgmma
/// (needs sm_90a code for the device: a build with CMAKE_CUDA_ARCHITECTURES=90a; asking for it
/// elsewhere throws). fp32 has one (SIMT) path and ignores the choice.
enum class ForwardPath { automatic, mma_sync, wgmma };

}  // namespace ra::cuda
