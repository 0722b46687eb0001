// ra/nn/attention_block.hpp — an attention block layer (baseline R = 0, or reciprocal
// attention) that owns its parameters, their gradients and its workspace.
//
//   x (B,T,C) ─▶ fused = x·W_attnᵀ + b_attn (B,T,3C) ─▶ folded attention ─▶ O' (B,T,C)
//             ─▶ y = O'·W_oᵀ + b_o (B,T,C)
// Parameters: W_attn (3C,C), b_attn (3C), W_o (C,C), b_o (C) in T; raw gates w_std, w_rec
// (gate_count() each) and restart a (H) in fp32. The configuration is validated once, in the
// constructor; D and R are dispatched where the block is evaluated.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/layout.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/block.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/repack.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gates.hpp>

namespace ra::nn {

/// The parameters of an attention block (or their gradients), stored row-major.
template <class T>
struct AttentionBlockParameters {
  std::vector<T> w_attn;     // (3C,C)
  std::vector<T> b_attn;     // (3C), empty without bias
  std::vector<T> w_o;        // (C,C)
  std::vector<T> b_o;        // (C), empty without bias
  std::vector<float> w_std;  // gate_count() raw gate values
  std::vector<float> w_rec;  // gate_count()
  std::vector<float> a;      // (H) restart values, empty without restart
};

/// An attention block with host parameters. Construct from a config, initialise with
/// init_gpt2() or load_baseline(), then forward()/backward() on a device.
template <class T>
class AttentionBlock {
 public:
  /// Validates cfg (throws ra::error / ra::unsupported naming the field) and sizes the
  /// parameters: zero weights and biases, gates at 0.9 / 0.1, restart at 0.05.
  explicit AttentionBlock(const AttentionBlockConfig& cfg) : cfg_(cfg) {
    cfg_.validate("nn::AttentionBlock");
    const auto C = static_cast<std::size_t>(cfg_.C);
    const auto bias = cfg_.bias ? 1u : 0u;
    for (auto* p : {&params_, &grads_}) {
      p->w_attn.assign(3 * C * C, T(0.0f));
      p->b_attn.assign(bias * 3 * C, T(0.0f));
      p->w_o.assign(C * C, T(0.0f));
      p->b_o.assign(bias * C, T(0.0f));
      p->w_std.assign(static_cast<std::size_t>(cfg_.gate_count()), 0.f);
      p->w_rec.assign(static_cast<std::size_t>(cfg_.gate_count()), 0.f);
      p->a.assign(static_cast<std::size_t>(cfg_.restart_count()), 0.f);
    }
    reset_gates();
  }

  const AttentionBlockConfig& config() const { return cfg_; }

  /// GPT-2 initialisation: weights ~ normal(0, 0.02) (W_o further scaled by
  /// 1/sqrt(2·n_layer) for the residual stream), zero biases, gates 0.9 / 0.1, a = 0.05.
  /// Deterministic for a given seed. Throws ra::error when n_layer < 1.
  void init_gpt2(std::uint64_t seed, int n_layer = 12) {
    require_arg(n_layer >= 1, "nn::AttentionBlock::init_gpt2", "n_layer", n_layer,
                "a positive layer count");
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 0.02);
    const double residual = 1.0 / std::sqrt(2.0 * n_layer);
    for (T& w : params_.w_attn) w = convert<T>(normal(rng));
    for (T& w : params_.w_o) w = convert<T>(normal(rng) * residual);
    for (T& b : params_.b_attn) b = T(0.0f);
    for (T& b : params_.b_o) b = T(0.0f);
    reset_gates();
  }

  /// Loads a baseline attention: W_q, W_k, W_v, W_o (C,C) and b_q, b_k, b_v, b_o (C), any
  /// element types and strides. Q/K/V are repacked into the folded W_attn (ra::cpu::repack_qkv);
  /// the gates keep their values (they are never baked into weights). Biases are ignored
  /// by a block without bias. Throws ra::error naming a badly shaped argument.
  template <ViewOfRank<2> WQ, ViewOfRank<2> WK, ViewOfRank<2> WV, ViewOfRank<1> BQ,
            ViewOfRank<1> BK, ViewOfRank<1> BV, ViewOfRank<2> WO, ViewOfRank<1> BO>
  void load_baseline(const WQ& w_q, const WK& w_k, const WV& w_v, const BQ& b_q, const BK& b_k,
                     const BV& b_v, const WO& w_o, const BO& b_o) {
    constexpr const char* where = "nn::AttentionBlock::load_baseline";
    const index_t C = cfg_.C;
    require(w_o.extent(0) == C && w_o.extent(1) == C, where, ": 'w_o' has shape ",
            to_string(w_o.extents()), ", expected (", C, ",", C, ")");
    cpu::detail::require_data(where, "w_o", w_o);
    if (cfg_.bias) {
      require_arg(b_o.extent(0) == C, where, "b_o.extent(0)", b_o.extent(0),
                  ra::detail::concat("C = ", C));
      cpu::detail::require_data(where, "b_o", b_o);
    }
    const StridedView<T, 1> no_bias{};
    cpu::repack_qkv(C, cfg_.H, cfg_.R, w_q, w_k, w_v, b_q, b_k, b_v, mutable_w_attn(),
                    cfg_.bias ? make_view(params_.b_attn.data(), shape(3 * C)) : no_bias);
    for (index_t i = 0; i < C; ++i) {
      for (index_t j = 0; j < C; ++j)
        params_.w_o[i * C + j] = convert<T>(convert<double>(w_o(i, j)));
      if (cfg_.bias) params_.b_o[i] = convert<T>(convert<double>(b_o(i)));
    }
  }

  /// y = block(x), both (B,T,C). Keeps the view x (not a copy) for backward(): its data must
  /// stay alive and unchanged until then. Throws ra::error naming a badly shaped argument.
  void forward(StridedView<const T, 3> x, StridedView<T, 3> y, const cpu::device&) {
    cpu::block_forward<T>(cfg_, x, weights(), y, buffers_);
    x_ = x;
    have_x_ = true;
  }

  /// Given dy (B,T,C) for the last forward's x: writes dx (a null view: not wanted) and
  /// overwrites the parameter gradients (gradients()). Throws ra::error when no forward ran
  /// or on a shape mismatch.
  void backward(StridedView<const T, 3> dy, StridedView<T, 3> dx, const cpu::device&) {
    require(have_x_, "nn::AttentionBlock::backward: no input saved, expected forward() first");
    cpu::block_backward<T>(cfg_, x_, weights(), dy, dx, grads(), buffers_);
  }

  /// Views of the parameters in the form the block functions and pipelines take.
  AttentionBlockWeights<T> weights() const {
    const index_t C = cfg_.C;
    AttentionBlockWeights<T> w;
    w.w_attn = make_view(params_.w_attn.data(), shape(3 * C, C));  // (3C,C)
    w.w_o = make_view(params_.w_o.data(), shape(C, C));            // (C,C)
    if (cfg_.bias) {
      w.b_attn = make_view(params_.b_attn.data(), shape(3 * C));  // (3C)
      w.b_o = make_view(params_.b_o.data(), shape(C));            // (C)
    }
    w.w_std = params_.w_std.empty() ? nullptr : params_.w_std.data();
    w.w_rec = params_.w_rec.empty() ? nullptr : params_.w_rec.data();
    w.a = params_.a.empty() ? nullptr : params_.a.data();
    return w;
  }

  /// Views of the gradient storage, as block_backward writes it.
  cpu::AttentionBlockGrads<T> grads() {
    const index_t C = cfg_.C;
    cpu::AttentionBlockGrads<T> g;
    g.w_attn = make_view(grads_.w_attn.data(), shape(3 * C, C));  // (3C,C)
    g.w_o = make_view(grads_.w_o.data(), shape(C, C));            // (C,C)
    if (cfg_.bias) {
      g.b_attn = make_view(grads_.b_attn.data(), shape(3 * C));  // (3C)
      g.b_o = make_view(grads_.b_o.data(), shape(C));            // (C)
    }
    g.w_std = grads_.w_std.empty() ? nullptr : grads_.w_std.data();
    g.w_rec = grads_.w_rec.empty() ? nullptr : grads_.w_rec.data();
    g.a = grads_.a.empty() ? nullptr : grads_.a.data();
    return g;
  }

  /// The parameters (mutable: an optimiser or a test writes them in place).
  AttentionBlockParameters<T>& parameters() { return params_; }
  const AttentionBlockParameters<T>& parameters() const { return params_; }
  /// The gradients of the last backward().
  const AttentionBlockParameters<T>& gradients() const { return grads_; }
  /// The workspace of the last forward/backward (fused projection, O', and their gradients).
  const cpu::BlockBuffers<T>& buffers() const { return buffers_; }

 private:
  void reset_gates() {
    for (float& w : params_.w_std) w = raw_gate_for(kGateInitStd, cfg_.gate_param);
    for (float& w : params_.w_rec) w = raw_gate_for(kGateInitRec, cfg_.gate_param);
    for (float& a : params_.a) a = kRestartInit;
  }

  StridedView<T, 2> mutable_w_attn() {
    return make_view(params_.w_attn.data(), shape(3 * cfg_.C, cfg_.C));  // (3C,C)
  }

  AttentionBlockConfig cfg_;
  AttentionBlockParameters<T> params_;
  AttentionBlockParameters<T> grads_;
  cpu::BlockBuffers<T> buffers_;
  StridedView<const T, 3> x_{};
  bool have_x_ = false;
};

}  // namespace ra::nn
