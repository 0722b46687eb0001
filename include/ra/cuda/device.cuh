// ra/cuda/device.cuh — the GPU device: ra::eval(out, node, ra::cuda::device{stream}).
//
// Evaluates, on `stream`, each kind of lazy node whose views address device memory:
//   Gemm                       into y (M,N)        cuBLASLt (GemmPlan), no workspace
//   FoldedAttention            into o (B,H,T,D)    attention_forward (the flash kernel)
//   AttentionBlockPipeline<T>  into y (B,T,C) or (BT,C): x ─gemm─▶ p.fused ─attention─▶
//                              p.o_heads ─gemm─▶ y
// This is the convenient path, symmetric with ra::cpu::device. Each GEMM builds a GemmPlan
// on the spot (host-side cuBLASLt descriptors and a heuristic query per call) and runs it
// without a workspace, so it allocates no device memory but may pick a slower algorithm;
// ra::cuda::AttentionBlock is the planned, zero-allocation path.
#pragma once

#include <type_traits>
#include <utility>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gemm.hpp>

namespace ra::cuda {

namespace detail {

template <class T>
inline constexpr bool is_gemm_v = false;
template <class A, class W, class B>
inline constexpr bool is_gemm_v<Gemm<A, W, B>> = true;

template <class T>
inline constexpr bool is_block_pipeline_v = false;
template <class T>
inline constexpr bool is_block_pipeline_v<AttentionBlockPipeline<T>> = true;

template <class>
inline constexpr bool always_false_v = false;

}  // namespace detail

/// The CUDA device: a stream and the cuBLAS context to use (null: default_context()).
/// Every evaluation only enqueues work on `stream`; nothing synchronises.
struct device {
  cudaStream_t stream = nullptr;
  Context* ctx = nullptr;
  bool tf32 = false;  ///< fp32 GEMMs may use TF32 tensor cores

  /// Evaluates `node` into `out` (see the top of this header for the accepted nodes).
  /// Throws what the node's evaluator throws: ra::error on bad shapes, strides or pointers,
  /// ra::unsupported outside the supported (D, R, dtype), ra::cuda_error when CUDA fails.
  template <View Out, class Node>
  void eval(Out&& out, const Node& node) const {
    using N = std::remove_cvref_t<Node>;
    if constexpr (detail::is_gemm_v<N>) {
      eval_gemm(node, out);
    } else if constexpr (is_folded_attention_v<N>) {
      attention_forward(node, out, nullptr, stream);
    } else if constexpr (detail::is_block_pipeline_v<N>) {
      eval_pipeline(node, out);
    } else {
      static_assert(detail::always_false_v<N>, "ra::cuda::device cannot evaluate this node");
    }
  }

 private:
  Context& context() const { return ctx != nullptr ? *ctx : default_context(); }

  template <class AV, class WV, class BiasV, View YV>
  void eval_gemm(const Gemm<AV, WV, BiasV>& node, const YV& y) const {
    const GemmPlan plan(context(), gemm_shape(node, y, tf32), nullptr, 0);
    plan.run(node, y, stream);
  }

  // The pipeline's GEMMs always carry a bias view; the flag says whether the block has one.
  template <class AV, class WV, class BiasV, View YV>
  void eval_gemm(const Gemm<AV, WV, BiasV>& node, const YV& y, bool use_bias) const {
    if (use_bias) {
      eval_gemm(node, y);
    } else {
      eval_gemm(Gemm<AV, WV>{node.a, node.w}, y);
    }
  }

  template <class T, View YV>
  void eval_pipeline(const AttentionBlockPipeline<T>& p, const YV& y) const {
    static_assert(YV::rank == 2 || YV::rank == 3, "attention block: y is (B,T,C) or (BT,C)");
    const index_t B = p.o_heads.extent(0), T_ = p.o_heads.extent(2);
    eval_gemm(p.project, p.fused, p.bias);                    // x (BT,C) -> fused (BT,3C)
    attention_forward(p.attend, p.o_heads, nullptr, stream);  // -> o (B,H,T,D)
    if constexpr (YV::rank == 3) {
      require(y.extent(0) == B && y.extent(1) == T_, "cuda::device: 'y' has shape ",
              to_string(y.extents()), ", expected (", B, ",", T_, ",C)");
      eval_gemm(p.output, view(y, shape(B * T_, y.extent(2))), p.bias);  // (BT,C)
    } else {
      eval_gemm(p.output, y, p.bias);
    }
  }
};

}  // namespace ra::cuda
