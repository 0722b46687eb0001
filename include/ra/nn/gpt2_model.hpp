// ra/nn/gpt2_model.hpp — GPT-2, written once over a backend (CPU/Eigen: ra/cpu/gpt2_backend.hpp,
// as nn::GPT2<T> in ra/nn/gpt2.hpp; CUDA: ra/cuda/gpt2_backend.cuh, as nn::CudaGPT2<T> in
// ra/nn/gpt2_cuda.cuh). Two arms that differ only in attention: baseline (plain causal
// multi-head attention, R = 0, no gates) and RA (folded reciprocal attention with rank R,
// gates and optional self-restart).
//
//   x_0     = drop(wte[tok] + wpe[0:T])                                         (B,T,C)
//   per layer (N = B·T rows; * = kept for the backward):
//     ln1*  = LN(x*)          qkv* = ln1·W_attnᵀ + b_attn     att* = attention(qkv)
//     mid*  = x + drop(att·W_oᵀ + b_o)
//     ln2*  = LN(mid)         fc*  = ln2·W_fcᵀ + b_fc         act* = gelu(fc)
//     x'    = mid + drop(act·W_projᵀ + b_proj)
//   logits  = LN_f(x_L) · wteᵀ       tied LM head, first `vocab` rows
//   loss    = mean cross-entropy over targets ≠ -1
// and the backward runs the same steps in reverse. Dropout (p = cfg.dropout, 0 by default) acts
// on the embeddings and both residual branches, never on attention probabilities; its masks
// are counter-based (ra/model/dropout.hpp), the same on every backend and in both arms.
//
// This template owns the order of the layers, the parameter table and the activation layout
// above; the backend supplies the primitive ops and the memory (see "The backend" below).
// Precision (made explicit): ONE flat buffer of fp32 master parameters and one of fp32
// gradients, laid out by parameter_table() (ra/model/gpt2_config.hpp), and a working copy of
// the parameters in the compute type T that every layer reads, refreshed whenever the masters
// change (set_parameters, step); activations and their gradients are stored in T. How each op
// computes is the backend's: the CPU in double, rounding what it stores (the reference); the
// GPU in fp32 with cuBLASLt GEMMs, deterministic (no atomics in ra's kernels).
//
// parameters() and gradients() mean the same on every backend: the fp32 values, COPIED to
// the host, in table order. They change only through set_parameters() / set_parameter() and
// step(optimizer, lr), the one optimizer interface (the backend's AdamW, plain or with SPAM).
//
// Activation memory is sized for the largest B·T seen (rows in steps of 256) and reused; a
// forward or backward of an already seen size allocates nothing. Initialisation (GPT-2, from
// model::init_gpt2_parameters): the same numbers for a seed on every backend.
//
// The backend (one class per backend and T) provides:
//   value_type (T), Optimizer, Buffer<U> (owning; data()), kHostMemory (its memory is host
//   memory: the forward then checks the gate values by name);
//   construction from (cfg, extra arguments of the model's constructor...);
//   memory: zeros<U>(n), upload(host span, dst), download(src, n), round(fp32 src, T dst, n),
//   synchronize(), reserve(rows) (its own per-row state: LayerNorm statistics, attention lse,
//   logits, ...), set_shape(B, T);
//   ops on pointers into its memory, N = B·T rows, shapes from the config:
//   embedding_forward/backward, layernorm_forward/backward (statistics slot 2l, 2l+1 and 2L;
//   the backward adds a residual gradient), linear_forward / linear_gelu_forward /
//   linear_backward / linear_gelu_backward (model::Linear names the layer), attention_forward /
//   attention_backward (layer l, gates and restart read from the fp32 masters), dropout, add,
//   copy, head_forward (loss, or NaN keeping the logits) / head_backward / logits, and
//   optimizer_step; for decoding with the KV cache (see "generation" below), one call per
//   layer for all sequences of a step: reserve_cache(batch, max_seq), set_cached_rows(rows)
//   (model::CachedRows: the step's tokens, positions and lengths), embedding_at (each row at
//   its own position), cache_write (the new rows' Kf and V into the layer's cache),
//   attention_cached (the new rows over the cache), head_logits / cached_logits (the logits
//   after each sequence's last new token), and run_cached(key, f), which runs the step f —
//   eagerly, or, on the GPU, as a CUDA graph captured once per key and replayed.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/model/adamw.hpp>
#include <ra/model/cached_rows.hpp>
#include <ra/model/gpt2_config.hpp>

namespace ra::nn {

/// The fp32 gate and restart values of one layer (null: absent), in backend memory.
struct AttentionGateValues {
  const float* w_std = nullptr;
  const float* w_rec = nullptr;
  const float* a = nullptr;
};
/// Where a layer's gate and restart gradients go (null: absent), in backend memory.
struct AttentionGateGrads {
  float* w_std = nullptr;
  float* w_rec = nullptr;
  float* a = nullptr;
};

/// GPT-2 with fp32 master parameters and gradients over `Backend` (compute type
/// Backend::value_type). Construct, init_gpt2(seed), then per step forward(), backward() and
/// step(optimizer, lr) with a Backend::Optimizer.
template <class Backend>
class GPT2Model {
 public:
  using T = typename Backend::value_type;
  using Optimizer = typename Backend::Optimizer;
  template <class U>
  using Buffer = typename Backend::template Buffer<U>;

  /// Validates cfg (ra::error / ra::unsupported naming the field) and allocates zeroed
  /// parameters and gradients; `backend_args` go to the backend after cfg (the CUDA backend:
  /// context, stream, options). Call init_gpt2() before training.
  template <class... BackendArgs>
  explicit GPT2Model(const model::GPT2Config& cfg, BackendArgs&&... backend_args)
      : cfg_(cfg),
        layout_(model::gpt2_layout(cfg)),
        be_(cfg_, std::forward<BackendArgs>(backend_args)...),
        params_(be_.template zeros<float>(layout_.total)),
        grads_(be_.template zeros<float>(layout_.total)),
        work_(be_.template zeros<T>(layout_.total)) {
    be_.synchronize();  // before work on any stream
  }
  GPT2Model(const GPT2Model&) = delete;
  GPT2Model& operator=(const GPT2Model&) = delete;
  GPT2Model(GPT2Model&&) = default;
  GPT2Model& operator=(GPT2Model&&) = default;

  const model::GPT2Config& config() const { return cfg_; }
  const model::GPT2Layout& layout() const { return layout_; }
  const std::vector<model::ParameterInfo>& parameter_table() const { return layout_.table; }
  std::size_t num_parameters() const { return static_cast<std::size_t>(layout_.total); }
  /// The backend (e.g. what the CUDA backend's options settled on, its stream).
  Backend& backend() { return be_; }
  const Backend& backend() const { return be_; }

  /// GPT-2 initialisation from `seed` (model::init_gpt2_parameters): the same values on
  /// every backend.
  void init_gpt2(std::uint64_t seed) {
    std::vector<float> p(num_parameters());
    model::init_gpt2_parameters(cfg_, layout_, p, seed);
    set_parameters(p);
  }

  /// The fp32 master parameters, copied to the host, in table order.
  std::vector<float> parameters() const { return be_.download(params_.data(), layout_.total); }
  /// The fp32 gradients of the last backward(), copied to the host, in table order.
  std::vector<float> gradients() const { return be_.download(grads_.data(), layout_.total); }
  /// The master values of the tensor called `name`, copied to the host.
  /// Throws ra::error naming an unknown tensor.
  std::vector<float> parameter(std::string_view name) const {
    const auto& p = info(name);
    return be_.download(params_.data() + p.offset, p.size());
  }
  /// The gradient of the tensor called `name`, copied to the host.
  /// Throws ra::error naming an unknown tensor.
  std::vector<float> gradient(std::string_view name) const {
    const auto& p = info(name);
    return be_.download(grads_.data() + p.offset, p.size());
  }
  /// The table entry of `name`. Throws ra::error naming an unknown tensor.
  const model::ParameterInfo& info(std::string_view name) const {
    for (const auto& p : layout_.table)
      if (p.name == name) return p;
    throw error(ra::detail::concat("nn::GPT2: no parameter called '", name,
                                   "', expected a name from parameter_table() such as 'wte'"));
  }

  /// Replaces the master parameters (e.g. from a checkpoint) and the working copy.
  /// Throws ra::error on a size mismatch.
  void set_parameters(std::span<const float> p) {
    require_arg(static_cast<index_t>(p.size()) == layout_.total, "nn::GPT2::set_parameters", "size",
                p.size(), ra::detail::concat(layout_.total, " (num_parameters())"));
    be_.upload(p, params_.data());
    be_.round(params_.data(), work_.data(), layout_.total);
    be_.synchronize();
  }
  /// Replaces the master values of the tensor called `name` (and their working copy).
  /// Throws ra::error naming an unknown tensor or a size mismatch.
  void set_parameter(std::string_view name, std::span<const float> v) {
    const auto& p = info(name);
    require_arg(static_cast<index_t>(v.size()) == p.size(), "nn::GPT2::set_parameter", "size",
                v.size(), ra::detail::concat(p.size(), " (the size of '", name, "')"));
    be_.upload(v, params_.data() + p.offset);
    be_.round(params_.data() + p.offset, work_.data() + p.offset, p.size());
    be_.synchronize();
  }

  /// One optimizer step at learning rate lr on the masters from the last backward's
  /// gradients, refreshing the working copy; returns what the step did (the gradient norm
  /// before clipping included). Throws what the optimizer throws (a non-finite gradient norm:
  /// nothing changed).
  model::AdamWStep step(Optimizer& opt, double lr) {
    return be_.optimizer_step(opt, params_.data(), grads_.data(), work_.data(), layout_.total, lr);
  }

  /// Training mode turns dropout on (when cfg.dropout > 0); evaluation turns it off.
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  /// The seed of the dropout masks of the next forward (the trainer draws one per step).
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }

  /// Runs the model on host tokens (B,T) int32 (any strides; T <= max_seq); with targets
  /// (B,T) (-1: ignored) returns the mean cross-entropy (0 when every target is ignored) and
  /// prepares backward(), otherwise returns NaN and keeps the logits for logits(). Tokens and
  /// targets are copied. Waits for the backend. Throws ra::error on bad shapes, a token outside
  /// [0, vocab) or a target outside [-1, vocab) (naming its position), or, on a host backend,
  /// a gate or restart value that is not finite (named by its tensor, e.g. h.0.attn.w_std[0]).
  double forward(StridedView<const std::int32_t, 2> tokens,
                 StridedView<const std::int32_t, 2> targets = {}) {
    constexpr const char* where = "nn::GPT2::forward";
    // A forward that throws leaves nothing for backward() or logits(): its checks may have
    // replaced the saved tokens and targets already.
    have_forward_ = false;
    const index_t B = tokens.extent(0), S = tokens.extent(1);
    require(B >= 1 && S >= 1 && tokens.data() != nullptr, where, ": 'tokens' has shape ",
            to_string(tokens.extents()), ", expected (B,T) with B, T >= 1");
    require_arg(S <= cfg_.max_seq, where, "sequence length T", S,
                ra::detail::concat("at most max_seq = ", cfg_.max_seq));
    const bool with_targets = targets.data() != nullptr;
    if (with_targets)
      require(targets.extents() == tokens.extents(), where, ": 'targets' has shape ",
              to_string(targets.extents()), ", expected the shape of tokens ",
              to_string(tokens.extents()));
    copy_checked(where, "token", tokens, 0, tokens_);
    if (with_targets) copy_checked(where, "target", targets, -1, targets_);
    if constexpr (Backend::kHostMemory) require_finite_gates(where);
    ensure(B, S);
    // backward() must apply the masks of this forward, whatever the flags are by then.
    mask_on_ = training_ && cfg_.dropout > 0.f;
    mask_seed_ = dropout_seed_;
    const index_t NC = B * S * cfg_.C, L = cfg_.n_layer;
    using model::Linear;

    be_.embedding_forward(tokens_, w(layout_.wte), w(layout_.wpe), resid(0));
    drop(resid(0), NC, kSiteEmbedding);
    for (index_t l = 0; l < L; ++l) {
      const auto& s = slots(l);
      be_.layernorm_forward(2 * l, resid(l), w(s.ln1_w), w(s.ln1_b), ln1(l));
      be_.linear_forward(Linear::qkv, ln1(l), w(s.w_attn), w(s.b_attn), qkv(l));
      be_.attention_forward(l, qkv(l), att(l), gate_values(s));
      be_.linear_forward(Linear::out, att(l), w(s.w_o), w(s.b_o), acts_.tmp.data());
      drop(acts_.tmp.data(), NC, site(l, 0));
      be_.add(resid(l), acts_.tmp.data(), mid(l), NC);
      be_.layernorm_forward(2 * l + 1, mid(l), w(s.ln2_w), w(s.ln2_b), ln2(l));
      be_.linear_gelu_forward(Linear::fc, ln2(l), w(s.w_fc), w(s.b_fc), fc(l), act(l));
      be_.linear_forward(Linear::proj, act(l), w(s.w_proj), w(s.b_proj), acts_.tmp.data());
      drop(acts_.tmp.data(), NC, site(l, 1));
      be_.add(mid(l), acts_.tmp.data(), resid(l + 1), NC);
    }
    be_.layernorm_forward(2 * L, resid(L), w(layout_.lnf_w), w(layout_.lnf_b), acts_.lnf.data());
    have_forward_ = true;
    have_targets_ = with_targets;
    return be_.head_forward(
        acts_.lnf.data(), w(layout_.wte), tokens_,
        with_targets ? std::span<const std::int32_t>(targets_) : std::span<const std::int32_t>());
  }

  /// Gradients of the last forward's loss: overwrites the gradients (all of them). May return
  /// before the backend finishes (gradients(), step() wait). Throws ra::error when the last
  /// forward had no targets.
  void backward() {
    require(have_forward_ && have_targets_,
            "nn::GPT2::backward: expected a forward() with targets first");
    const index_t NC = batch_ * seq_ * cfg_.C, L = cfg_.n_layer;
    using model::Linear;
    float* g = grads_.data();
    T* d_resid = acts_.d_resid.data();
    T* d_mid = acts_.d_mid.data();
    T* d_ln = acts_.d_ln.data();
    T* d_big = acts_.d_big.data();
    T* d_qkv = acts_.d_qkv.data();

    // LM head (tied to wte) and ln_f. dwte is written here; the embedding adds to it below.
    be_.head_backward(acts_.lnf.data(), w(layout_.wte), targets_, d_ln, g + layout_.wte);
    be_.layernorm_backward(2 * L, d_ln, resid(L), w(layout_.lnf_w), nullptr, d_resid,
                           g + layout_.lnf_w, gp(layout_.lnf_b));
    for (index_t l = L; l-- > 0;) {
      const auto& s = slots(l);
      // x_l+1 = mid + drop(mlp(ln2(mid)))
      const T* d_branch = dropped(d_resid, NC, site(l, 1));
      be_.linear_gelu_backward(Linear::proj, d_branch, act(l), w(s.w_proj), fc(l), d_big,
                               g + s.w_proj, gp(s.b_proj));
      be_.linear_backward(Linear::fc, d_big, ln2(l), w(s.w_fc), d_ln, g + s.w_fc, gp(s.b_fc));
      be_.layernorm_backward(2 * l + 1, d_ln, mid(l), w(s.ln2_w), d_resid, d_mid, g + s.ln2_w,
                             gp(s.ln2_b));
      // mid = x_l + drop(attn(ln1(x_l)))
      d_branch = dropped(d_mid, NC, site(l, 0));
      be_.linear_backward(Linear::out, d_branch, att(l), w(s.w_o), d_ln, g + s.w_o,
                          gp(s.b_o));  // d_ln = dO'
      be_.attention_backward(l, qkv(l), att(l), gate_values(s), d_ln, d_qkv,
                             AttentionGateGrads{gp(s.w_std), gp(s.w_rec), gp(s.a)});
      be_.linear_backward(Linear::qkv, d_qkv, ln1(l), w(s.w_attn), d_ln, g + s.w_attn,
                          gp(s.b_attn));
      be_.layernorm_backward(2 * l, d_ln, resid(l), w(s.ln1_w), d_mid, d_resid, g + s.ln1_w,
                             gp(s.ln1_b));
    }
    drop(d_resid, NC, kSiteEmbedding);
    be_.embedding_backward(tokens_, d_resid, g + layout_.wte, g + layout_.wpe);
  }

  /// The logits over the real vocabulary at position (b, t) of the last forward, in double.
  /// Needs a forward() without targets (a forward with targets may turn the logits into their
  /// gradient). Throws ra::error otherwise or when (b, t) is outside the forward.
  std::vector<double> logits(index_t b, index_t t) const {
    constexpr const char* where = "nn::GPT2::logits";
    require(have_forward_ && !have_targets_, where,
            ": expected a forward() without targets first (a forward with targets turns the "
            "logits into their gradient)");
    require_arg(b >= 0 && b < batch_ && t >= 0 && t < seq_, where, "position",
                ra::detail::concat("(", b, ",", t, ")"),
                ra::detail::concat("inside the last forward's (B,T) = (", batch_, ",", seq_, ")"));
    return be_.logits(b * seq_ + t, acts_.lnf.data(), w(layout_.wte));
  }

  // ---- generation: a KV cache ----------------------------------------------------------
  // Per layer, the cache holds Kf and V (the fused layout's own column slices, no repacking)
  // of `batch` sequences as (B,H,max_seq,D) each, in T: a new query row needs Kf_j and V_j of
  // the earlier tokens only, and each depends on token j alone. Each sequence keeps its own
  // length, so prompts of different lengths share one batch and a row never attends past its
  // own length. The model writes the new rows into the cache and runs every layer; the backend
  // supplies the token-and-position embedding and the attention of new rows over the cache
  // (T_q new rows against T_k = length + T_q keys, mask aligned bottom-right; gates and the
  // restart mix as in training, the mix taking each new token's own V). Dropout is off.

  /// Allocates (once) an empty cache for `batch` sequences of up to `max_seq` tokens.
  /// Throws ra::error on batch < 1 or max_seq outside [1, config().max_seq].
  void reset_cache(index_t batch, index_t max_seq) {
    constexpr const char* where = "nn::GPT2::reset_cache";
    require_arg(batch >= 1, where, "batch", batch, "at least 1 sequence");
    require_arg(max_seq >= 1 && max_seq <= cfg_.max_seq, where, "max_seq", max_seq,
                ra::detail::concat("a length in [1, config().max_seq = ", cfg_.max_seq, "]"));
    const index_t n = cfg_.n_layer * batch * cfg_.C * max_seq;  // L·B·H·max_seq·D
    if (cache_.batch != batch || cache_.max_seq != max_seq) {
      cache_ = KVCache{};  // free the old cache first
      cache_.kf = be_.template zeros<T>(n);
      cache_.v = be_.template zeros<T>(n);
      cache_.batch = batch;
      cache_.max_seq = max_seq;
      be_.reserve_cache(batch, max_seq);
      ++epoch_;
    }
    cache_.length.assign(static_cast<std::size_t>(batch), 0);
  }
  /// Sequences in the cache (0 before reset_cache) and the longest each may grow.
  index_t cache_batch() const { return cache_.batch; }
  index_t cache_max_seq() const { return cache_.max_seq; }
  /// Tokens cached for sequence b. Throws ra::error when b is outside the cache.
  index_t cache_length(index_t b) const {
    require_arg(b >= 0 && b < cache_.batch, "nn::GPT2::cache_length", "b", b,
                ra::detail::concat("a sequence in [0, cache_batch() = ", cache_.batch, ")"));
    return cache_.length[static_cast<std::size_t>(b)];
  }

  /// Appends prompts[b] to sequence b of the cache (one prompt per sequence, lengths may
  /// differ) and returns the logits over the real vocabulary after each prompt's last token,
  /// (batch, vocab) row-major in double. Throws ra::error on a prompt count other than
  /// cache_batch(), an empty prompt, a token outside [0, vocab) (named by its position) or a
  /// sequence that would grow past cache_max_seq(); nothing is cached then.
  std::vector<double> prefill(std::span<const std::vector<std::int32_t>> prompts) {
    constexpr const char* where = "nn::GPT2::prefill";
    require_arg(static_cast<index_t>(prompts.size()) == cache_.batch, where, "prompts.size()",
                prompts.size(),
                ra::detail::concat("cache_batch() = ", cache_.batch, " (one prompt per sequence)"));
    for (index_t b = 0; b < cache_.batch; ++b) {
      const auto& p = prompts[static_cast<std::size_t>(b)];
      require_arg(!p.empty(), where, ra::detail::concat("prompts[", b, "].size()"), 0,
                  "at least one token");
      check_cache_tokens(where, b, p);
    }
    std::vector<double> out;
    for (index_t b = 0; b < cache_.batch; ++b) {
      const auto& p = prompts[static_cast<std::size_t>(b)];
      const auto z = forward_cached(where, b, 1, static_cast<index_t>(p.size()), p);
      out.insert(out.end(), z.begin(), z.end());
    }
    return out;
  }

  /// Appends one token per sequence (next[b] to sequence b) and returns the logits after it,
  /// (batch, vocab) row-major in double. Throws ra::error on a count other than cache_batch(),
  /// a token outside [0, vocab) or a full sequence (cache_length(b) = cache_max_seq()).
  std::vector<double> decode(std::span<const std::int32_t> next) {
    constexpr const char* where = "nn::GPT2::decode";
    require_arg(static_cast<index_t>(next.size()) == cache_.batch, where, "next.size()",
                next.size(),
                ra::detail::concat("cache_batch() = ", cache_.batch, " (one token per sequence)"));
    for (index_t b = 0; b < cache_.batch; ++b)
      check_cache_tokens(where, b, next.subspan(static_cast<std::size_t>(b), 1));
    return forward_cached(where, 0, cache_.batch, 1, next);
  }

  /// The effective gates g = gate(w) and restart mixes α = clamp(a) of each layer
  /// (model::gpt2_gate_stats), from the masters: only the tail of the table that holds the
  /// gate and restart values is copied to the host.
  std::vector<model::LayerGateStats> gate_stats() const {
    const index_t first = gates_begin();
    const auto tail = be_.download(params_.data() + first, layout_.total - first);
    return model::gpt2_gate_stats(cfg_, layout_, tail, first);
  }

 private:
  // Dropout sites: two per layer (attention and MLP residual branches) and the embeddings.
  static constexpr std::uint64_t kSiteEmbedding = ~std::uint64_t{0};
  static std::uint64_t site(index_t layer, int branch) {
    return 2 * static_cast<std::uint64_t>(layer) + static_cast<std::uint64_t>(branch);
  }

  // The activations of the largest B·T seen (capacity rows), in T.
  struct Activations {
    Buffer<T> resid, mid, ln1, ln2, qkv, att, fc, act, lnf, tmp;
    Buffer<T> d_resid, d_mid, d_ln, d_big, d_qkv, d_tmp;
  };

  struct KVCache {
    Buffer<T> kf, v;  // (L,B,H,max_seq,D) each
    index_t batch = 0, max_seq = 0;
    std::vector<index_t> length;  // tokens cached per sequence
  };

  // Refuses tokens outside the vocabulary, and more than sequence b has room for.
  void check_cache_tokens(const char* where, index_t b, std::span<const std::int32_t> t) const {
    const index_t len = cache_.length[static_cast<std::size_t>(b)];
    require_arg(len + static_cast<index_t>(t.size()) <= cache_.max_seq, where,
                ra::detail::concat("sequence ", b, " length"),
                ra::detail::concat(len, " + ", t.size(), " new tokens"),
                ra::detail::concat("at most cache_max_seq() = ", cache_.max_seq,
                                   " (reset_cache with a larger max_seq)"));
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t[i] < 0 || t[i] >= cfg_.vocab)
        throw error(ra::detail::concat(where, ": token ", i, " of sequence ", b, " is ", t[i],
                                       ", expected a token id in [0, ", cfg_.vocab, ")"));
  }

  index_t& seq_length(index_t b) { return cache_.length[static_cast<std::size_t>(b)]; }

  // The cache slot of (layer l, sequence b, head h, position t): D values.
  index_t cache_slot(index_t l, index_t b, index_t h, index_t t) const {
    const index_t D = cfg_.head_dim();
    return (((l * cache_.batch + b) * cfg_.n_head + h) * cache_.max_seq + t) * D;
  }

  // Sequences [first, first + n) each append S tokens (`tokens`, (n,S) row-major, checked):
  // every layer on the n·S new rows, their Kf and V written into the cache, attention over
  // the cache, one backend call per layer for all n sequences; returns the logits after each
  // sequence's last new token, (n, vocab). The step runs through be_.run_cached, keyed by
  // its shape and the memory it touches (epoch_), so a GPU backend may replay it as a graph.
  std::vector<double> forward_cached(const char* where, index_t first, index_t n, index_t S,
                                     std::span<const std::int32_t> tokens) {
    if constexpr (Backend::kHostMemory) require_finite_gates(where);
    have_forward_ = false;  // the activations are about to hold the new rows only
    ensure(n, S);
    const index_t NC = n * S * cfg_.C, L = cfg_.n_layer;
    std::vector<index_t> pos(static_cast<std::size_t>(n * S)), len(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      for (index_t t = 0; t < S; ++t)
        pos[static_cast<std::size_t>(i * S + t)] = seq_length(first + i) + t;
      len[static_cast<std::size_t>(i)] = seq_length(first + i) + S;
    }
    be_.set_cached_rows(
        model::CachedRows{first, n, S, cache_.batch, cache_.max_seq, tokens, pos, len});
    using model::Linear;
    be_.run_cached(std::array<index_t, 4>{first, n, S, epoch_}, [&] {
      be_.embedding_at(w(layout_.wte), w(layout_.wpe), resid(0));
      for (index_t l = 0; l < L; ++l) {
        const auto& s = slots(l);
        T* kf = cache_.kf.data() + cache_slot(l, 0, 0, 0);  // (B,H,max_seq,D)
        T* v = cache_.v.data() + cache_slot(l, 0, 0, 0);
        be_.layernorm_forward(2 * l, resid(l), w(s.ln1_w), w(s.ln1_b), ln1(l));
        be_.linear_forward(Linear::qkv, ln1(l), w(s.w_attn), w(s.b_attn), qkv(l));
        be_.cache_write(qkv(l), kf, v);
        be_.attention_cached(l, qkv(l), att(l), kf, v, gate_values(s));
        be_.linear_forward(Linear::out, att(l), w(s.w_o), w(s.b_o), acts_.tmp.data());
        be_.add(resid(l), acts_.tmp.data(), mid(l), NC);
        be_.layernorm_forward(2 * l + 1, mid(l), w(s.ln2_w), w(s.ln2_b), ln2(l));
        be_.linear_gelu_forward(Linear::fc, ln2(l), w(s.w_fc), w(s.b_fc), fc(l), act(l));
        be_.linear_forward(Linear::proj, act(l), w(s.w_proj), w(s.b_proj), acts_.tmp.data());
        be_.add(mid(l), acts_.tmp.data(), resid(l + 1), NC);
      }
      be_.layernorm_forward(2 * L, resid(L), w(layout_.lnf_w), w(layout_.lnf_b), acts_.lnf.data());
      be_.head_logits(acts_.lnf.data(), w(layout_.wte));
    });
    auto out = be_.cached_logits(acts_.lnf.data(), w(layout_.wte));
    for (index_t i = 0; i < n; ++i) seq_length(first + i) += S;
    return out;
  }

  // Copies a (B,T) int32 view to `out` row-major, checking each value is in [low, vocab).
  void copy_checked(const char* where, const char* what, StridedView<const std::int32_t, 2> v,
                    std::int32_t low, std::vector<std::int32_t>& out) const {
    out.resize(static_cast<std::size_t>(v.size()));
    std::size_t k = 0;
    for (index_t b = 0; b < v.extent(0); ++b)
      for (index_t t = 0; t < v.extent(1); ++t) {
        const std::int32_t x = v(b, t);
        if (x < low || x >= cfg_.vocab)
          throw error(ra::detail::concat(where, ": ", what, " at (", b, ",", t, ") is ", x,
                                         ", expected ", low < 0 ? "-1 or " : "",
                                         "a token id in [0, ", cfg_.vocab, ")"));
        out[k++] = x;
      }
  }

  // The gate and restart values, named by tensor: the attention refuses them too, but could
  // not say which layer they belong to. Host backends only (the values are host memory).
  void require_finite_gates(const char* where) const {
    for (const auto& p : layout_.table) {
      const bool gate = p.name.ends_with(".attn.w_std") || p.name.ends_with(".attn.w_rec") ||
                        p.name.ends_with(".attn.a");
      for (index_t i = 0; gate && i < p.size(); ++i) {
        const float v = params_.data()[p.offset + i];
        if (!std::isfinite(v))
          throw error(ra::detail::concat(where, ": argument '", p.name, "[", i, "]' is ", v,
                                         ", expected a finite gate or restart value"));
      }
    }
  }

  // The first offset of the gates and restart values (the table ends with them).
  index_t gates_begin() const {
    index_t first = layout_.total;
    for (const auto& s : layout_.layers)
      for (index_t off : {s.w_std, s.w_rec, s.a})
        if (off >= 0) first = std::min(first, off);
    return first;
  }

  // Sizes the activations (and the backend's per-row state) for (B, S).
  void ensure(index_t B, index_t S) {
    const index_t N = B * S, C = cfg_.C, L = cfg_.n_layer;
    if (N > capacity_) {
      acts_ = Activations{};  // free the old set first
      // Rows in steps of 256, so that generation (one more row per token) rarely reallocates.
      const index_t rows = (N + 255) / 256 * 256;
      const index_t NC = rows * C;
      auto& a = acts_;
      a.resid = be_.template zeros<T>((L + 1) * NC);
      a.mid = be_.template zeros<T>(L * NC);
      a.ln1 = be_.template zeros<T>(L * NC);
      a.ln2 = be_.template zeros<T>(L * NC);
      a.qkv = be_.template zeros<T>(L * 3 * NC);
      a.att = be_.template zeros<T>(L * NC);
      a.fc = be_.template zeros<T>(L * 4 * NC);
      a.act = be_.template zeros<T>(L * 4 * NC);
      a.lnf = be_.template zeros<T>(NC);
      a.tmp = be_.template zeros<T>(NC);
      a.d_resid = be_.template zeros<T>(NC);
      a.d_mid = be_.template zeros<T>(NC);
      a.d_ln = be_.template zeros<T>(NC);
      a.d_big = be_.template zeros<T>(4 * NC);
      a.d_qkv = be_.template zeros<T>(3 * NC);
      a.d_tmp = be_.template zeros<T>(cfg_.dropout > 0.f ? NC : 0);
      be_.reserve(rows);
      capacity_ = rows;
      ++epoch_;
    }
    be_.set_shape(B, S);
    batch_ = B;
    seq_ = S;
  }

  void drop(T* x, index_t n, std::uint64_t s) {
    if (mask_on_) be_.dropout(x, n, cfg_.dropout, mask_seed_, s);
  }

  // dy itself without dropout; otherwise a masked copy in d_tmp.
  const T* dropped(const T* dy, index_t n, std::uint64_t s) {
    if (!mask_on_) return dy;
    be_.copy(dy, acts_.d_tmp.data(), n);
    be_.dropout(acts_.d_tmp.data(), n, cfg_.dropout, mask_seed_, s);
    return acts_.d_tmp.data();
  }

  const model::GPT2LayerSlots& slots(index_t l) const {
    return layout_.layers[static_cast<std::size_t>(l)];
  }
  AttentionGateValues gate_values(const model::GPT2LayerSlots& s) const {
    return {master(s.w_std), master(s.w_rec), master(s.a)};
  }
  // The working copy of the tensor at `offset` (null when absent).
  const T* w(index_t offset) const { return offset >= 0 ? work_.data() + offset : nullptr; }
  // The fp32 master of the tensor at `offset` (null when absent).
  const float* master(index_t offset) const {
    return offset >= 0 ? params_.data() + offset : nullptr;
  }
  // The gradient of the tensor at `offset` (null when absent).
  float* gp(index_t offset) { return offset >= 0 ? grads_.data() + offset : nullptr; }

  index_t nc() const { return batch_ * seq_ * cfg_.C; }
  T* resid(index_t l) { return acts_.resid.data() + l * nc(); }
  T* mid(index_t l) { return acts_.mid.data() + l * nc(); }
  T* ln1(index_t l) { return acts_.ln1.data() + l * nc(); }
  T* ln2(index_t l) { return acts_.ln2.data() + l * nc(); }
  T* qkv(index_t l) { return acts_.qkv.data() + l * 3 * nc(); }
  T* att(index_t l) { return acts_.att.data() + l * nc(); }
  T* fc(index_t l) { return acts_.fc.data() + l * 4 * nc(); }
  T* act(index_t l) { return acts_.act.data() + l * 4 * nc(); }

  model::GPT2Config cfg_;
  model::GPT2Layout layout_;
  Backend be_;
  Buffer<float> params_, grads_;
  Buffer<T> work_;
  Activations acts_;
  KVCache cache_;
  std::vector<std::int32_t> tokens_, targets_;
  index_t capacity_ = 0, batch_ = 0, seq_ = 0;  // rows allocated; (B,T) of the last forward
  index_t epoch_ = 0;  // bumped whenever the activations or the cache move (run_cached's key)
  bool training_ = true, have_forward_ = false, have_targets_ = false;
  std::uint64_t dropout_seed_ = 0, mask_seed_ = 0;
  bool mask_on_ = false;  // dropout masks of the last forward: on, and their seed
};

}  // namespace ra::nn
