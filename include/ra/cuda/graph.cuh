// ra/cuda/graph.cuh — capture the work a callable enqueues on a stream as a CUDA graph, and
// replay it with one launch.
//
//   auto g = Graph::capture(stream, [&](cudaStream_t s) { block.forward(x, y, B, T, s); });
//   g.replay(stream);   // the same kernels, same arguments, one cudaGraphLaunch
//
// Capture records launches without running them, so the callable must only enqueue work on
// the stream (no synchronisation, no allocation: under capture both fail with an error,
// which is how a graph proves a forward is allocation-free). Kernel arguments are frozen at
// capture; values a kernel reads from device memory (gate parameters, inputs) are read at
// each replay.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>

namespace ra::cuda {

/// An instantiated CUDA graph. Move-only; destroys the graph and its executable instance.
class Graph {
 public:
  Graph() = default;

  /// Calls f(stream) (or f() when it takes no stream) with `stream` in capture mode and
  /// instantiates what it enqueued. If f throws, the capture is ended and discarded, the
  /// stream is usable again, and the exception propagates.
  /// Throws ra::error for the legacy default stream (it cannot be captured), ra::cuda_error
  /// when capture or instantiation fails (for example: f synchronised or allocated).
  template <class F>
  static Graph capture(cudaStream_t stream, F&& f,
                       cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal) {
    require_arg(stream != nullptr && stream != cudaStreamLegacy, "Graph::capture", "stream",
                "the legacy default stream",
                "a created stream (the default stream cannot be "
                "captured)");
    RA_CUDA_CHECK(cudaStreamBeginCapture(stream, mode));
    try {
      if constexpr (std::is_invocable_v<F&, cudaStream_t>) {
        f(stream);
      } else {
        f();
      }
    } catch (...) {
      cudaGraph_t partial = nullptr;
      (void)cudaStreamEndCapture(stream, &partial);
      if (partial != nullptr) (void)cudaGraphDestroy(partial);
      // Clears the (non-sticky) error a call refused under capture left behind, so the next
      // checked call does not report it a second time.
      (void)cudaGetLastError();
      throw;
    }
    Graph g;
    RA_CUDA_CHECK(cudaStreamEndCapture(stream, &g.graph_));
    RA_CUDA_CHECK(cudaGraphInstantiate(&g.exec_, g.graph_, 0));
    return g;
  }

  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&& o) noexcept
      : graph_(std::exchange(o.graph_, nullptr)), exec_(std::exchange(o.exec_, nullptr)) {}
  Graph& operator=(Graph&& o) noexcept {
    if (this != &o) {
      destroy();
      graph_ = std::exchange(o.graph_, nullptr);
      exec_ = std::exchange(o.exec_, nullptr);
    }
    return *this;
  }
  ~Graph() { destroy(); }

  bool empty() const { return exec_ == nullptr; }

  /// Launches the captured work on `stream` (any stream, the legacy default included).
  /// Throws ra::error on an empty graph, ra::cuda_error when the launch fails.
  void replay(cudaStream_t stream) const {
    require(exec_ != nullptr,
            "Graph::replay: the graph is empty (default-constructed or "
            "moved from), expected a captured graph");
    RA_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
  }

  /// Uploads the executable graph to the device ahead of the first replay, so that replay's
  /// time is not inflated by the one-off upload.
  void upload(cudaStream_t stream) const {
    require(exec_ != nullptr, "Graph::upload: the graph is empty, expected a captured graph");
    RA_CUDA_CHECK(cudaGraphUpload(exec_, stream));
  }

  /// Number of nodes (kernels, memsets, ...) captured.
  std::size_t node_count() const {
    if (graph_ == nullptr) return 0;
    std::size_t n = 0;
    RA_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &n));
    return n;
  }

 private:
  void destroy() noexcept {
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) (void)cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
  }

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace ra::cuda
