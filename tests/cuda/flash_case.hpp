// tests/cuda/flash_case.hpp — one attention problem run on the GPU and judged by the
// precision rule (tests/common/precision.hpp) against flash_reference: the forward's O', O
// (before the restart mix), lse, and with `backward` dQf, dKf, dV and the gate and restart
// gradients. Inputs are fresh random values; every output is poisoned with NaN first.
#pragma once

#include <random>
#include <string>

#include <ra/core/dtype.hpp>
#include <ra/cuda/backward_path.cuh>
#include <ra/cuda/forward_path.cuh>
#include <ra/expr/gates.hpp>

namespace ra::test {

struct FlashCase {
  DType dtype = DType::f16;
  int B = 1, T = 1, H = 1, D = 64, R = 0;
  GateMode gates = GateMode::none;
  GateParam param = GateParam::clamp;
  bool restart = false;
  bool below_floor = false;      // one w_rec below the clamp floor (gate 1e-8, no gradient)
  bool separate_inputs = false;  // Q, K, V as three compact (B,H,T,D) tensors, not fused
  bool compact_grads = false;    // dQf, dKf, dV compact (B,H,T,D), not folded in (B,T,3C)
  bool backward = false;
  cuda::ForwardPath path = cuda::ForwardPath::automatic;
  cuda::BackwardPath backward_path = cuda::BackwardPath::automatic;
};

std::string describe(const FlashCase& c);

/// Runs c on the GPU (default stream) and checks every output with RA_CHECK_PRECISION under
/// the families "flash <output> <dtype>". Draws from rng.
void run_flash_case(const FlashCase& c, std::mt19937_64& rng);

}  // namespace ra::test
