// ra/cuda/attention_params.cuh — one params struct with every pointer and stride an
// attention kernel reads, so packed and strided inputs are read in place.
//
// Qf, O are (B, H, T_q, D) and Kf, V (B, H, T_k, D), with arbitrary batch/head/row strides (in
// elements) and a unit stride along D. The shapes, gates and restart are those of an
// AttentionSpec (ra/expr/attention_spec.hpp: spec() below), validated there once. For the
// fused (B,T,3C) buffer the input strides are (3TC, D, 3C); for O written in (B,T,C) layout
// they are (TC, D, C).
//
// Decoding (attention_decode, ra/cuda/decode.cuh) uses the same struct: Qf and O hold the
// T_q new rows, Kf and V are the KV cache with seq_k = its capacity (max_seq rows per (b, h)),
// and seq_lens (B values in device memory) the keys of each sequence, its new rows included,
// read at run time so a captured CUDA graph sees them grow. kv_splits and split_ws are the
// split-KV fields: the keys of one (b, h) split over kv_splits blocks whose partial results
// are merged in a fixed order through split_ws.
//
// With self-restart the forward can also write O, the attention output before the restart
// mix (o_pre); the backward needs it: rebuilding O = (O' − αV)/(1 − α) from the stored 16-bit
// O' carries O''s rounding, u·|αV|/(1 − α), into rowsum(dO' ⊙ O) and from there into every
// gradient, many times the rounding of O itself when |O| ≪ |V| (long rows average V out).
#pragma once

#include <cstdint>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/overlap.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/forward_path.cuh>
#include <ra/expr/attention_spec.hpp>
#include <ra/expr/gates.hpp>

namespace ra::cuda {

struct AttentionParams {
  const void* q = nullptr;  // Qf
  const void* k = nullptr;  // Kf
  const void* v = nullptr;  // V
  void* o = nullptr;        // O'
  float* lse = nullptr;     // (B, H, T) natural-log log-sum-exp of the scaled logits; optional

  index_t q_batch_stride = 0, q_head_stride = 0, q_row_stride = 0;
  index_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  index_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  index_t o_batch_stride = 0, o_head_stride = 0, o_row_stride = 0;
  // O before the self-restart mix, written with restart on when not null (the backward
  // reads it then; without restart O' is O and o_pre is unused).
  void* o_pre = nullptr;
  index_t o_pre_batch_stride = 0, o_pre_head_stride = 0, o_pre_row_stride = 0;

  int batch = 0, heads = 0, head_dim = 0, rank = 0;
  int seq = 0;        // T_q query rows
  int seq_k = 0;      // T_k keys (the flash kernels take T_k = T_q; decoding: the cache rows)
  float scale = 0.f;  // 1/sqrt(D) of the full head dim

  DType dtype = DType::f16;
  Gates gates{};                              // device pointers
  Restart restart{};                          // device pointer (H values) or null
  ForwardPath path = ForwardPath::automatic;  // the forward's tensor-core path (fp16/bf16)

  // Decoding only (null / 1 / null for the flash kernels).
  const int* seq_lens = nullptr;  // (B) keys per sequence, device memory, new rows included
  int kv_splits = 1;              // key splits per (b, h): decode_splits() picks one
  float* split_ws = nullptr;      // decode_workspace_floats() floats when kv_splits > 1
  index_t split_ws_floats = 0;    // the floats behind split_ws

  /// The call's shapes, gates and restart, device-neutral.
  AttentionSpec spec() const { return {batch, heads, seq, seq_k, head_dim, rank, gates, restart}; }
};

// ---- decoding's shapes ---------------------------------------------------------------

/// The most query rows one decode call takes (a longer prefill is the flash kernels' job).
inline constexpr int kDecodeMaxRows = 16;
/// The most key splits per (b, h).
inline constexpr int kDecodeMaxSplits = 64;
/// The fewest keys worth a split of their own.
inline constexpr int kDecodeMinSplitKeys = 64;

/// Floats of split-KV scratch a decode call with `splits` splits needs: per (b, h, row, split)
/// the partial O (D floats) and (m, l); 0 for one split.
inline index_t decode_workspace_floats(index_t batch, index_t heads, index_t rows, index_t head_dim,
                                       int splits) {
  return splits > 1 ? batch * heads * rows * splits * (head_dim + 2) : 0;
}

/// Key splits per (b, h) for a batch of `batch` sequences over a cache of `max_seq` rows on the
/// current device: enough blocks for two waves over its SMs, no split under
/// kDecodeMinSplitKeys keys of max_seq, at most kDecodeMaxSplits. Depends on the shapes only,
/// so a captured graph keeps it.
inline int decode_splits(index_t batch, index_t heads, index_t max_seq) {
  int device = 0, sms = 0;
  RA_CUDA_CHECK(cudaGetDevice(&device));
  RA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const index_t pairs = batch * heads > 0 ? batch * heads : 1;
  index_t want = (2 * static_cast<index_t>(sms) + pairs - 1) / pairs;
  const index_t most = (max_seq + kDecodeMinSplitKeys - 1) / kDecodeMinSplitKeys;
  want = want < most ? want : most;
  want = want < kDecodeMaxSplits ? want : kDecodeMaxSplits;
  return static_cast<int>(want > 1 ? want : 1);
}

namespace detail {

/// The memory of one (B, H, rows, D) operand of p, for the overlap checks.
inline Footprint operand_footprint(const AttentionParams& p, const void* ptr, index_t rows,
                                   index_t bs, index_t hs, index_t rs) {
  return footprint(ptr, static_cast<index_t>(size_of(p.dtype)),
                   {{ptr ? p.batch : 0, bs}, {p.heads, hs}, {rows, rs}, {p.head_dim, 1}});
}

/// Calls f.template operator()<G, kRestart>() with p's gate mode and restart flag as template
/// arguments: the one runtime-to-template step for them, shared by the forward and decode
/// kernels' per-(T, D, R) definitions (flash_rank.cuh, decode_rank.cuh).
template <class F>
void dispatch_gates_restart(const AttentionParams& p, F&& f) {
  auto with_restart = [&]<GateMode G>() {
    if (p.restart.enabled()) {
      f.template operator()<G, true>();
    } else {
      f.template operator()<G, false>();
    }
  };
  switch (p.gates.mode) {
    case GateMode::none:
      with_restart.template operator()<GateMode::none>();
      break;
    case GateMode::per_layer:
      with_restart.template operator()<GateMode::per_layer>();
      break;
    case GateMode::per_head:
      with_restart.template operator()<GateMode::per_head>();
      break;
  }
}

}  // namespace detail

/// Which kernel family a params struct is checked for.
enum class AttentionCall : std::uint8_t { flash, decode };

/// The checks every CUDA attention path shares: the spec (ra/expr/attention_spec.hpp),
/// T_q = T_k and no per-sequence lengths for the flash kernels (ra::unsupported: T_q < T_k
/// is attention_decode's), the pointers of Qf, Kf, V and O, and outputs (O, o_pre, lse,
/// the split-KV scratch) in memory of their own.
inline void validate_common(const AttentionParams& p, const char* where,
                            AttentionCall call = AttentionCall::flash) {
  validate(p.spec(), where);
  if (call == AttentionCall::flash) {
    if (p.seq_k != p.seq)
      throw unsupported(ra::detail::concat(
          where, ": T_q = ", p.seq, " query rows against T_k = ", p.seq_k,
          " keys: the flash kernels take T_q = T_k (attention_decode takes T_q < T_k)"));
    require_arg(p.seq_lens == nullptr, where, "seq_lens", "a pointer",
                "null (per-sequence lengths are attention_decode's)");
  }
  require_arg(p.q && p.k && p.v && p.o, where, "q/k/v/o", "a null pointer",
              "device pointers to Qf, Kf, V and O");
  const index_t n_a = p.restart.enabled() ? p.heads : 0;
  require_disjoint(where,
                   {{"O", detail::operand_footprint(p, p.o, p.seq, p.o_batch_stride,
                                                    p.o_head_stride, p.o_row_stride)},
                    {"o_pre", detail::operand_footprint(p, p.o_pre, p.seq, p.o_pre_batch_stride,
                                                        p.o_pre_head_stride, p.o_pre_row_stride)},
                    {"lse", float_footprint(p.lse, index_t{p.batch} * p.heads * p.seq)},
                    {"Qf", detail::operand_footprint(p, p.q, p.seq, p.q_batch_stride,
                                                     p.q_head_stride, p.q_row_stride)},
                    {"Kf", detail::operand_footprint(p, p.k, p.seq_k, p.k_batch_stride,
                                                     p.k_head_stride, p.k_row_stride)},
                    {"V", detail::operand_footprint(p, p.v, p.seq_k, p.v_batch_stride,
                                                    p.v_head_stride, p.v_row_stride)},
                    {"gates.w_std", float_footprint(p.gates.w_std, p.spec().gate_count())},
                    {"gates.w_rec", float_footprint(p.gates.w_rec, p.spec().gate_count())},
                    {"restart.a", float_footprint(p.restart.a, n_a)},
                    {"split_ws", float_footprint(p.split_ws, p.split_ws_floats)}},
                   3);
}

}  // namespace ra::cuda
