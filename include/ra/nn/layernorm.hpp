// ra/nn/layernorm.hpp — the LayerNorm layer: y = LayerNorm(x) · weight + bias over the last
// mode, eps 1e-5 (GPT-2's), on the CPU device.
//
//   x, y (N,C) in T; weight, bias (C) in T (bias optional); gradients in G (fp32 master
//   gradients in the model, double in tests). forward() keeps views of x and the weights for
//   backward(); the statistics are recomputed there (ra/cpu/layernorm.hpp).
#pragma once

#include <ra/core/tensor.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/layernorm.hpp>

namespace ra::nn {

/// LayerNorm over (N,C) rows. Holds no parameters, only views of the caller's.
template <class T, class G = float>
class LayerNorm {
 public:
  struct Weights {
    StridedView<const T, 1> weight;  // (C)
    StridedView<const T, 1> bias;    // (C), or a null view: no bias
  };
  struct Grads {
    StridedView<G, 1> weight;  // (C), overwritten
    StridedView<G, 1> bias;    // (C), overwritten; null: not wanted
  };

  /// y = LayerNorm(x) · weight + bias for x, y (N,C). Keeps the views x and w (their data
  /// must stay alive and unchanged until backward()). Throws ra::error on a shape mismatch.
  void forward(StridedView<const T, 2> x, const Weights& w, StridedView<T, 2> y,
               const cpu::device&) {
    cpu::layernorm_forward(x, w.weight, w.bias, y);
    x_ = x;
    w_ = w;
    have_x_ = true;
  }

  /// Given dy (N,C): dx (N,C) (a null view: not wanted) and the parameter gradients
  /// (overwritten). Throws ra::error when no forward ran or on a shape mismatch.
  void backward(StridedView<const T, 2> dy, StridedView<T, 2> dx, const Grads& g,
                const cpu::device&) const {
    require(have_x_, "nn::LayerNorm::backward: no input saved, expected forward() first");
    cpu::layernorm_backward(x_, w_.weight, dy, dx, g.weight, g.bias);
  }

 private:
  StridedView<const T, 2> x_{};
  Weights w_{};
  bool have_x_ = false;
};

}  // namespace ra::nn
