// ra/expr/block.hpp — the attention block: its configuration, its parameters and gradients,
// and the ONE expression that computes it (attention_block below):
//
//   x (B,T,C) ──gemm(W_attn, b_attn)──▶ fused (BT,3C)                   [workspace]
//   fused ──fold──▶ Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1)             [no copy]
//   attend<R>(Qf, Kf, V) ──▶ O' (BT,C), read as (B,H,T,D) (TC,D,C,1)   [workspace]
//   O' ──gemm(W_o, b_o)──▶ y (BT,C)
//
// The block's configuration is runtime (C, H, R, gate mode); a caller that wants the kernels
// specialised dispatches D and R once (ra::dispatch_attention) and builds the expression
// with ra::Int<D> and ra::Rank<R>.
#pragma once

#include <ra/core/dispatch.hpp>
#include <ra/core/folded.hpp>
#include <ra/expr/attend.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/fold.hpp>
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
  /// Number of raw self-restart values (one per head with restart, else 0).
  index_t restart_count() const { return restart ? H : 0; }

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

/// Where a block's backward writes the parameter gradients (element type G: T, or fp32 for
/// 16-bit weights on the GPU). A view or pointer with null data means "not wanted"; bias
/// gradients are ignored for a block without bias, gate and restart gradients for a block
/// without gates or restart. Every gradient is overwritten.
template <class G>
struct AttentionBlockGrads {
  StridedView<G, 2> w_attn;  // (3C,C)
  StridedView<G, 1> b_attn;  // (3C)
  StridedView<G, 2> w_o;     // (C,C)
  StridedView<G, 1> b_o;     // (C)
  float* w_std = nullptr;    // gate_count() values
  float* w_rec = nullptr;
  float* a = nullptr;  // H values
};

/// The rank of an expression known only at run time (attention_block<DynamicRank>(...)).
using DynamicRank = Rank<kDynamicRank>;

/// The attention block as ONE expression over x (B,T,C):
///
///   gemm( attend<R>( fold( gemm(x, W_attn, b_attn), B, H, D ), gates, causal, restart ),
///         W_o, b_o )                                                     ->  y (BT,C)
///
/// fused projection GEMM + bias -> folded views of its (BT,3C) result (no copy) -> gated
/// causal attention, O' in (B,T,C) rows -> output GEMM + bias. D is an index or ra::Int<D>,
/// RankTag ra::Rank<R> or DynamicRank: static values reach the attention kernel's
/// instantiation directly. With `grads` and dx the nodes carry gradient sinks for
/// ra::backward. Nothing runs until ra::eval. Throws ra::error (ra::unsupported for D or R
/// outside the supported lists) naming the bad argument.
template <class RankTag, class T, class DExt, class G = T>
auto attention_block(const AttentionBlockConfig& cfg, StridedView<const T, 3> x,
                     const AttentionBlockWeights<T>& w, DExt D,
                     const AttentionBlockGrads<G>& grads = {}, StridedView<T, 3> dx = {}) {
  constexpr const char* where = "attention_block";
  cfg.validate(where);
  w.validate(cfg, where);
  require_arg(value(D) == cfg.head_dim(), where, "D", value(D),
              detail::concat("C / H = ", cfg.head_dim()));
  if constexpr (RankTag::value != kDynamicRank)
    require_arg(RankTag::value == cfg.R, where, "Rank", RankTag::value,
                detail::concat("cfg.R = ", cfg.R));
  const index_t B = x.extent(0), T_ = x.extent(1), C = cfg.C, H = cfg.H;
  require(x.extent(2) == C, where, ": 'x' has shape ", to_string(x.extents()), ", expected (B,T,",
          C, ")");
  require_arg(B > 0 && T_ > 0, where, "x", to_string(x.extents()),
              "a non-empty (B,T,C) input (B > 0, T > 0)");
  if (dx.data() != nullptr)
    require(dx.extents() == x.extents(), where, ": 'dx' has shape ", to_string(dx.extents()),
            ", expected ", to_string(x.extents()), " like x");
  const StridedView<const T, 1> no_bias{};
  const StridedView<G, 1> no_bias_grad{};
  const auto x2 = view(x, shape(B * T_, C));  // (BT,C)
  const auto dx2 = dx.data() != nullptr ? view(dx, shape(B * T_, C)) : StridedView<T, 2>{};
  const auto project = gemm(x2, w.w_attn, cfg.bias ? w.b_attn : no_bias)
                           .with_grads(dx2, grads.w_attn,
                                       cfg.bias ? grads.b_attn : no_bias_grad);  // (BT,3C)
  const auto qkv = fold(project, B, H, D);  // Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1)
  const auto o = [&] {                      // O' (BT,C)
    const AttentionGrads ag{grads.w_std, grads.w_rec, grads.a};
    if constexpr (RankTag::value == kDynamicRank) {
      return attend(qkv, cfg.R, w.gates(cfg), causal, w.restart(cfg)).with_grads(ag);
    } else {
      return attend<RankTag>(qkv, w.gates(cfg), causal, w.restart(cfg)).with_grads(ag);
    }
  }();
  return gemm(o, w.w_o, cfg.bias ? w.b_o : no_bias)
      .with_grads(NoGrad{}, grads.w_o, cfg.bias ? grads.b_o : no_bias_grad);  // y (BT,C)
}

}  // namespace ra
