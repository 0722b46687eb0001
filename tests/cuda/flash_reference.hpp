// tests/cuda/flash_reference.hpp — what the attention kernel tests compare against, behind a
// plain interface so that Eigen stays out of every .cu translation unit: the exact result
// (the CPU backend in double, on the same rounded inputs) and the naive same-precision one
// with its floors (tests/common/same_precision_attention.hpp).
#pragma once

#include <random>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/expr/gates.hpp>

#include "../common/same_precision_attention.hpp"

namespace ra::test {

/// One attention problem over a fused (B,T,3C) host buffer of element type `dtype`.
struct FoldedProblem {
  DType dtype = DType::f16;
  int batch = 1, seq = 1, heads = 1, head_dim = 64, rank = 0;
  GateMode gate_mode = GateMode::none;
  GateParam gate_param = GateParam::clamp;
  std::vector<float> w_std, w_rec;  // raw gate values (1 or H)
  std::vector<float> a;             // restart values (H) or empty
  const void* fused = nullptr;      // (B,T,3C) host, elements of `dtype`
};

/// Draws fresh gate values (raw, in [0.05, 1.5): both clamp and softplus regimes) and, when
/// `restart`, restart values in [-0.1, 0.6) (inside and outside the clamp to [0, 0.5]). With
/// `below_floor`, the first w_rec is negative: under the clamp its gate is the floor 1e-8 and
/// passes no gradient.
inline void randomize_parameters(FoldedProblem& pb, bool restart, std::mt19937_64& rng,
                                 bool below_floor = false) {
  std::uniform_real_distribution<float> gate(0.05f, 1.5f), mix(-0.1f, 0.6f);
  const int n_gates = pb.gate_mode == GateMode::per_head ? pb.heads : 1;
  pb.w_std.clear();
  pb.w_rec.clear();
  pb.a.clear();
  for (int i = 0; i < n_gates; ++i) {
    pb.w_std.push_back(gate(rng));
    pb.w_rec.push_back(gate(rng));
  }
  if (below_floor) pb.w_rec[0] = -0.25f;
  if (restart)
    for (int i = 0; i < pb.heads; ++i) pb.a.push_back(mix(rng));
}

/// The exact results, (B,H,T,D) row-major (lse (B,H,T)); the backward's parts are filled when
/// dO' was given.
struct ExactAttention {
  std::vector<double> o, o_pre, lse;  // O', O before the restart mix (= O' without restart)
  std::vector<double> dq, dk, dv;
  std::vector<double> d_w_std, d_w_rec, d_a;
};

/// Exact and same-precision results of pb, forward only (d_out null) or forward and backward
/// for dO' = d_out ((B,T,C) host, elements of pb.dtype).
struct FlashReference {
  ExactAttention exact;
  SamePrecisionAttention naive;
};
FlashReference flash_reference(const FoldedProblem& pb, const void* d_out);

}  // namespace ra::test
