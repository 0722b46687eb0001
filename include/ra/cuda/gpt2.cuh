// ra/cuda/gpt2.cuh — GPT-2 on the GPU, the same model as ra/nn/gpt2.hpp (read its header for
// the architecture, the arms, dropout and initialisation): same configuration, same flat fp32
// parameter layout (ra/nn/gpt2_config.hpp), same initialisation, same dropout masks, so a
// seed gives the same model on both devices and checkpoints move between them.
//
// Precision: fp32 master parameters and fp32 gradients on the device; activations, their
// gradients and a working copy of the parameters in T (bf16 for training, fp32 for checks);
// every kernel accumulates in fp32; GEMMs on cuBLASLt with fp32 accumulation, the weight
// gradients written straight to fp32. The attention gates and restart values are read from
// the fp32 masters.
//
// One layer, forward (N = B·T rows; saved for the backward: every tensor marked *):
//   ln1* = LN(x*)            qkv* = ln1·W_attnᵀ + b      att*, lse* = attention(qkv)
//                            (with self-restart also att_pre*, the output before the mix)
//   mid* = x + drop(att·W_oᵀ + b_o)
//   ln2* = LN(mid)           fc* = ln2·W_fcᵀ + b_fc      h* = gelu(fc)
//   x'   = mid + drop(h·W_projᵀ + b_proj)
// and the backward runs the same steps in reverse with the GEMMs dX = dY·W, dW = dYᵀ·X
// (ra/cuda/gemm.cuh), the flash backward (ra/cuda/flash_backward.cuh) writing dQf, dKf, dV into
// the fused gradient in place, and every parameter gradient reduced deterministically (no
// atomics in ra's kernels; the same batch gives the same bits, a GPU test checks it). The logits
// (N, Vp) are consumed by the fused cross-entropy, which writes their gradient in place. In bf16
// the GELU rides in the epilogues of cuBLASLt (fc and h in one GEMM; gelu' in the GEMM of the MLP's
// dX), where cuBLASLt offers them; fp32 keeps separate, exact kernels (fused_gelu()). The bias
// gradients come out of the weight-gradient GEMMs' epilogues likewise (fused_bias_grad()).
//
// Activation memory and the cuBLASLt plans are made for the largest B·T seen and rebuilt only
// when B·T changes; a forward or backward of an already seen size allocates nothing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <span>
#include <string_view>
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
#include <ra/cuda/layernorm.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/expr/attention.hpp>
#include <ra/nn/gpt2_config.hpp>

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

/// Which cuBLASLt epilogues the GPU model asks for. Each falls back to ra's separate kernels
/// where cuBLASLt offers no algorithm for it; GPT2::fused_gelu() and fused_bias_grad() say
/// what runs.
struct GPT2Options {
  bool fused_gelu = true;       ///< the MLP's GELU (forward) and gelu' (backward); bf16 only
  bool fused_bias_grad = true;  ///< bias gradients from the weight-gradient GEMMs (BGRADB)
};

/// GPT-2 on the GPU with compute type T (ra::bf16 or float). Construct, init_gpt2(seed), then
/// forward()/backward() per step and optimizer_step(model, opt, lr) with a cuda::AdamW.
template <class T>
class GPT2 {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>,
                "cuda::GPT2: compute type float or ra::bf16");

 public:
  /// Validates cfg (ra::error / ra::unsupported naming the field) and allocates the
  /// parameters (zero) and gradients; call init_gpt2() before training. Work runs on
  /// `stream` with the cuBLASLt handle of ctx. fp32 (the checking precision) always keeps the
  /// exact separate GELU kernels.
  explicit GPT2(const nn::GPT2Config& cfg, Context& ctx = default_context(),
                cudaStream_t stream = nullptr, GPT2Options options = {})
      : cfg_(cfg),
        layout_(nn::gpt2_layout(cfg)),
        ctx_(&ctx),
        stream_(stream),
        fused_gelu_(std::is_same_v<T, bf16> && options.fused_gelu),
        fused_bias_grad_(options.fused_bias_grad) {
    constexpr const char* where = "cuda::GPT2";
    require_arg(cfg.C % 8 == 0, where, "C", cfg.C, "a multiple of 8 (16-byte rows)");
    require_arg(cfg.max_seq <= 65535, where, "max_seq", cfg.max_seq, "at most 65535");
    params_ = DeviceBuffer<float>(layout_.total);
    grads_ = DeviceBuffer<float>(layout_.total);
    work_ = DeviceBuffer<T>(layout_.total);
    gemm_ws_ = DeviceBuffer<std::byte>(static_cast<index_t>(kGemmWorkspaceBytes));
    sums_ = DeviceBuffer<double>(kSumScratch + 1);
    RA_CUDA_CHECK(cudaMemset(params_.data(), 0, params_.bytes()));
    RA_CUDA_CHECK(cudaMemset(grads_.data(), 0, grads_.bytes()));
    RA_CUDA_CHECK(cudaMemset(work_.data(), 0, work_.bytes()));
    RA_CUDA_CHECK(cudaDeviceSynchronize());  // before work on any stream
  }
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const nn::GPT2Config& config() const { return cfg_; }
  const nn::GPT2Layout& layout() const { return layout_; }
  const std::vector<nn::ParameterInfo>& parameter_table() const { return layout_.table; }
  std::size_t num_parameters() const { return static_cast<std::size_t>(layout_.total); }
  cudaStream_t stream() const { return stream_; }
  /// Whether the MLP's GELU runs in cuBLASLt's GEMM epilogues (bf16, asked for in
  /// GPT2Options, where cuBLASLt has algorithms for them) or in separate kernels. Settled by
  /// the first forward().
  bool fused_gelu() const { return fused_gelu_; }
  /// Whether the bias gradients come out of the weight-gradient GEMMs' epilogues (asked for,
  /// with biases, where cuBLASLt offers them) or from column_sums. Settled by the first
  /// forward().
  bool fused_bias_grad() const { return fused_bias_grad_; }

  /// GPT-2 initialisation from `seed`: the values of nn::init_gpt2_parameters (the CPU
  /// model's), uploaded.
  void init_gpt2(std::uint64_t seed) {
    std::vector<float> p(num_parameters());
    nn::init_gpt2_parameters(cfg_, layout_, p, seed);
    set_parameters(p);
  }

  /// The fp32 master parameters, copied to the host (flat, in layout order).
  std::vector<float> parameters() const { return copy_to_host(params_); }
  /// The fp32 gradients of the last backward(), copied to the host.
  std::vector<float> gradients() const { return copy_to_host(grads_); }

  /// Replaces the master parameters (and the working copy). Throws ra::error on a size
  /// mismatch.
  void set_parameters(std::span<const float> p) {
    require_arg(static_cast<index_t>(p.size()) == layout_.total, "cuda::GPT2::set_parameters",
                "size", p.size(), ra::detail::concat(layout_.total, " (num_parameters())"));
    RA_CUDA_CHECK(cudaMemcpy(params_.data(), p.data(), params_.bytes(), cudaMemcpyHostToDevice));
    // The copy is on the legacy stream and may return before it lands: wait for it before
    // the rounding on stream_ (which may be a non-blocking stream) reads the parameters.
    RA_CUDA_CHECK(cudaDeviceSynchronize());
    round_to(params_.data(), work_.data(), layout_.total, stream_);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  /// Device buffers, for the optimizer: fp32 masters, fp32 gradients, the T working copy.
  float* device_parameters() { return params_.data(); }
  const float* device_gradients() const { return grads_.data(); }
  T* device_working_copy() { return work_.data(); }

  /// Training mode turns dropout on (when cfg.dropout > 0); evaluation turns it off.
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  /// The seed of the dropout masks of the next forward (the trainer draws one per step).
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }

  /// Runs the model on host tokens (B,T) int32 (any strides; T <= max_seq); with targets
  /// (B,T) (-1: ignored) returns the mean cross-entropy (0 when every target is ignored) and
  /// prepares backward(), otherwise returns NaN and keeps the logits for logits(). Waits for
  /// the GPU. Throws ra::error on bad shapes, a token outside [0, vocab) or a target outside
  /// [-1, vocab), naming its position.
  double forward(StridedView<const std::int32_t, 2> tokens,
                 StridedView<const std::int32_t, 2> targets = {}) {
    constexpr const char* where = "cuda::GPT2::forward";
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
    ensure(B, S);
    have_forward_ = false;
    mask_on_ = training_ && cfg_.dropout > 0.f;
    mask_seed_ = dropout_seed_;
    const index_t N = B * S, C = cfg_.C, NC = N * C, L = cfg_.n_layer;
    RA_CUDA_CHECK(cudaMemcpyAsync(a_.tokens.data(), tokens_.data(), tokens_.size() * 4,
                                  cudaMemcpyHostToDevice, stream_));

    embedding_forward(a_.tokens.data(), w(layout_.wte), w(layout_.wpe), resid(0), B, S, C, stream_);
    drop(resid(0), NC, kSiteEmbedding);
    for (index_t l = 0; l < L; ++l) {
      const auto& s = slots(l);
      layernorm_forward(resid(l), w(s.ln1_w), w(s.ln1_b), ln1(l), mean(2 * l), rstd(2 * l), N, C,
                        stream_);
      gemm(plans_.qkv, ln1(l), w(s.w_attn), w(s.b_attn), qkv(l));
      attention_forward(attention(l).fwd, stream_);
      gemm(plans_.out, att(l), w(s.w_o), w(s.b_o), a_.tmp.data());
      drop(a_.tmp.data(), NC, site(l, 0));
      add(resid(l), a_.tmp.data(), mid(l), NC, stream_);
      layernorm_forward(mid(l), w(s.ln2_w), w(s.ln2_b), ln2(l), mean(2 * l + 1), rstd(2 * l + 1), N,
                        C, stream_);
      if (fused_gelu_) {  // act = gelu(ln2·W_fcᵀ + b), fc = the pre-activation, one GEMM
        plans_.fc.run_with_aux(ln2(l), w(s.w_fc), w(s.b_fc), act(l), fc(l), stream_);
      } else {
        gemm(plans_.fc, ln2(l), w(s.w_fc), w(s.b_fc), fc(l));
        gelu_forward(fc(l), act(l), 4 * NC, stream_);
      }
      gemm(plans_.proj, act(l), w(s.w_proj), w(s.b_proj), a_.tmp.data());
      drop(a_.tmp.data(), NC, site(l, 1));
      add(mid(l), a_.tmp.data(), resid(l + 1), NC, stream_);
    }
    layernorm_forward(resid(L), w(layout_.lnf_w), w(layout_.lnf_b), a_.lnf.data(), mean(2 * L),
                      rstd(2 * L), N, C, stream_);
    gemm(plans_.head, a_.lnf.data(), w(layout_.wte), nullptr, a_.logits.data());
    have_forward_ = true;
    have_targets_ = with_targets;
    logits_kept_ = !with_targets;
    if (!with_targets) {
      RA_CUDA_CHECK(cudaStreamSynchronize(stream_));
      return std::numeric_limits<double>::quiet_NaN();
    }
    index_t valid = 0;
    for (std::int32_t t : targets_) valid += t >= 0 ? 1 : 0;
    RA_CUDA_CHECK(cudaMemcpyAsync(a_.targets.data(), targets_.data(), targets_.size() * 4,
                                  cudaMemcpyHostToDevice, stream_));
    const float inv_n = valid > 0 ? static_cast<float>(1.0 / static_cast<double>(valid)) : 0.f;
    cross_entropy(a_.logits.data(), a_.targets.data(), a_.loss.data(), N, cfg_.vocab,
                  cfg_.padded_vocab(), inv_n, true, stream_);
    sum(a_.loss.data(), N, false, sums_.data() + kSumScratch, sums_.data(), stream_);
    upload_buckets();  // for the backward's embedding gradient, while the GPU works
    double total = 0.0;
    RA_CUDA_CHECK(cudaMemcpyAsync(&total, sums_.data() + kSumScratch, sizeof total,
                                  cudaMemcpyDeviceToHost, stream_));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return valid > 0 ? total / static_cast<double>(valid) : 0.0;
  }

  /// Gradients of the last forward's loss: overwrites the gradients (all of them). Does not
  /// wait for the GPU. Throws ra::error when the last forward had no targets.
  void backward() {
    require(have_forward_ && have_targets_,
            "cuda::GPT2::backward: expected a forward() with targets first");
    const index_t N = batch_ * seq_, C = cfg_.C, NC = N * C, L = cfg_.n_layer;
    float* g = grads_.data();
    T* d_resid = a_.d_resid.data();
    T* d_mid = a_.d_mid.data();
    T* d_ln = a_.d_ln.data();
    T* d_big = a_.d_big.data();
    T* d_qkv = a_.d_qkv.data();

    // LM head (tied to wte) and ln_f. dwte is written here; the embedding adds to it below.
    gemm(plans_.head_dx, a_.logits.data(), w(layout_.wte), nullptr, d_ln);
    gemm(plans_.head_dw, a_.logits.data(), a_.lnf.data(), nullptr, g + layout_.wte);
    layernorm_backward(d_ln, resid(L), w(layout_.lnf_w), mean(2 * L), rstd(2 * L),
                       static_cast<const T*>(nullptr), d_resid, g + layout_.lnf_w,
                       gp(layout_.lnf_b), N, C, a_.scratch.data(), stream_);
    for (index_t l = L; l-- > 0;) {
      const auto& s = slots(l);
      // x_l+1 = mid + drop(mlp(ln2(mid)))
      const T* d_branch = dropped(d_resid, NC, site(l, 1));
      weight_grads(plans_.proj_dw, d_branch, act(l), s.w_proj, s.b_proj, C);
      if (fused_gelu_) {  // d_big = (d_branch·W_proj) ⊙ gelu'(fc), one GEMM
        plans_.proj_dx.run_with_aux(d_branch, w(s.w_proj), nullptr, d_big, fc(l), stream_);
      } else {
        gemm(plans_.proj_dx, d_branch, w(s.w_proj), nullptr, d_big);
        gelu_backward(d_big, fc(l), d_big, 4 * NC, stream_);
      }
      weight_grads(plans_.fc_dw, d_big, ln2(l), s.w_fc, s.b_fc, 4 * C);
      gemm(plans_.fc_dx, d_big, w(s.w_fc), nullptr, d_ln);
      layernorm_backward(d_ln, mid(l), w(s.ln2_w), mean(2 * l + 1), rstd(2 * l + 1),
                         static_cast<const T*>(d_resid), d_mid, g + s.ln2_w, gp(s.ln2_b), N, C,
                         a_.scratch.data(), stream_);
      // mid = x_l + drop(attn(ln1(x_l)))
      d_branch = dropped(d_mid, NC, site(l, 0));
      weight_grads(plans_.out_dw, d_branch, att(l), s.w_o, s.b_o, C);
      gemm(plans_.out_dx, d_branch, w(s.w_o), nullptr, d_ln);  // dO'
      attention_backward(attention(l, d_ln, d_qkv), stream_);
      weight_grads(plans_.qkv_dw, d_qkv, ln1(l), s.w_attn, s.b_attn, 3 * C);
      gemm(plans_.qkv_dx, d_qkv, w(s.w_attn), nullptr, d_ln);
      layernorm_backward(d_ln, resid(l), w(s.ln1_w), mean(2 * l), rstd(2 * l),
                         static_cast<const T*>(d_mid), d_resid, g + s.ln1_w, gp(s.ln1_b), N, C,
                         a_.scratch.data(), stream_);
    }
    drop(d_resid, NC, kSiteEmbedding);
    embedding_backward(static_cast<const T*>(d_resid), buckets_, g + layout_.wte, g + layout_.wpe,
                       batch_, seq_, cfg_.max_seq, C, stream_);
  }

  /// The logits over the real vocabulary at position (b, t) of the last forward, in double.
  /// Needs a forward() without targets (with targets, the logits are replaced by their
  /// gradient). Throws ra::error otherwise or when (b, t) is outside the forward.
  std::vector<double> logits(index_t b, index_t t) const {
    constexpr const char* where = "cuda::GPT2::logits";
    require(have_forward_ && logits_kept_, where,
            ": expected a forward() without targets first (a forward with targets turns the "
            "logits into their gradient)");
    require_arg(b >= 0 && b < batch_ && t >= 0 && t < seq_, where, "position",
                ra::detail::concat("(", b, ",", t, ")"),
                ra::detail::concat("inside the last forward's (B,T) = (", batch_, ",", seq_, ")"));
    std::vector<T> row(static_cast<std::size_t>(cfg_.vocab));
    RA_CUDA_CHECK(cudaMemcpy(row.data(), a_.logits.data() + (b * seq_ + t) * cfg_.padded_vocab(),
                             row.size() * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> z(row.size());
    for (std::size_t i = 0; i < row.size(); ++i)
      z[i] = static_cast<double>(static_cast<float>(row[i]));
    return z;
  }

  /// The effective gates and restart mixes of each layer (nn::gpt2_gate_stats), from the
  /// masters: only the gate values at the end of the layout are copied to the host.
  std::vector<nn::LayerGateStats> gate_stats() const {
    index_t first = layout_.total;
    for (const auto& s : layout_.layers)
      for (index_t off : {s.w_std, s.w_rec, s.a})
        if (off >= 0) first = std::min(first, off);
    std::vector<float> tail(static_cast<std::size_t>(layout_.total - first));
    if (!tail.empty())
      RA_CUDA_CHECK(cudaMemcpy(tail.data(), params_.data() + first, tail.size() * sizeof(float),
                               cudaMemcpyDeviceToHost));
    return nn::gpt2_gate_stats(cfg_, layout_, tail, first);
  }

 private:
  static constexpr std::uint64_t kSiteEmbedding = ~std::uint64_t{0};
  static std::uint64_t site(index_t layer, int branch) {
    return 2 * static_cast<std::uint64_t>(layer) + static_cast<std::uint64_t>(branch);
  }

  // The activations of the largest B·T seen (rows = capacity).
  struct Activations {
    DeviceBuffer<std::int32_t> tokens, targets, bucket_ids, bucket_start, bucket_rows;
    DeviceBuffer<T> resid, mid, ln1, ln2, qkv, att, att_pre, fc, act, lnf, logits, tmp;
    DeviceBuffer<T> d_resid, d_mid, d_ln, d_big, d_qkv, d_tmp;
    DeviceBuffer<float> lse, mean, rstd, loss, attn_ws, scratch;

    template <class F>
    void for_each(F&& f) {
      for (auto* b : {&tokens, &targets, &bucket_ids, &bucket_start, &bucket_rows}) f(*b);
      for (auto* b : {&resid, &mid, &ln1, &ln2, &qkv, &att, &att_pre, &fc, &act, &lnf, &logits,
                      &tmp, &d_resid, &d_mid, &d_ln, &d_big, &d_qkv, &d_tmp})
        f(*b);
      for (auto* b : {&lse, &mean, &rstd, &loss, &attn_ws, &scratch}) f(*b);
    }
  };

  // The cuBLASLt plans of one B·T: forward Y = X·Wᵀ (+b), backward dX = dY·W, dW = dYᵀ·X.
  struct Plans {
    GemmPlan qkv, out, fc, proj, head;
    GemmPlan qkv_dx, out_dx, fc_dx, proj_dx, head_dx;
    GemmPlan qkv_dw, out_dw, fc_dw, proj_dw, head_dw;
  };

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

  // Sizes the activations and plans for (B, S).
  void ensure(index_t B, index_t S) {
    const index_t N = B * S, C = cfg_.C, L = cfg_.n_layer, H = cfg_.n_head;
    if (N > capacity_) {
      a_ = Activations{};  // free the old set first
      // Rows in steps of 256, so that generation (one more row per token) rarely reallocates.
      const index_t rows = (N + 255) / 256 * 256;
      const index_t NC = rows * C;
      a_.tokens = DeviceBuffer<std::int32_t>(rows);
      a_.targets = DeviceBuffer<std::int32_t>(rows);
      a_.bucket_ids = DeviceBuffer<std::int32_t>(rows);
      a_.bucket_start = DeviceBuffer<std::int32_t>(rows + 1);
      a_.bucket_rows = DeviceBuffer<std::int32_t>(rows);
      a_.resid = DeviceBuffer<T>((L + 1) * NC);
      a_.mid = DeviceBuffer<T>(L * NC);
      a_.ln1 = DeviceBuffer<T>(L * NC);
      a_.ln2 = DeviceBuffer<T>(L * NC);
      a_.qkv = DeviceBuffer<T>(L * 3 * NC);
      a_.att = DeviceBuffer<T>(L * NC);
      a_.att_pre = DeviceBuffer<T>(cfg_.attention().restart ? L * NC : 0);
      a_.fc = DeviceBuffer<T>(L * 4 * NC);
      a_.act = DeviceBuffer<T>(L * 4 * NC);
      a_.lnf = DeviceBuffer<T>(NC);
      a_.logits = DeviceBuffer<T>(rows * cfg_.padded_vocab());
      a_.tmp = DeviceBuffer<T>(NC);
      a_.d_resid = DeviceBuffer<T>(NC);
      a_.d_mid = DeviceBuffer<T>(NC);
      a_.d_ln = DeviceBuffer<T>(NC);
      a_.d_big = DeviceBuffer<T>(4 * NC);
      a_.d_qkv = DeviceBuffer<T>(3 * NC);
      a_.d_tmp = DeviceBuffer<T>(cfg_.dropout > 0.f ? NC : 0);
      a_.lse = DeviceBuffer<float>(L * rows * H);
      a_.mean = DeviceBuffer<float>((2 * L + 1) * rows);
      a_.rstd = DeviceBuffer<float>((2 * L + 1) * rows);
      a_.loss = DeviceBuffer<float>(rows);
      a_.attn_ws = DeviceBuffer<float>(4 * rows * H + 3 * H);
      a_.scratch = DeviceBuffer<float>(
          std::max(column_sums_scratch(rows, 4 * C, 1), layernorm_backward_scratch(rows, C)));
      // Zeroed once: no kernel can ever read memory nothing wrote (rows past B·T included),
      // and compute-sanitizer's initcheck, which does not see the stores of cuBLASLt's GEMMs
      // (docs/NOTES.md), sees these buffers as written.
      a_.for_each([&](auto& buf) {
        if (buf.size() > 0) RA_CUDA_CHECK(cudaMemsetAsync(buf.data(), 0, buf.bytes(), stream_));
      });
      capacity_ = rows;
    }
    if (N != planned_) {
      plan(N);
      planned_ = N;
    }
    batch_ = B;
    seq_ = S;
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
    plans_.qkv = forward(3 * C, C, bias);
    plans_.out = forward(C, C, bias);
    plans_.proj = forward(C, 4 * C, bias);
    plans_.head = forward(V, C, false);
    plans_.qkv_dx = dx(3 * C, C);
    plans_.out_dx = dx(C, C);
    plans_.fc_dx = dx(4 * C, C);
    plans_.head_dx = dx(V, C);
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
        plans_.fc = GemmPlan(*ctx_, f, gemm_ws_.data(), kGemmWorkspaceBytes);
        plans_.proj_dx = GemmPlan(*ctx_, b, gemm_ws_.data(), kGemmWorkspaceBytes);
      } catch (const error&) {
        fused_gelu_ = false;
      }
    }
    if (!fused_gelu_) {
      plans_.fc = forward(4 * C, C, bias);
      plans_.proj_dx = dx(C, 4 * C);
    }
    plans_.head_dw = dw(V, C);
    // The bias gradients in the epilogues of the weight-gradient GEMMs (cuBLASLt's BGRADB);
    // where cuBLASLt offers no algorithm for them, column_sums (ra/cuda/reduce.cuh) does it.
    fused_bias_grad_ = fused_bias_grad_ && bias;
    if (fused_bias_grad_) {
      try {
        plans_.qkv_dw = dw(3 * C, C, true);
        plans_.out_dw = dw(C, C, true);
        plans_.fc_dw = dw(4 * C, C, true);
        plans_.proj_dw = dw(C, 4 * C, true);
      } catch (const error&) {
        fused_bias_grad_ = false;
      }
    }
    if (!fused_bias_grad_) {
      plans_.qkv_dw = dw(3 * C, C);
      plans_.out_dw = dw(C, C);
      plans_.fc_dw = dw(4 * C, C);
      plans_.proj_dw = dw(C, 4 * C);
    }
  }

  void gemm(const GemmPlan& p, const void* a, const void* wt, const void* bias, void* y) const {
    p.run(a, wt, bias, y, stream_);
  }

  // Attention params of layer l (forward); with d_out and d_qkv also the backward's.
  AttentionBackwardParams attention(index_t l, T* d_out = nullptr, T* d_qkv = nullptr) {
    const index_t B = batch_, S = seq_, C = cfg_.C, H = cfg_.n_head, D = cfg_.head_dim();
    const auto cfg = cfg_.attention();
    const auto& s = slots(l);
    const float* master = params_.data();
    const Gates gates{cfg.gates, cfg.gate_param, s.w_std >= 0 ? master + s.w_std : nullptr,
                      s.w_rec >= 0 ? master + s.w_rec : nullptr};
    const Restart restart{cfg.restart && s.a >= 0 ? master + s.a : nullptr};
    const auto fused = make_view(static_cast<const T*>(qkv(l)), shape(B, S, 3 * C));  // (B,T,3C)
    const auto in = folded_views(fused, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const auto o = heads(make_view(att(l), shape(B, S, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
    const auto node = folded_attention(in.q, in.k, in.v, cfg.R, gates, causal, restart);
    float* lse = a_.lse.data() + l * B * S * H;
    const AttentionParams fwd =
        restart.enabled()
            ? make_params(node, o, lse, heads(make_view(att_pre(l), shape(B, S, C)), H, D))
            : make_params(node, o, lse);
    if (d_out == nullptr) {
      AttentionBackwardParams p;
      p.fwd = fwd;
      return p;
    }
    const auto d_o = heads(make_view(d_out, shape(B, S, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
    const auto d_in = folded_views(make_view(d_qkv, shape(B, S, 3 * C)), H, D);
    float* g = grads_.data();
    return make_backward_params(
        fwd, d_o, d_in.q, d_in.k, d_in.v, s.w_std >= 0 ? g + s.w_std : nullptr,
        s.w_rec >= 0 ? g + s.w_rec : nullptr, s.a >= 0 ? g + s.a : nullptr, a_.attn_ws.data());
  }

  // dW = dYᵀ·X into the gradient at w_slot and db = column sums of dY (rows N, `cols`
  // columns) at b_slot (absent: -1), in one GEMM where the plan has the bias_grad epilogue.
  void weight_grads(const GemmPlan& p, const T* dy, const T* x, index_t w_slot, index_t b_slot,
                    index_t cols) {
    float* g = grads_.data();
    if (fused_bias_grad_) {
      p.run_with_aux(dy, x, nullptr, g + w_slot, g + b_slot, stream_);
      return;
    }
    gemm(p, dy, x, nullptr, g + w_slot);
    bias_grad(dy, batch_ * seq_, cols, gp(b_slot));
  }

  void bias_grad(const T* dy, index_t rows, index_t cols, float* db) {
    if (db == nullptr) return;
    column_sums<1>(detail::BiasGrad<T>{dy, cols}, rows, cols, db, nullptr, a_.scratch.data(),
                   stream_);
  }

  void drop(T* x, index_t n, std::uint64_t s) {
    if (mask_on_) dropout(x, n, cfg_.dropout, mask_seed_, s, stream_);
  }

  // dy itself without dropout; otherwise a masked copy in d_tmp.
  const T* dropped(const T* dy, index_t n, std::uint64_t s) {
    if (!mask_on_) return dy;
    RA_CUDA_CHECK(cudaMemcpyAsync(a_.d_tmp.data(), dy, static_cast<std::size_t>(n) * sizeof(T),
                                  cudaMemcpyDeviceToDevice, stream_));
    dropout(a_.d_tmp.data(), n, cfg_.dropout, mask_seed_, s, stream_);
    return a_.d_tmp.data();
  }

  void upload_buckets() {
    const TokenBuckets host(tokens_);
    auto put = [&](DeviceBuffer<std::int32_t>& d, const std::vector<std::int32_t>& v) {
      RA_CUDA_CHECK(cudaMemcpyAsync(d.data(), v.data(), v.size() * sizeof(std::int32_t),
                                    cudaMemcpyHostToDevice, stream_));
    };
    put(a_.bucket_ids, host.ids);
    put(a_.bucket_start, host.start);
    put(a_.bucket_rows, host.rows);
    // Copies from pageable memory are staged before cudaMemcpyAsync returns, so `host` may
    // go now.
    buckets_ = {a_.bucket_ids.data(), a_.bucket_start.data(), a_.bucket_rows.data(),
                static_cast<index_t>(host.ids.size())};
  }

  const nn::GPT2LayerSlots& slots(index_t l) const {
    return layout_.layers[static_cast<std::size_t>(l)];
  }
  // The working copy of the tensor at `offset` (null when absent).
  const T* w(index_t offset) const { return offset >= 0 ? work_.data() + offset : nullptr; }
  // The gradient of the tensor at `offset` (null when absent).
  float* gp(index_t offset) { return offset >= 0 ? grads_.data() + offset : nullptr; }

  index_t nc() const { return batch_ * seq_ * cfg_.C; }
  T* resid(index_t l) const { return a_.resid.data() + l * nc(); }
  T* mid(index_t l) const { return a_.mid.data() + l * nc(); }
  T* ln1(index_t l) const { return a_.ln1.data() + l * nc(); }
  T* ln2(index_t l) const { return a_.ln2.data() + l * nc(); }
  T* qkv(index_t l) const { return a_.qkv.data() + l * 3 * nc(); }
  T* att(index_t l) const { return a_.att.data() + l * nc(); }
  T* att_pre(index_t l) const { return a_.att_pre.data() + l * nc(); }
  T* fc(index_t l) const { return a_.fc.data() + l * 4 * nc(); }
  T* act(index_t l) const { return a_.act.data() + l * 4 * nc(); }
  float* mean(index_t i) const { return a_.mean.data() + i * batch_ * seq_; }
  float* rstd(index_t i) const { return a_.rstd.data() + i * batch_ * seq_; }

  nn::GPT2Config cfg_;
  nn::GPT2Layout layout_;
  Context* ctx_;
  cudaStream_t stream_;
  DeviceBuffer<float> params_, grads_;
  DeviceBuffer<T> work_;
  DeviceBuffer<std::byte> gemm_ws_;
  DeviceBuffer<double> sums_;  // kSumScratch partials, then the result
  Activations a_;
  Plans plans_;
  DeviceTokenBuckets buckets_;
  std::vector<std::int32_t> tokens_, targets_;
  index_t capacity_ = 0, planned_ = 0, batch_ = 0, seq_ = 0;
  bool training_ = true, have_forward_ = false, have_targets_ = false;
  bool logits_kept_ = false;  // the last forward had no targets: a_.logits holds logits
  std::uint64_t dropout_seed_ = 0, mask_seed_ = 0;
  bool mask_on_ = false;
  bool fused_gelu_, fused_bias_grad_;
};

/// The GPU optimizer step of a GPU model: AdamW (or AdamW with SPAM) on its device buffers,
/// refreshing its working copy; returns what the step did, the gradient norm before clipping
/// included (train_step calls this by name).
template <class T>
nn::AdamWStep optimizer_step(GPT2<T>& model, AdamW& opt, double lr) {
  return opt.step(model.device_parameters(), model.device_gradients(), model.device_working_copy(),
                  lr, model.stream());
}

}  // namespace ra::cuda
