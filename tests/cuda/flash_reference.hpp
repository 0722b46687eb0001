// tests/cuda/flash_reference.hpp — the CPU backend as the reference for the attention kernel
// tests, behind a plain interface so that Eigen stays out of every .cu translation unit.
#pragma once

#include <random>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/expr/gates.hpp>

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
/// `restart`, restart values in [-0.1, 0.6) (inside and outside the clamp to [0, 0.5]).
inline void randomize_parameters(FoldedProblem& pb, bool restart, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> gate(0.05f, 1.5f), mix(-0.1f, 0.6f);
  const int n_gates = pb.gate_mode == GateMode::per_head ? pb.heads : 1;
  pb.w_std.clear();
  pb.w_rec.clear();
  pb.a.clear();
  for (int i = 0; i < n_gates; ++i) {
    pb.w_std.push_back(gate(rng));
    pb.w_rec.push_back(gate(rng));
  }
  if (restart)
    for (int i = 0; i < pb.heads; ++i) pb.a.push_back(mix(rng));
}

/// Reference O' (B,T,C) and lse (B,H,T) in double/float, computed by ra::cpu in double.
void reference_folded_attention(const FoldedProblem& pb, std::vector<double>& o,
                                std::vector<float>& lse);

/// Reference gradients for dO' (B,T,C, elements of pb.dtype), from ra::cpu in double.
/// dfused is (B,T,3C): dQf, dKf, dV in the folded layout. The *_l1 values are the sums of
/// |terms| behind each parameter gradient (Σ|dQ̂ ⊙ Qf| per gate value, Σ|dO' ⊙ (V - O)| per
/// head), the scale against which a float sum's rounding is judged.
struct ReferenceGrads {
  std::vector<double> dfused;
  std::vector<float> d_w_std, d_w_rec, d_a;
  std::vector<double> w_std_l1, w_rec_l1, a_l1;
};
void reference_folded_attention_backward(const FoldedProblem& pb, const void* d_out,
                                         ReferenceGrads& g);

}  // namespace ra::test
