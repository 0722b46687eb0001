// ra/cpu/embedding.hpp — token + position embedding on the host, forward and backward.
//
//   forward:   out[b,t,:] = wte[tok[b,t], :] + wpe[t, :]
//              tokens (B,T) int32, wte (V,C), wpe (Tmax,C) with T <= Tmax, out (B,T,C)
//   backward:  dwte[v,:] += Σ_{(b,t): tok[b,t] = v} dout[b,t,:]
//              dwpe[t,:] += Σ_b dout[b,t,:]
//
// The backward ADDS into dwte and dwpe: with a tied LM head, the head's gradient already
// sits in dwte. Sums are accumulated in double per touched row and added to the outputs once,
// so every output element is rounded once however often its token occurs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cpu/matrix.hpp>

namespace ra::cpu {

namespace detail {

template <View TokV, View WteV, View WpeV>
void check_embedding(const char* where, const TokV& tokens, const WteV& wte, const WpeV& wpe) {
  static_assert(TokV::rank == 2 && WteV::rank == 2 && WpeV::rank == 2,
                "embedding: tokens (B,T), wte (V,C), wpe (Tmax,C)");
  static_assert(std::is_same_v<typename TokV::value_type, std::int32_t>,
                "embedding: tokens are int32");
  require_arg(wpe.extent(1) == wte.extent(1), where, "wpe.extent(1)", wpe.extent(1),
              ra::detail::concat("C = wte.extent(1) = ", wte.extent(1)));
  require_arg(tokens.extent(1) <= wpe.extent(0), where, "sequence length T", tokens.extent(1),
              ra::detail::concat("at most the wpe rows (max_seq) = ", wpe.extent(0)));
  detail::require_data(where, "tokens", tokens);
  require_data(where, "wte", wte);
  require_data(where, "wpe", wpe);
}

template <View TokV>
std::int32_t checked_token(const char* where, const TokV& tokens, index_t b, index_t t,
                           index_t vocab) {
  const std::int32_t v = tokens(b, t);
  if (v < 0 || v >= vocab)
    throw error(ra::detail::concat(where, ": token at (", b, ",", t, ") is ", v,
                                   ", expected a token id in [0, ", vocab, ")"));
  return v;
}

}  // namespace detail

/// out = wte[tokens] + wpe[0:T] for tokens (B,T) int32; wte (V,C), wpe (Tmax,C), out (B,T,C);
/// any element types and strides. Throws ra::error naming the position of a token outside
/// [0, V), or on T > Tmax, a shape mismatch or null data.
template <ViewOfRank<2> TokV, ViewOfRank<2> WteV, ViewOfRank<2> WpeV, ViewOfRank<3> OutV>
void embedding_forward(const TokV& tokens, const WteV& wte, const WpeV& wpe, const OutV& out) {
  constexpr const char* where = "cpu::embedding_forward";
  detail::check_embedding(where, tokens, wte, wpe);
  const index_t B = tokens.extent(0), T_ = tokens.extent(1), C = wte.extent(1);
  require(out.extent(0) == B && out.extent(1) == T_ && out.extent(2) == C, where,
          ": 'out' has shape ", to_string(out.extents()), ", expected (", B, ",", T_, ",", C, ")");
  detail::require_data(where, "out", out);
  using O = typename OutV::value_type;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const index_t v = detail::checked_token(where, tokens, b, t, wte.extent(0));
      for (index_t c = 0; c < C; ++c)
        out(b, t, c) = convert<O>(convert<double>(wte(v, c)) + convert<double>(wpe(t, c)));
    }
}

/// Adds the embedding gradients for dout (B,T,C) into dwte (V,C) and dwpe (Tmax,C) (either
/// may be a null view: not wanted). Throws ra::error like embedding_forward.
template <ViewOfRank<2> TokV, ViewOfRank<3> DOutV, ViewOfRank<2> DWteV, ViewOfRank<2> DWpeV>
void embedding_backward(const TokV& tokens, const DOutV& dout, const DWteV& dwte,
                        const DWpeV& dwpe) {
  constexpr const char* where = "cpu::embedding_backward";
  const index_t B = tokens.extent(0), T_ = tokens.extent(1), C = dout.extent(2);
  require(dout.extent(0) == B && dout.extent(1) == T_, where, ": 'dout' has shape ",
          to_string(dout.extents()), ", expected (", B, ",", T_, ",C)");
  detail::require_data(where, "tokens", tokens);
  detail::require_data(where, "dout", dout);
  if (!absent(dwte)) {
    require_arg(dwte.extent(1) == C, where, "dwte.extent(1)", dwte.extent(1),
                ra::detail::concat("C = ", C));
    // The distinct tokens, sorted: one double accumulator row each.
    std::vector<std::int32_t> ids;
    ids.reserve(static_cast<std::size_t>(B * T_));
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T_; ++t)
        ids.push_back(detail::checked_token(where, tokens, b, t, dwte.extent(0)));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    Matrix acc = Matrix::Zero(static_cast<index_t>(ids.size()), C);  // (U,C)
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T_; ++t) {
        const auto row = std::lower_bound(ids.begin(), ids.end(), tokens(b, t)) - ids.begin();
        for (index_t c = 0; c < C; ++c) acc(row, c) += convert<double>(dout(b, t, c));
      }
    using G = typename DWteV::value_type;
    for (index_t u = 0; u < acc.rows(); ++u)
      for (index_t c = 0; c < C; ++c) {
        G& g = dwte(ids[static_cast<std::size_t>(u)], c);
        g = convert<G>(convert<double>(g) + acc(u, c));
      }
  }
  if (!absent(dwpe)) {
    require(dwpe.extent(0) >= T_ && dwpe.extent(1) == C, where, ": 'dwpe' has shape ",
            to_string(dwpe.extents()), ", expected (Tmax >= ", T_, ",", C, ")");
    using G = typename DWpeV::value_type;
    for (index_t t = 0; t < T_; ++t)
      for (index_t c = 0; c < C; ++c) {
        double s = 0.0;
        for (index_t b = 0; b < B; ++b) s += convert<double>(dout(b, t, c));
        G& g = dwpe(t, c);
        g = convert<G>(convert<double>(g) + s);
      }
  }
}

}  // namespace ra::cpu
