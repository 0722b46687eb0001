// ra/cuda/gpt2_backend.cuh — the CUDA backend of the GPT-2 model (nn::GPT2Model, which owns the
// layer order and the activation layout; the nn layer names the pair nn::CudaGPT2<T>): device
// memory and the primitive ops on it, all on one stream. Like all of cuda/, it includes no nn
// header: what it shares with the model is in ra/model/.
//
// Precision: the model keeps fp32 master parameters and gradients and a T working copy; every
// kernel here accumulates in fp32; GEMMs run on cuBLASLt with fp32 accumulation, the weight
// gradients written straight to fp32. The attention gates and restart values are read from the
// fp32 masters.
//
//   linear      cuBLASLt plans per layer kind (model::Linear) for the forward Y = X·Wᵀ (+ b) and
//               the backward dX = dY·W, dW = dYᵀ·X (ra/cuda/gemm.cuh), made for the current
//               B·T and rebuilt only when it changes. In bf16 the MLP's GELU rides in cuBLASLt's
//               epilogues (fc and gelu(fc) in one GEMM; gelu' in the GEMM of the MLP's dX), and
//               the bias gradients come out of the weight-gradient GEMMs (BGRADB), where
//               cuBLASLt offers them; otherwise (and always for gelu in fp32, the checking
//               precision) ra's separate exact kernels run (fused_gelu(), fused_bias_grad())
//   layernorm   ra/cuda/layernorm.cuh, its mean and rstd kept per slot for the backward, which
//               adds the residual gradient in the same pass
//   attention   the flash kernels (ra/cuda/attention.cuh, flash_backward.cuh) on the folded
//               views of the fused activation, lse (and with self-restart the output before
//               the mix) kept per layer; dQf, dKf, dV written into the fused gradient in place
//   embedding   ra/cuda/embedding.cuh; the backward groups positions by token on the host
//               (uploaded while the loss runs), one block per token: no atomics
//   head        the logits (N, Vp) consumed by the fused cross-entropy, which writes their
//               gradient in place; the loss and every reduction in a fixed order, so the same
//               batch gives the same bits
//   optimizer   cuda::AdamW (ra/cuda/adamw.cuh), which also refreshes the working copy
// Its per-row state (tokens, buckets, lse, LayerNorm statistics, logits, ...) is sized by
// reserve(rows) and zeroed once: no kernel ever reads memory nothing wrote, and
// compute-sanitizer's initcheck, which does not see cuBLASLt's stores (docs/NOTES.md), sees it
// as written. A step of an already seen size allocates nothing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cuda/adamw.cuh>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/cross_entropy.cuh>
#include <ra/cuda/elementwise.cuh>
#include <ra/cuda/embedding.cuh>
#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/graph.cuh>
#include <ra/cuda/kv_cache.cuh>
#include <ra/cuda/layernorm.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/expr/attention.hpp>
#include <ra/model/adamw.hpp>
#include <ra/model/cached_rows.hpp>
#include <ra/model/gpt2_config.hpp>

namespace ra::cuda {

namespace detail {

// dY at (row, col) of a (rows, cols) matrix: the summands of a bias gradient.
template <class T>
struct BiasGrad {
  const T* dy;
  index_t cols;
  __device__ float2 operator()(index_t r, index_t c) const {
    return make_float2(f32(dy[r * cols + c]), 0.f);
  }
};

}  // namespace detail

/// Which cuBLASLt epilogues the GPU backend asks for. Each falls back to ra's separate kernels
/// where cuBLASLt offers no algorithm for it; fused_gelu() and fused_bias_grad() say what runs.
struct GPT2Options {
  bool fused_gelu = true;       ///< the MLP's GELU (forward) and gelu' (backward); bf16 only
  bool fused_bias_grad = true;  ///< bias gradients from the weight-gradient GEMMs (BGRADB)
};

/// The CUDA backend of nn::GPT2Model with compute type T (ra::bf16 or float).
template <class T>
class GPT2Backend {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>,
                "cuda::GPT2Backend: compute type float or ra::bf16");

 public:
  using value_type = T;
  using Optimizer = AdamW;
  template <class U>
  using Buffer = DeviceBuffer<U>;
  static constexpr bool kHostMemory = false;

  /// Work runs on `stream` with the cuBLASLt handle of ctx. fp32 (the checking precision)
  /// always keeps the exact separate GELU kernels. Throws ra::error naming a config field the
  /// kernels cannot take (C not a multiple of 8, max_seq above 65535).
  explicit GPT2Backend(const model::GPT2Config& cfg, Context& ctx = default_context(),
                       cudaStream_t stream = nullptr, GPT2Options options = {})
      : cfg_(cfg),
        attn_(cfg.attention()),
        ctx_(&ctx),
        stream_(stream),
        fused_gelu_(std::is_same_v<T, bf16> && options.fused_gelu),
        fused_bias_grad_(options.fused_bias_grad) {
    constexpr const char* where = "cuda::GPT2Backend";
    require_arg(cfg.C % 8 == 0, where, "C", cfg.C, "a multiple of 8 (16-byte rows)");
    require_arg(cfg.max_seq <= 65535, where, "max_seq", cfg.max_seq, "at most 65535");
    gemm_ws_ = DeviceBuffer<std::byte>(static_cast<index_t>(kGemmWorkspaceBytes));
    sums_ = DeviceBuffer<double>(kSumScratch + 1);
  }
  GPT2Backend(const GPT2Backend&) = delete;
  GPT2Backend& operator=(const GPT2Backend&) = delete;
  ~GPT2Backend() {
    if (capture_stream_ != nullptr) (void)cudaStreamDestroy(capture_stream_);
  }

  cudaStream_t stream() const { return stream_; }
  /// Whether the MLP's GELU runs in cuBLASLt's GEMM epilogues (bf16, asked for in
  /// GPT2Options, where cuBLASLt has algorithms for them) or in separate kernels. Settled by
  /// the first forward().
  bool fused_gelu() const { return fused_gelu_; }
  /// Whether the bias gradients come out of the weight-gradient GEMMs' epilogues (asked for,
  /// with biases, where cuBLASLt offers them) or from column_sums. Settled by the first
  /// forward().
  bool fused_bias_grad() const { return fused_bias_grad_; }

  // ---- memory ----------------------------------------------------------------------------
  template <class U>
  DeviceBuffer<U> zeros(index_t n) const {
    DeviceBuffer<U> b(n);
    if (n > 0) RA_CUDA_CHECK(cudaMemsetAsync(b.data(), 0, b.bytes(), stream_));
    return b;
  }
  void synchronize() const { RA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void upload(std::span<const float> src, float* dst) const {
    if (src.empty()) return;
    RA_CUDA_CHECK(cudaMemcpy(dst, src.data(), src.size_bytes(), cudaMemcpyHostToDevice));
    // The copy is on the legacy stream and may return before it lands: wait for it before
    // work on stream_ (which may be a non-blocking stream) reads the parameters.
    RA_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<float> download(const float* src, index_t n) const {
    std::vector<float> h(static_cast<std::size_t>(n));
    if (n > 0)
      RA_CUDA_CHECK(cudaMemcpy(h.data(), src, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
  void round(const float* src, T* dst, index_t n) const { round_to(src, dst, n, stream_); }

  /// The per-row state for `rows` rows (the old set is freed first), zeroed.
  void reserve(index_t rows) {
    const index_t L = cfg_.n_layer, H = cfg_.n_head, C = cfg_.C, NC = rows * C;
    s_ = State{};
    s_.tokens = zeros<std::int32_t>(rows);
    s_.targets = zeros<std::int32_t>(rows);
    s_.bucket_ids = zeros<std::int32_t>(rows);
    s_.bucket_start = zeros<std::int32_t>(rows + 1);
    s_.bucket_rows = zeros<std::int32_t>(rows);
    s_.att_pre = zeros<T>(attn_.restart ? L * NC : 0);
    s_.logits = zeros<T>(rows * cfg_.padded_vocab());
    s_.lse = zeros<float>(L * rows * H);
    s_.mean = zeros<float>((2 * L + 1) * rows);
    s_.rstd = zeros<float>((2 * L + 1) * rows);
    s_.loss = zeros<float>(rows);
    s_.attn_ws = zeros<float>(4 * rows * H + 3 * H);
    s_.scratch = zeros<float>(
        std::max(column_sums_scratch(rows, 4 * C, 1), layernorm_backward_scratch(rows, C)));
  }
  /// The (B,T) of the next forward and backward: the GEMM plans follow B·T.
  void set_shape(index_t B, index_t S) {
    B_ = B;
    S_ = S;
    if (B * S != planned_) {
      plan(B * S);
      planned_ = B * S;
    }
  }

  // ---- layers ----------------------------------------------------------------------------
  void embedding_forward(std::span<const std::int32_t> tokens, const T* wte, const T* wpe, T* out) {
    RA_CUDA_CHECK(cudaMemcpyAsync(s_.tokens.data(), tokens.data(), tokens.size_bytes(),
                                  cudaMemcpyHostToDevice, stream_));
    cuda::embedding_forward(s_.tokens.data(), wte, wpe, out, B_, S_, cfg_.C, stream_);
  }
  /// dwpe overwritten (0 past T), dwte added to, from the buckets of the last head_forward.
  void embedding_backward(std::span<const std::int32_t> /*tokens*/, const T* dout, float* dwte,
                          float* dwpe) {
    cuda::embedding_backward(dout, buckets_, dwte, dwpe, B_, S_, cfg_.max_seq, cfg_.C, stream_);
  }

  void layernorm_forward(index_t slot, const T* x, const T* w, const T* b, T* y) {
    cuda::layernorm_forward(x, w, b, y, mean(slot), rstd(slot), N(), cfg_.C, stream_);
  }
  /// dx = d_residual (null: none) + the LayerNorm gradient of dy; dw, db overwritten.
  void layernorm_backward(index_t slot, const T* dy, const T* x, const T* w, const T* d_residual,
                          T* dx, float* dw, float* db) {
    cuda::layernorm_backward(dy, x, w, mean(slot), rstd(slot), d_residual, dx, dw, db, N(), cfg_.C,
                             s_.scratch.data(), stream_);
  }

  void linear_forward(model::Linear id, const T* x, const T* w, const T* b, T* y) {
    plans(id).forward.run(x, w, b, y, stream_);
  }
  /// pre = X·Wᵀ + b, act = gelu(pre): one GEMM where the epilogue is fused.
  void linear_gelu_forward(model::Linear id, const T* x, const T* w, const T* b, T* pre, T* act) {
    const GemmPlan& p = plans(id).forward;
    if (fused_gelu_) {
      p.run_with_aux(x, w, b, act, pre, stream_);
      return;
    }
    p.run(x, w, b, pre, stream_);
    gelu_forward(pre, act, N() * model::linear_shape(cfg_, id).out, stream_);
  }
  /// dW = dYᵀ·X and db (null: none), then dx = dY·W (null: not wanted).
  void linear_backward(model::Linear id, const T* dy, const T* x, const T* w, T* dx, float* dw,
                       float* db) {
    weight_grads(id, dy, x, dw, db);
    if (dx != nullptr) plans(id).dx.run(dy, w, nullptr, dx, stream_);
  }
  /// As linear_backward, with dpre = (dY·W) ⊙ gelu'(pre): the layer after a GELU, in one GEMM
  /// where the epilogue is fused.
  void linear_gelu_backward(model::Linear id, const T* dy, const T* x, const T* w, const T* pre,
                            T* dpre, float* dw, float* db) {
    weight_grads(id, dy, x, dw, db);
    const GemmPlan& p = plans(id).dx;
    if (fused_gelu_) {
      p.run_with_aux(dy, w, nullptr, dpre, pre, stream_);
      return;
    }
    p.run(dy, w, nullptr, dpre, stream_);
    gelu_backward(dpre, pre, dpre, N() * model::linear_shape(cfg_, id).in, stream_);
  }

  // ---- decoding with the KV cache (nn::GPT2Model's reset_cache, prefill, decode) ----------
  // The step's tokens, positions and lengths live in device buffers sized once per cache
  // (reserve_cache), so a decode step allocates nothing and a CUDA graph captured over them
  // replays with the values set_cached_rows copied in before it.

  /// Whether decode steps (one new token per sequence) run as a CUDA graph captured once per
  /// step shape and replayed (the default), or eagerly. Both give the same bits.
  void set_decode_graphs(bool on) { graphs_ = on; }
  bool decode_graphs() const { return graphs_; }
  /// Graphs captured so far (one per decode shape; a test reads it).
  int graph_captures() const { return captures_; }

  /// The device state of a cache of `batch` sequences × `max_seq` positions: the step's
  /// tokens, positions, lengths and the split-KV scratch of the decode kernel.
  void reserve_cache(index_t batch, index_t max_seq) {
    const index_t H = cfg_.n_head, D = cfg_.head_dim();
    dec_ = DecodeState{};
    graph_ = Graph{};
    const index_t rows = std::max(batch, max_seq);
    dec_.tokens = zeros<std::int32_t>(rows);
    dec_.positions = zeros<std::int32_t>(rows);
    dec_.lengths = zeros<std::int32_t>(rows);  // n values per chunk of kDecodeMaxRows rows
    dec_.splits_batch = decode_splits(batch, H, max_seq);
    dec_.splits_one = decode_splits(1, H, max_seq);
    dec_.split_ws = zeros<float>(
        std::max(decode_workspace_floats(batch, H, kDecodeMaxRows, D, dec_.splits_batch),
                 decode_workspace_floats(1, H, kDecodeMaxRows, D, dec_.splits_one)));
    dec_.rows = rows;
    if (capture_stream_ == nullptr)
      RA_CUDA_CHECK(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking));
  }
  /// Copies the step's tokens, positions and lengths (per chunk of at most kDecodeMaxRows new
  /// rows: the keys each chunk sees) to the device, ordered on the stream before the step.
  void set_cached_rows(const model::CachedRows& r) {
    constexpr const char* where = "cuda::GPT2Backend::set_cached_rows";
    require(dec_.rows > 0, where, ": expected reserve_cache() first");
    const index_t N = r.n * r.S, chunks = (r.S + kDecodeMaxRows - 1) / kDecodeMaxRows;
    require_arg(N <= dec_.rows && r.n * chunks <= dec_.rows, where, "rows", N,
                ra::detail::concat("at most ", dec_.rows, " (the cache's batch or max_seq)"));
    rows_ = r;
    fresh_ = true;
    host_pos_.resize(static_cast<std::size_t>(N));
    for (index_t i = 0; i < N; ++i)
      host_pos_[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(r.positions[i]);
    host_len_.resize(static_cast<std::size_t>(r.n * chunks));
    for (index_t c = 0; c < chunks; ++c)
      for (index_t i = 0; i < r.n; ++i) {
        const index_t end = std::min(r.S, (c + 1) * kDecodeMaxRows);  // rows of chunks <= c
        host_len_[static_cast<std::size_t>(c * r.n + i)] =
            static_cast<std::int32_t>(r.lengths[i] - (r.S - end));
      }
    for (index_t i = 0; i < r.n; ++i) fresh_ = fresh_ && r.lengths[i] == r.S;
    // Pageable sources are staged before cudaMemcpyAsync returns: the vectors may change.
    RA_CUDA_CHECK(cudaMemcpyAsync(dec_.tokens.data(), r.tokens.data(), r.tokens.size_bytes(),
                                  cudaMemcpyHostToDevice, stream_));
    RA_CUDA_CHECK(cudaMemcpyAsync(dec_.positions.data(), host_pos_.data(),
                                  host_pos_.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                  stream_));
    RA_CUDA_CHECK(cudaMemcpyAsync(dec_.lengths.data(), host_len_.data(),
                                  host_len_.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                  stream_));
  }
  /// Runs the step f: a decode step (S = 1) with graphs on as the graph captured for `key`
  /// (captured on first use, or when the key changes), anything else eagerly.
  template <class Key, class F>
  void run_cached(const Key& key, F&& f) {
    if (!graphs_ || rows_.S != 1) {
      f();
      return;
    }
    if (graph_.empty() || !std::ranges::equal(key, graph_key_)) {
      graph_ = Graph{};
      const cudaStream_t own = stream_;
      stream_ = capture_stream_;  // every op of f enqueues on stream_
      try {
        graph_ = Graph::capture(capture_stream_, [&] { f(); });
      } catch (...) {
        stream_ = own;
        throw;
      }
      stream_ = own;
      graph_key_.assign(std::begin(key), std::end(key));
      ++captures_;
    }
    graph_.replay(stream_);
  }
  void embedding_at(const T* wte, const T* wpe, T* out) {
    cuda::embedding_at(dec_.tokens.data(), dec_.positions.data(), wte, wpe, out, rows_.n * rows_.S,
                       cfg_.C, stream_);
  }
  /// The new rows' Kf and V into the layer's cache kf, v (cache_batch,H,max_seq,D) each.
  void cache_write(const T* qkv, T* kf, T* v) {
    const index_t H = cfg_.n_head, D = cfg_.head_dim(), M = rows_.max_seq;
    const index_t first = rows_.first * H * M * D;
    cuda::cache_write(qkv, kf + first, v + first, dec_.positions.data(), rows_.n, rows_.S, H, D, M,
                      stream_);
  }
  /// att (n·S,C) = the new rows of the step over the cache: the decode kernel per chunk of at
  /// most kDecodeMaxRows rows; a prefill into an empty cache longer than that (every length =
  /// S) runs the flash forward on the cache's first S rows.
  template <class Values>
  void attention_cached(index_t /*layer*/, const T* qkv, T* att, const T* kf, const T* v,
                        const Values& g) {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim(), M = rows_.max_seq;
    const index_t n = rows_.n, S = rows_.S, first = rows_.first * H * M * D;
    const Gates gates{attn_.gates, attn_.gate_param, g.w_std, g.w_rec};
    const Restart restart{attn_.restart ? g.a : nullptr};
    const auto in =
        folded_views(make_view(qkv, shape(n, S, 3 * C)), H, D);    // (n,H,S,D) (3SC,D,3C,1)
    const auto out = heads(make_view(att, shape(n, S, C)), H, D);  // (n,H,S,D) (SC,D,C,1)
    const std::array<index_t, 4> cache_strides{H * M * D, M * D, D, 1};
    if (fresh_ && S > kDecodeMaxRows) {
      const auto k = make_view(kf + first, shape(n, H, S, D), cache_strides);  // (n,H,S,D)
      const auto w = make_view(v + first, shape(n, H, S, D), cache_strides);
      cuda::attention_forward(
          make_params(folded_attention(in.q, k, w, attn_.R, gates, causal, restart), out, nullptr),
          stream_);
      return;
    }
    const int splits = n == 1 ? dec_.splits_one : dec_.splits_batch;
    for (index_t c0 = 0; c0 < S; c0 += kDecodeMaxRows) {
      const index_t rows = std::min<index_t>(kDecodeMaxRows, S - c0);
      const auto k = make_view(kf + first, shape(n, H, M, D), cache_strides);  // (n,H,max_seq,D)
      const auto w = make_view(v + first, shape(n, H, M, D), cache_strides);
      const auto q = slice<2>(in.q, c0, c0 + rows);  // (n,H,rows,D)
      const auto o = slice<2>(out, c0, c0 + rows);
      AttentionParams p =
          make_params(folded_attention(q, k, w, attn_.R, gates, causal, restart), o, nullptr);
      p.seq_lens = dec_.lengths.data() + (c0 / kDecodeMaxRows) * n;
      p.kv_splits = splits;
      p.split_ws = dec_.split_ws.data();
      p.split_ws_floats = dec_.split_ws.size();
      attention_decode(p, stream_);
    }
  }

  /// att = folded attention of the views of qkv (B,T,3C), written (B,T,C).
  template <class Values>
  void attention_forward(index_t layer, const T* qkv, T* att, const Values& g) {
    cuda::attention_forward(forward_params(layer, qkv, att, g), stream_);
  }
  /// dQf, dKf, dV into the folded views of d_qkv (B,T,3C), and the gate and restart gradients.
  template <class Values, class Grads>
  void attention_backward(index_t layer, const T* qkv, const T* att, const Values& g,
                          const T* d_out, T* d_qkv, const Grads& dg) {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim();
    const auto d_o = heads(make_view(d_out, shape(B_, S_, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
    const auto d_in = folded_views(make_view(d_qkv, shape(B_, S_, 3 * C)), H, D);  // (3TC,D,3C,1)
    cuda::attention_backward(
        // The forward's params carry its output view; the backward only reads O' through it.
        make_backward_params(forward_params(layer, qkv, const_cast<T*>(att), g), d_o, d_in.q,
                             d_in.k, d_in.v, dg.w_std, dg.w_rec, dg.a, s_.attn_ws.data()),
        stream_);
  }

  void dropout(T* x, index_t n, float p, std::uint64_t seed, std::uint64_t site) {
    cuda::dropout(x, n, p, seed, site, stream_);
  }
  void add(const T* a, const T* b, T* c, index_t n) { cuda::add(a, b, c, n, stream_); }
  void copy(const T* src, T* dst, index_t n) {
    RA_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(T),
                                  cudaMemcpyDeviceToDevice, stream_));
  }

  /// logits = h·wteᵀ (N, Vp). With targets: the mean cross-entropy (0 when every target is
  /// ignored), the logits turned into their gradient in place, and the embedding's buckets
  /// built from `tokens` and uploaded while the GPU works. Without: NaN, the logits kept.
  /// Waits for the GPU.
  double head_forward(const T* h, const T* wte, std::span<const std::int32_t> tokens,
                      std::span<const std::int32_t> targets) {
    plans_.head.forward.run(h, wte, nullptr, s_.logits.data(), stream_);
    if (targets.empty()) {
      synchronize();
      return std::numeric_limits<double>::quiet_NaN();
    }
    const index_t n = N();
    index_t valid = 0;
    for (std::int32_t t : targets) valid += t >= 0 ? 1 : 0;
    RA_CUDA_CHECK(cudaMemcpyAsync(s_.targets.data(), targets.data(), targets.size_bytes(),
                                  cudaMemcpyHostToDevice, stream_));
    const float inv_n = valid > 0 ? static_cast<float>(1.0 / static_cast<double>(valid)) : 0.f;
    cross_entropy(s_.logits.data(), s_.targets.data(), s_.loss.data(), n, cfg_.vocab,
                  cfg_.padded_vocab(), inv_n, true, stream_);
    sum(s_.loss.data(), n, false, sums_.data() + kSumScratch, sums_.data(), stream_);
    upload_buckets(tokens);  // for the backward's embedding gradient, while the GPU works
    double total = 0.0;
    RA_CUDA_CHECK(cudaMemcpyAsync(&total, sums_.data() + kSumScratch, sizeof total,
                                  cudaMemcpyDeviceToHost, stream_));
    synchronize();
    return valid > 0 ? total / static_cast<double>(valid) : 0.0;
  }
  /// dh = dlogits·wte and dwte = dlogitsᵀ·h (overwritten), from the gradient head_forward left.
  void head_backward(const T* h, const T* wte, std::span<const std::int32_t> /*targets*/, T* dh,
                     float* dwte) {
    plans_.head.dx.run(s_.logits.data(), wte, nullptr, dh, stream_);
    plans_.head.dw.run(s_.logits.data(), h, nullptr, dwte, stream_);
  }
  /// logits = h·wteᵀ for the step's n·S rows (kept for cached_logits).
  void head_logits(const T* h, const T* wte) {
    plans_.head.forward.run(h, wte, nullptr, s_.logits.data(), stream_);
  }
  /// The logits after each sequence's last new token of the step, (n, vocab) in double: one
  /// strided copy, after the stream's work. Waits for the GPU.
  std::vector<double> cached_logits(const T* /*h*/, const T* /*wte*/) {
    const index_t n = rows_.n, V = cfg_.vocab, Vp = cfg_.padded_vocab();
    host_logits_.resize(static_cast<std::size_t>(n * V));
    RA_CUDA_CHECK(cudaMemcpy2DAsync(host_logits_.data(), V * sizeof(T),
                                    s_.logits.data() + (rows_.S - 1) * Vp, rows_.S * Vp * sizeof(T),
                                    V * sizeof(T), static_cast<std::size_t>(n),
                                    cudaMemcpyDeviceToHost, stream_));
    synchronize();
    std::vector<double> z(host_logits_.size());
    for (std::size_t i = 0; i < z.size(); ++i)
      z[i] = static_cast<double>(static_cast<float>(host_logits_[i]));
    return z;
  }
  /// The logits of row `row` (kept by a head_forward without targets), in double.
  std::vector<double> logits(index_t row, const T* /*h*/, const T* /*wte*/) const {
    std::vector<T> r(static_cast<std::size_t>(cfg_.vocab));
    RA_CUDA_CHECK(cudaMemcpy(r.data(), s_.logits.data() + row * cfg_.padded_vocab(),
                             r.size() * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> z(r.size());
    for (std::size_t i = 0; i < r.size(); ++i) z[i] = static_cast<double>(static_cast<float>(r[i]));
    return z;
  }

  /// One AdamW step on the device buffers, refreshing the working copy in the same pass.
  /// Throws ra::error when the optimizer was made for another size.
  model::AdamWStep optimizer_step(AdamW& opt, float* params, const float* grads, T* work, index_t n,
                                  double lr) {
    require_arg(static_cast<index_t>(opt.size()) == n, "cuda::GPT2Backend::optimizer_step",
                "optimizer size", opt.size(), ra::detail::concat(n, " (num_parameters())"));
    return opt.step(params, grads, work, lr, stream_);
  }

 private:
  // The per-row state of the largest B·T seen.
  struct DecodeState {
    DeviceBuffer<std::int32_t> tokens, positions, lengths;
    DeviceBuffer<float> split_ws;
    index_t rows = 0;  // capacity of tokens and positions
    int splits_batch = 1, splits_one = 1;
  };
  struct State {
    DeviceBuffer<std::int32_t> tokens, targets, bucket_ids, bucket_start, bucket_rows;
    DeviceBuffer<T> att_pre, logits;
    DeviceBuffer<float> lse, mean, rstd, loss, attn_ws, scratch;
  };
  // The cuBLASLt plans of one linear layer at one B·T: forward Y = X·Wᵀ (+b), backward
  // dX = dY·W and dW = dYᵀ·X.
  struct LinearPlans {
    GemmPlan forward, dx, dw;
  };
  struct Plans {
    LinearPlans qkv, out, fc, proj, head;
  };

  index_t N() const { return B_ * S_; }
  float* mean(index_t slot) const { return s_.mean.data() + slot * N(); }
  float* rstd(index_t slot) const { return s_.rstd.data() + slot * N(); }

  LinearPlans& plans(model::Linear id) {
    switch (id) {
      case model::Linear::qkv:
        return plans_.qkv;
      case model::Linear::out:
        return plans_.out;
      case model::Linear::fc:
        return plans_.fc;
      case model::Linear::proj:
        return plans_.proj;
      case model::Linear::head:
        break;
    }
    return plans_.head;
  }

  void plan(index_t N) {
    const index_t C = cfg_.C, V = cfg_.padded_vocab();
    const DType dt = dtype_v<T>;
    auto forward = [&](index_t n, index_t k, bool bias) {
      return GemmPlan(*ctx_, GemmShape::compact(N, n, k, dt, bias), gemm_ws_.data(),
                      kGemmWorkspaceBytes);
    };
    // dX (N, K) = dY (N, n) · W (n, K): W stored (k', n') = (n, K).
    auto dx = [&](index_t n, index_t k) {
      GemmShape s = GemmShape::compact(N, k, n, dt, false);
      s.lda = n;
      s.ldw = k;
      s.ldy = k;
      s.w_kn = true;
      return GemmPlan(*ctx_, s, gemm_ws_.data(), kGemmWorkspaceBytes);
    };
    // dW (n, K) = dYᵀ · X: dY stored (N, n) = (k', m'), X stored (N, K) = (k', n'); fp32 out;
    // with bias_grad also db (n) = the column sums of dY.
    auto dw = [&](index_t n, index_t k, bool bias_grad = false) {
      GemmShape s = GemmShape::compact(n, k, N, dt, false);
      s.lda = n;
      s.ldw = k;
      s.ldy = k;
      s.a_km = true;
      s.w_kn = true;
      s.y_f32 = !std::is_same_v<T, float>;
      if (bias_grad) s.epilogue = GemmEpilogue::bias_grad;
      return GemmPlan(*ctx_, s, gemm_ws_.data(), kGemmWorkspaceBytes);
    };
    const bool bias = cfg_.bias;
    plans_.qkv.forward = forward(3 * C, C, bias);
    plans_.out.forward = forward(C, C, bias);
    plans_.proj.forward = forward(C, 4 * C, bias);
    plans_.head.forward = forward(V, C, false);
    plans_.qkv.dx = dx(3 * C, C);
    plans_.out.dx = dx(C, C);
    plans_.fc.dx = dx(4 * C, C);
    plans_.head.dx = dx(V, C);
    if (fused_gelu_) {
      // The MLP's GELU in cuBLASLt's epilogues; where cuBLASLt offers no algorithm for them,
      // the separate kernels of ra/cuda/elementwise.cuh take over.
      try {
        GemmShape f = GemmShape::compact(N, 4 * C, C, dt, bias);
        f.epilogue = GemmEpilogue::gelu_aux;
        f.aux_ld = 4 * C;
        GemmShape b = GemmShape::compact(N, 4 * C, C, dt, false);
        b.lda = C;
        b.ldw = 4 * C;
        b.ldy = 4 * C;
        b.w_kn = true;
        b.epilogue = GemmEpilogue::dgelu;
        b.aux_ld = 4 * C;
        plans_.fc.forward = GemmPlan(*ctx_, f, gemm_ws_.data(), kGemmWorkspaceBytes);
        plans_.proj.dx = GemmPlan(*ctx_, b, gemm_ws_.data(), kGemmWorkspaceBytes);
      } catch (const error&) {
        fused_gelu_ = false;
      }
    }
    if (!fused_gelu_) {
      plans_.fc.forward = forward(4 * C, C, bias);
      plans_.proj.dx = dx(C, 4 * C);
    }
    plans_.head.dw = dw(V, C);
    // The bias gradients in the epilogues of the weight-gradient GEMMs (cuBLASLt's BGRADB);
    // where cuBLASLt offers no algorithm for them, column_sums (ra/cuda/reduce.cuh) does it.
    fused_bias_grad_ = fused_bias_grad_ && bias;
    if (fused_bias_grad_) {
      try {
        plans_.qkv.dw = dw(3 * C, C, true);
        plans_.out.dw = dw(C, C, true);
        plans_.fc.dw = dw(4 * C, C, true);
        plans_.proj.dw = dw(C, 4 * C, true);
      } catch (const error&) {
        fused_bias_grad_ = false;
      }
    }
    if (!fused_bias_grad_) {
      plans_.qkv.dw = dw(3 * C, C);
      plans_.out.dw = dw(C, C);
      plans_.fc.dw = dw(4 * C, C);
      plans_.proj.dw = dw(C, 4 * C);
    }
  }

  // The forward attention params of layer `layer` over qkv (B,T,3C) into att (B,T,C).
  template <class Values>
  AttentionParams forward_params(index_t layer, const T* qkv, T* att, const Values& g) {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim();
    const Gates gates{attn_.gates, attn_.gate_param, g.w_std, g.w_rec};
    const Restart restart{attn_.restart ? g.a : nullptr};
    const auto fused = make_view(qkv, shape(B_, S_, 3 * C));  // (B,T,3C)
    const auto in = folded_views(fused, H, D);                // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const auto o = heads(make_view(att, shape(B_, S_, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
    const auto node = folded_attention(in.q, in.k, in.v, attn_.R, gates, causal, restart);
    float* lse = s_.lse.data() + layer * N() * H;
    if (!restart.enabled()) return make_params(node, o, lse);
    T* pre = s_.att_pre.data() + layer * N() * C;
    return make_params(node, o, lse, heads(make_view(pre, shape(B_, S_, C)), H, D));
  }

  // dW = dYᵀ·X into dw and db = column sums of dY (null: none), in one GEMM where the plan
  // has the bias_grad epilogue.
  void weight_grads(model::Linear id, const T* dy, const T* x, float* dw, float* db) {
    const GemmPlan& p = plans(id).dw;
    if (fused_bias_grad_) {
      p.run_with_aux(dy, x, nullptr, dw, db, stream_);
      return;
    }
    p.run(dy, x, nullptr, dw, stream_);
    if (db != nullptr)
      column_sums<1>(detail::BiasGrad<T>{dy, model::linear_shape(cfg_, id).out}, N(),
                     model::linear_shape(cfg_, id).out, db, nullptr, s_.scratch.data(), stream_);
  }

  void upload_buckets(std::span<const std::int32_t> tokens) {
    const TokenBuckets host(tokens);
    auto put = [&](DeviceBuffer<std::int32_t>& d, const std::vector<std::int32_t>& v) {
      RA_CUDA_CHECK(cudaMemcpyAsync(d.data(), v.data(), v.size() * sizeof(std::int32_t),
                                    cudaMemcpyHostToDevice, stream_));
    };
    put(s_.bucket_ids, host.ids);
    put(s_.bucket_start, host.start);
    put(s_.bucket_rows, host.rows);
    // Copies from pageable memory are staged before cudaMemcpyAsync returns, so `host` may
    // go now.
    buckets_ = {s_.bucket_ids.data(), s_.bucket_start.data(), s_.bucket_rows.data(),
                static_cast<index_t>(host.ids.size())};
  }

  model::GPT2Config cfg_;
  AttentionBlockConfig attn_;
  Context* ctx_;
  cudaStream_t stream_;
  DeviceBuffer<std::byte> gemm_ws_;
  DeviceBuffer<double> sums_;  // kSumScratch partials, then the result
  State s_;
  Plans plans_;
  DeviceTokenBuckets buckets_;
  index_t planned_ = 0, B_ = 0, S_ = 0;
  bool fused_gelu_, fused_bias_grad_;
  // Decoding: the step's device inputs, its host copies, the graph of the decode step.
  DecodeState dec_;
  model::CachedRows rows_;  // the current step (its spans unused past set_cached_rows)
  bool fresh_ = false;      // every sequence of the step starts empty (lengths = S)
  std::vector<std::int32_t> host_pos_, host_len_;
  std::vector<T> host_logits_;
  Graph graph_;
  std::vector<index_t> graph_key_;
  cudaStream_t capture_stream_ = nullptr;
  bool graphs_ = true;
  int captures_ = 0;
};

}  // namespace ra::cuda
