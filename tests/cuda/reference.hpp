// tests/cuda/reference.hpp — the two references of the precision rule (tests/common/precision.hpp)
// for the GEMM, unfused-attention and block tests, computed in reference.cpp (compiled by the
// host compiler) behind plain functions, so that Eigen never enters a .cu translation unit:
//
//   reference_*  exact: the Eigen CPU backend in double. Inputs are host arrays of the element
//                type the GPU saw (`dtype`), converted exactly to double; every product,
//                softmax and intermediate (fused, O') stays in double.
//   naive_*      the naive same-precision implementation, with each output's floor
//                u·‖terms‖₂: tests/common/same_precision_gemm.hpp (fp32 sequential sums, Y
//                rounded to dtype) and same_precision_attention.hpp (fp32 sums; Q̂, P, O, O'
//                rounded to dtype; lse in fp32). The block chains them as a naive block would
//                store its activations: fused = T(x·W_attnᵀ + b_attn), O' = T(attention),
//                y = T(O'·W_oᵀ + b_o).
#pragma once

#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gates.hpp>

namespace ra::test {

/// y (M,N) = a (M,K) · w (N,K)ᵀ (+ bias (N) when bias is not null), row-major. a has row
/// stride lda (>= K); w and bias are compact. Returns y compact (M·N values).
std::vector<double> reference_gemm(DType dtype, index_t M, index_t N, index_t K, const void* a,
                                   index_t lda, const void* w, const void* bias);

/// One folded-attention problem over a fused (B,T,3C) host buffer, C = H·D.
struct AttentionProblem {
  DType dtype = DType::f16;
  index_t B = 1, T = 1, H = 1, D = 64;
  int R = 0;
  GateMode gates = GateMode::none;
  GateParam param = GateParam::clamp;
  std::vector<float> w_std, w_rec;  // raw gate values: 1 (per layer) or H (per head)
  std::vector<float> a;             // raw restart values (H), empty without restart
  const void* fused = nullptr;      // (B,T,3C) compact elements of dtype
};

/// O' (B,T,C) compact and lse (B,H,T) of the problem.
void reference_attention(const AttentionProblem& pb, std::vector<double>& o,
                         std::vector<double>& lse);

/// One attention-block forward: the block's config and host parameters, all compact
/// elements of dtype (biases null without cfg.bias).
struct BlockProblem {
  AttentionBlockConfig cfg{};
  DType dtype = DType::f16;
  index_t B = 1, T = 1;
  const void* x = nullptr;       // (B,T,C)
  const void* w_attn = nullptr;  // (3C,C)
  const void* b_attn = nullptr;  // (3C)
  const void* w_o = nullptr;     // (C,C)
  const void* b_o = nullptr;     // (C)
  std::vector<float> w_std, w_rec, a;
};

/// The attention step of a block problem (its dtype, B, T, H, D, R, gates and, with
/// cfg.restart, restart values) over a fused (B,T,3C) buffer of that dtype.
AttentionProblem attention_step(const BlockProblem& pb, const void* fused);

/// y (B,T,C) compact of the block (ra::cpu::block_forward in double).
std::vector<double> reference_block(const BlockProblem& pb);

/// Values of a naive same-precision implementation and the floor of each (same length).
struct Naive {
  std::vector<double> values, floor;
};

/// The gradients of one block backward: dx (B,T,C) compact and the parameter gradients
/// w_attn (3C,C), b_attn (3C), w_o (C,C), b_o (C), w_std, w_rec (gate_count), a (H); the
/// biases, gates and restart are empty where the config has none.
struct BlockGrads {
  std::vector<double> dx, w_attn, b_attn, w_o, b_o, w_std, w_rec, a;
};

/// reference_block's problem differentiated at dy (B,T,C) compact elements of pb.dtype:
/// ra::cpu::block_backward in double.
BlockGrads reference_block_backward(const BlockProblem& pb, const void* dy);

/// The same, naive in pb.dtype, with each gradient's floor: a naive block backward stores
/// dO' = T(dy·W_o), the attention gradients dQf, dKf, dV in T (same_precision_attention.hpp,
/// from the naive forward's fused = T(x·W_attnᵀ + b_attn)), dx = T(dfused·W_attn), and the
/// parameter gradients in fp32 (as the GPU block keeps them), each GEMM with fp32 sequential
/// sums (same_precision_gemm.hpp) and its floor.
struct NaiveBlockGrads {
  BlockGrads values, floor;
};
NaiveBlockGrads naive_block_backward(const BlockProblem& pb, const void* dy);

/// reference_gemm's problem, naive in dtype: Y (M,N) compact.
Naive naive_gemm(DType dtype, index_t M, index_t N, index_t K, const void* a, index_t lda,
                 const void* w, const void* bias);

/// reference_attention's problem, naive in pb.dtype: O' (B,T,C) compact and lse (B,H,T).
void naive_attention(const AttentionProblem& pb, Naive& o, Naive& lse);

/// reference_block's problem, naive in pb.dtype: y (B,T,C) compact.
Naive naive_block(const BlockProblem& pb);

}  // namespace ra::test
