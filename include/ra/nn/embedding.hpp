// ra/nn/embedding.hpp — GPT-2's input layer: token + position embedding, on the CPU device.
//
//   out[b,t,:] = wte[tok[b,t], :] + wpe[t, :]
//   tokens (B,T) int32 in [0, vocab); wte (Vp,C) whose first `vocab` rows are real (the rest
//   pad the vocabulary, see ra/nn/tokenizer.hpp); wpe (Tmax,C) with T <= Tmax; out (B,T,C).
// backward() ADDS into dwte and dwpe (the tied LM head's gradient already sits in dwte).
#pragma once

#include <cstdint>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/device.hpp>
#include <ra/cpu/embedding.hpp>

namespace ra::nn {

/// Token + position embedding of a vocabulary of `vocab` real tokens.
template <class T, class G = float>
class Embedding {
 public:
  struct Weights {
    StridedView<const T, 2> wte;  // (Vp,C)
    StridedView<const T, 2> wpe;  // (Tmax,C)
  };
  struct Grads {
    StridedView<G, 2> wte;  // (Vp,C), added into; a null view: not wanted
    StridedView<G, 2> wpe;  // (Tmax,C), added into
  };

  /// Throws ra::error unless vocab >= 1.
  explicit Embedding(index_t vocab) : vocab_(vocab) {
    require_arg(vocab >= 1, "nn::Embedding", "vocab", vocab, "a positive vocabulary size");
  }

  /// out = wte[tokens] + wpe[0:T]. Keeps the view `tokens` for backward(). Throws ra::error
  /// naming the position of a token outside [0, vocab), or on T > Tmax or a shape mismatch.
  void forward(StridedView<const std::int32_t, 2> tokens, const Weights& w, StridedView<T, 3> out,
               const cpu::device&) {
    require_arg(w.wte.extent(0) >= vocab_, "nn::Embedding::forward", "wte.extent(0)",
                w.wte.extent(0), ra::detail::concat("at least vocab = ", vocab_));
    cpu::embedding_forward(tokens, slice<0>(w.wte, 0, vocab_), w.wpe, out);
    tokens_ = tokens;
    have_tokens_ = true;
  }

  /// Adds the gradients for dout (B,T,C) into g. Throws ra::error when no forward ran.
  void backward(StridedView<const T, 3> dout, const Grads& g, const cpu::device&) const {
    require(have_tokens_, "nn::Embedding::backward: no tokens saved, expected forward() first");
    const StridedView<G, 2> no_grad{};
    cpu::embedding_backward(tokens_, dout,
                            cpu::absent(g.wte) ? no_grad : slice<0>(g.wte, 0, vocab_), g.wpe);
  }

 private:
  index_t vocab_;
  StridedView<const std::int32_t, 2> tokens_{};
  bool have_tokens_ = false;
};

}  // namespace ra::nn
