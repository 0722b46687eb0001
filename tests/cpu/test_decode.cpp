// tests/cpu/test_decode.cpp — generation with a KV cache (nn::GPT2Model::reset_cache, prefill,
// decode) on the CPU backend, against full recomputation of the whole window (forward() over a
// sequence's every token, the logits of its last row):
//   prefill    takes the same ops on the same rows as forward() on that prompt alone: equal
//              bit for bit (float);
//   chunks     a prompt prefilled in two parts (T_q > 1 new rows over a filled cache) equals
//              one prefill, to the same bound as decode;
//   decode     one row per sequence per step: the same arithmetic except Eigen's summation order
//              (a one-row product runs as a GEMV, the window's as a GEMM), so in double the two
//              agree to 1e-11 relative to the largest logit (a wrong cache row, mask, gate or
//              restart term moves logits by O(1e-3) or more at this init: see "the cache is what
//              the logits depend on");
// over every supported (D, R) of a two-layer model, gate modes none/per-layer/per-head,
// self-restart on/off, three prompts of different lengths in one batch, up to the cache's
// max_seq; one token past it, an empty prompt and a token outside the vocabulary are named.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <ra/nn/gpt2.hpp>
#include <ra/nn/sampling.hpp>

#include "../common/dr_test_case.hpp"
#include "seed.hpp"

namespace {

using namespace ra;

constexpr index_t kVocab = 40, kMaxSeq = 12;

nn::GPT2Config small(int D, int R, GateMode gates, bool restart) {
  nn::GPT2Config c;
  c.vocab = kVocab;
  c.max_seq = kMaxSeq;
  c.n_layer = 2;
  c.n_head = 2;
  c.C = 2 * D;
  c.arm = R == 0 ? nn::Arm::baseline : nn::Arm::ra;
  c.R = R;
  c.gates = gates;
  c.restart = restart;
  return c;
}

// GPT-2 init, then gates and restart values drawn away from their init (so a gate or restart
// applied wrongly shows).
template <class T>
void init(nn::GPT2<T>& m, std::mt19937_64& rng) {
  m.init_gpt2(rng());
  std::uniform_real_distribution<float> gate(0.3f, 1.5f), alpha(0.1f, 0.45f);
  for (const auto& p : m.parameter_table()) {
    const bool is_gate = p.name.ends_with(".attn.w_std") || p.name.ends_with(".attn.w_rec");
    const bool is_a = p.name.ends_with(".attn.a");
    if (!is_gate && !is_a) continue;
    std::vector<float> v(static_cast<std::size_t>(p.size()));
    for (float& x : v) x = is_gate ? gate(rng) : alpha(rng);
    m.set_parameter(p.name, v);
  }
}

template <class T>
std::vector<double> full_logits(nn::GPT2<T>& m, const std::vector<std::int32_t>& seq) {
  const auto n = static_cast<index_t>(seq.size());
  m.forward(make_view(seq.data(), shape(index_t{1}, n)));  // (1,T)
  return m.logits(0, n - 1);
}

std::vector<double> row(const std::vector<double>& z, index_t b) {
  return {z.begin() + b * kVocab, z.begin() + (b + 1) * kVocab};
}

double max_abs(const std::vector<double>& z) {
  double m = 0.0;
  for (double x : z) m = std::max(m, std::abs(x));
  return m;
}

// Prompts of lengths 1, 4 and 7, then greedy decoding until the longest fills the cache
// (kMaxSeq), each step checked against full recomputation; then one token past max_seq.
template <class T>
void check_cached_equals_full(int D, int R, GateMode gates, bool restart, double rel_tol) {
  std::mt19937_64 rng(test::base_seed() + static_cast<std::uint64_t>(D * 64 + R));
  nn::GPT2<T> m(small(D, R, gates, restart));
  init(m, rng);
  std::uniform_int_distribution<std::int32_t> tok(0, kVocab - 1);
  std::vector<std::vector<std::int32_t>> seqs;
  for (index_t len : {1, 4, 7}) {
    seqs.emplace_back();
    for (index_t t = 0; t < len; ++t) seqs.back().push_back(tok(rng));
  }
  const index_t B = 3;
  m.reset_cache(B, kMaxSeq);
  auto z = m.prefill(seqs);
  REQUIRE(z.size() == static_cast<std::size_t>(B * kVocab));
  for (index_t b = 0; b < B; ++b) {
    INFO("prefill of sequence " << b << " (" << seqs[b].size() << " tokens)");
    CHECK(row(z, b) == full_logits(m, seqs[b]));  // the same ops on the same rows
    CHECK(m.cache_length(b) == static_cast<index_t>(seqs[b].size()));
  }
  nn::Sampler greedy({.greedy = true}, B, kVocab);
  for (index_t step = 0; m.cache_length(2) < kMaxSeq; ++step) {
    const auto next = greedy.sample(z);
    for (index_t b = 0; b < B; ++b) seqs[b].push_back(next[b]);
    z = m.decode(next);
    for (index_t b = 0; b < B; ++b) {
      const auto want = full_logits(m, seqs[b]);
      const auto got = row(z, b);
      double err = 0.0;
      for (index_t v = 0; v < kVocab; ++v) err = std::max(err, std::abs(got[v] - want[v]));
      INFO("step " << step << " sequence " << b << " length " << seqs[b].size() << ": max error "
                   << err << ", allowed " << rel_tol << " x " << max_abs(want));
      CHECK(err <= rel_tol * max_abs(want));
    }
  }
  // At max_seq: one more token is refused, naming the sequence, and nothing changes.
  CHECK(m.cache_length(2) == kMaxSeq);
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{0, 0, 0}),
                    Catch::Contains("sequence 2 length' is 12 + 1 new tokens") &&
                        Catch::Contains("at most cache_max_seq() = 12"));
  CHECK(m.cache_length(0) == 6);
}

}  // namespace

RA_DR_TEST_CASE(test::every_pair, "decode: cached decoding equals full recomputation", "[decode]") {
  INFO("D=" << D << " R=" << R);
  for (GateMode gates : {GateMode::none, GateMode::per_layer, GateMode::per_head})
    for (bool restart : {false, true}) {
      if (R == 0 && (gates != GateMode::none || restart)) continue;  // the baseline has neither
      INFO("gates " << gates << " restart " << restart);
      check_cached_equals_full<double>(D, R, gates, restart, 1e-11);
    }
}

TEST_CASE("decode: float prefill is bit-exact and float decoding close to full recomputation",
          "[decode]") {
  // float rounds each stored activation: the GEMV/GEMM order can flip a last bit, which the
  // layers carry on; 1e-4 of the largest logit bounds that here.
  check_cached_equals_full<float>(64, 4, GateMode::per_head, true, 1e-4);
}

TEST_CASE("decode: the cache is what the logits depend on", "[decode]") {
  // A guard for the tolerance above: with the RA gates or the restart mix changed, or the
  // cache of another sequence used, the logits move by far more than it.
  std::mt19937_64 rng(test::base_seed());
  nn::GPT2<double> m(small(64, 4, GateMode::per_head, true));
  init(m, rng);
  const std::vector<std::vector<std::int32_t>> p = {{1, 2, 3, 4}, {5, 6, 7, 8}};
  m.reset_cache(2, kMaxSeq);
  const auto z = m.prefill(p);
  const auto a = m.decode(std::vector<std::int32_t>{9, 9});
  m.set_parameter("h.1.attn.a", std::vector<float>{0.3f, 0.3f});
  m.reset_cache(2, kMaxSeq);
  m.prefill(p);
  const auto b = m.decode(std::vector<std::int32_t>{9, 9});
  double diff = 0.0, diff_rows = 0.0;
  for (index_t v = 0; v < kVocab; ++v) {
    diff = std::max(diff, std::abs(a[v] - b[v]));
    diff_rows = std::max(diff_rows, std::abs(a[v] - a[kVocab + v]));
  }
  CHECK(diff > 1e-6 * max_abs(a));
  CHECK(diff_rows > 1e-6 * max_abs(a));
  CHECK(z.size() == 2 * kVocab);
}

TEST_CASE("decode: bad input names the problem", "[decode][errors]") {
  using Catch::Contains;
  nn::GPT2<float> m(small(32, 4, GateMode::per_layer, true));
  m.init_gpt2(1);
  CHECK_THROWS_WITH(m.reset_cache(0, 4), Contains("'batch' is 0, expected at least 1 sequence"));
  CHECK_THROWS_WITH(m.reset_cache(1, 0), Contains("'max_seq' is 0"));
  CHECK_THROWS_WITH(m.reset_cache(1, 13),
                    Contains("'max_seq' is 13") && Contains("[1, config().max_seq = 12]"));
  CHECK_THROWS_WITH(m.cache_length(0), Contains("'b' is 0"));
  m.reset_cache(2, 4);
  using Prompts = std::vector<std::vector<std::int32_t>>;
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}}),
                    Contains("'prompts.size()' is 1, expected cache_batch() = 2"));
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {}}),
                    Contains("'prompts[1].size()' is 0, expected at least one token"));
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {2, 40}}),
                    Contains("token 1 of sequence 1 is 40, expected a token id in [0, 40)"));
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {-1}}), Contains("token 0 of sequence 1 is -1"));
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {1, 2, 3, 4, 5}}),
                    Contains("sequence 1 length' is 0 + 5 new tokens") &&
                        Contains("at most cache_max_seq() = 4"));
  CHECK(m.cache_length(0) == 0);  // a refused prefill caches nothing
  m.prefill(Prompts{{1, 2, 3}, {4}});
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{1}),
                    Contains("'next.size()' is 1, expected cache_batch() = 2"));
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{1, 41}),
                    Contains("token 0 of sequence 1 is 41"));
  m.decode(std::vector<std::int32_t>{1, 1});  // sequence 0 now at max_seq = 4
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{1, 1}),
                    Contains("sequence 0 length' is 4 + 1 new tokens"));
  m.set_parameter("h.0.attn.w_std", std::vector<float>{std::nanf("")});
  m.reset_cache(1, 4);
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}}), Contains("h.0.attn.w_std[0]' is nan"));
}

TEST_CASE("decode: a prompt prefilled in chunks equals one prefill (T_q > 1 over the cache)",
          "[decode]") {
  std::mt19937_64 rng(test::base_seed());
  nn::GPT2<double> m(small(32, 8, GateMode::per_head, true));
  init(m, rng);
  const std::vector<std::int32_t> p = {3, 1, 4, 1, 5, 9, 2, 6, 5};
  using Prompts = std::vector<std::vector<std::int32_t>>;
  m.reset_cache(1, kMaxSeq);
  const auto whole = m.prefill(Prompts{p});
  m.reset_cache(1, kMaxSeq);
  m.prefill(Prompts{{p.begin(), p.begin() + 4}});
  const auto chunked = m.prefill(Prompts{{p.begin() + 4, p.end()}});  // T_q = 5, T_k = 9
  CHECK(m.cache_length(0) == 9);
  double err = 0.0;
  for (index_t v = 0; v < kVocab; ++v) err = std::max(err, std::abs(whole[v] - chunked[v]));
  INFO("max error " << err);
  CHECK(err <= 1e-11 * max_abs(whole));
}
