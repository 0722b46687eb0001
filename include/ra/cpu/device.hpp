// ra/cpu/device.hpp — the host device: ra::eval(out, node, ra::cpu::device{}).
//
// Evaluates, in double with Eigen's GEMM, each kind of lazy node:
//   Gemm                       into y (M,N)
//   FoldedAttention            into o (B,H,T,D), any strides
//   AttentionBlockPipeline<T>  into y (B,T,C) or (BT,C): x ─gemm─▶ p.fused ─attention─▶
//                              p.o_heads ─gemm─▶ y, rounding each stage to T as the GPU does
#pragma once

#include <type_traits>

#include <ra/core/error.hpp>
#include <ra/core/layout.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/attention.hpp>
#include <ra/cpu/gemm.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/block.hpp>

namespace ra::cpu {

template <class T>
inline constexpr bool is_attention_block_pipeline_v = false;
template <class T>
inline constexpr bool is_attention_block_pipeline_v<AttentionBlockPipeline<T>> = true;

namespace detail {

template <class T, View YV>
void pipeline_forward(const AttentionBlockPipeline<T>& p, const YV& y) {
  static_assert(YV::rank == 2 || YV::rank == 3, "attention block: y is (B,T,C) or (BT,C)");
  const index_t B = p.o_heads.extent(0), T_ = p.o_heads.extent(2);
  if constexpr (YV::rank == 3)
    require(y.extent(0) == B && y.extent(1) == T_, "cpu::device: 'y' has shape ",
            to_string(y.extents()), ", expected (", B, ",", T_, ",C)");
  gemm_forward(p.project, p.fused, p.bias);  // x (BT,C) -> fused (BT,3C)
  attention_forward(p.attend, p.o_heads);    // Qf, Kf, V -> o (B,H,T,D) strides (TC,D,C,1)
  if constexpr (YV::rank == 3) {
    gemm_forward(p.output, view(y, shape(B * T_, y.extent(2))), p.bias);  // (BT,C)
  } else {
    gemm_forward(p.output, y, p.bias);
  }
}

template <class>
inline constexpr bool always_false_v = false;

}  // namespace detail

/// The CPU device. Stateless; every evaluation computes in double and rounds its output to
/// the output view's element type. Throws what the node's evaluator throws (ra::error on bad
/// shapes or null data).
struct device {
  /// Evaluates `node` into `y` (see the top of this header for the accepted nodes).
  template <View Y, class Node>
  void eval(Y&& y, const Node& node) const {
    using N = std::remove_cvref_t<Node>;
    if constexpr (is_gemm_v<N>) {
      gemm_forward(node, y);
    } else if constexpr (is_folded_attention_v<N>) {
      attention_forward(node, y);
    } else if constexpr (is_attention_block_pipeline_v<N>) {
      detail::pipeline_forward(node, y);
    } else {
      static_assert(detail::always_false_v<N>, "ra::cpu::device cannot evaluate this node");
    }
  }
};

}  // namespace ra::cpu
