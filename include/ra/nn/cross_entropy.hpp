// ra/nn/cross_entropy.hpp — GPT-2's output layer: the tied LM head and the cross-entropy
// loss, on the CPU device.
//
//   logits = h · wteᵀ  over the first `vocab` rows of wte     h (N,C), wte (Vp,C)
//   loss   = mean over positions with target ≠ -1 of −log softmax(logits)[target]
// The softmax, the loss and the gradient are one fused pass (ra/cpu/cross_entropy.hpp);
// backward() runs it again with gradients on, writing dh (N,C) and OVERWRITING dwte (Vp,C)
// (the embedding's backward adds its part afterwards). Recomputing the head costs one
// (N,C)·(C,V) product, which for a byte vocabulary is small next to the blocks, and keeps
// forward() free of training-only work (evaluation calls only forward()).
#pragma once

#include <cstdint>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/cross_entropy.hpp>
#include <ra/cpu/device.hpp>

namespace ra::nn {

/// The tied LM head + mean cross-entropy over a vocabulary of `vocab` real tokens.
template <class T, class G = float>
class LMHeadLoss {
 public:
  /// Throws ra::error unless vocab >= 1.
  explicit LMHeadLoss(index_t vocab) : vocab_(vocab) {
    require_arg(vocab >= 1, "nn::LMHeadLoss", "vocab", vocab, "a positive vocabulary size");
  }

  /// The mean loss of h (N,C) against targets (N) (-1: ignored; all ignored: 0). Keeps the
  /// views for backward(). Throws ra::error on a shape mismatch or a target outside
  /// [-1, vocab).
  double forward(StridedView<const T, 2> h, StridedView<const T, 2> wte,
                 StridedView<const std::int32_t, 1> targets, const cpu::device&) {
    const StridedView<T, 2> no_dh{};
    const StridedView<G, 2> no_dwte{};
    const double loss = cpu::lm_head_cross_entropy(h, wte, vocab_, targets, no_dh, no_dwte);
    h_ = h;
    wte_ = wte;
    targets_ = targets;
    have_input_ = true;
    return loss;
  }

  /// dh (N,C) and dwte (Vp,C) of the last forward's mean loss (both overwritten; null
  /// views: not wanted). Throws ra::error when no forward ran.
  void backward(StridedView<T, 2> dh, StridedView<G, 2> dwte, const cpu::device&) const {
    require(have_input_, "nn::LMHeadLoss::backward: no input saved, expected forward() first");
    cpu::lm_head_cross_entropy(h_, wte_, vocab_, targets_, dh, dwte);
  }

  index_t vocab() const { return vocab_; }

 private:
  index_t vocab_;
  StridedView<const T, 2> h_{}, wte_{};
  StridedView<const std::int32_t, 1> targets_{};
  bool have_input_ = false;
};

}  // namespace ra::nn
