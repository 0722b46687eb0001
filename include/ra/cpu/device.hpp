// ra/cpu/device.hpp — the host device: ra::eval(out, expr, ra::cpu::device{&workspace}).
//
// The device only says where intermediates live: a cpu::Workspace (an ra::Arena of host
// memory) that the nodes of an expression take their intermediate results from. Each node
// kind has its one evaluator beside its kernel:
//   Gemm             ra/cpu/gemm.hpp        Eigen GEMM in double, bias added, rounded to Y
//   FoldedAttention  ra/cpu/attention.hpp   the attention op on given views
//   Attend           ra/cpu/attention.hpp   attention over a fold of a node's result
// A device without a workspace evaluates nodes whose operands are views (a GEMM of views, the
// attention op); a nested expression needs one (the error says so).
#pragma once

#include <cstdint>

#include <ra/core/arena.hpp>
#include <ra/core/error.hpp>
#include <ra/expr/node.hpp>

namespace ra::cpu {

/// Host scratch memory for evaluating expressions.
using Workspace = Arena<HostChunk>;

/// The CPU device. Every evaluation computes in double and rounds each node's result to its
/// element type, as the GPU stores it.
struct device {
  Workspace* workspace = nullptr;  ///< intermediates of nested expressions (null: none)

  /// Starts an evaluation pass (ra::eval calls it).
  void begin() const {
    if (workspace != nullptr) workspace->begin();
  }
  std::uint64_t pass() const { return workspace != nullptr ? workspace->pass() : 0; }
  bool measuring() const { return false; }

  /// n elements of T from the workspace, valid until the next ra::eval.
  /// Throws ra::error when the device has no workspace.
  template <class T>
  T* take(index_t n) const {
    require(workspace != nullptr,
            "cpu::device: this expression needs intermediate buffers, expected a device with a "
            "workspace (ra::cpu::device{&workspace}, workspace a ra::cpu::Workspace)");
    return workspace->take<T>(n);
  }
};

}  // namespace ra::cpu

// The evaluators, so that including the device is enough to evaluate any node.
#include <ra/cpu/attention.hpp>
#include <ra/cpu/gemm.hpp>
