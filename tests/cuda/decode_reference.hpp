// tests/cuda/decode_reference.hpp — what the decode kernel tests compare against, behind a
// plain interface so that Eigen stays out of every .cu translation unit: T_q new query rows
// over a KV cache with per-sequence key counts, exactly (cpu::attention_forward in double on
// the same rounded inputs, T_q < T_k: the kernel's CPU twin) and as the naive same-precision
// implementation computes it, with its floors (tests/common/same_precision_attention.hpp).
#pragma once

#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/expr/gates.hpp>

namespace ra::test {

/// One decode problem over host buffers of element type `dtype`.
struct DecodeProblem {
  DType dtype = DType::f16;
  int batch = 1, heads = 1, head_dim = 64, rank = 0;
  int rows = 1;              // T_q new query rows per sequence
  int max_seq = 1;           // cache rows per (b, h)
  std::vector<int> lengths;  // keys of each sequence, its new rows included (>= rows)
  GateMode gate_mode = GateMode::none;
  GateParam gate_param = GateParam::clamp;
  std::vector<float> w_std, w_rec;  // raw gate values (1 or H)
  std::vector<float> a;             // restart values (H) or empty
  const void* q = nullptr;          // (B,H,T_q,D) compact
  const void* k = nullptr;          // (B,H,max_seq,D) compact, the cache
  const void* v = nullptr;          // (B,H,max_seq,D) compact
};

/// Results in (B,H,T_q,D) row-major (lse (B,H,T_q)).
struct DecodeReference {
  std::vector<double> o, o_pre, lse;                                               // exact
  std::vector<double> n_o, n_o_floor, n_o_pre, n_o_pre_floor, n_lse, n_lse_floor;  // naive
};

DecodeReference decode_reference(const DecodeProblem& pb);

}  // namespace ra::test
