// ra/cuda/device.cuh — the GPU device: ra::eval(out, expr, ra::cuda::device{stream, ...}).
//
// A device says where and how an expression runs: the stream (every evaluation only enqueues
// work there; nothing synchronises), the cuBLAS context, and optionally an EvalState — the
// device scratch memory (an ra::Arena) the nodes take their intermediates from, and the GEMM
// plans by shape with their cuBLAS workspace. Each node kind has its one evaluator:
//   Gemm             ra/cuda/eval_gemm.cuh       cuBLASLt, bias in the epilogue; backward with
//                                                the bias gradient in the dW epilogue (BGRADB)
//   FoldedAttention  ra/cuda/eval_attention.cuh  the flash kernel (or the unfused path)
//   Attend           ra/cuda/eval_attention.cuh  flash forward and backward on folded views
//
// Without an EvalState a device evaluates nodes whose operands are views (a GEMM of views,
// the attention op); each GEMM then builds a GemmPlan on the spot without a workspace (host
// descriptors and a heuristic query per call; no device memory). With one, plans are made on
// first use and reused, and intermediates come from the arena: after the first evaluation of
// an expression (or after ra::cuda::plan_workspace) nothing allocates, so evaluation can be
// captured in a CUDA graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <ra/core/arena.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/expr/node.hpp>

namespace ra::cuda {

class UnfusedAttention;

/// GEMM plans by shape, made on first use with one cuBLAS workspace. Not thread-safe.
class GemmPlans {
 public:
  /// The cuBLAS workspace of the plans made from now on (may be null with 0 bytes).
  void set_workspace(void* workspace, std::size_t bytes) {
    workspace_ = workspace;
    bytes_ = bytes;
  }

  /// The plan of s, made on first use; null when cuBLASLt has no algorithm for s and
  /// may_fail is set (remembered: the next call returns null at once).
  /// Throws as GemmPlan's constructor otherwise.
  const GemmPlan* find(const Context& ctx, const GemmShape& s, bool may_fail) {
    for (const auto& e : entries_)
      if (e.shape == s) return e.plan.get();
    std::unique_ptr<GemmPlan> plan;
    try {
      plan = std::make_unique<GemmPlan>(ctx, s, workspace_, bytes_);
    } catch (const unsupported&) {
      if (!may_fail) throw;
    }
    entries_.push_back({s, std::move(plan)});
    return entries_.back().plan.get();
  }

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    GemmShape shape;
    std::unique_ptr<GemmPlan> plan;  // null: cuBLASLt has no algorithm
  };
  std::vector<Entry> entries_;
  void* workspace_ = nullptr;
  std::size_t bytes_ = 0;
};

/// What a device evaluates expressions with: device scratch memory for intermediates and the
/// GEMM plans. Keep one per expression that is evaluated again and again (a block owns one).
struct EvalState {
  Arena<DeviceBuffer<std::byte>> arena;
  GemmPlans plans;
};

/// The CUDA device: a stream, the cuBLAS context to use (null: default_context()), and how
/// to evaluate. Copyable; it holds pointers only.
struct device {
  cudaStream_t stream = nullptr;
  Context* ctx = nullptr;
  bool tf32 = false;           ///< fp32 GEMMs may use TF32 tensor cores
  EvalState* state = nullptr;  ///< intermediates and plans (null: none; see the top)
  bool training = false;       ///< keep what a backward needs (O before the restart mix)
  const UnfusedAttention* unfused = nullptr;  ///< attention through the unfused path

  Context& context() const { return ctx != nullptr ? *ctx : default_context(); }

  /// Starts an evaluation pass (ra::eval calls it).
  void begin() const {
    if (state != nullptr) state->arena.begin();
  }
  std::uint64_t pass() const { return state != nullptr ? state->arena.pass() : 0; }
  /// A measuring pass takes buffers and makes plans but launches nothing.
  bool measuring() const { return state != nullptr && state->arena.measuring(); }

  /// n elements of T of device scratch, valid until the next ra::eval on this state.
  /// Throws ra::error when the device has no EvalState.
  template <class T>
  T* take(index_t n) const {
    require(state != nullptr,
            "cuda::device: this expression needs intermediate buffers, expected a device with "
            "an EvalState (ra::cuda::device{stream, ctx, tf32, &state})");
    return state->arena.take<T>(n);
  }

  /// Calls f(plan) with the plan of s: the state's (made once), or one made now without a
  /// workspace. Returns false, calling nothing, when may_fail is set and cuBLASLt has no
  /// algorithm for s. Throws as GemmPlan's constructor otherwise.
  template <class F>
  bool with_plan(const GemmShape& s, F&& f, bool may_fail = false) const {
    if (state != nullptr) {
      const GemmPlan* p = state->plans.find(context(), s, may_fail);
      if (p == nullptr) return false;
      f(*p);
      return true;
    }
    std::optional<GemmPlan> plan;
    try {
      plan.emplace(context(), s, nullptr, 0);
    } catch (const unsupported&) {
      if (!may_fail) throw;
      return false;
    }
    f(*plan);
    return true;
  }
};

/// Runs `evaluate` (a callable doing ra::eval and, for training, ra::backward on a device with
/// this state) as a measuring pass: buffers are taken, GEMM plans made, nothing is launched.
/// Returns the scratch bytes the evaluation takes; give the arena that much memory
/// (state.arena.adopt(region, bytes), e.g. a region of a planned Workspace) and the
/// evaluations `evaluate` stands for, and any smaller, allocate nothing.
template <class F>
std::size_t measure_workspace(EvalState& state, F&& evaluate) {
  state.arena.measure(true);
  try {
    evaluate();
  } catch (...) {
    state.arena.measure(false);
    throw;
  }
  state.arena.measure(false);
  return state.arena.high_water();
}

}  // namespace ra::cuda

// The evaluators, so that including the device is enough to evaluate any node.
#include <ra/cuda/eval_attention.cuh>
#include <ra/cuda/eval_gemm.cuh>
