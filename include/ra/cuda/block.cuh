// ra/cuda/block.cuh — the attention block on the GPU: ONE expression, planned once,
// allocation-free forward and backward.
//
//   y = gemm( attend<R>( fold( gemm(x, W_attn, b_attn), B, H, D ) ), W_o, b_o )
//       (ra::attention_block, ra/expr/block.hpp), evaluated by ra::eval on cuda::device:
//   x (BT,C) ──cuBLASLt, bias epilogue──▶ fused (BT,3C)                         [scratch]
//   fused ──fold──▶ Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1)                    [no copy]
//   flash forward (or the unfused path) ──▶ O' (BT,C) in (B,T,C) layout, lse    [scratch]
//   O' ──cuBLASLt, bias epilogue──▶ y (BT,C)
//
// D and R are dispatched once per call (ra::dispatch_attention) and the expression is built
// with ra::Int<D> and ra::Rank<R>, so the flash kernels of <T, D, R> launch directly. The
// backward (ra::backward on the same expression; the forward is evaluated again first, with
// O before the restart mix kept) runs the output GEMM's dW (+ db in its epilogue) and dO',
// the flash backward into the folded views of a (BT,3C) scratch buffer, and the projection's
// dW (+ db) and dx; parameter gradients are fp32, in the block's memory (gradients()).
//
// The constructor validates the config and makes ONE device allocation (a Workspace) holding
// the weights, the gate and restart parameters, their gradients (plan_backward), the scratch
// the expression's intermediates come from (sized by a measuring pass of the expression at
// (max_batch, max_seq): nothing launched), the cuBLAS workspace and the unfused path's
// scratch. forward() and backward() only enqueue work: no allocation, no copy, no
// synchronisation, so they can be captured with ra::cuda::Graph. Gate and restart values are
// read from device memory by the kernels, so a captured graph sees set_gates().
//
// A call at a smaller B·T plans its GEMMs once on first use (host-side cuBLASLt descriptors
// and a heuristic query; still no device memory) and reuses them after.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <ra/core/dispatch.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/device.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/unfused.cuh>
#include <ra/cuda/workspace.cuh>
#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/node.hpp>

namespace ra::cuda {

/// Which attention implementation a block's forward uses.
enum class AttentionPath : std::uint8_t {
  fused,    ///< the flash kernel (attention_forward)
  unfused,  ///< materialised scores, cuBLAS batched GEMMs (UnfusedAttention)
};

inline std::ostream& operator<<(std::ostream& os, AttentionPath p) {
  return os << (p == AttentionPath::fused ? "fused" : "unfused");
}

/// An attention block (baseline or RA, per AttentionBlockConfig) with its parameters,
/// gradients and activations in device memory. Movable, not copyable. Not thread-safe.
template <Element T>
class AttentionBlock {
 public:
  /// Plans and allocates everything for inputs of up to (max_batch, max_seq, C).
  /// plan_unfused = false leaves out the unfused path's scratch (B·H·T² scores);
  /// plan_backward = true adds the fp32 parameter gradients and the backward's scratch.
  /// ctx: cuBLAS handles to share between blocks; null makes the block its own.
  /// Gate and restart values start at their defaults (0.9, 0.1, 0.05); weights must be
  /// given with load() before forward().
  /// Throws ra::error / ra::unsupported on a bad config or size, ra::cuda_error when the
  /// allocation or planning fails.
  AttentionBlock(const AttentionBlockConfig& cfg, index_t max_batch, index_t max_seq,
                 bool plan_unfused = true, Context* ctx = nullptr, bool plan_backward = false)
      : cfg_(cfg), max_batch_(max_batch), max_seq_(max_seq), plan_backward_(plan_backward) {
    constexpr const char* where = "cuda::AttentionBlock";
    cfg.validate(where);
    require_arg(max_batch > 0, where, "max_batch", max_batch, "> 0");
    require_arg(max_seq > 0, where, "max_seq", max_seq, "> 0");
    if (ctx == nullptr) {
      owned_ctx_ = std::make_unique<Context>();
      ctx = owned_ctx_.get();
    }
    ctx_ = ctx;
    const index_t C = cfg.C, H = cfg.H;
    const index_t bias = cfg.bias ? 1 : 0, grads = plan_backward ? 1 : 0;
    // The expression's scratch at the largest size: a measuring pass (nothing launched; the
    // parameters do not exist yet, so a host float stands in for the gate and restart
    // pointers, which only the kernels would read).
    const std::size_t scratch = measure_workspace(state_, [&] { evaluate_largest(); });
    std::vector<WorkspaceRegion> r = {
        region_of<T>("w_attn", 3 * C * C),
        region_of<T>("b_attn", bias * 3 * C),
        region_of<T>("w_o", C * C),
        region_of<T>("b_o", bias * C),
        region_of<float>("w_std", cfg.gate_count()),
        region_of<float>("w_rec", cfg.gate_count()),
        region_of<float>("a", cfg.restart_count()),
        region_of<float>("d_w_attn", grads * 3 * C * C),
        region_of<float>("d_b_attn", grads * bias * 3 * C),
        region_of<float>("d_w_o", grads * C * C),
        region_of<float>("d_b_o", grads * bias * C),
        region_of<float>("d_w_std", grads * cfg.gate_count()),
        region_of<float>("d_w_rec", grads * cfg.gate_count()),
        region_of<float>("d_a", grads * cfg.restart_count()),
        {"scratch", scratch},
        {"gemm_workspace", kGemmWorkspaceBytes},
    };
    const UnfusedShape unfused_shape{max_batch, H, max_seq, cfg.head_dim(), dtype_v<T>};
    if (plan_unfused) {
      const auto u = UnfusedAttention::regions(unfused_shape);
      r.insert(r.end(), u.begin(), u.end());
    }
    ws_ = Workspace::plan(r);
    state_.plans = GemmPlans{};  // the measuring pass's plans had no cuBLAS workspace
    w_attn_ = ws_.region<T>("w_attn");
    b_attn_ = ws_.region<T>("b_attn");
    w_o_ = ws_.region<T>("w_o");
    b_o_ = ws_.region<T>("b_o");
    w_std_ = ws_.region<float>("w_std");
    w_rec_ = ws_.region<float>("w_rec");
    a_ = ws_.region<float>("a");
    gemm_ws_ = ws_.region<std::byte>("gemm_workspace");
    state_.arena.adopt(ws_.region<std::byte>("scratch"), scratch);
    // The GEMMs and the unfused path run one after another on the block's stream, so they
    // can share one cuBLAS workspace.
    state_.plans.set_workspace(gemm_ws_, kGemmWorkspaceBytes);
    if (plan_unfused)
      unfused_ = UnfusedAttention(*ctx_, unfused_shape, ws_, gemm_ws_, kGemmWorkspaceBytes);
    // The GEMM plans at the largest size, made now (a second measuring pass).
    (void)measure_workspace(state_, [&] { evaluate_largest(); });
    if (cfg.gates != GateMode::none) set_gates(kGateInitStd, kGateInitRec);
    if (cfg.restart) set_restart(kRestartInit);
  }

  /// Copies the host parameters to the device on `stream` and waits for the copies. Pass
  /// the stream the block runs on, so the copies follow the forwards queued there. Views
  /// may have any strides. Throws ra::error when shapes or pointers do not match the
  /// config, ra::cuda_error when a copy fails.
  void load(const AttentionBlockWeights<T>& host, cudaStream_t stream = nullptr) {
    constexpr const char* where = "cuda::AttentionBlock::load";
    host.validate(cfg_, where);
    std::vector<std::vector<T>> staging;  // kept alive until the copies complete
    upload(w_attn_, host.w_attn, staging, stream);
    upload(w_o_, host.w_o, staging, stream);
    if (cfg_.bias) {
      upload(b_attn_, host.b_attn, staging, stream);
      upload(b_o_, host.b_o, staging, stream);
    }
    const index_t g = cfg_.gate_count();
    if (g > 0) {
      copy_floats(w_std_, host.w_std, g, stream);
      copy_floats(w_rec_, host.w_rec, g, stream);
    }
    if (cfg_.restart) copy_floats(a_, host.a, cfg_.H, stream);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    loaded_ = true;
  }

  /// Sets the raw gate parameters of every head to (w_std, w_rec): a copy on `stream` (the
  /// block's stream, so it follows queued forwards), waited for. A captured graph reads the
  /// new values at its next replay. Throws ra::error when the block has no gates.
  void set_gates(float w_std, float w_rec, cudaStream_t stream = nullptr) {
    const std::vector<float> s(static_cast<std::size_t>(cfg_.gate_count()), w_std);
    const std::vector<float> r(static_cast<std::size_t>(cfg_.gate_count()), w_rec);
    set_gates(s, r, stream);
  }

  /// Sets the raw gate parameters (gate_count() values each: 1 per layer, H per head).
  /// Throws ra::error when the block has no gates or a span has the wrong size.
  void set_gates(std::span<const float> w_std, std::span<const float> w_rec,
                 cudaStream_t stream = nullptr) {
    constexpr const char* where = "cuda::AttentionBlock::set_gates";
    require_arg(cfg_.gates != GateMode::none, where, "gates", cfg_.gates,
                "per_layer or per_head (the block was built without gates)");
    const auto n = static_cast<std::size_t>(cfg_.gate_count());
    require_arg(w_std.size() == n, where, "w_std.size()", w_std.size(),
                ra::detail::concat(n, " (gate_count)"));
    require_arg(w_rec.size() == n, where, "w_rec.size()", w_rec.size(),
                ra::detail::concat(n, " (gate_count)"));
    copy_floats(w_std_, w_std.data(), static_cast<index_t>(n), stream);
    copy_floats(w_rec_, w_rec.data(), static_cast<index_t>(n), stream);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  /// Sets the raw self-restart parameter of every head to a. Throws ra::error when the
  /// block has no self-restart.
  void set_restart(float a, cudaStream_t stream = nullptr) {
    const std::vector<float> v(static_cast<std::size_t>(cfg_.H), a);
    set_restart(v, stream);
  }

  /// Sets the raw self-restart parameters (H values).
  void set_restart(std::span<const float> a, cudaStream_t stream = nullptr) {
    constexpr const char* where = "cuda::AttentionBlock::set_restart";
    require_arg(cfg_.restart, where, "restart", "false", "a block built with restart = true");
    require_arg(a.size() == static_cast<std::size_t>(cfg_.H), where, "a.size()", a.size(),
                ra::detail::concat("H = ", cfg_.H));
    copy_floats(a_, a.data(), cfg_.H, stream);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  /// y (B,T,C) = block(x (B,T,C)), both compact device arrays, 16-byte aligned; y may alias
  /// x. Enqueues on `stream`: no allocation, no copy, no synchronisation (graph-capturable).
  /// Throws ra::error when B or T exceed the plan, a pointer is null or misaligned, weights
  /// were never loaded, or the unfused path was not planned; ra::cuda_error when a launch
  /// fails.
  void forward(const T* x, T* y, index_t batch, index_t seq, cudaStream_t stream,
               AttentionPath path = AttentionPath::fused) {
    constexpr const char* where = "cuda::AttentionBlock::forward";
    check_size(where, batch, seq);
    require(loaded_, where, ": no weights, expected a call to load() first");
    require_arg(path == AttentionPath::fused || has_unfused(), where, "path", path,
                "fused (the block was built with plan_unfused = false)");
    if (batch == 0 || seq == 0) return;
    check_io(where, "x", x);
    check_io(where, "y", y);
    const device dev{stream,  ctx_,  false,
                     &state_, false, path == AttentionPath::unfused ? &unfused_ : nullptr};
    evaluate(x, batch, seq, [&](const auto& expr) {
      const auto tape = ra::eval(make_view(y, shape(batch * seq, cfg_.C)), expr, dev);  // (BT,C)
      keep(tape.tape);
    });
  }

  /// The gradients of the block at x (B,T,C) given dy (B,T,C): the fp32 parameter gradients
  /// into gradients() (overwritten) and dx (B,T,C) when not null. x, dy, dx compact device
  /// arrays, 16-byte aligned; dx may not alias x or dy. Evaluates the forward again (the
  /// fused path), then its backward. Enqueues on `stream`: no allocation, no synchronisation.
  /// Throws ra::error when the block was built without plan_backward, B or T exceed the
  /// plan, a pointer is null, misaligned or aliased, or weights were never loaded.
  void backward(const T* x, const T* dy, T* dx, index_t batch, index_t seq, cudaStream_t stream) {
    constexpr const char* where = "cuda::AttentionBlock::backward";
    require_arg(plan_backward_, where, "plan_backward", "false",
                "a block built with plan_backward = true");
    check_size(where, batch, seq);
    require(loaded_, where, ": no weights, expected a call to load() first");
    if (batch == 0 || seq == 0) {
      zero_gradients(stream);
      return;
    }
    check_io(where, "x", x);
    check_io(where, "dy", dy);
    if (dx != nullptr) {
      check_io(where, "dx", dx);
      require_arg(static_cast<const T*>(dx) != x && static_cast<const T*>(dx) != dy, where, "dx",
                  static_cast<const void*>(dx), "memory of its own (not x or dy)");
    }
    const device dev{stream, ctx_, false, &state_, true, nullptr};
    evaluate(
        x, batch, seq,
        [&](const auto& expr) {
          const auto [y, tape] = ra::eval(expr, dev);  // y (BT,C) in the scratch
          keep(tape.tape);
          ra::backward(expr, tape, make_view(dy, shape(batch * seq, cfg_.C)), dev);  // dy (BT,C)
        },
        dx);
  }

  /// Views of the device parameters, in the form load() takes (for device-side evaluation).
  AttentionBlockWeights<T> device_weights() const {
    const index_t C = cfg_.C, bias = cfg_.bias ? 1 : 0;
    AttentionBlockWeights<T> w;
    w.w_attn = make_view(static_cast<const T*>(w_attn_), shape(3 * C, C));      // (3C,C)
    w.b_attn = make_view(static_cast<const T*>(b_attn_), shape(bias * 3 * C));  // (3C) or (0)
    w.w_o = make_view(static_cast<const T*>(w_o_), shape(C, C));                // (C,C)
    w.b_o = make_view(static_cast<const T*>(b_o_), shape(bias * C));            // (C) or (0)
    w.w_std = w_std_;
    w.w_rec = w_rec_;
    w.a = a_;
    return w;
  }

  /// Views of the fp32 parameter gradients in device memory (null views without
  /// plan_backward; biases, gates and restart as the config has them).
  AttentionBlockGrads<float> gradients() const {
    const index_t C = cfg_.C;
    const index_t n = plan_backward_ ? 1 : 0, bias = plan_backward_ && cfg_.bias ? 1 : 0;
    AttentionBlockGrads<float> g;
    g.w_attn = make_view(ws_.region<float>("d_w_attn"), shape(n * 3 * C, C));  // (3C,C)
    g.b_attn = make_view(ws_.region<float>("d_b_attn"), shape(bias * 3 * C));  // (3C)
    g.w_o = make_view(ws_.region<float>("d_w_o"), shape(n * C, C));            // (C,C)
    g.b_o = make_view(ws_.region<float>("d_b_o"), shape(bias * C));            // (C)
    g.w_std = ws_.region<float>("d_w_std");
    g.w_rec = ws_.region<float>("d_w_rec");
    g.a = ws_.region<float>("d_a");
    return g;
  }

  Gates gates() const { return {cfg_.gates, cfg_.gate_param, w_std_, w_rec_}; }
  Restart restart() const { return {cfg_.restart ? a_ : nullptr}; }

  const AttentionBlockConfig& config() const { return cfg_; }
  index_t max_batch() const { return max_batch_; }
  index_t max_seq() const { return max_seq_; }
  bool has_unfused() const { return unfused_.max_shape().batch > 0; }
  bool has_backward() const { return plan_backward_; }
  Context& context() const { return *ctx_; }

  /// Device pointers (null for parts the config leaves out: biases, gates, restart).
  T* w_attn() const { return w_attn_; }  // (3C,C)
  T* b_attn() const { return b_attn_; }  // (3C)
  T* w_o() const { return w_o_; }        // (C,C)
  T* b_o() const { return b_o_; }        // (C)
  float* w_std() const { return w_std_; }
  float* w_rec() const { return w_rec_; }
  float* restart_a() const { return a_; }  // (H)
  /// The last forward's intermediates in the scratch (null before the first forward; valid
  /// until the next call): fused (B,T,3C), O' (B,T,C), lse (B,H,T), all compact.
  const T* fused() const { return fused_; }
  const T* o() const { return o_; }
  const float* lse() const { return lse_; }
  /// The scratch memory the expression's intermediates come from (to poison it in tests).
  std::byte* scratch_data() const { return ws_.region<std::byte>("scratch"); }
  std::size_t scratch_bytes() const { return ws_.region_bytes("scratch"); }
  /// GEMM plans made so far (one per GEMM shape the calls needed).
  std::size_t gemm_plans() const { return state_.plans.size(); }

  /// Bytes of the block's one device allocation.
  std::size_t device_bytes() const { return ws_.bytes(); }
  const Workspace& workspace() const { return ws_; }

 private:
  // Builds the block expression for (B, T) with D and R as template arguments and calls
  // f(expr); with dx or gradients (backward) the nodes carry the gradient sinks.
  template <class F>
  void evaluate(const T* x, index_t batch, index_t seq, F&& f, T* dx = nullptr) const {
    const index_t C = cfg_.C;
    const auto xv = make_view(x, shape(batch, seq, C));  // (B,T,C)
    const auto dxv = dx != nullptr ? make_view(dx, shape(batch, seq, C)) : StridedView<T, 3>{};
    const auto g = gradients_for_evaluation();
    const auto w = weights_for_evaluation();
    dispatch_attention(static_cast<int>(cfg_.head_dim()), cfg_.R, [&](auto d, auto r) {
      constexpr int kR = static_cast<int>(decltype(r)::value);
      f(attention_block<Rank<kR>>(cfg_, xv, w, d, g, dxv));
    });
  }

  // The evaluation at (max_batch, max_seq) as a measuring pass: the expression takes its
  // scratch and makes its GEMM plans; nothing launches, so the stand-in pointers below (the
  // parameters may not exist yet) are only checked for null, never read.
  void evaluate_largest() {
    const device dev{nullptr, ctx_, false, &state_, plan_backward_, nullptr};
    const index_t M = max_batch_ * max_seq_;
    evaluate(
        stand_in<T>(), max_batch_, max_seq_,
        [&](const auto& expr) {
          if (plan_backward_) {
            const auto [y, tape] = ra::eval(expr, dev);
            ra::backward(expr, tape, make_view(stand_in<const T>(), shape(M, cfg_.C)), dev);
          } else {
            (void)ra::eval(expr, dev);
          }
        },
        plan_backward_ ? stand_in<T>() : nullptr);
  }

  // The weights as the expression reads them (stand-ins before they are allocated).
  AttentionBlockWeights<T> weights_for_evaluation() const {
    if (ws_.size() > 0) return device_weights();
    const index_t C = cfg_.C, bias = cfg_.bias ? 1 : 0;
    AttentionBlockWeights<T> w;
    w.w_attn = make_view(stand_in<const T>(), shape(3 * C, C));      // (3C,C)
    w.b_attn = make_view(stand_in<const T>(), shape(bias * 3 * C));  // (3C) or (0)
    w.w_o = make_view(stand_in<const T>(), shape(C, C));             // (C,C)
    w.b_o = make_view(stand_in<const T>(), shape(bias * C));         // (C) or (0)
    w.w_std = w.w_rec = w.a = stand_in<float>();
    return w;
  }

  // The gradient sinks of a backward (none without plan_backward; stand-ins before they are
  // allocated).
  AttentionBlockGrads<float> gradients_for_evaluation() const {
    if (!plan_backward_) return {};
    if (ws_.size() > 0) return gradients();
    const index_t C = cfg_.C, bias = cfg_.bias ? 1 : 0;
    AttentionBlockGrads<float> g;
    g.w_attn = make_view(stand_in<float>(), shape(3 * C, C));      // (3C,C)
    g.b_attn = make_view(stand_in<float>(), shape(bias * 3 * C));  // (3C)
    g.w_o = make_view(stand_in<float>(), shape(C, C));             // (C,C)
    g.b_o = make_view(stand_in<float>(), shape(bias * C));         // (C)
    g.w_std = g.w_rec = g.a = stand_in<float>();
    return g;
  }

  // A non-null, 256-byte aligned pointer for measuring passes; never dereferenced.
  template <class U>
  static U* stand_in() {
    alignas(256) static std::byte bytes[256];
    return reinterpret_cast<U*>(bytes);
  }

  // The last forward's intermediates, from its tape: the output GEMM's A is O', its tape the
  // attention's (fused, lse).
  template <class Tape>
  void keep(const Tape& tape) {
    o_ = tape.a.data();
    fused_ = tape.a_tape.fused.data();
    lse_ = tape.a_tape.lse;
  }

  void check_size(const char* where, index_t batch, index_t seq) const {
    require_arg(batch >= 0 && batch <= max_batch_, where, "B", batch,
                ra::detail::concat("in [0, ", max_batch_, "] (max_batch)"));
    require_arg(seq >= 0 && seq <= max_seq_, where, "T", seq,
                ra::detail::concat("in [0, ", max_seq_, "] (max_seq)"));
  }

  // The gradients of an empty batch.
  void zero_gradients(cudaStream_t stream) const {
    for (const char* name : {"d_w_attn", "d_b_attn", "d_w_o", "d_b_o", "d_w_std", "d_w_rec", "d_a"})
      if (ws_.region_bytes(name) > 0)
        RA_CUDA_CHECK(
            cudaMemsetAsync(ws_.region<std::byte>(name), 0, ws_.region_bytes(name), stream));
  }

  static void check_io(const char* where, const char* name, const void* p) {
    require_arg(p != nullptr, where, name, "a null pointer", "a device pointer");
    require_arg(reinterpret_cast<std::uintptr_t>(p) % kIoAlignment == 0, where, name, p,
                ra::detail::concat("a ", kIoAlignment, "-byte aligned pointer"));
  }

  template <View V>
  static void upload(T* dst, const V& src, std::vector<std::vector<T>>& staging,
                     cudaStream_t stream) {
    if (src.size() == 0) return;
    const T* from = src.data();
    if (!src.is_compact()) {  // gather strided host views row-major first
      auto& buf = staging.emplace_back(static_cast<std::size_t>(src.size()));
      index_t i = 0;
      if constexpr (V::rank == 2) {
        for (index_t r = 0; r < src.extent(0); ++r)
          for (index_t c = 0; c < src.extent(1); ++c) buf[i++] = src(r, c);
      } else {
        for (index_t c = 0; c < src.extent(0); ++c) buf[i++] = src(c);
      }
      from = buf.data();
    }
    RA_CUDA_CHECK(cudaMemcpyAsync(dst, from, static_cast<std::size_t>(src.size()) * sizeof(T),
                                  cudaMemcpyHostToDevice, stream));
  }

  static void copy_floats(float* dst, const float* src, index_t n, cudaStream_t stream) {
    if (n == 0) return;
    RA_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(float),
                                  cudaMemcpyHostToDevice, stream));
  }

  static constexpr std::uint32_t kIoAlignment = 16;

  AttentionBlockConfig cfg_;
  index_t max_batch_ = 0, max_seq_ = 0;
  bool plan_backward_ = false;
  std::unique_ptr<Context> owned_ctx_;
  Context* ctx_ = nullptr;
  Workspace ws_;
  EvalState state_;
  UnfusedAttention unfused_;
  bool loaded_ = false;
  T* w_attn_ = nullptr;
  T* b_attn_ = nullptr;
  T* w_o_ = nullptr;
  T* b_o_ = nullptr;
  float* w_std_ = nullptr;
  float* w_rec_ = nullptr;
  float* a_ = nullptr;
  const T* fused_ = nullptr;
  const T* o_ = nullptr;
  const float* lse_ = nullptr;
  std::byte* gemm_ws_ = nullptr;
};

}  // namespace ra::cuda
