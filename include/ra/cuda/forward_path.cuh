// ra/cuda/forward_path.cuh — which tensor-core path an fp16/bf16 attention forward takes,
// chosen per call in AttentionParams::path.
#pragma once

namespace ra::cuda {

/// The tensor-core path of the fp16/bf16 forward: automatic (the measured faster one for the
/// device and head dim) or mma_sync, today the only one (sm_80 and later, Hopper included).
/// The sm_90a TMA + wgmma kernels of the Hopper issue add their value here. fp32 has one
/// (SIMT) path and ignores the choice.
enum class ForwardPath { automatic, mma_sync };

}  // namespace ra::cuda
