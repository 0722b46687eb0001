// ra/nn/sampling.hpp — choosing the next token from a batch of logits rows (no backend: the
// logits are host doubles, as GPT2Model::logits and the decoding calls return them).
//
// For one row z (vocab values):
//   greedy       argmax_v z_v (the first of equal maxima)
//   otherwise    z / temperature, keep the top_k largest (0: all; ties broken by the lower
//                id), p = softmax over the kept, then keep the smallest prefix of the kept in
//                descending p whose mass reaches top_p (the nucleus; top_p = 1: all), p
//                renormalised over it; draw v with probability p_v
// The draw is inverse-CDF on a uniform u in [0, 1) made from the top 53 bits of one
// std::mt19937_64 output (the standard fixes that generator's sequence, unlike its
// distributions), so a seed gives the same tokens on every platform. A stop token ends a row:
// once sampled, the row returns the stop token and draws nothing more.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra::nn {

/// How the next token is chosen (see the top of the file).
struct SamplingConfig {
  bool greedy = false;
  double temperature = 1.0;  // > 0 and finite (unused when greedy)
  index_t top_k = 0;         // 0: no top-k filter; otherwise in [1, vocab]
  double top_p = 1.0;        // in (0, 1]
  std::int32_t stop = -1;    // -1: none; otherwise a token id that ends its row
  std::uint64_t seed = 0;

  /// Throws ra::error naming the first field outside its range for this vocabulary size.
  void validate(index_t vocab, const char* where = "nn::SamplingConfig") const {
    require_arg(vocab >= 1, where, "vocab", vocab, "at least 1");
    require_arg(std::isfinite(temperature) && temperature > 0.0, where, "temperature", temperature,
                "a finite value > 0 (use greedy for argmax)");
    require_arg(top_k >= 0 && top_k <= vocab, where, "top_k", top_k,
                ra::detail::concat("0 (off) or a count in [1, vocab = ", vocab, "]"));
    require_arg(top_p > 0.0 && top_p <= 1.0, where, "top_p", top_p, "a value in (0, 1]");
    require_arg(stop >= -1 && stop < vocab, where, "stop", stop,
                ra::detail::concat("-1 (none) or a token id in [0, ", vocab, ")"));
  }
};

/// The index of the largest value (the first of equal maxima).
inline std::int32_t argmax(std::span<const double> z) {
  return static_cast<std::int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
}

/// The probabilities the sampler draws one row from (vocab values, 0 outside the kept set;
/// greedy: 1 at the argmax). Throws ra::error on a bad config or a non-finite logit (named by
/// its index).
inline std::vector<double> sampling_distribution(const SamplingConfig& cfg,
                                                 std::span<const double> z) {
  constexpr const char* where = "nn::sampling_distribution";
  const auto V = static_cast<index_t>(z.size());
  cfg.validate(V, where);
  for (index_t v = 0; v < V; ++v)
    if (!std::isfinite(z[v]))
      throw error(ra::detail::concat(where, ": argument 'logits[", v, "]' is ", z[v],
                                     ", expected a finite value"));
  std::vector<double> p(z.size(), 0.0);
  if (cfg.greedy) {
    p[static_cast<std::size_t>(argmax(z))] = 1.0;
    return p;
  }
  std::vector<std::int32_t> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int32_t a, std::int32_t b) { return z[a] > z[b]; });
  const index_t k = cfg.top_k > 0 ? cfg.top_k : V;
  const double m = z[order[0]] / cfg.temperature;
  double sum = 0.0;
  for (index_t i = 0; i < k; ++i) {
    const auto v = static_cast<std::size_t>(order[i]);
    p[v] = std::exp(z[v] / cfg.temperature - m);
    sum += p[v];
  }
  // The nucleus: the shortest prefix (in descending p) whose mass reaches top_p.
  index_t keep = k;
  if (cfg.top_p < 1.0) {
    double mass = 0.0;
    for (index_t i = 0; i < k; ++i) {
      mass += p[static_cast<std::size_t>(order[i])] / sum;
      if (mass >= cfg.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0.0;
  for (index_t i = 0; i < keep; ++i) kept += p[static_cast<std::size_t>(order[i])];
  for (index_t i = 0; i < V; ++i) {
    const auto v = static_cast<std::size_t>(order[i]);
    p[v] = i < keep ? p[v] / kept : 0.0;
  }
  return p;
}

/// Samples the next token of each row of a batch, row after row from one seeded generator,
/// and remembers which rows have produced the stop token.
class Sampler {
 public:
  /// Throws ra::error naming a bad field of cfg (see SamplingConfig::validate) or a batch < 1.
  Sampler(const SamplingConfig& cfg, index_t batch, index_t vocab)
      : cfg_(cfg), vocab_(vocab), rng_(cfg.seed), done_(static_cast<std::size_t>(batch), false) {
    cfg_.validate(vocab, "nn::Sampler");
    require_arg(batch >= 1, "nn::Sampler", "batch", batch, "at least 1 row");
  }

  const SamplingConfig& config() const { return cfg_; }
  index_t batch() const { return static_cast<index_t>(done_.size()); }
  /// Whether row b has produced the stop token.
  bool finished(index_t b) const { return done_.at(static_cast<std::size_t>(b)); }
  bool all_finished() const {
    return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; });
  }

  /// The next token of each row from logits (batch·vocab, row-major); a finished row gives the
  /// stop token and draws nothing. Throws ra::error on a size mismatch or a non-finite logit
  /// (named by row and index).
  std::vector<std::int32_t> sample(std::span<const double> logits) {
    constexpr const char* where = "nn::Sampler::sample";
    require_arg(static_cast<index_t>(logits.size()) == batch() * vocab_, where, "logits.size()",
                logits.size(), ra::detail::concat("batch · vocab = ", batch(), " · ", vocab_));
    std::vector<std::int32_t> out(done_.size());
    for (index_t b = 0; b < batch(); ++b) {
      const auto row =
          logits.subspan(static_cast<std::size_t>(b * vocab_), static_cast<std::size_t>(vocab_));
      for (index_t v = 0; v < vocab_; ++v)
        if (!std::isfinite(row[v]))
          throw error(ra::detail::concat(where, ": argument 'logits[", b, "][", v, "]' is ", row[v],
                                         ", expected a finite value"));
      if (done_[b]) {
        out[b] = cfg_.stop;
        continue;
      }
      out[b] = draw(row);
      if (out[b] == cfg_.stop) done_[b] = true;
    }
    return out;
  }

 private:
  std::int32_t draw(std::span<const double> row) {
    if (cfg_.greedy) return argmax(row);
    const auto p = sampling_distribution(cfg_, row);
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1)
    double c = 0.0;
    std::int32_t last = -1;
    for (std::size_t v = 0; v < p.size(); ++v) {
      if (p[v] <= 0.0) continue;
      c += p[v];
      last = static_cast<std::int32_t>(v);
      if (u < c) return last;
    }
    return last;  // u above the rounded total: the last kept token
  }

  SamplingConfig cfg_;
  index_t vocab_;
  std::mt19937_64 rng_;
  std::vector<bool> done_;
};

}  // namespace ra::nn
