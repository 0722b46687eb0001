// ra/cuda/block.cuh — the attention block on the GPU, planned once, allocation-free forward.
//
//   x (B,T,C) ──GemmPlan(W_attn, b_attn)──▶ fused (B,T,3C)
//   fused ──folded_views──▶ Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1)            [no copy]
//   attention_forward (flash kernel)  or  UnfusedAttention  ──▶ o (B,T,C), lse (B,H,T)
//   o (BT,C) ──GemmPlan(W_o, b_o)──▶ y (B,T,C)
//
// The constructor validates the config and makes ONE device allocation (a Workspace) holding
// the weights, the gate and restart parameters, the fused and o activations, lse, the cuBLAS
// workspace and the unfused path's scratch, all sized for (max_batch, max_seq); it plans the
// two GEMMs for B·T = max_batch·max_seq. forward() only enqueues work: no allocation, no
// copy, no synchronisation, so it can be captured with ra::cuda::Graph. Gate and restart
// values are read from device memory by the kernels, so a captured graph sees set_gates().
//
// A forward at a smaller B·T plans its two GEMMs once on first use (host-side cuBLASLt
// descriptors and a heuristic query; still no device memory) and reuses them after.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/check.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/unfused.cuh>
#include <ra/cuda/workspace.cuh>
#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>

namespace ra::cuda {

/// Which attention implementation a block's forward uses.
enum class AttentionPath : std::uint8_t {
  fused,    ///< the flash kernel (attention_forward)
  unfused,  ///< materialised scores, cuBLAS batched GEMMs (UnfusedAttention)
};

inline std::ostream& operator<<(std::ostream& os, AttentionPath p) {
  return os << (p == AttentionPath::fused ? "fused" : "unfused");
}

/// An attention block (baseline or RA, per AttentionBlockConfig) with its parameters and
/// activations in device memory. Movable, not copyable. Not thread-safe.
template <Element T>
class AttentionBlock {
 public:
  /// Plans and allocates everything for inputs of up to (max_batch, max_seq, C).
  /// plan_unfused = false leaves out the unfused path's scratch (B·H·T² scores).
  /// ctx: cuBLAS handles to share between blocks; null makes the block its own.
  /// Gate and restart values start at their defaults (0.9, 0.1, 0.05); weights must be
  /// given with load() before forward().
  /// Throws ra::error / ra::unsupported on a bad config or size, ra::cuda_error when the
  /// allocation or planning fails.
  AttentionBlock(const AttentionBlockConfig& cfg, index_t max_batch, index_t max_seq,
                 bool plan_unfused = true, Context* ctx = nullptr)
      : cfg_(cfg), max_batch_(max_batch), max_seq_(max_seq) {
    constexpr const char* where = "cuda::AttentionBlock";
    cfg.validate(where);
    require_arg(max_batch > 0, where, "max_batch", max_batch, "> 0");
    require_arg(max_seq > 0, where, "max_seq", max_seq, "> 0");
    if (ctx == nullptr) {
      owned_ctx_ = std::make_unique<Context>();
      ctx = owned_ctx_.get();
    }
    ctx_ = ctx;
    const index_t C = cfg.C, H = cfg.H, M = max_batch * max_seq;
    const index_t bias = cfg.bias ? 1 : 0;
    std::vector<WorkspaceRegion> r = {
        region_of<T>("w_attn", 3 * C * C),
        region_of<T>("b_attn", bias * 3 * C),
        region_of<T>("w_o", C * C),
        region_of<T>("b_o", bias * C),
        region_of<float>("w_std", cfg.gate_count()),
        region_of<float>("w_rec", cfg.gate_count()),
        region_of<float>("a", cfg.restart ? H : 0),
        region_of<T>("fused", M * 3 * C),
        region_of<T>("o", M * C),
        region_of<float>("lse", max_batch * H * max_seq),
        {"gemm_workspace", kGemmWorkspaceBytes},
    };
    const UnfusedShape unfused_shape{max_batch, H, max_seq, cfg.head_dim(), dtype_v<T>};
    if (plan_unfused) {
      const auto u = UnfusedAttention::regions(unfused_shape);
      r.insert(r.end(), u.begin(), u.end());
    }
    ws_ = Workspace::plan(r);
    w_attn_ = ws_.region<T>("w_attn");
    b_attn_ = ws_.region<T>("b_attn");
    w_o_ = ws_.region<T>("w_o");
    b_o_ = ws_.region<T>("b_o");
    w_std_ = ws_.region<float>("w_std");
    w_rec_ = ws_.region<float>("w_rec");
    a_ = ws_.region<float>("a");
    fused_ = ws_.region<T>("fused");
    o_ = ws_.region<T>("o");
    lse_ = ws_.region<float>("lse");
    gemm_ws_ = ws_.region<std::byte>("gemm_workspace");
    // The GEMMs and the unfused path run one after another on the forward's stream, so they
    // can share one cuBLAS workspace.
    if (plan_unfused)
      unfused_ = UnfusedAttention(*ctx_, unfused_shape, ws_, gemm_ws_, kGemmWorkspaceBytes);
    plans_for(M);
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
    require_arg(batch >= 0 && batch <= max_batch_, where, "B", batch,
                ra::detail::concat("in [0, ", max_batch_, "] (max_batch)"));
    require_arg(seq >= 0 && seq <= max_seq_, where, "T", seq,
                ra::detail::concat("in [0, ", max_seq_, "] (max_seq)"));
    require(loaded_, where, ": no weights, expected a call to load() first");
    require_arg(path == AttentionPath::fused || has_unfused(), where, "path", path,
                "fused (the block was built with plan_unfused = false)");
    if (batch == 0 || seq == 0) return;
    check_io(where, "x", x);
    check_io(where, "y", y);
    const auto& g = plans_for(batch * seq);
    g.project.run(x, w_attn_, b_attn_, fused_, stream);  // (BT,C) -> (BT,3C)
    const AttentionParams p = attention_params(batch, seq);
    if (path == AttentionPath::fused) {
      attention_forward(p, stream);
    } else {
      unfused_.run(p, stream);
    }
    g.output.run(o_, w_o_, b_o_, y, stream);  // (BT,C) -> (BT,C)
  }

  /// The params forward() passes to the attention step for (B, T): Qf, Kf, V read in place
  /// from fused(), O' written to o() in (B,T,C) layout, lse to lse(). Throws ra::error when B
  /// or T exceed the plan.
  AttentionParams attention_params(index_t batch, index_t seq) const {
    constexpr const char* where = "cuda::AttentionBlock::attention_params";
    require_arg(batch >= 0 && batch <= max_batch_, where, "B", batch,
                ra::detail::concat("in [0, ", max_batch_, "] (max_batch)"));
    require_arg(seq >= 0 && seq <= max_seq_, where, "T", seq,
                ra::detail::concat("in [0, ", max_seq_, "] (max_seq)"));
    const index_t C = cfg_.C, H = cfg_.H, D = cfg_.head_dim();
    const auto fused = make_view(static_cast<const T*>(fused_),
                                 shape(batch, seq, 3 * C));  // (B,T,3C) strides (3TC,3C,1)
    const auto qkv = folded_views(fused, H, D);              // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const auto o = make_view(o_, shape(batch, seq, C));      // (B,T,C) strides (TC,C,1)
    const auto o_heads = heads(o, H, D);                     // (B,H,T,D) strides (TC,D,C,1)
    const auto node = folded_attention(qkv.q, qkv.k, qkv.v, cfg_.R, gates(), causal, restart());
    return make_params(node, o_heads, lse_);
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

  Gates gates() const { return {cfg_.gates, cfg_.gate_param, w_std_, w_rec_}; }
  Restart restart() const { return {cfg_.restart ? a_ : nullptr}; }

  const AttentionBlockConfig& config() const { return cfg_; }
  index_t max_batch() const { return max_batch_; }
  index_t max_seq() const { return max_seq_; }
  bool has_unfused() const { return unfused_.max_shape().batch > 0; }
  Context& context() const { return *ctx_; }

  /// Device pointers (null for parts the config leaves out: biases, gates, restart).
  T* w_attn() const { return w_attn_; }  // (3C,C)
  T* b_attn() const { return b_attn_; }  // (3C)
  T* w_o() const { return w_o_; }        // (C,C)
  T* b_o() const { return b_o_; }        // (C)
  float* w_std() const { return w_std_; }
  float* w_rec() const { return w_rec_; }
  float* restart_a() const { return a_; }  // (H)
  T* fused() const { return fused_; }      // (B,T,3C) of the last forward, compact
  T* o() const { return o_; }              // (B,T,C) of the last forward, compact
  float* lse() const { return lse_; }      // (B,H,T) of the last forward, compact

  /// Bytes of the block's one device allocation.
  std::size_t device_bytes() const { return ws_.bytes(); }
  const Workspace& workspace() const { return ws_; }

 private:
  struct Plans {
    index_t m = 0;
    GemmPlan project;  // (M,C) x (3C,C)ᵀ -> (M,3C)
    GemmPlan output;   // (M,C) x (C,C)ᵀ -> (M,C)
  };

  const Plans& plans_for(index_t m) {
    for (const auto& p : plans_)
      if (p.m == m) return p;
    const index_t C = cfg_.C;
    const DType t = dtype_v<T>;
    // x and y come from the caller: plan for 16-byte alignment (checked in forward), which
    // every buffer of the block (256-byte aligned) satisfies too.
    GemmShape proj = GemmShape::compact(m, 3 * C, C, t, cfg_.bias);
    GemmShape out = GemmShape::compact(m, C, C, t, cfg_.bias);
    proj.alignment = out.alignment = kIoAlignment;
    plans_.push_back({m, GemmPlan(*ctx_, proj, gemm_ws_, kGemmWorkspaceBytes),
                      GemmPlan(*ctx_, out, gemm_ws_, kGemmWorkspaceBytes)});
    return plans_.back();
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
  std::unique_ptr<Context> owned_ctx_;
  Context* ctx_ = nullptr;
  Workspace ws_;
  UnfusedAttention unfused_;
  std::vector<Plans> plans_;
  bool loaded_ = false;
  T* w_attn_ = nullptr;
  T* b_attn_ = nullptr;
  T* w_o_ = nullptr;
  T* b_o_ = nullptr;
  float* w_std_ = nullptr;
  float* w_rec_ = nullptr;
  float* a_ = nullptr;
  T* fused_ = nullptr;
  T* o_ = nullptr;
  float* lse_ = nullptr;
  std::byte* gemm_ws_ = nullptr;
};

}  // namespace ra::cuda
