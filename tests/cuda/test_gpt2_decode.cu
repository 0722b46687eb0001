// tests/cuda/test_gpt2_decode.cu — generation with the KV cache on the GPU model
// (nn::CudaGPT2: reset_cache, prefill, decode over cuda::GPT2Backend's decode kernel):
// decode steps replayed as a CUDA graph give the bits of eager steps and allocate nothing;
// cached logits (a prefill by the flash kernel, a second prefill over the filled cache in
// chunks of the decode kernel, decode steps) keep the precision rule against the full
// recomputation of the GPU model, with the CPU model in double as the reference; greedy
// tokens equal the CPU model's in fp32; bad input is refused by name.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <ra/cuda/buffer.cuh>
#include <ra/nn/gpt2_cuda.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "gpt2_reference.hpp"

namespace ra::test {
namespace {

using Prompts = std::vector<std::vector<std::int32_t>>;

nn::GPT2Config small(nn::Arm arm) {
  nn::GPT2Config c;
  c.vocab = 257;
  c.max_seq = 96;
  c.n_layer = 2;
  c.n_head = 2;
  c.C = 128;  // D = 64
  c.arm = arm;
  c.R = arm == nn::Arm::ra ? 4 : 0;
  c.gates = arm == nn::Arm::ra ? GateMode::per_head : GateMode::none;
  c.restart = arm == nn::Arm::ra;
  return c;
}

Prompts random_prompts(std::mt19937_64& g, std::vector<int> lengths, int vocab) {
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  Prompts p;
  for (int n : lengths) {
    p.emplace_back();
    for (int i = 0; i < n; ++i) p.back().push_back(tok(g));
  }
  return p;
}

std::vector<std::int32_t> argmax_rows(const std::vector<double>& z, index_t vocab) {
  std::vector<std::int32_t> out;
  for (std::size_t b = 0; b * static_cast<std::size_t>(vocab) < z.size(); ++b) {
    const auto row = z.begin() + static_cast<std::ptrdiff_t>(b * static_cast<std::size_t>(vocab));
    out.push_back(static_cast<std::int32_t>(std::max_element(row, row + vocab) - row));
  }
  return out;
}

}  // namespace

TEST_CASE("GPU decode steps replayed as a CUDA graph equal eager steps bit for bit",
          "[gpt2][decode][alloc]") {
  auto g = rng(0xde1);
  for (nn::Arm arm : {nn::Arm::baseline, nn::Arm::ra}) {
    INFO("arm " << nn::name(arm) << " seed " << seed());
    const auto cfg = small(arm);
    nn::CudaGPT2<bf16> graphed(cfg), eager(cfg);
    graphed.init_gpt2(3);
    eager.init_gpt2(3);
    eager.backend().set_decode_graphs(false);
    REQUIRE(graphed.backend().decode_graphs());
    const Prompts prompts = random_prompts(g, {5, 17, 1}, cfg.vocab);  // ragged; one > 16 rows
    for (auto* m : {&graphed, &eager}) m->reset_cache(3, 40);
    auto za = graphed.prefill(prompts);
    auto zb = eager.prefill(prompts);
    REQUIRE(bitwise_equal(za, zb));
    // The one-token prompt's prefill was an S = 1 step too (captured); decoding the batch is
    // one more shape, so one more capture for all 12 steps.
    const int captured = graphed.backend().graph_captures();
    std::int64_t allocs = 0;
    for (int step = 0; step < 12; ++step) {
      const auto next = argmax_rows(za, cfg.vocab);
      za = graphed.decode(next);
      zb = eager.decode(next);
      INFO("step " << step);
      REQUIRE(bitwise_equal(za, zb));
      if (step == 0) allocs = cuda::allocation_count();  // the first step may size things
    }
    CHECK(cuda::allocation_count() == allocs);
    CHECK(graphed.backend().graph_captures() == captured + 1);
    CHECK(eager.backend().graph_captures() == 0);
    CHECK(graphed.cache_length(1) == 17 + 12);
  }
}

TEST_CASE("GPU cached logits keep the precision rule against the full recomputation",
          "[gpt2][decode]") {
  // Sequence: a 20-token prefill (flash kernel), 18 more tokens prefilled over the filled
  // cache (decode kernel, chunks of 16 and 2 rows), then decode steps (graph).
  auto g = rng(0xde2);
  const auto cfg = small(nn::Arm::ra);
  const std::uint64_t init = 5;
  nn::CudaGPT2<float> cached(cfg), full(cfg);
  cached.init_gpt2(init);
  full.init_gpt2(init);
  full.set_training(false);
  const Prompts first = random_prompts(g, {20}, cfg.vocab),
                second = random_prompts(g, {18}, cfg.vocab);
  std::vector<std::int32_t> seq = first[0];
  cached.reset_cache(1, 64);
  std::vector<std::vector<double>> got{cached.prefill(first)};
  std::vector<index_t> lengths{20};
  got.push_back(cached.prefill(second));
  seq.insert(seq.end(), second[0].begin(), second[0].end());
  lengths.push_back(38);
  for (int step = 0; step < 3; ++step) {
    const auto next = argmax_rows(got.back(), cfg.vocab);
    seq.push_back(next[0]);
    got.push_back(cached.decode(next));
    lengths.push_back(static_cast<index_t>(seq.size()));
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const index_t T = lengths[i];
    INFO("after " << T << " tokens, seed " << seed());
    const std::vector<std::int32_t> window(seq.begin(), seq.begin() + T);
    full.forward(make_view(window.data(), shape(index_t{1}, T)));
    const auto recomputed = full.logits(0, T - 1);
    const auto exact =
        reference_gpt2(cfg, CpuCompute::f64, init, window, {}, 1, T, 0, 0.0, 0, T - 1).logits;
    // The floor: fp32 rounding of a logit, a sum of C products of O(1) terms.
    std::vector<double> floor(exact.size());
    for (std::size_t k = 0; k < exact.size(); ++k)
      floor[k] = unit_roundoff(DType::f32) * (1.0 + std::abs(exact[k])) * std::sqrt(double(cfg.C));
    RA_CHECK_PRECISION(judge("decode logits fp32", "cached logits", got[i], recomputed, exact,
                             floor, static_cast<std::size_t>(cfg.vocab)));
  }
}

TEST_CASE("GPU greedy tokens equal the CPU model's in fp32", "[gpt2][decode]") {
  auto g = rng(0xde3);
  for (nn::Arm arm : {nn::Arm::baseline, nn::Arm::ra}) {
    INFO("arm " << nn::name(arm) << " seed " << seed());
    const auto cfg = small(arm);
    const Prompts prompts = random_prompts(g, {6, 2}, cfg.vocab);
    const int steps = 16;
    const auto expected = cpu_greedy(cfg, 11, prompts, 32, steps);
    nn::CudaGPT2<float> model(cfg);
    model.init_gpt2(11);
    model.reset_cache(2, 32);
    auto z = model.prefill(prompts);
    std::vector<std::vector<std::int32_t>> got(2);
    for (int s = 0; s < steps; ++s) {
      const auto next = argmax_rows(z, cfg.vocab);
      for (std::size_t b = 0; b < 2; ++b) got[b].push_back(next[b]);
      if (s + 1 < steps) z = model.decode(next);
    }
    CHECK(got == expected);
  }
}

TEST_CASE("GPU GPT-2 refuses bad generation input, naming it", "[gpt2][decode]") {
  using Catch::Contains;
  nn::CudaGPT2<bf16> m(small(nn::Arm::ra));
  m.init_gpt2(1);
  CHECK_THROWS_WITH(m.reset_cache(0, 4), Contains("'batch' is 0, expected at least 1 sequence"));
  m.reset_cache(2, 4);
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {}}), Contains("'prompts[1].size()' is 0"));
  CHECK_THROWS_WITH(m.prefill(Prompts{{1}, {2, 300}}), Contains("token 1 of sequence 1 is 300"));
  m.prefill(Prompts{{1, 2, 3}, {4}});
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{1, -1}),
                    Contains("token 0 of sequence 1 is -1"));
  m.decode(std::vector<std::int32_t>{1, 1});  // sequence 0 now at max_seq = 4
  CHECK_THROWS_WITH(m.decode(std::vector<std::int32_t>{1, 1}),
                    Contains("sequence 0 length") && Contains("at most cache_max_seq() = 4"));
  CHECK(m.cache_length(0) == 4);  // nothing cached by the refused step
  CHECK(m.cache_length(1) == 2);
}

}  // namespace ra::test
