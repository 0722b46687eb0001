// ra/expr/block.hpp — the attention block as a pipeline of lazy nodes.
//
//   x (B,T,C) ──gemm(W_attn, b_attn)──▶ fused (B,T,3C)
//   fused ──folded_views──▶ Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1)     [no copy]
//   folded_attention(Qf, Kf, V) ──▶ o (B,T,C) seen as (B,H,T,D) strides (TC,D,C,1)
//   o ──gemm(W_o, b_o)──▶ y (B,T,C)
//
// The block's configuration is runtime (C, H, R, gate mode); D and R are dispatched to
// template arguments once, where the pipeline is evaluated.
#pragma once

#include <ra/core/dispatch.hpp>
#include <ra/core/folded.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/gemm.hpp>

namespace ra {

/// Shape and options of an attention block (baseline: R = 0, gates none).
struct AttentionBlockConfig {
  index_t C = 768;
  index_t H = 12;
  int R = 0;
  GateMode gates = GateMode::none;
  GateParam gate_param = GateParam::clamp;
  bool restart = false;
  bool bias = true;

  index_t head_dim() const { return H > 0 ? C / H : 0; }
  /// Number of raw gate values per gate (1 per layer, H per head, 0 without gates).
  index_t gate_count() const {
    return gates == GateMode::none ? 0 : gates == GateMode::per_layer ? 1 : H;
  }

  /// Throws ra::error (or ra::unsupported) naming the offending field.
  void validate(const char* where = "AttentionBlockConfig") const {
    require_arg(C > 0, where, "C", C, "a positive channel count");
    require_arg(H > 0, where, "H", H, "a positive head count");
    require_arg(C % H == 0, where, "C", C, detail::concat("a multiple of H = ", H));
    require_arg(R >= 0, where, "R", R, "a non-negative reciprocal rank");
    check_head_dim_and_rank(where, static_cast<int>(head_dim()), R);
  }
};

/// Parameters of one block, as views of caller memory. Gate and restart values are fp32.
template <class T>
struct AttentionBlockWeights {
  StridedView<const T, 2> w_attn;  // (3C, C)
  StridedView<const T, 1> b_attn;  // (3C), empty when the block has no bias
  StridedView<const T, 2> w_o;     // (C, C)
  StridedView<const T, 1> b_o;     // (C)
  const float* w_std = nullptr;    // gate_count() raw values
  const float* w_rec = nullptr;
  const float* a = nullptr;  // H restart values when cfg.restart

  Gates gates(const AttentionBlockConfig& cfg) const {
    return {cfg.gates, cfg.gate_param, w_std, w_rec};
  }
  Restart restart(const AttentionBlockConfig& cfg) const {
    return {cfg.restart ? a : nullptr};
  }

  void validate(const AttentionBlockConfig& cfg, const char* where = "AttentionBlock") const {
    const index_t C = cfg.C;
    require(w_attn.extent(0) == 3 * C && w_attn.extent(1) == C, where, ": 'w_attn' has shape ",
            to_string(w_attn.extents()), ", expected (", 3 * C, ",", C, ")");
    require(w_o.extent(0) == C && w_o.extent(1) == C, where, ": 'w_o' has shape ",
            to_string(w_o.extents()), ", expected (", C, ",", C, ")");
    if (cfg.bias) {
      require_arg(b_attn.extent(0) == 3 * C, where, "b_attn.extent(0)", b_attn.extent(0),
                  detail::concat("3C = ", 3 * C));
      require_arg(b_o.extent(0) == C, where, "b_o.extent(0)", b_o.extent(0),
                  detail::concat("C = ", C));
    }
    if (cfg.gates != GateMode::none)
      require_arg(w_std != nullptr && w_rec != nullptr, where, "w_std/w_rec", "a null pointer",
                  detail::concat(cfg.gate_count(), " gate value(s) each"));
    if (cfg.restart)
      require_arg(a != nullptr, where, "a", "a null pointer", "H restart values");
  }
};

/// The block's forward pipeline over caller-owned buffers: three lazy nodes.
template <class T>
struct AttentionBlockPipeline {
  using X2 = StridedView<const T, 2>;
  using B1 = StridedView<const T, 1>;
  using Head = StridedView<const T, 4>;
  Gemm<X2, X2, B1> project;                        // (BT,C) -> fused (BT,3C)
  FoldedAttention<kDynamicRank, Head, Head, Head> attend;  // fused views -> o
  Gemm<X2, X2, B1> output;                         // o (BT,C) -> y (BT,C)
  StridedView<T, 2> fused;                         // (BT,3C)
  StridedView<T, 4> o_heads;                       // (B,H,T,D) strides (TC,D,C,1)
  bool bias = true;
};

/// Builds the pipeline: x (B,T,C), fused buffer (B,T,3C), o buffer (B,T,C). Nothing runs.
template <class T>
AttentionBlockPipeline<T> attention_block(const AttentionBlockConfig& cfg,
                                          StridedView<const T, 3> x,
                                          const AttentionBlockWeights<T>& w,
                                          StridedView<T, 3> fused_buf, StridedView<T, 3> o_buf) {
  cfg.validate("attention_block");
  w.validate(cfg, "attention_block");
  const index_t B = x.extent(0), T_ = x.extent(1), C = cfg.C, H = cfg.H, D = cfg.head_dim();
  require(x.extent(2) == C, "attention_block: 'x' has shape ", to_string(x.extents()),
          ", expected (B,T,", C, ")");
  require(fused_buf.extent(0) == B && fused_buf.extent(1) == T_ && fused_buf.extent(2) == 3 * C,
          "attention_block: 'fused' has shape ", to_string(fused_buf.extents()), ", expected (",
          B, ",", T_, ",", 3 * C, ")");
  require(o_buf.extent(0) == B && o_buf.extent(1) == T_ && o_buf.extent(2) == C,
          "attention_block: 'o' has shape ", to_string(o_buf.extents()), ", expected (", B, ",",
          T_, ",", C, ")");
  auto x2 = view(x, shape(B * T_, C));                                  // (BT,C)
  auto fused2 = view(fused_buf, shape(B * T_, 3 * C));                  // (BT,3C)
  auto o2 = view(StridedView<const T, 3>(o_buf), shape(B * T_, C));     // (BT,C)
  auto qkv = folded_views(StridedView<const T, 3>(fused_buf), H, D);   // 3 x (B,H,T,D)
  auto o_heads = heads(o_buf, H, D);  // (B,H,T,D) strides (TC,D,C,1)
  AttentionBlockPipeline<T> p{
      {x2, w.w_attn, w.b_attn},
      {qkv.q, qkv.k, qkv.v, cfg.R, w.gates(cfg), w.restart(cfg)},
      {o2, w.w_o, w.b_o},
      fused2,
      o_heads,
      cfg.bias};
  p.attend.validate("attention_block");
  return p;
}

/// Evaluates a lazy node (or pipeline) into `out` on a device: ra::cpu::device{} or
/// ra::cuda::device{stream}. The device chooses the implementation.
template <class Out, class Node, class Device>
void eval(Out&& out, const Node& node, Device&& dev) {
  dev.eval(std::forward<Out>(out), node);
}

}  // namespace ra
