// ra/cuda/forward_path.cuh — the process-wide choice of tensor-core path for the fp16/bf16
// attention forward (tests and benchmarks run both on Hopper).
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace ra::cuda {

/// Which tensor-core path the fp16/bf16 forward takes: automatic (the measured faster one,
/// today mma.sync everywhere; see flash_forward.cuh), mma_sync, or wgmma (needs sm_90a code
/// for the device: a build with CMAKE_CUDA_ARCHITECTURES=90a). The initial value comes from
/// the environment variable RA_FLASH_PATH (auto | mma | wgmma).
enum class ForwardPath { automatic, mma_sync, wgmma };

inline std::atomic<ForwardPath>& forward_path_setting() {
  static std::atomic<ForwardPath> path{[] {
    const char* env = std::getenv("RA_FLASH_PATH");
    if (env && std::strcmp(env, "mma") == 0) return ForwardPath::mma_sync;
    if (env && std::strcmp(env, "wgmma") == 0) return ForwardPath::wgmma;
    return ForwardPath::automatic;
  }()};
  return path;
}

/// Selects the tensor-core path for later calls (tests and benchmarks compare both).
inline void set_forward_path(ForwardPath p) {
  forward_path_setting().store(p);
}

/// Selects a path for the lifetime of the scope and restores the one before it after.
class ForwardPathScope {
 public:
  explicit ForwardPathScope(ForwardPath p) : previous_(forward_path_setting().exchange(p)) {}
  ForwardPathScope(const ForwardPathScope&) = delete;
  ForwardPathScope& operator=(const ForwardPathScope&) = delete;
  ~ForwardPathScope() { forward_path_setting().store(previous_); }

 private:
  ForwardPath previous_;
};

}  // namespace ra::cuda
