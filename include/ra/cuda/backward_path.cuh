// ra/cuda/backward_path.cuh — which tensor-core path an fp16/bf16 attention backward takes,
// chosen per call in AttentionBackwardParams::path.
#pragma once

namespace ra::cuda {

/// The tensor-core path of the fp16/bf16 backward: automatic (the measured faster one for the
/// device and head dim: ra/cuda/sm90/support.cuh; mma_sync until the sm_90a backward has been
/// tested and measured on a GPU), mma_sync (ra/cuda/sm80/flash_backward.cuh, sm_80 and later,
/// Hopper included), tma_wgmma (ra/cuda/sm90/flash_backward.cuh: the sm_90a dK/dV and dQ
/// passes; sm_90 GPUs with a build for 90a, D = 64 or 128; asking for it elsewhere is an
/// ra::unsupported error) or tma_wgmma_dkdv (the sm_90a dK/dV pass with the mma.sync dQ pass,
/// same conditions: kept so that tests and benchmarks can set the two dQ kernels side by side).
/// fp32 has one (SIMT) path: it takes automatic and mma_sync, and refuses the sm_90a paths.
enum class BackwardPath { automatic, mma_sync, tma_wgmma, tma_wgmma_dkdv };

/// Whether `path` names an sm_90a backward (which then must be able to run).
constexpr bool is_sm90_path(BackwardPath path) {
  return path == BackwardPath::tma_wgmma || path == BackwardPath::tma_wgmma_dkdv;
}

/// The path's name as the API spells it (error messages, test and benchmark labels).
constexpr const char* path_name(BackwardPath path) {
  switch (path) {
    case BackwardPath::automatic:
      return "automatic";
    case BackwardPath::mma_sync:
      return "mma_sync";
    case BackwardPath::tma_wgmma:
      return "tma_wgmma";
    case BackwardPath::tma_wgmma_dkdv:
      return "tma_wgmma_dkdv";
  }
  return "?";
}

}  // namespace ra::cuda
