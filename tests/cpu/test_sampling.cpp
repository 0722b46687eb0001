// tests/cpu/test_sampling.cpp — next-token sampling (ra/nn/sampling.hpp) on fresh seeded logits:
// greedy is the argmax; top-k and top-p never leave the k largest / the smallest nucleus;
// temperature -> 0 tends to greedy; the frequencies of a large seeded sample match the
// filtered softmax within 6 standard deviations per token (a false failure has probability
// below 1e-8 per token); the same seed gives the same tokens; the stop token ends its row;
// bad arguments are named.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <ra/nn/sampling.hpp>

#include "seed.hpp"

namespace {

using namespace ra;
using nn::SamplingConfig;

std::vector<double> random_logits(std::mt19937_64& rng, index_t n, double scale = 2.0) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> z(static_cast<std::size_t>(n));
  for (double& x : z) x = normal(rng);
  return z;
}

std::vector<double> softmax(const std::vector<double>& z, double temperature) {
  const double m = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double s = 0.0;
  for (std::size_t i = 0; i < z.size(); ++i) s += p[i] = std::exp((z[i] - m) / temperature);
  for (double& x : p) x /= s;
  return p;
}

// The ids in descending logit order (ties: the lower id first).
std::vector<std::int32_t> descending(const std::vector<double>& z) {
  std::vector<std::int32_t> o(z.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](auto a, auto b) { return z[a] > z[b]; });
  return o;
}

// n draws of one row's next token.
std::vector<std::int32_t> draws(const SamplingConfig& cfg, const std::vector<double>& z, int n) {
  nn::Sampler s(cfg, 1, static_cast<index_t>(z.size()));
  std::vector<std::int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.sample(z)[0]);
  return out;
}

}  // namespace

TEST_CASE("sampling: greedy is the argmax of each row, the first of equal maxima", "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  constexpr index_t B = 5, V = 37;
  std::vector<double> z;
  for (index_t b = 0; b < B; ++b) {
    const auto row = random_logits(rng, V);
    z.insert(z.end(), row.begin(), row.end());
  }
  z[3 * V + 4] = z[3 * V + 20] = 100.0;  // a tie in row 3
  nn::Sampler s({.greedy = true}, B, V);
  const auto t = s.sample(z);
  for (index_t b = 0; b < B; ++b) {
    const auto first = z.begin() + b * V;
    CHECK(t[b] == std::max_element(first, first + V) - first);
  }
  CHECK(t[3] == 4);
}

TEST_CASE("sampling: top-k never samples outside the k largest logits", "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  constexpr index_t V = 50;
  for (index_t k : {1, 3, 10, 50}) {
    const auto z = random_logits(rng, V);
    const auto order = descending(z);
    const std::vector<std::int32_t> top(order.begin(), order.begin() + k);
    const SamplingConfig cfg{.temperature = 1.5, .top_k = k, .seed = rng()};
    const auto p = nn::sampling_distribution(cfg, z);
    for (index_t v = 0; v < V; ++v) {
      const bool in_top = std::find(top.begin(), top.end(), v) != top.end();
      INFO("k=" << k << " token " << v);
      CHECK((p[v] > 0.0) == in_top);
    }
    std::vector<int> seen(V, 0);
    for (auto t : draws(cfg, z, 3000)) ++seen[t];
    for (index_t v = 0; v < V; ++v)
      if (seen[v] > 0) CHECK(std::find(top.begin(), top.end(), v) != top.end());
    CHECK(seen[order[0]] > 0);
  }
}

TEST_CASE("sampling: top-p never samples outside the smallest nucleus", "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  constexpr index_t V = 40;
  for (double top_p : {0.05, 0.3, 0.6, 0.9, 0.999}) {
    const auto z = random_logits(rng, V);
    const auto p = softmax(z, 1.0);
    const auto order = descending(z);
    std::size_t n = 0;  // the smallest prefix reaching top_p
    double mass = 0.0;
    while (mass < top_p) mass += p[order[n++]];
    INFO("top_p=" << top_p << " nucleus " << n);
    CHECK(mass - p[order[n - 1]] < top_p);  // one fewer falls short: it is the smallest
    const SamplingConfig cfg{.top_p = top_p, .seed = rng()};
    const auto q = nn::sampling_distribution(cfg, z);
    for (std::size_t i = 0; i < order.size(); ++i) {
      CHECK((q[order[i]] > 0.0) == (i < n));
      if (i < n) CHECK(q[order[i]] == Approx(p[order[i]] / mass).epsilon(1e-12));
    }
    for (auto t : draws(cfg, z, 2000)) {
      const auto pos = std::find(order.begin(), order.end(), t) - order.begin();
      CHECK(static_cast<std::size_t>(pos) < n);
    }
  }
}

TEST_CASE("sampling: temperature -> 0 tends to greedy", "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  auto z = random_logits(rng, 30);
  const auto top = nn::argmax(z);
  z[top] += 0.5;  // a margin, so the limit is reached at a finite temperature
  double last = 0.0;
  for (double t : {2.0, 1.0, 0.3, 0.1, 0.03, 0.01}) {
    const double p_top = nn::sampling_distribution({.temperature = t}, z)[top];
    INFO("temperature " << t);
    CHECK(p_top >= last);
    last = p_top;
  }
  CHECK(nn::sampling_distribution({.temperature = 2.0}, z)[top] < 0.9);
  CHECK(1.0 - last < 1e-15);
  const auto t = draws({.temperature = 0.01, .seed = rng()}, z, 200);
  CHECK(std::all_of(t.begin(), t.end(), [&](auto x) { return x == top; }));
}

TEST_CASE("sampling: frequencies of a large seeded sample match the filtered softmax",
          "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  constexpr int N = 200000;
  constexpr index_t V = 12;
  for (const SamplingConfig base :
       {SamplingConfig{.temperature = 0.7}, SamplingConfig{.temperature = 1.3, .top_k = 6},
        SamplingConfig{.top_k = 9, .top_p = 0.8}}) {
    auto cfg = base;
    cfg.seed = rng();
    const auto z = random_logits(rng, V, 1.0);
    auto want = softmax(z, cfg.temperature);
    if (cfg.top_k == 0 && cfg.top_p == 1.0) {
      const auto got = nn::sampling_distribution(cfg, z);
      for (index_t v = 0; v < V; ++v) CHECK(got[v] == Approx(want[v]).epsilon(1e-12));
    }
    want = nn::sampling_distribution(cfg, z);  // filtered (checked by the cases above)
    std::vector<int> seen(V, 0);
    for (auto t : draws(cfg, z, N)) ++seen[t];
    for (index_t v = 0; v < V; ++v) {
      const double p = want[v], f = static_cast<double>(seen[v]) / N;
      const double bound = 6.0 * std::sqrt(p * (1.0 - p) / N);
      INFO("seed " << cfg.seed << " k=" << cfg.top_k << " p=" << cfg.top_p << " token " << v
                   << ": frequency " << f << ", probability " << p << ", bound " << bound);
      CHECK(std::abs(f - p) <= bound);
      if (p == 0.0) CHECK(seen[v] == 0);
    }
  }
}

TEST_CASE("sampling: the same seed gives the same tokens, another seed others", "[sampling]") {
  std::mt19937_64 rng(test::base_seed());
  constexpr index_t B = 3, V = 20;
  std::vector<double> z;
  for (index_t b = 0; b < B; ++b) {
    const auto row = random_logits(rng, V, 0.5);
    z.insert(z.end(), row.begin(), row.end());
  }
  const SamplingConfig cfg{.temperature = 0.9, .top_p = 0.95, .seed = rng()};
  auto run = [&](SamplingConfig c) {
    nn::Sampler s(c, B, V);
    std::vector<std::int32_t> all;
    for (int i = 0; i < 100; ++i) {
      const auto t = s.sample(z);
      all.insert(all.end(), t.begin(), t.end());
    }
    return all;
  };
  CHECK(run(cfg) == run(cfg));
  auto other = cfg;
  other.seed = cfg.seed + 1;
  CHECK(run(cfg) != run(other));
}

TEST_CASE("sampling: the stop token ends its row only", "[sampling]") {
  constexpr index_t V = 4;
  // Row 0 can only give token 2 (the stop); row 1 only token 1.
  const std::vector<double> z = {0, 0, 50, 0, 0, 50, 0, 0};
  nn::Sampler s({.top_k = 1, .stop = 2, .seed = 7}, 2, V);
  CHECK(s.sample(z) == std::vector<std::int32_t>{2, 1});
  CHECK(s.finished(0));
  CHECK_FALSE(s.finished(1));
  CHECK_FALSE(s.all_finished());
  const std::vector<double> swapped = {0, 50, 0, 0, 0, 0, 50, 0};
  CHECK(s.sample(swapped) == std::vector<std::int32_t>{2, 2});  // row 0 stays stopped
  CHECK(s.all_finished());
}

TEST_CASE("sampling: bad arguments are named", "[sampling][errors]") {
  using Catch::Matchers::Contains;
  const std::vector<double> z = {0.0, 1.0, 2.0};
  auto bad = [&](SamplingConfig c) { return nn::sampling_distribution(c, z); };
  CHECK_THROWS_WITH(bad({.temperature = 0.0}), Contains("'temperature' is 0"));
  CHECK_THROWS_WITH(bad({.temperature = -1.0}), Contains("'temperature' is -1"));
  CHECK_THROWS_WITH(bad({.temperature = std::nan("")}), Contains("'temperature' is nan"));
  CHECK_THROWS_WITH(bad({.temperature = INFINITY}), Contains("'temperature' is inf"));
  CHECK_THROWS_WITH(bad({.top_k = -1}), Contains("'top_k' is -1"));
  CHECK_THROWS_WITH(bad({.top_k = 4}),
                    Contains("'top_k' is 4, expected 0 (off) or a count in [1, vocab = 3]"));
  CHECK_THROWS_WITH(bad({.top_p = 0.0}), Contains("'top_p' is 0, expected a value in (0, 1]"));
  CHECK_THROWS_WITH(bad({.top_p = 1.5}), Contains("'top_p' is 1.5"));
  CHECK_THROWS_WITH(bad({.top_p = std::nan("")}), Contains("'top_p' is nan"));
  CHECK_THROWS_WITH(bad({.stop = 3}), Contains("'stop' is 3"));
  CHECK_THROWS_WITH(nn::Sampler({}, 0, 3), Contains("'batch' is 0, expected at least 1 row"));
  const std::vector<double> nan_row = {0.0, std::nan(""), 1.0};
  CHECK_THROWS_WITH(nn::sampling_distribution({}, nan_row), Contains("'logits[1]' is nan"));
  nn::Sampler s({}, 2, 3);
  CHECK_THROWS_WITH(s.sample(z), Contains("'logits.size()' is 3, expected batch · vocab = 2 · 3"));
  const std::vector<double> inf_rows = {0, 1, 2, 0, -INFINITY, 2};
  CHECK_THROWS_WITH(s.sample(inf_rows), Contains("'logits[1][1]' is -inf"));
}
