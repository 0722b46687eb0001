// ra/nn/mlp.hpp — GPT-2's MLP: Linear C→4C, tanh-GELU, Linear 4C→C, on the CPU device.
//
//   h = x · W_fcᵀ + b_fc        x (N,C), W_fc (4C,C), b_fc (4C)       h (N,4C)
//   a = gelu_tanh(h)                                                  a (N,4C)
//   y = a · W_projᵀ + b_proj    W_proj (C,4C), b_proj (C)             y (N,C)
// Backward: da = dy · W_proj, dW_proj = dyᵀ · a, db_proj = Σ dy; dh = da ⊙ gelu'(h);
//           dx = dh · W_fc, dW_fc = dhᵀ · x, db_fc = Σ dh.
// Activations h, a (and da) are stored in T, as on the GPU; each stage computes in double
// (the GEMMs are ra::gemm nodes evaluated on ra::cpu::device). Gradients are written in G.
#pragma once

#include <cstddef>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/gelu.hpp>
#include <ra/cpu/gemm.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gemm.hpp>

namespace ra::nn {

/// The MLP of a GPT-2 block. Holds views of the caller's parameters and owns its activations.
template <class T, class G = float>
class MLP {
 public:
  struct Weights {
    StridedView<const T, 2> w_fc;    // (4C,C)
    StridedView<const T, 1> b_fc;    // (4C), or a null view: no bias
    StridedView<const T, 2> w_proj;  // (C,4C)
    StridedView<const T, 1> b_proj;  // (C), or null
  };
  struct Grads {
    StridedView<G, 2> w_fc;  // every gradient is overwritten; a null view: not wanted
    StridedView<G, 1> b_fc;
    StridedView<G, 2> w_proj;
    StridedView<G, 1> b_proj;
  };

  /// y = MLP(x) for x, y (N,C). Keeps the views x and w for backward(). Throws ra::error on
  /// a shape mismatch.
  void forward(StridedView<const T, 2> x, const Weights& w, StridedView<T, 2> y,
               const cpu::device& dev) {
    constexpr const char* where = "nn::MLP::forward";
    const index_t N = x.extent(0), C = x.extent(1), F = w.w_fc.extent(0);
    require(w.w_fc.extent(1) == C && w.w_proj.extent(0) == C && w.w_proj.extent(1) == F, where,
            ": w_fc has shape ", to_string(w.w_fc.extents()), " and w_proj ",
            to_string(w.w_proj.extents()), ", expected (F,", C, ") and (", C, ",F)");
    auto h = buffer(h_, N, F);  // (N,4C)
    auto a = buffer(a_, N, F);  // (N,4C)
    linear(x, w.w_fc, w.b_fc, h, dev);
    cpu::gelu_forward(h, a);
    linear(StridedView<const T, 2>(a), w.w_proj, w.b_proj, y, dev);
    x_ = x;
    w_ = w;
    have_x_ = true;
  }

  /// Given dy (N,C): dx (N,C) (a null view: not wanted) and the parameter gradients.
  /// Throws ra::error when no forward ran or on a shape mismatch.
  void backward(StridedView<const T, 2> dy, StridedView<T, 2> dx, const Grads& g,
                const cpu::device&) {
    require(have_x_, "nn::MLP::backward: no input saved, expected forward() first");
    const index_t N = x_.extent(0), F = w_.w_fc.extent(0);
    auto h = buffer(h_, N, F);    // (N,4C)
    auto a = buffer(a_, N, F);    // (N,4C)
    auto da = buffer(da_, N, F);  // (N,4C), becomes dh in place
    const StridedView<G, 1> no_bias{};
    cpu::gemm_backward(a, w_.w_proj, dy, da, g.w_proj, cpu::absent(w_.b_proj) ? no_bias : g.b_proj);
    cpu::gelu_backward(h, da, da);
    cpu::gemm_backward(x_, w_.w_fc, da, dx, g.w_fc, cpu::absent(w_.b_fc) ? no_bias : g.b_fc);
  }

 private:
  static StridedView<T, 2> buffer(std::vector<T>& buf, index_t N, index_t F) {
    const auto n = static_cast<std::size_t>(N * F);
    if (buf.size() < n) buf.resize(n);
    return make_view(buf.data(), shape(N, F));  // (N,F) strides (F,1)
  }

  static void linear(StridedView<const T, 2> x, StridedView<const T, 2> w,
                     StridedView<const T, 1> b, StridedView<T, 2> y, const cpu::device& dev) {
    if (cpu::absent(b)) {
      ra::eval(y, ra::gemm(x, w), dev);
    } else {
      ra::eval(y, ra::gemm(x, w, b), dev);
    }
  }

  std::vector<T> h_, a_, da_;
  StridedView<const T, 2> x_{};
  Weights w_{};
  bool have_x_ = false;
};

}  // namespace ra::nn
