// ra/cpu/cross_entropy.hpp — fused softmax + cross-entropy + gradient on the host, and the
// tied LM head in front of it, in double.
//
//   softmax_cross_entropy:  logits z (N,Vp), of which the first V columns are real (the rest
//       pad the vocabulary to a friendly size and are ignored), targets (N) int32 with -1 =
//       ignore. With n = #{i : target_i ≠ -1}:
//         loss   = (1/n) Σ_{i: t_i ≠ -1} (lse_i − z_{i,t_i}),   lse_i = log Σ_{j<V} exp z_ij
//         dz_ij  = (softmax_ij − [j = t_i]) / n   for j < V and t_i ≠ -1;  0 otherwise
//   lm_head_cross_entropy:  h (N,C), wte (Vp,C):  z = h · wteᵀ (the tied head), then the
//       above; dh = dz · wte (N,C) and dwte = dzᵀ · h (Vp,C, padded rows 0). The logits are
//       made and consumed in chunks of rows, so (N,Vp) is never held at once.
// A batch whose targets are all -1 has loss 0 and zero gradients.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
#include <ra/cpu/matrix.hpp>

namespace ra::cpu {

/// The target value that marks a position without loss.
inline constexpr std::int32_t kIgnoreIndex = -1;

namespace detail {

// Number of rows whose target is not kIgnoreIndex; throws on a target outside [-1, V).
template <View TV>
index_t count_targets(const char* where, const TV& targets, index_t vocab) {
  static_assert(TV::rank == 1 && std::is_same_v<typename TV::value_type, std::int32_t>,
                "cross entropy: targets are (N) int32");
  require_data(where, "targets", targets);
  index_t n = 0;
  for (index_t i = 0; i < targets.extent(0); ++i) {
    const std::int32_t t = targets(i);
    if (t == kIgnoreIndex) continue;
    if (t < 0 || t >= vocab)
      throw error(ra::detail::concat(where, ": target ", i, " is ", t,
                                     ", expected a token id in [0, ", vocab, ") or -1 (ignore)"));
    ++n;
  }
  return n;
}

// Turns the rows of z (rows x Vp logits; columns >= V ignored) into dz in place and
// returns Σ over counted rows of (lse − z_target). dz is scaled by inv_n; padded columns and
// ignored rows become 0.
template <View TV>
double softmax_xent_rows(Matrix& z, index_t vocab, const TV& targets, index_t row0, double inv_n,
                         float* losses) {
  double sum = 0.0;
  for (index_t r = 0; r < z.rows(); ++r) {
    const std::int32_t t = targets(row0 + r);
    auto row = z.row(r);
    if (t == kIgnoreIndex) {
      row.setZero();
      if (losses != nullptr) losses[row0 + r] = 0.f;
      continue;
    }
    auto real = row.head(vocab);
    const double m = real.maxCoeff();
    const double z_t = real(t);
    real = (real.array() - m).exp();
    const double l = real.sum();
    const double loss = m + std::log(l) - z_t;
    sum += loss;
    if (losses != nullptr) losses[row0 + r] = static_cast<float>(loss);
    real *= inv_n / l;
    real(t) -= inv_n;
    row.tail(row.size() - vocab).setZero();
  }
  return sum;
}

}  // namespace detail

/// Mean cross-entropy of logits (N,Vp) over the first `vocab` columns against targets (N)
/// (-1: ignored), fused with the softmax and its gradient: dlogits (N,Vp) (a null view: not
/// wanted) is overwritten with d(mean loss)/d logits. losses, when not null, receives the N
/// per-row losses (0 for ignored rows). Throws ra::error on a shape mismatch, vocab outside
/// [1, Vp], a target outside [-1, vocab) or null data.
template <ViewOfRank<2> LV, ViewOfRank<1> TV, ViewOfRank<2> DLV>
double softmax_cross_entropy(const LV& logits, index_t vocab, const TV& targets, const DLV& dlogits,
                             float* losses = nullptr) {
  constexpr const char* where = "cpu::softmax_cross_entropy";
  const index_t N = logits.extent(0), Vp = logits.extent(1);
  require_arg(vocab >= 1 && vocab <= Vp, where, "vocab", vocab,
              ra::detail::concat("in [1, logits.extent(1) = ", Vp, "]"));
  require_arg(targets.extent(0) == N, where, "targets.extent(0)", targets.extent(0),
              ra::detail::concat("N = logits.extent(0) = ", N));
  detail::require_data(where, "logits", logits);
  const index_t n = detail::count_targets(where, targets, vocab);
  Matrix z = load(logits);  // (N,Vp)
  const double sum = detail::softmax_xent_rows(z, vocab, targets, 0, n ? 1.0 / n : 0.0, losses);
  if (!absent(dlogits)) {
    require(dlogits.extent(0) == N && dlogits.extent(1) == Vp, where, ": 'dlogits' has shape ",
            to_string(dlogits.extents()), ", expected (", N, ",", Vp, ")");
    store(dlogits, z);
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

/// The tied LM head and its loss: logits = h (N,C) · wte (Vp,C)ᵀ, then
/// softmax_cross_entropy over the first `vocab` columns. dh (N,C) and dwte (Vp,C) are
/// overwritten with the gradients of the mean loss (null views: not wanted; dwte rows >=
/// vocab are 0). Rows are processed `chunk_rows` at a time. Returns the mean loss.
/// Throws ra::error like softmax_cross_entropy, or on a shape mismatch of h, wte, dh, dwte.
template <ViewOfRank<2> HV, ViewOfRank<2> WV, ViewOfRank<1> TV, ViewOfRank<2> DHV,
          ViewOfRank<2> DWV>
double lm_head_cross_entropy(const HV& h, const WV& wte, index_t vocab, const TV& targets,
                             const DHV& dh, const DWV& dwte, float* losses = nullptr,
                             index_t chunk_rows = 256) {
  constexpr const char* where = "cpu::lm_head_cross_entropy";
  const index_t N = h.extent(0), C = h.extent(1), Vp = wte.extent(0);
  require_arg(wte.extent(1) == C, where, "wte.extent(1)", wte.extent(1),
              ra::detail::concat("C = h.extent(1) = ", C));
  require_arg(vocab >= 1 && vocab <= Vp, where, "vocab", vocab,
              ra::detail::concat("in [1, wte.extent(0) = ", Vp, "]"));
  require_arg(targets.extent(0) == N, where, "targets.extent(0)", targets.extent(0),
              ra::detail::concat("N = h.extent(0) = ", N));
  require_arg(chunk_rows > 0, where, "chunk_rows", chunk_rows, "a positive row count");
  detail::require_data(where, "h", h);
  detail::require_data(where, "wte", wte);
  if (!absent(dh))
    require(dh.extent(0) == N && dh.extent(1) == C, where, ": 'dh' has shape ",
            to_string(dh.extents()), ", expected (", N, ",", C, ")");
  if (!absent(dwte))
    require(dwte.extent(0) == Vp && dwte.extent(1) == C, where, ": 'dwte' has shape ",
            to_string(dwte.extents()), ", expected (", Vp, ",", C, ")");
  const index_t n = detail::count_targets(where, targets, vocab);
  const double inv_n = n ? 1.0 / n : 0.0;

  const Matrix w = load(slice<0>(wte, 0, vocab));  // (V,C): padded rows take no part
  Matrix dw = Matrix::Zero(absent(dwte) ? 0 : vocab, C);
  double sum = 0.0;
  for (index_t r0 = 0; r0 < N; r0 += chunk_rows) {
    const index_t rows = std::min(chunk_rows, N - r0);
    const Matrix hc = load(slice<0>(h, r0, r0 + rows));  // (rows,C)
    Matrix z = hc * w.transpose();                       // (rows,V) logits, then dz
    sum += detail::softmax_xent_rows(z, vocab, targets, r0, inv_n, losses);
    if (!absent(dh)) store(slice<0>(dh, r0, r0 + rows), z * w);
    if (!absent(dwte)) dw.noalias() += z.transpose() * hc;
  }
  if (!absent(dwte)) {
    store(slice<0>(dwte, 0, vocab), dw);
    using G = typename DWV::value_type;
    for (index_t v = vocab; v < Vp; ++v)
      for (index_t c = 0; c < C; ++c) dwte(v, c) = convert<G>(0.0);
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace ra::cpu
