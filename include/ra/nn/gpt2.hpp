// ra/nn/gpt2.hpp — GPT-2 on the CPU device, in two arms that differ only in attention:
// baseline (plain causal multi-head attention, R = 0, no gates) and RA (the folded
// reciprocal-attention block with rank R, gates and optional self-restart).
//
//   x_0     = drop(wte[tok] + wpe[0:T])                                  (B,T,C)
//   x_l+½   = x_l   + drop(attn_l(ln1_l(x_l)))        AttentionBlock<T> (ra/nn/attention_block)
//   x_l+1   = x_l+½ + drop(mlp_l(ln2_l(x_l+½)))       Linear C→4C, tanh-GELU, Linear 4C→C
//   logits  = ln_f(x_L) · wteᵀ                         tied LM head, first `vocab` rows
//   loss    = mean cross-entropy over targets ≠ -1
// Dropout (p = cfg.dropout, 0 by default) acts on the embeddings and on both residual
// branches, never on attention probabilities (the attention kernels have no dropout); its
// masks are counter-based (ra/nn/dropout.hpp), identical in both arms for the same seed.
// wte has padded_vocab() rows (a multiple of 64); the padded rows are never a token or a
// target and stay 0 at initialisation.
//
// Precision (bf16 mixed precision, made explicit): the model owns ONE flat fp32 buffer of
// master parameters and one of fp32 gradients, laid out by parameter_table() (the optimizer
// and checkpoints see only these). Each forward() first rounds the master parameters into a
// working copy in the compute type T (float, bf16 or double; the attention blocks hold their
// own T copy), activations and their gradients are stored in T, and every layer computes in
// double. Parameter gradients land in fp32, except that the attention block's weight
// gradients pass through T first (its backward writes T). AdamW (ra/nn/adamw.hpp) decays
// every 2-D tensor — the linear weights and the embeddings wte (also the head) and wpe, as
// GPT-2 and nanoGPT do — and nothing else (biases, LayerNorm, gates, restart).
//
// Initialisation (GPT-2): weights ~ normal(0, 0.02); the residual projections (attention W_o
// and the MLP's W_proj) further scaled by 1/√(2·n_layer); biases 0; LayerNorm weight 1, bias
// 0; gates 0.9 / 0.1; restart a = 0.05. Draws come from one stream (mt19937_64 + Box-Muller,
// portable across standard libraries) in this order: wte (real rows; pad rows stay 0), wpe,
// then per layer W_attn (3C·C), W_o, W_fc, W_proj. Both arms draw the same numbers in the same
// order: W_attn is drawn as the baseline's [W_q; W_k; W_v] and the RA arm stores
// repack_qkv(W_q, W_k, W_v) — a row permutation of the baseline's W_attn — so at
// initialisation RA is the baseline with rows permuted (plus its gates), and every other
// parameter is bit-identical between the arms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/repack.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gates.hpp>
#include <ra/nn/attention_block.hpp>
#include <ra/nn/cross_entropy.hpp>
#include <ra/nn/dropout.hpp>
#include <ra/nn/embedding.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/layernorm.hpp>
#include <ra/nn/mlp.hpp>

namespace ra::nn {

/// GPT-2 with fp32 master parameters and gradients and compute type T (float, bf16, double).
/// Construct, init_gpt2(seed), then forward()/backward() per step; an optimizer updates
/// parameters() in place from gradients().
template <class T = float>
class GPT2 {
 public:
  /// Validates cfg (ra::error / ra::unsupported naming the field) and allocates zeroed
  /// parameters and gradients; call init_gpt2() before training.
  explicit GPT2(const GPT2Config& cfg)
      : cfg_(cfg), layout_(gpt2_layout(cfg)), embedding_(cfg.vocab), head_(cfg.vocab) {
    const auto n = static_cast<std::size_t>(layout_.total);
    params_.assign(n, 0.f);
    grads_.assign(n, 0.f);
    work_.assign(n, T(0.0f));
    blocks_.reserve(static_cast<std::size_t>(cfg.n_layer));
    for (index_t l = 0; l < cfg.n_layer; ++l) blocks_.emplace_back(cfg.attention());
    ln1_.resize(static_cast<std::size_t>(cfg.n_layer));
    ln2_.resize(static_cast<std::size_t>(cfg.n_layer));
    mlp_.resize(static_cast<std::size_t>(cfg.n_layer));
  }
  // The layers keep views of the model's own buffers between forward() and backward(): a
  // copy would point into the original. Moving keeps the buffers (and so the views) valid.
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;
  GPT2(GPT2&&) = default;
  GPT2& operator=(GPT2&&) = default;

  const GPT2Config& config() const { return cfg_; }
  const GPT2Layout& layout() const { return layout_; }
  const std::vector<ParameterInfo>& parameter_table() const { return layout_.table; }
  std::size_t num_parameters() const { return params_.size(); }

  /// The flat fp32 master parameters (the optimizer writes them in place).
  std::span<float> parameters() { return params_; }
  std::span<const float> parameters() const { return params_; }
  /// The flat fp32 gradients of the last backward().
  std::span<float> gradients() { return grads_; }
  std::span<const float> gradients() const { return grads_; }

  /// The master values of the tensor called `name` (see parameter_table()).
  /// Throws ra::error naming an unknown tensor.
  std::span<float> parameter(std::string_view name) {
    const auto& p = info(name);
    return std::span<float>(params_).subspan(static_cast<std::size_t>(p.offset),
                                             static_cast<std::size_t>(p.size()));
  }
  /// The gradient of the tensor called `name`. Throws ra::error naming an unknown tensor.
  std::span<const float> gradient(std::string_view name) const {
    const auto& p = info(name);
    return std::span<const float>(grads_).subspan(static_cast<std::size_t>(p.offset),
                                                  static_cast<std::size_t>(p.size()));
  }
  /// The table entry of `name`. Throws ra::error naming an unknown tensor.
  const ParameterInfo& info(std::string_view name) const {
    for (const auto& p : layout_.table)
      if (p.name == name) return p;
    throw error(ra::detail::concat("nn::GPT2: no parameter called '", name,
                                   "', expected a name from parameter_table() such as 'wte'"));
  }

  /// GPT-2 initialisation from `seed` (init_gpt2_parameters). Deterministic.
  void init_gpt2(std::uint64_t seed) { init_gpt2_parameters(cfg_, layout_, params_, seed); }

  /// Replaces the master parameters (e.g. from a checkpoint). Throws ra::error on a size
  /// mismatch.
  void set_parameters(std::span<const float> p) {
    require_arg(p.size() == params_.size(), "nn::GPT2::set_parameters", "size", p.size(),
                ra::detail::concat(params_.size(), " (num_parameters())"));
    std::copy(p.begin(), p.end(), params_.begin());
  }

  /// Training mode turns dropout on (when cfg.dropout > 0); evaluation turns it off.
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  /// The seed of the dropout masks of the next forward (the trainer draws one per step).
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }

  /// Runs the model on tokens (B,T) int32 (any strides; T <= max_seq); with targets (B,T)
  /// (-1: ignored) returns the mean cross-entropy, otherwise NaN. Tokens and targets are
  /// copied, so the caller's batch may change before backward().
  /// Throws ra::error on bad shapes, tokens outside [0, vocab) or a gate or restart value that
  /// is not finite (named by its tensor, e.g. h.0.attn.w_std[0]).
  double forward(StridedView<const std::int32_t, 2> tokens,
                 StridedView<const std::int32_t, 2> targets = {}) {
    constexpr const char* where = "nn::GPT2::forward";
    const index_t B = tokens.extent(0), S = tokens.extent(1), C = cfg_.C, N = B * S;
    require(B >= 1 && S >= 1, where, ": 'tokens' has shape ", to_string(tokens.extents()),
            ", expected (B,T) with B, T >= 1");
    require_arg(S <= cfg_.max_seq, where, "sequence length T", S,
                ra::detail::concat("at most max_seq = ", cfg_.max_seq));
    const bool with_targets = !cpu::absent(targets);
    if (with_targets)
      require(targets.extents() == tokens.extents(), where, ": 'targets' has shape ",
              to_string(targets.extents()), ", expected the shape of tokens ",
              to_string(tokens.extents()));
    require_finite_gates(where);
    sync_working_copy();
    resize(B, S);
    // backward() must apply the masks of this forward, whatever the flags are by then.
    mask_on_ = training_ && cfg_.dropout > 0.f;
    mask_seed_ = dropout_seed_;
    copy_ints(tokens, tokens_);
    if (with_targets) copy_ints(targets, targets_);
    have_targets_ = with_targets;
    const cpu::device dev;
    const auto L = static_cast<std::size_t>(cfg_.n_layer);

    embedding_.forward(make_view(static_cast<const std::int32_t*>(tokens_.data()), shape(B, S)),
                       {wv(layout_.wte, cfg_.padded_vocab(), C), wv(layout_.wpe, cfg_.max_seq, C)},
                       btc(resid(0)), dev);
    drop(rows(resid(0)), kSiteEmbedding);
    for (std::size_t l = 0; l < L; ++l) {
      const auto& s = layout_.layers[l];
      ln1_[l].forward(crows(resid(l)), ln_weights(s.ln1_w, s.ln1_b), rows(ln1(l)), dev);
      blocks_[l].forward(cbtc(ln1(l)), btc(tmp_.data()), dev);
      drop(rows(tmp_.data()), site(l, 0));
      add(resid(l), tmp_.data(), mid(l));
      ln2_[l].forward(crows(mid(l)), ln_weights(s.ln2_w, s.ln2_b), rows(ln2(l)), dev);
      mlp_[l].forward(crows(ln2(l)), mlp_weights(s), rows(tmp_.data()), dev);
      drop(rows(tmp_.data()), site(l, 1));
      add(mid(l), tmp_.data(), resid(l + 1));
    }
    lnf_.forward(crows(resid(L)), ln_weights(layout_.lnf_w, layout_.lnf_b), rows(lnf_out_.data()),
                 dev);
    have_forward_ = true;
    if (!with_targets) return std::numeric_limits<double>::quiet_NaN();
    return head_.forward(crows(lnf_out_.data()), wv(layout_.wte, cfg_.padded_vocab(), C),
                         make_view(static_cast<const std::int32_t*>(targets_.data()), shape(N)),
                         dev);
  }

  /// Gradients of the last forward's loss: overwrites gradients() (all of it).
  /// Throws ra::error when the last forward had no targets.
  void backward() {
    require(have_forward_ && have_targets_,
            "nn::GPT2::backward: expected a forward() with targets first");
    const cpu::device dev;
    const index_t C = cfg_.C;
    const auto L = static_cast<std::size_t>(cfg_.n_layer);
    std::fill(grads_.begin(), grads_.end(), 0.f);
    T* d_resid = d_resid_.data();
    T* d_mid = d_mid_.data();
    T* d_ln = d_ln_.data();
    T* d_tmp = d_tmp_.data();

    head_.backward(rows(d_ln), gv(layout_.wte, cfg_.padded_vocab(), C), dev);
    lnf_.backward(crows(d_ln), rows(d_resid), ln_grads(layout_.lnf_w, layout_.lnf_b), dev);
    for (std::size_t l = L; l-- > 0;) {
      const auto& s = layout_.layers[l];
      // x_l+1 = x_l+½ + drop(mlp(ln2(x_l+½)))
      std::copy_n(d_resid, n_act_, d_tmp);
      drop(rows(d_tmp), site(l, 1));
      mlp_[l].backward(crows(d_tmp), rows(d_ln), mlp_grads(s), dev);
      ln2_[l].backward(crows(d_ln), rows(d_tmp), ln_grads(s.ln2_w, s.ln2_b), dev);
      add(d_resid, d_tmp, d_mid);
      // x_l+½ = x_l + drop(attn(ln1(x_l)))
      std::copy_n(d_mid, n_act_, d_tmp);
      drop(rows(d_tmp), site(l, 0));
      blocks_[l].backward(cbtc(d_tmp), btc(d_ln), dev);
      copy_block_grads(l);
      ln1_[l].backward(crows(d_ln), rows(d_tmp), ln_grads(s.ln1_w, s.ln1_b), dev);
      add(d_mid, d_tmp, d_resid);
    }
    drop(rows(d_resid), kSiteEmbedding);
    embedding_.backward(cbtc(d_resid),
                        {gv(layout_.wte, cfg_.padded_vocab(), C), gv(layout_.wpe, cfg_.max_seq, C)},
                        dev);
  }

  /// The logits over the real vocabulary at position (b, t) of the last forward, in double.
  /// Throws ra::error when no forward ran or (b, t) is outside it.
  std::vector<double> logits(index_t b, index_t t) const {
    require(have_forward_, "nn::GPT2::logits: expected forward() first");
    require_arg(b >= 0 && b < batch_ && t >= 0 && t < seq_, "nn::GPT2::logits", "position",
                ra::detail::concat("(", b, ",", t, ")"),
                ra::detail::concat("inside the last forward's (B,T) = (", batch_, ",", seq_, ")"));
    const index_t C = cfg_.C;
    const T* h = lnf_out_.data() + (b * seq_ + t) * C;
    std::vector<double> z(static_cast<std::size_t>(cfg_.vocab));
    for (index_t v = 0; v < cfg_.vocab; ++v) {
      const T* w = work_.data() + layout_.wte + v * C;
      double s = 0.0;
      for (index_t c = 0; c < C; ++c) s += convert<double>(h[c]) * convert<double>(w[c]);
      z[static_cast<std::size_t>(v)] = s;
    }
    return z;
  }

  /// The effective gates g = gate(w) and restart mixes α = clamp(a) of each layer, from the
  /// master parameters.
  std::vector<LayerGateStats> gate_stats() const { return gpt2_gate_stats(cfg_, layout_, params_); }

 private:
  // Dropout sites: two per layer (attention and MLP residual branches) and the embeddings.
  static constexpr std::uint64_t kSiteEmbedding = ~std::uint64_t{0};
  static std::uint64_t site(std::size_t layer, int branch) { return 2 * layer + branch; }

  void drop(StridedView<T, 2> x, std::uint64_t s) const {
    if (mask_on_) Dropout{cfg_.dropout}.apply(x, mask_seed_, s);
  }

  // The gate and restart values, named by tensor: the attention refuses them too, but could
  // not say which layer they belong to.
  void require_finite_gates(const char* where) const {
    for (const auto& p : layout_.table) {
      const bool gate = p.name.ends_with(".attn.w_std") || p.name.ends_with(".attn.w_rec") ||
                        p.name.ends_with(".attn.a");
      for (index_t i = 0; gate && i < p.size(); ++i) {
        const float v = params_[static_cast<std::size_t>(p.offset + i)];
        if (!std::isfinite(v))
          throw error(ra::detail::concat(where, ": argument '", p.name, "[", i, "]' is ", v,
                                         ", expected a finite gate or restart value"));
      }
    }
  }

  // Rounds the master parameters into the working copies (all of work_, and each block's).
  void sync_working_copy() {
    for (std::size_t i = 0; i < params_.size(); ++i) work_[i] = convert<T>(params_[i]);
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      const auto& s = layout_.layers[l];
      auto& p = blocks_[l].parameters();
      copy_to(s.w_attn, p.w_attn);
      copy_to(s.b_attn, p.b_attn);
      copy_to(s.w_o, p.w_o);
      copy_to(s.b_o, p.b_o);
      copy_to(s.w_std, p.w_std);
      copy_to(s.w_rec, p.w_rec);
      copy_to(s.a, p.a);
    }
  }

  template <class U>
  void copy_to(index_t offset, std::vector<U>& dst) const {
    for (std::size_t i = 0; i < dst.size(); ++i)
      dst[i] = convert<U>(params_[static_cast<std::size_t>(offset) + i]);
  }

  template <class U>
  void copy_from(const std::vector<U>& src, index_t offset) {
    for (std::size_t i = 0; i < src.size(); ++i)
      grads_[static_cast<std::size_t>(offset) + i] = static_cast<float>(convert<double>(src[i]));
  }

  void copy_block_grads(std::size_t l) {
    const auto& s = layout_.layers[l];
    const auto& g = blocks_[l].gradients();
    copy_from(g.w_attn, s.w_attn);
    copy_from(g.b_attn, s.b_attn);
    copy_from(g.w_o, s.w_o);
    copy_from(g.b_o, s.b_o);
    copy_from(g.w_std, s.w_std);
    copy_from(g.w_rec, s.w_rec);
    copy_from(g.a, s.a);
  }

  void resize(index_t batch, index_t seq) {
    batch_ = batch;
    seq_ = seq;
    const auto L = static_cast<std::size_t>(cfg_.n_layer);
    n_act_ = static_cast<std::size_t>(batch * seq * cfg_.C);
    auto grow = [](std::vector<T>& v, std::size_t n) {
      if (v.size() != n) v.assign(n, T(0.0f));
    };
    grow(resid_, (L + 1) * n_act_);
    grow(mid_, L * n_act_);
    grow(ln1_out_, L * n_act_);
    grow(ln2_out_, L * n_act_);
    for (auto* v : {&tmp_, &lnf_out_, &d_resid_, &d_mid_, &d_ln_, &d_tmp_}) grow(*v, n_act_);
  }

  template <class V>
  static void copy_ints(const V& src, std::vector<std::int32_t>& dst) {
    dst.resize(static_cast<std::size_t>(src.size()));
    std::size_t k = 0;
    for (index_t b = 0; b < src.extent(0); ++b)
      for (index_t t = 0; t < src.extent(1); ++t) dst[k++] = src(b, t);
  }

  // dst = a + b over one activation, rounded to T.
  void add(const T* a, const T* b, T* dst) const {
    for (std::size_t i = 0; i < n_act_; ++i)
      dst[i] = convert<T>(convert<double>(a[i]) + convert<double>(b[i]));
  }

  T* resid(std::size_t l) { return resid_.data() + l * n_act_; }
  T* mid(std::size_t l) { return mid_.data() + l * n_act_; }
  T* ln1(std::size_t l) { return ln1_out_.data() + l * n_act_; }
  T* ln2(std::size_t l) { return ln2_out_.data() + l * n_act_; }

  StridedView<T, 2> rows(T* p) const {
    return make_view(p, shape(batch_ * seq_, cfg_.C));  // (N,C)
  }
  StridedView<const T, 2> crows(const T* p) const {
    return make_view(p, shape(batch_ * seq_, cfg_.C));  // (N,C)
  }
  StridedView<T, 3> btc(T* p) const {
    return make_view(p, shape(batch_, seq_, cfg_.C));  // (B,T,C)
  }
  StridedView<const T, 3> cbtc(const T* p) const {
    return make_view(p, shape(batch_, seq_, cfg_.C));  // (B,T,C)
  }

  // Views of the working copy (weights) and of the fp32 gradients; null for offset -1.
  StridedView<const T, 2> wv(index_t off, index_t r, index_t c) const {
    return make_view(static_cast<const T*>(work_.data() + off), shape(r, c));  // (r,c)
  }
  StridedView<const T, 1> wv(index_t off, index_t n) const {
    if (off < 0) return {};
    return make_view(static_cast<const T*>(work_.data() + off), shape(n));  // (n)
  }
  StridedView<float, 2> gv(index_t off, index_t r, index_t c) {
    return make_view(grads_.data() + off, shape(r, c));  // (r,c)
  }
  StridedView<float, 1> gv(index_t off, index_t n) {
    if (off < 0) return {};
    return make_view(grads_.data() + off, shape(n));  // (n)
  }

  typename LayerNorm<T>::Weights ln_weights(index_t w, index_t b) const {
    return {wv(w, cfg_.C), wv(b, cfg_.C)};
  }
  typename LayerNorm<T>::Grads ln_grads(index_t w, index_t b) {
    return {gv(w, cfg_.C), gv(b, cfg_.C)};
  }
  typename MLP<T>::Weights mlp_weights(const GPT2LayerSlots& s) const {
    const index_t C = cfg_.C;
    return {wv(s.w_fc, 4 * C, C), wv(s.b_fc, 4 * C), wv(s.w_proj, C, 4 * C), wv(s.b_proj, C)};
  }
  typename MLP<T>::Grads mlp_grads(const GPT2LayerSlots& s) {
    const index_t C = cfg_.C;
    return {gv(s.w_fc, 4 * C, C), gv(s.b_fc, 4 * C), gv(s.w_proj, C, 4 * C), gv(s.b_proj, C)};
  }

  GPT2Config cfg_;
  GPT2Layout layout_;
  std::vector<float> params_, grads_;
  std::vector<T> work_;
  Embedding<T> embedding_;
  std::vector<LayerNorm<T>> ln1_, ln2_;
  std::vector<AttentionBlock<T>> blocks_;
  std::vector<MLP<T>> mlp_;
  LayerNorm<T> lnf_;
  LMHeadLoss<T> head_;
  std::vector<std::int32_t> tokens_, targets_;
  std::vector<T> resid_, mid_, ln1_out_, ln2_out_, tmp_, lnf_out_;
  std::vector<T> d_resid_, d_mid_, d_ln_, d_tmp_;
  index_t batch_ = 0, seq_ = 0;  // (B,T) of the last forward
  std::size_t n_act_ = 0;
  bool training_ = true, have_forward_ = false, have_targets_ = false;
  std::uint64_t dropout_seed_ = 0;
  bool mask_on_ = false;  // dropout masks of the last forward: on, and their seed
  std::uint64_t mask_seed_ = 0;
};

}  // namespace ra::nn
