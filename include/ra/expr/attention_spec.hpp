// ra/expr/attention_spec.hpp — what one folded-attention call computes, apart from where its
// memory lives: shapes, R, gates, restart and the causal alignment. Every backend's forward
// and backward (the CPU's, the CUDA kernels', and later decoding) checks its call through the
// one validate() here; the backends add only what is theirs (memory, supported lists).
//
// Causal mask, aligned bottom-right: query row i is the token at key position i + offset,
// offset = T_k − T_q, and attends to keys j <= i + offset. Training has T_q = T_k (offset 0,
// the square mask); decoding appends T_q new tokens to T_k − T_q cached ones. With
// self-restart the mix takes V of the query's own token: O'_i = (1 − α) O_i + α V_{i+offset}.
#pragma once

#include <ra/core/error.hpp>
#include <ra/core/int.hpp>
#include <ra/expr/gates.hpp>

namespace ra {

struct AttentionSpec {
  index_t batch = 0;
  index_t heads = 0;
  index_t seq_q = 0;  // T_q query rows
  index_t seq_k = 0;  // T_k keys (and values)
  index_t head_dim = 0;
  int rank = 0;  // R reciprocal dims of the D
  Gates gates{};
  Restart restart{};

  index_t query_offset() const { return seq_k - seq_q; }
  index_t std_dims() const { return head_dim - rank; }
  /// Gate values per parameter: 1 per layer, H per head, 0 without gates.
  index_t gate_count() const {
    return !gates.enabled() ? 0 : gates.mode == GateMode::per_head ? heads : 1;
  }
};

/// Checks a spec; throws ra::error naming the bad field. Pointers are only checked for null
/// here (whether they are host or device memory is the backend's to know).
inline void validate(const AttentionSpec& s, const char* where) {
  require_arg(s.batch >= 0, where, "B", s.batch, "B >= 0");
  require_arg(s.heads > 0, where, "H", s.heads, "H > 0");
  require_arg(s.seq_q >= 0, where, "T_q", s.seq_q, "T_q >= 0");
  require_arg(s.seq_k >= s.seq_q, where, "T_k", s.seq_k,
              detail::concat("T_k >= T_q = ", s.seq_q,
                             " (causal: each query row needs its own token among the keys)"));
  require_arg(s.head_dim > 0, where, "D", s.head_dim, "a positive head dim");
  require_arg(s.rank >= 0 && s.rank < s.head_dim, where, "R", s.rank,
              detail::concat("0 <= R < D = ", s.head_dim));
  if (s.gates.enabled()) {
    require_arg(s.gates.w_std != nullptr, where, "gates.w_std", "a null pointer",
                "gate parameters for the chosen gate mode");
    require_arg(s.gates.w_rec != nullptr, where, "gates.w_rec", "a null pointer",
                "gate parameters for the chosen gate mode");
  }
}

}  // namespace ra
