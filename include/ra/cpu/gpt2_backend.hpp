// ra/cpu/gpt2_backend.hpp — the CPU (Eigen) backend of the GPT-2 model (ra/nn/gpt2_model.hpp):
// host memory (std::vector) and the primitive ops on it, each computing in double and rounding
// what it stores to T, as the rest of ra/cpu does. This is the reference the CUDA backend
// (ra/cuda/gpt2_backend.cuh) is tested against.
//
//   linear      Y = X·Wᵀ (+ b) and its backward (ra/cpu/gemm.hpp); GELU (ra/cpu/gelu.hpp)
//               after the fc GEMM and gelu' after the proj dX GEMM
//   layernorm   ra/cpu/layernorm.hpp; the statistics are recomputed in the backward, whose
//               dx is the residual gradient plus LN's, added in double and rounded once
//   attention   the folded views of the fused (B,T,3C) activation, cpu::attention_forward and
//               attention_backward (P recomputed from the inputs)
//   embedding, the tied LM head with the fused cross-entropy (recomputed in the backward),
//   dropout (model::Dropout), AdamW (cpu::AdamW, in double per element)
// The weight and bias gradients of the two attention GEMMs (qkv, out) pass through T before
// they land in fp32, as the attention block's backward (which writes T) always made them: the
// numbers of the model are unchanged since it ran through that block.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/layout.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/adamw.hpp>
#include <ra/cpu/attention.hpp>
#include <ra/cpu/cross_entropy.hpp>
#include <ra/cpu/embedding.hpp>
#include <ra/cpu/gelu.hpp>
#include <ra/cpu/gemm.hpp>
#include <ra/cpu/layernorm.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/gates.hpp>
#include <ra/expr/gemm.hpp>
#include <ra/model/adamw.hpp>
#include <ra/model/cached_rows.hpp>
#include <ra/model/dropout.hpp>
#include <ra/model/gpt2_config.hpp>

namespace ra::cpu {

/// The CPU backend of nn::GPT2Model with compute type T (float, bf16 or double).
template <class T>
class GPT2Backend {
 public:
  using value_type = T;
  using Optimizer = AdamW;
  template <class U>
  using Buffer = std::vector<U>;
  static constexpr bool kHostMemory = true;

  explicit GPT2Backend(const model::GPT2Config& cfg) : cfg_(cfg), attn_(cfg.attention()) {
    const auto qkv = model::linear_shape(cfg, model::Linear::qkv);
    w_grad_.assign(static_cast<std::size_t>(qkv.out * qkv.in), T(0.0f));
    b_grad_.assign(static_cast<std::size_t>(qkv.out), T(0.0f));
  }

  // ---- memory ----------------------------------------------------------------------------
  template <class U>
  std::vector<U> zeros(index_t n) const {
    return std::vector<U>(static_cast<std::size_t>(n), U(0.0f));
  }
  void synchronize() const {}
  void upload(std::span<const float> src, float* dst) const {
    std::copy(src.begin(), src.end(), dst);
  }
  std::vector<float> download(const float* src, index_t n) const {
    return std::vector<float>(src, src + n);
  }
  void round(const float* src, T* dst, index_t n) const {
    for (index_t i = 0; i < n; ++i) dst[i] = convert<T>(src[i]);
  }
  /// The LayerNorm backward's scratch for `rows` rows.
  void reserve(index_t rows) { ln_dx_.assign(static_cast<std::size_t>(rows * cfg_.C), T(0.0f)); }
  void set_shape(index_t B, index_t S) {
    B_ = B;
    S_ = S;
  }

  // ---- layers ----------------------------------------------------------------------------
  void embedding_forward(std::span<const std::int32_t> tokens, const T* wte, const T* wpe,
                         T* out) const {
    const index_t C = cfg_.C;
    cpu::embedding_forward(token_view(tokens),
                           slice<0>(mat(wte, cfg_.padded_vocab(), C), 0, cfg_.vocab),
                           mat(wpe, cfg_.max_seq, C), make_view(out, shape(B_, S_, C)));  // (B,T,C)
  }
  // ---- decoding with the KV cache (nn::GPT2Model's prefill and decode) ------------------
  /// Nothing to size: the step's rows live in host vectors (set_cached_rows).
  void reserve_cache(index_t /*batch*/, index_t /*max_seq*/) {}
  /// The tokens, positions and lengths of the next cached step (copied).
  void set_cached_rows(const model::CachedRows& r) {
    rows_ = r;
    tokens_.assign(r.tokens.begin(), r.tokens.end());
    positions_.assign(r.positions.begin(), r.positions.end());
    lengths_.assign(r.lengths.begin(), r.lengths.end());
  }
  /// Runs the step f (a host backend has nothing to capture).
  template <class Key, class F>
  void run_cached(const Key& /*key*/, F&& f) {
    f();
  }
  /// out row r = wte[tokens[r]] + wpe[positions[r]]: each new row at its own position.
  void embedding_at(const T* wte, const T* wpe, T* out) const {
    const index_t C = cfg_.C;
    const auto wte_v = slice<0>(mat(wte, cfg_.padded_vocab(), C), 0, cfg_.vocab);  // (vocab,C)
    const auto wpe_v = mat(wpe, cfg_.max_seq, C);                                  // (max_seq,C)
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      const auto row = static_cast<index_t>(i);
      cpu::embedding_forward(
          make_view(tokens_.data() + i, shape(index_t{1}, index_t{1})),  // (1,1)
          wte_v, slice<0>(wpe_v, positions_[i], positions_[i] + 1),
          make_view(out + row * C, shape(index_t{1}, index_t{1}, C)));  // (1,1,C)
    }
  }
  /// The new rows' Kf and V (columns [C, 3C) of qkv (n·S,3C)) into the layer's cache kf, v
  /// (cache_batch,H,max_seq,D) each, row i·S + t of sequence first + i at its position.
  void cache_write(const T* qkv, T* kf, T* v) const {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim(), M = rows_.max_seq;
    for (index_t i = 0; i < rows_.n; ++i)
      for (index_t t = 0; t < rows_.S; ++t) {
        const index_t r = i * rows_.S + t, pos = positions_[static_cast<std::size_t>(r)];
        const T* row = qkv + r * 3 * C;
        for (index_t h = 0; h < H; ++h) {
          const index_t slot = (((rows_.first + i) * H + h) * M + pos) * D;
          std::copy_n(row + C + h * D, D, kf + slot);
          std::copy_n(row + 2 * C + h * D, D, v + slot);
        }
      }
  }
  /// dwpe is overwritten (0 past T), dwte added to (the head wrote its part).
  void embedding_backward(std::span<const std::int32_t> tokens, const T* dout, float* dwte,
                          float* dwpe) const {
    const index_t C = cfg_.C;
    std::fill_n(dwpe, cfg_.max_seq * C, 0.f);
    cpu::embedding_backward(token_view(tokens), make_view(dout, shape(B_, S_, C)),  // (B,T,C)
                            slice<0>(make_view(dwte, shape(cfg_.padded_vocab(), C)), 0, cfg_.vocab),
                            make_view(dwpe, shape(cfg_.max_seq, C)));
  }

  void layernorm_forward(index_t /*slot*/, const T* x, const T* w, const T* b, T* y) const {
    cpu::layernorm_forward(rows(x), vec(w, cfg_.C), vec(b, cfg_.C), rows(y));
  }
  /// dx = d_residual (null: none) + the LayerNorm gradient of dy; dw, db overwritten.
  void layernorm_backward(index_t /*slot*/, const T* dy, const T* x, const T* w,
                          const T* d_residual, T* dx, float* dw, float* db) {
    const index_t C = cfg_.C;
    if (d_residual == nullptr) {
      cpu::layernorm_backward(rows(x), vec(w, C), rows(dy), rows(dx), vec(dw, C), vec(db, C));
      return;
    }
    T* ln = ln_dx_.data();
    cpu::layernorm_backward(rows(x), vec(w, C), rows(dy), rows(ln), vec(dw, C), vec(db, C));
    for (index_t i = 0; i < B_ * S_ * C; ++i)
      dx[i] = convert<T>(convert<double>(d_residual[i]) + convert<double>(ln[i]));
  }

  void linear_forward(model::Linear id, const T* x, const T* w, const T* b, T* y) const {
    const auto s = model::linear_shape(cfg_, id);
    const auto xv = mat(x, B_ * S_, s.in);                // (N,in)
    const auto wv = mat(w, s.out, s.in);                  // (out,in)
    const auto yv = make_view(y, shape(B_ * S_, s.out));  // (N,out)
    if (b != nullptr) {
      gemm_forward(ra::gemm(xv, wv, vec(b, s.out)), yv);
    } else {
      gemm_forward(ra::gemm(xv, wv), yv);
    }
  }
  /// pre = X·Wᵀ + b, act = gelu(pre).
  void linear_gelu_forward(model::Linear id, const T* x, const T* w, const T* b, T* pre,
                           T* act) const {
    linear_forward(id, x, w, b, pre);
    const index_t n = model::linear_shape(cfg_, id).out;
    cpu::gelu_forward(mat(pre, B_ * S_, n), make_view(act, shape(B_ * S_, n)));
  }
  /// dx = dY·W (null: not wanted), dW = dYᵀ·X, db = column sums of dY (null: none).
  void linear_backward(model::Linear id, const T* dy, const T* x, const T* w, T* dx, float* dw,
                       float* db) {
    const auto s = model::linear_shape(cfg_, id);
    const index_t N = B_ * S_;
    const auto dxv = dx != nullptr ? make_view(dx, shape(N, s.in)) : StridedView<T, 2>{};
    if (id == model::Linear::qkv || id == model::Linear::out) {  // through T: see the top
      T* gw = w_grad_.data();
      T* gb = b_grad_.data();
      gemm_backward(mat(x, N, s.in), mat(w, s.out, s.in), mat(dy, N, s.out), dxv,
                    make_view(gw, shape(s.out, s.in)),
                    db != nullptr ? make_view(gb, shape(s.out)) : StridedView<T, 1>{});
      for (index_t i = 0; i < s.out * s.in; ++i) dw[i] = static_cast<float>(convert<double>(gw[i]));
      if (db != nullptr)
        for (index_t i = 0; i < s.out; ++i) db[i] = static_cast<float>(convert<double>(gb[i]));
      return;
    }
    gemm_backward(mat(x, N, s.in), mat(w, s.out, s.in), mat(dy, N, s.out), dxv,
                  make_view(dw, shape(s.out, s.in)), vec(db, s.out));
  }
  /// As linear_backward, with dpre = (dY·W) ⊙ gelu'(pre): the layer after a GELU.
  void linear_gelu_backward(model::Linear id, const T* dy, const T* x, const T* w, const T* pre,
                            T* dpre, float* dw, float* db) {
    linear_backward(id, dy, x, w, dpre, dw, db);
    const index_t K = model::linear_shape(cfg_, id).in;
    const auto d = make_view(dpre, shape(B_ * S_, K));  // (N,K)
    cpu::gelu_backward(mat(pre, B_ * S_, K), StridedView<const T, 2>(d), d);
  }

  /// att = folded attention of the views of qkv (B,T,3C), written (B,T,C).
  template <class Values>
  void attention_forward(index_t /*layer*/, const T* qkv, T* att, const Values& g) const {
    const auto o = heads(make_view(att, shape(B_, S_, cfg_.C)), cfg_.n_head,
                         cfg_.head_dim());  // (B,H,T,D) strides (TC,D,C,1)
    cpu::attention_forward(node(qkv, g), o);
  }
  /// att (n·S,C) = folded attention of the S new rows of each sequence of the step, qkv
  /// (n·S,3C), over its cache: Kf and V (cache_batch,H,max_seq,D) each, the first
  /// lengths[i] positions of sequence first + i filled (the new rows' included); the causal
  /// mask aligned bottom-right.
  template <class Values>
  void attention_cached(index_t /*layer*/, const T* qkv, T* att, const T* kf, const T* v,
                        const Values& g) const {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim(), M = rows_.max_seq;
    const index_t t_q = rows_.S;
    const std::array<index_t, 4> cache_strides{H * M * D, M * D, D, 1};
    for (index_t i = 0; i < rows_.n; ++i) {
      const index_t t_k = lengths_[static_cast<std::size_t>(i)];
      const index_t slot = (rows_.first + i) * H * M * D;
      const auto in =
          folded_views(make_view(qkv + i * t_q * 3 * C, shape(index_t{1}, t_q, 3 * C)), H, D);
      const Head k =
          make_view(kf + slot, shape(index_t{1}, H, t_k, D), cache_strides);  // (1,H,T_k,D)
      const Head w =
          make_view(v + slot, shape(index_t{1}, H, t_k, D), cache_strides);  // (1,H,T_k,D)
      const auto o =
          heads(make_view(att + i * t_q * C, shape(index_t{1}, t_q, C)), H, D);  // (1,H,T_q,D)
      const FoldedAttention<kDynamicRank, Head, Head, Head> node{
          in.q,
          k,
          w,
          attn_.R,
          Gates{attn_.gates, attn_.gate_param, g.w_std, g.w_rec},
          Restart{attn_.restart ? g.a : nullptr}};
      cpu::attention_forward(node, o);
    }
  }
  /// dQf, dKf, dV into the folded views of d_qkv (B,T,3C), and the gate and restart gradients.
  template <class Values, class Grads>
  void attention_backward(index_t /*layer*/, const T* qkv, const T* /*att*/, const Values& g,
                          const T* d_out, T* d_qkv, const Grads& dg) const {
    const index_t C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim();
    const auto d_o = heads(make_view(d_out, shape(B_, S_, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
    const auto d = folded_views(make_view(d_qkv, shape(B_, S_, 3 * C)), H, D);  // (3TC,D,3C,1)
    cpu::attention_backward(node(qkv, g), d_o, d.q, d.k, d.v,
                            AttentionGrads{dg.w_std, dg.w_rec, dg.a});
  }

  void dropout(T* x, index_t n, float p, std::uint64_t seed, std::uint64_t site) const {
    model::Dropout{p}.apply(make_view(x, shape(index_t{1}, n)), seed, site);
  }
  void add(const T* a, const T* b, T* c, index_t n) const {
    for (index_t i = 0; i < n; ++i)
      c[i] = convert<T>(convert<double>(a[i]) + convert<double>(b[i]));
  }
  void copy(const T* src, T* dst, index_t n) const { std::copy_n(src, n, dst); }

  /// The mean cross-entropy of logits = h·wteᵀ against targets (empty: NaN; the logits are
  /// computed on demand by logits()).
  double head_forward(const T* h, const T* wte, std::span<const std::int32_t> /*tokens*/,
                      std::span<const std::int32_t> targets) const {
    if (targets.empty()) return std::numeric_limits<double>::quiet_NaN();
    return lm_head_cross_entropy(rows(h), mat(wte, cfg_.padded_vocab(), cfg_.C), cfg_.vocab,
                                 target_view(targets), StridedView<T, 2>{},
                                 StridedView<float, 2>{});
  }
  /// dh and dwte (overwritten) of the mean loss, recomputing the head.
  void head_backward(const T* h, const T* wte, std::span<const std::int32_t> targets, T* dh,
                     float* dwte) const {
    lm_head_cross_entropy(rows(h), mat(wte, cfg_.padded_vocab(), cfg_.C), cfg_.vocab,
                          target_view(targets), make_view(dh, shape(B_ * S_, cfg_.C)),
                          make_view(dwte, shape(cfg_.padded_vocab(), cfg_.C)));
  }
  /// Nothing to do: cached_logits computes the logits on demand.
  void head_logits(const T* /*h*/, const T* /*wte*/) const {}
  /// The logits after each sequence's last new token of the step, (n, vocab) in double.
  std::vector<double> cached_logits(const T* h, const T* wte) const {
    std::vector<double> out;
    for (index_t i = 0; i < rows_.n; ++i) {
      const auto z = logits(i * rows_.S + rows_.S - 1, h, wte);
      out.insert(out.end(), z.begin(), z.end());
    }
    return out;
  }
  /// The logits of row `row` over the real vocabulary, in double.
  std::vector<double> logits(index_t row, const T* h, const T* wte) const {
    const index_t C = cfg_.C;
    const T* x = h + row * C;
    std::vector<double> z(static_cast<std::size_t>(cfg_.vocab));
    for (index_t v = 0; v < cfg_.vocab; ++v) {
      const T* w = wte + v * C;
      double s = 0.0;
      for (index_t c = 0; c < C; ++c) s += convert<double>(x[c]) * convert<double>(w[c]);
      z[static_cast<std::size_t>(v)] = s;
    }
    return z;
  }

  /// opt.step on the masters, then the working copy refreshed from them.
  model::AdamWStep optimizer_step(AdamW& opt, float* params, const float* grads, T* work, index_t n,
                                  double lr) const {
    const auto count = static_cast<std::size_t>(n);
    const model::AdamWStep r =
        opt.step(std::span<float>(params, count), std::span<const float>(grads, count), lr);
    round(params, work, n);
    return r;
  }

 private:
  using Head = StridedView<const T, 4>;

  template <class Values>
  FoldedAttention<kDynamicRank, Head, Head, Head> node(const T* qkv, const Values& g) const {
    const auto fused = make_view(qkv, shape(B_, S_, 3 * cfg_.C));       // (B,T,3C)
    const auto in = folded_views(fused, cfg_.n_head, cfg_.head_dim());  // 3 x (3TC,D,3C,1)
    return {in.q,
            in.k,
            in.v,
            attn_.R,
            Gates{attn_.gates, attn_.gate_param, g.w_std, g.w_rec},
            Restart{attn_.restart ? g.a : nullptr}};
  }

  StridedView<const std::int32_t, 2> token_view(std::span<const std::int32_t> t) const {
    return make_view(t.data(), shape(B_, S_));  // (B,T)
  }
  StridedView<const std::int32_t, 1> target_view(std::span<const std::int32_t> t) const {
    return make_view(t.data(), shape(B_ * S_));  // (N)
  }
  StridedView<const T, 2> rows(const T* p) const {
    return make_view(p, shape(B_ * S_, cfg_.C));  // (N,C)
  }
  StridedView<T, 2> rows(T* p) const {
    return make_view(p, shape(B_ * S_, cfg_.C));  // (N,C)
  }
  template <class U>
  static StridedView<const U, 2> mat(const U* p, index_t r, index_t c) {
    return make_view(p, shape(r, c));  // (r,c)
  }
  // A vector of n, or a null view for an absent tensor.
  template <class U>
  static StridedView<U, 1> vec(U* p, index_t n) {
    if (p == nullptr) return {};
    return make_view(p, shape(n));  // (n)
  }

  model::GPT2Config cfg_;
  AttentionBlockConfig attn_;
  std::vector<T> w_grad_, b_grad_;  // the attention GEMMs' gradients in T (see the top)
  std::vector<T> ln_dx_;            // the LayerNorm gradient before the residual is added
  index_t B_ = 0, S_ = 0;
  model::CachedRows rows_;  // the cached step (its spans unused past set_cached_rows)
  std::vector<std::int32_t> tokens_;
  std::vector<index_t> positions_, lengths_;
};

}  // namespace ra::cpu
