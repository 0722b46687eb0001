// ra/cuda/eval_attention.cuh — attention on the GPU: the evaluators of the attention op
// (FoldedAttention) and of the expression node ra::attend on cuda::device.
//
//   FoldedAttention  forward: the flash kernel (attention_forward; static D and R launch
//                    their instantiation directly), or the unfused path when the device
//                    names one
//   Attend           forward: the fold's operand into the workspace (the fused GEMM), the
//                    flash forward on its folded views, O' written as the heads of the (BT,C)
//                    output; lse (and with restart and device.training, O before the mix)
//                    into the workspace for the backward
//                    backward: the flash backward (row pass, dK/dV, dQ, gate and restart
//                    sums) into the folded views of a (BT,3C) workspace buffer, which goes on
//                    to the operand node; gate and restart gradients into the node's sinks
#pragma once

#include <type_traits>

#include <ra/core/dispatch.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/device.cuh>
#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/unfused.cuh>
#include <ra/expr/attend.hpp>
#include <ra/expr/attention.hpp>
#include <ra/expr/node.hpp>

namespace ra::cuda::detail {

/// The forward of the attention op `node` into o (B,H,T,D) on dev: the unfused path when the
/// device names one, else the flash kernel. lse may be null; o_pre (null data: not wanted).
template <int R, class Q, class K, class V, View O, View OPre>
void run_attention(const FoldedAttention<R, Q, K, V>& node, const O& o, float* lse,
                   const OPre& o_pre, const device& dev) {
  const AttentionParams p =
      o_pre.data() != nullptr ? make_params(node, o, lse, o_pre) : make_params(node, o, lse);
  if (dev.measuring()) return;
  if (dev.unfused != nullptr) {
    dev.unfused->run(p, dev.stream);
  } else {
    launch_forward(node, p, dev.stream);
  }
}

/// The backward for p of the op `node`: compile-time D and R launch the kernels of
/// <T, D, R> directly, as the forward does; otherwise the one runtime dispatch.
template <int R, class Q, class K, class V>
void launch_backward(const FoldedAttention<R, Q, K, V>&, const AttentionBackwardParams& p,
                     cudaStream_t stream) {
  using T = std::remove_cv_t<typename Q::value_type>;
  constexpr int kD = FoldedAttention<R, Q, K, V>::kHeadDim;
  if constexpr (R != kDynamicRank && kD != 0 && R < kD && SupportedHeadDims::contains(kD) &&
                SupportedRanks::contains(R)) {
    if (p.fwd.batch > 0 && p.fwd.seq > 0) {
      validate(p);
      flash_backward_rank<T, kD, R>(p, stream);
      return;
    }
  }
  attention_backward(p, stream);
}

}  // namespace ra::cuda::detail

namespace ra {

/// The attention op on the GPU: O' of the node's views into o (B,H,T,D). Its gradients are
/// cuda::attention_backward's, with explicit outputs (the op has no sinks of its own).
template <int R, class QV, class KV, class VV>
struct Evaluator<FoldedAttention<R, QV, KV, VV>, cuda::device> {
  template <View OV>
  static LeafTape forward(const FoldedAttention<R, QV, KV, VV>& node, const OV& o,
                          const cuda::device& dev) {
    cuda::detail::run_attention(node, o, nullptr, OV{}, dev);
    return {};
  }
};

template <int R, class FoldT>
struct Evaluator<Attend<R, FoldT>, cuda::device> {
  using N = Attend<R, FoldT>;
  using T = typename N::value_type;

  template <View OV>
  static auto forward(const N& node, const OV& out, const cuda::device& dev) {
    constexpr const char* where = "cuda::attend";
    node.validate(where);
    static_assert(OV::rank == 2, "attend: the output is O' as (BT,C) rows");
    require(out.extents() == node.extents(), where, ": output has shape ", to_string(out.extents()),
            ", expected (BT,C) = ", to_string(node.extents()));
    auto [fused, src_tape] = materialise(node.src.src, dev);  // (BT,3C)
    const index_t B = node.src.batch, H = node.src.heads, S = node.src.seq();
    const index_t rows = node.src.rows(), C = node.src.channels();
    AttendTape<StridedView<const T, 2>, decltype(src_tape)> tape{fused, src_tape};
    tape.o = out;
    tape.lse = dev.template take<float>(B * H * S);
    if (node.restart.enabled() && dev.training)
      tape.o_pre = make_view(dev.template take<T>(rows * C), shape(rows, C));  // (BT,C)
    const auto qkv = node.src.views(tape.fused);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    using Heads = decltype(node.src.heads_of(tape.o_pre));
    const Heads o_pre = tape.o_pre.data() != nullptr ? node.src.heads_of(tape.o_pre) : Heads{};
    cuda::detail::run_attention(node.op(qkv.q, qkv.k, qkv.v), node.src.heads_of(out), tape.lse,
                                o_pre, dev);
    return tape;
  }

  template <class Tape, View DOV>
  static void backward(const N& node, const Tape& tape, const DOV& d_out, const cuda::device& dev) {
    constexpr const char* where = "cuda::attend backward";
    require(d_out.extents() == node.extents(), where, ": 'dO'' has shape ",
            to_string(d_out.extents()), ", expected (BT,C) = ", to_string(node.extents()));
    require_arg(dev.unfused == nullptr, where, "device.unfused", "set",
                "null: the backward runs the flash kernels");
    const index_t B = node.src.batch, H = node.src.heads, S = node.src.seq();
    const index_t rows = node.src.rows(), C = node.src.channels();
    const auto d_fused = make_view(dev.template take<T>(rows * 3 * C),
                                   shape(rows, 3 * C));  // (BT,3C) dQf | dKf | dV
    float* scratch = dev.template take<float>(cuda::backward_workspace_floats(B, H, S));
    if (!dev.measuring()) {
      const auto qkv = node.src.views(tape.fused);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
      const auto d_qkv = node.src.views(d_fused);   // 3 x (B,H,T,D) strides (3TC,D,3C,1)
      const auto op = node.op(qkv.q, qkv.k, qkv.v);
      const auto o = node.src.heads_of(tape.o);  // (B,H,T,D) strides (TC,D,C,1)
      const cuda::AttentionParams fwd =
          tape.o_pre.data() != nullptr
              ? cuda::make_params(op, o, tape.lse, node.src.heads_of(tape.o_pre))
              : cuda::make_params(op, o, tape.lse);
      const auto p =
          cuda::make_backward_params(fwd, node.src.heads_of(d_out), d_qkv.q, d_qkv.k, d_qkv.v,
                                     node.grads.w_std, node.grads.w_rec, node.grads.a, scratch);
      cuda::detail::launch_backward(op, p, dev.stream);
    }
    if constexpr (FoldT::kNodeSrc) backward_step(node.src.src, tape.src_tape, d_fused, dev);
  }
};

}  // namespace ra
