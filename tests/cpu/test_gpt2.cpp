// tests/cpu/test_gpt2.cpp — the GPT-2 model on the CPU backend, both arms.
//
// Tiny config (C 64, 2 layers, 2 heads so D = 32, T 16): full-model gradients against
// central finite differences in double on sampled elements of every tensor (with dropout on
// in the RA arm); the arms identical except attention (table, values, the RA W_attn a row
// permutation of the baseline's); the loss falls over 30 AdamW steps on the embedded sample
// (data/sample); bf16 compute tracks fp32; logits() agrees with the loss; the 124M parameter
// count; bad input named in the error; gate_stats() against a hand computation.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ra/cpu.hpp>
#include <ra/nn.hpp>

#include "reference.hpp"
#include "sample.hpp"

namespace {

using namespace ra;

nn::GPT2Config tiny(nn::Arm arm, index_t vocab = 64) {
  nn::GPT2Config c;
  c.vocab = vocab;
  c.max_seq = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.C = 64;
  c.arm = arm;
  c.R = 4;
  c.gates = GateMode::per_head;
  c.restart = true;
  return c;
}

// A (B, T+1) batch of random tokens; inputs and targets are views into it.
struct Batch {
  index_t B, T;
  std::vector<std::int32_t> data;
  Batch(std::mt19937_64& rng, index_t B_, index_t T_, index_t vocab) : B(B_), T(T_) {
    std::uniform_int_distribution<int> d(0, static_cast<int>(vocab) - 1);
    data.resize(static_cast<std::size_t>(B * (T + 1)));
    for (auto& v : data) v = d(rng);
  }
  StridedView<const std::int32_t, 2> inputs() const {
    return make_view(data.data(), shape(B, T), {T + 1, 1});  // (B,T) strides (T+1,1)
  }
  StridedView<const std::int32_t, 2> targets() const {
    return make_view(data.data() + 1, shape(B, T), {T + 1, 1});  // (B,T) strides (T+1,1)
  }
};

// The embedded sample, byte-tokenized, EOT after each file (sorted by name).
std::vector<std::uint16_t> sample_tokens() {
  const auto texts = ra::test::sample_texts();
  REQUIRE(texts.size() >= 2);
  std::vector<std::uint16_t> tokens;
  for (const auto& text : texts) {
    const auto t = nn::ByteTokenizer::encode(text);
    tokens.insert(tokens.end(), t.begin(), t.end());
    tokens.push_back(nn::ByteTokenizer::kEot);
  }
  return tokens;
}

}  // namespace

TEST_CASE("GPT-2 parameter counts: the 124M config and the tiny config by hand", "[gpt2]") {
  // GPT-2 small: 124,439,808 parameters with vocab 50257 (tied head), 124,475,904 stored with
  // wte padded to 50304 rows.
  const auto big = nn::GPT2Config::gpt2_124m();
  CHECK(nn::gpt2_parameter_count(big, false) == 124439808);
  CHECK(nn::gpt2_parameter_count(big) == 124475904);
  auto big_ra = big;
  big_ra.arm = nn::Arm::ra;
  big_ra.gates = GateMode::per_head;
  big_ra.restart = true;
  // RA adds only its gates (2 per head) and restart values (1 per head) per layer.
  CHECK(nn::gpt2_parameter_count(big_ra) == 124475904 + 12 * (2 * 12 + 12));

  const index_t C = 64, V = 64, Tm = 16, L = 2;
  const index_t per_layer =
      2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  CHECK(nn::gpt2_parameter_count(tiny(nn::Arm::baseline)) ==
        V * C + Tm * C + L * per_layer + 2 * C);
  auto no_bias = tiny(nn::Arm::baseline);
  no_bias.bias = false;
  CHECK(nn::gpt2_parameter_count(no_bias) ==
        V * C + Tm * C + L * (C + 3 * C * C + C * C + C + 8 * C * C) + C);
}

TEST_CASE(
    "GPT-2 arms are identical except attention: shapes, values, the RA W_attn a row "
    "permutation of the baseline's",
    "[gpt2]") {
  RA_TEST_RNG(rng);
  const auto cb = tiny(nn::Arm::baseline), cr = tiny(nn::Arm::ra);
  nn::GPT2<float> base(cb), ra_model(cr);
  const std::uint64_t seed = rng();
  base.init_gpt2(seed);
  ra_model.init_gpt2(seed);
  std::map<std::string, nn::ParameterInfo> rt;
  for (const auto& p : ra_model.parameter_table()) rt[p.name] = p;
  // Every baseline tensor exists in RA with the same shape and decay; RA adds only gates and
  // restart values.
  for (const auto& p : base.parameter_table()) {
    INFO(p.name);
    REQUIRE(rt.count(p.name) == 1);
    CHECK(rt[p.name].rows == p.rows);
    CHECK(rt[p.name].cols == p.cols);
    CHECK(rt[p.name].decay == p.decay);
    rt.erase(p.name);
  }
  std::set<std::string> extra;
  for (const auto& [name, p] : rt) extra.insert(name);
  CHECK(extra == std::set<std::string>{"h.0.attn.a", "h.0.attn.w_rec", "h.0.attn.w_std",
                                       "h.1.attn.a", "h.1.attn.w_rec", "h.1.attn.w_std"});

  for (const auto& p : base.parameter_table()) {
    INFO(p.name);
    const auto a = base.parameter(p.name), b = ra_model.parameter(p.name);
    if (p.name.find("attn.w_attn") != std::string::npos) {
      // RA's W_attn = repack_qkv(baseline's W_q, W_k, W_v): a row permutation.
      const index_t C = cb.C;
      for (index_t row = 0; row < 3 * C; ++row) {
        const auto src = cpu::repack_source(C, cb.n_head, cr.R, row);
        const index_t from = src.matrix * C + src.row;
        for (index_t j = 0; j < C; ++j) CHECK(b[row * C + j] == a[from * C + j]);
      }
      CHECK(!std::equal(a.begin(), a.end(), b.begin()));  // R = 4 really permutes rows
    } else {
      CHECK(std::equal(a.begin(), a.end(), b.begin()));  // bit-identical
    }
  }
  // GPT-2 init: gates 0.9 / 0.1, restart 0.05, LayerNorm 1 / 0, residual projections scaled.
  for (float w : ra_model.parameter("h.1.attn.w_std")) CHECK(w == 0.9f);
  for (float w : ra_model.parameter("h.1.attn.w_rec")) CHECK(w == 0.1f);
  for (float a : ra_model.parameter("h.0.attn.a")) CHECK(a == 0.05f);
  for (float w : base.parameter("ln_f.weight")) CHECK(w == 1.f);
  for (float b : base.parameter("h.0.mlp.b_fc")) CHECK(b == 0.f);
  auto rms = [](std::span<const float> v) {
    double s = 0.0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s / double(v.size()));
  };
  CHECK(rms(base.parameter("h.0.mlp.w_fc")) == Approx(0.02).epsilon(0.05));
  CHECK(rms(base.parameter("h.0.mlp.w_proj")) == Approx(0.02 / std::sqrt(4.0)).epsilon(0.05));
  CHECK(rms(base.parameter("h.0.attn.w_o")) == Approx(0.01).epsilon(0.1));
  // wte's padded rows stay zero (vocab 50 pads to 64).
  nn::GPT2<float> padded(tiny(nn::Arm::baseline, 50));
  padded.init_gpt2(seed);
  const auto wte = padded.parameter("wte");
  CHECK(std::all_of(wte.begin() + 50 * 64, wte.end(), [](float v) { return v == 0.f; }));
  CHECK(std::any_of(wte.begin(), wte.begin() + 50 * 64, [](float v) { return v != 0.f; }));
}

TEST_CASE("GPT-2 full-model gradients match central finite differences in double",
          "[gpt2][gradients]") {
  RA_TEST_RNG(rng);
  struct Case {
    const char* name;
    nn::GPT2Config cfg;
  };
  auto ra_drop = tiny(nn::Arm::ra);
  ra_drop.dropout = 0.1f;
  auto ra_layer = tiny(nn::Arm::ra);
  ra_layer.gates = GateMode::per_layer;
  ra_layer.gate_param = GateParam::softplus;
  ra_layer.restart = false;
  ra_layer.bias = false;
  const Case cases[] = {{"baseline", tiny(nn::Arm::baseline)},
                        {"ra per_head + restart + dropout 0.1", ra_drop},
                        {"ra per_layer softplus, no bias", ra_layer}};
  for (const auto& c : cases) {
    INFO(c.name);
    nn::GPT2<double> model(c.cfg);
    model.init_gpt2(rng());
    // Larger weights than GPT-2's 0.02 so attention and GELU are far from linear.
    auto params = model.parameters();
    for (float& p : params) p *= 4.f;
    model.set_parameters(params);
    Batch batch(rng, 2, 16, c.cfg.vocab);
    std::vector<std::int32_t> targets(batch.data);
    targets[5] = -1;  // ignored positions take no part
    const auto tgt = make_view(static_cast<const std::int32_t*>(targets.data()) + 1,
                               shape(index_t{2}, index_t{16}), {17, 1});  // (B,T)
    model.set_dropout_seed(rng());
    model.forward(batch.inputs(), tgt);
    model.backward();
    const std::vector<float> grads = model.gradients();

    // A few random elements of every tensor; float parameters move by ~2^-18 relative (the
    // loss is computed in double, so a small step costs no accuracy), with
    // the difference of the perturbed floats as the exact denominator.
    for (const auto& p : model.parameter_table()) {
      std::uniform_int_distribution<index_t> pick(0, p.size() - 1);
      for (int k = 0; k < 3; ++k) {
        const auto i = static_cast<std::size_t>(p.offset + pick(rng));
        float& w = params[i];
        const float w0 = w;
        const double h = std::max(std::abs(double(w0)), 0.05) * 0x1p-18;
        const float plus = static_cast<float>(w0 + h), minus = static_cast<float>(w0 - h);
        w = plus;
        model.set_parameters(params);
        const double lp = model.forward(batch.inputs(), tgt);
        w = minus;
        model.set_parameters(params);
        const double lm = model.forward(batch.inputs(), tgt);
        w = w0;
        model.set_parameters(params);
        const double fd = (lp - lm) / (double(plus) - double(minus));
        INFO(p.name << "[" << i - p.offset << "]: analytic " << grads[i] << ", finite difference "
                    << fd);
        CHECK(std::abs(grads[i] - fd) <= 5e-5 * std::abs(fd) + 5e-8);
      }
    }
  }
}

TEST_CASE("GPT-2 loss falls over 30 AdamW steps on the embedded sample, both arms",
          "[gpt2][train]") {
  RA_TEST_RNG(rng);
  const auto tokens = sample_tokens();
  auto train = std::make_shared<nn::TokenFile>();
  auto val = std::make_shared<nn::TokenFile>();
  train->path = "sample[train]";
  val->path = "sample[val]";
  train->vocab = val->vocab = nn::ByteTokenizer::kVocab;
  const std::size_t cut = tokens.size() * 9 / 10;
  train->tokens.assign(tokens.begin(), tokens.begin() + cut);
  val->tokens.assign(tokens.begin() + cut, tokens.end());

  for (auto arm : {nn::Arm::baseline, nn::Arm::ra}) {
    INFO("arm " << nn::name(arm));
    auto cfg = tiny(arm, nn::ByteTokenizer::kVocab);
    cfg.max_seq = 32;
    nn::GPT2<float> model(cfg);
    const std::uint64_t seed = rng();  // init, data order and dropout
    INFO("run seed " << seed);
    model.init_gpt2(seed);
    nn::AdamW opt(model.num_parameters(), model.parameter_table());
    nn::BatchLoader loader(train, 8, 32, seed);
    nn::BatchLoader val_loader(val, 8, 32, 0, false);
    nn::TrainingState state(seed);
    const nn::CosineSchedule lr{3e-3, 3e-4, 5, 30};
    const double val_before = nn::evaluate(model, val_loader, 2);
    std::vector<std::int32_t> batch;
    std::vector<double> losses;
    for (int s = 0; s < 30; ++s)
      losses.push_back(nn::train_step(model, opt, loader, state, lr.at(s), batch).loss);
    const double val_after = nn::evaluate(model, val_loader, 2);
    double last = 0.0;
    for (int s = 25; s < 30; ++s) last += losses[s] / 5;
    INFO("first loss " << losses[0] << " (ln 257 = " << std::log(257.0) << "), mean of the last 5 "
                       << last << "; val " << val_before << " -> " << val_after);
    CHECK(losses[0] == Approx(std::log(257.0)).margin(0.3));
    CHECK(last < losses[0] - 1.5);
    CHECK(val_after < val_before - 1.5);
    CHECK(state.step == 30);
    CHECK(state.tokens == 30 * 8 * 32);
  }
}

TEST_CASE("GPT-2 in bf16 compute tracks fp32 and logits() agrees with the loss", "[gpt2]") {
  RA_TEST_RNG(rng);
  const auto cfg = tiny(nn::Arm::ra);
  nn::GPT2<float> f32(cfg);
  nn::GPT2<bf16> b16(cfg);
  const std::uint64_t seed = rng();
  f32.init_gpt2(seed);
  b16.init_gpt2(seed);
  Batch batch(rng, 2, 16, cfg.vocab);
  const double lf = f32.forward(batch.inputs(), batch.targets());
  const double lb = b16.forward(batch.inputs(), batch.targets());
  CHECK(lb == Approx(lf).margin(0.02));
  f32.backward();
  b16.backward();
  // Gradients agree in direction: cosine similarity over all parameters.
  double dot = 0.0, nf = 0.0, nb = 0.0;
  const auto gf = f32.gradients(), gb = b16.gradients();
  for (std::size_t i = 0; i < f32.num_parameters(); ++i) {
    dot += double(gf[i]) * gb[i];
    nf += double(gf[i]) * gf[i];
    nb += double(gb[i]) * gb[i];
  }
  CHECK(dot / std::sqrt(nf * nb) > 0.98);

  // The mean of -log softmax(logits(b, t))[target] over positions is the loss; logits() needs
  // a forward without targets (on every backend, one with targets may consume them).
  CHECK_THROWS_WITH(f32.logits(0, 0), Catch::Contains("without targets"));
  CHECK(std::isnan(f32.forward(batch.inputs())));
  double sum = 0.0;
  for (index_t b = 0; b < 2; ++b)
    for (index_t t = 0; t < 16; ++t) {
      const auto z = f32.logits(b, t);
      const double m = *std::max_element(z.begin(), z.end());
      double s = 0.0;
      for (double v : z) s += std::exp(v - m);
      sum += m + std::log(s) - z[static_cast<std::size_t>(batch.targets()(b, t))];
    }
  CHECK(sum / 32 == Approx(lf).epsilon(1e-6));
  // Without targets, forward returns NaN and backward refuses.
  CHECK_THROWS_WITH(f32.backward(), Catch::Contains("forward() with targets"));
}

TEST_CASE("GPT-2 bad input names the problem", "[gpt2][errors]") {
  auto cfg = tiny(nn::Arm::ra);
  cfg.C = 96;
  cfg.n_head = 4;  // D = 24: not a supported head dim
  CHECK_THROWS_AS(nn::GPT2<float>(cfg), ra::unsupported);
  cfg = tiny(nn::Arm::ra);
  cfg.R = 32;  // R >= D
  CHECK_THROWS_WITH(nn::GPT2<float>(cfg), Catch::Contains("R"));
  cfg = tiny(nn::Arm::ra);
  cfg.dropout = 1.f;
  CHECK_THROWS_WITH(nn::GPT2<float>(cfg), Catch::Contains("dropout") && Catch::Contains("[0, 1)"));
  cfg = tiny(nn::Arm::baseline);
  cfg.n_layer = 0;
  CHECK_THROWS_WITH(nn::GPT2<float>(cfg), Catch::Contains("n_layer") && Catch::Contains("0"));
  // The baseline ignores R: R = 32 with D = 32 is fine there.
  cfg = tiny(nn::Arm::baseline);
  cfg.R = 32;
  CHECK_NOTHROW(nn::GPT2<float>(cfg));

  nn::GPT2<float> model(tiny(nn::Arm::baseline));
  model.init_gpt2(1);
  std::vector<std::int32_t> tok(2 * 17, 1);
  auto long_seq =
      make_view(static_cast<const std::int32_t*>(tok.data()), shape(index_t{1}, index_t{17}));
  CHECK_THROWS_WITH(model.forward(long_seq), Catch::Contains("sequence length T") &&
                                                 Catch::Contains("17") &&
                                                 Catch::Contains("max_seq = 16"));
  tok[3] = 64;
  auto bad =
      make_view(static_cast<const std::int32_t*>(tok.data()), shape(index_t{2}, index_t{16}));
  CHECK_THROWS_WITH(model.forward(bad),
                    Catch::Contains("token at (0,3) is 64") && Catch::Contains("[0, 64)"));
  // A forward that throws leaves nothing behind: backward() and logits() refuse.
  tok[3] = 1;
  REQUIRE(std::isfinite(model.forward(bad, bad)));
  tok[3] = 64;
  CHECK_THROWS(model.forward(bad, bad));
  CHECK_THROWS_WITH(model.backward(), Catch::Contains("forward() with targets"));
  CHECK_THROWS_WITH(model.logits(0, 0), Catch::Contains("without targets"));
  CHECK_THROWS_WITH(model.parameter("h.9.mlp.w_fc"), Catch::Contains("h.9.mlp.w_fc"));
  CHECK_THROWS_WITH(model.set_parameter("h.9.mlp.w_fc", std::vector<float>(3)),
                    Catch::Contains("h.9.mlp.w_fc"));
  CHECK_THROWS_WITH(
      model.set_parameter("ln_f.weight", std::vector<float>(3)),
      Catch::Contains("size") && Catch::Contains("3") && Catch::Contains("'ln_f.weight'"));
  CHECK_THROWS_WITH(model.set_parameters(std::vector<float>(3)),
                    Catch::Contains("size") && Catch::Contains("num_parameters()"));
  nn::AdamW small(3, std::vector<nn::ParameterInfo>{});
  CHECK_THROWS_WITH(model.step(small, 1e-3), Catch::Contains("params.size()"));
  CHECK_THROWS_WITH(nn::parse_arm("ra2"), Catch::Contains("'ra2'") && Catch::Contains("baseline"));
  CHECK_THROWS_WITH(nn::parse_gate_mode("all"), Catch::Contains("'all'"));
  CHECK(nn::parse_gate_param("softplus") == GateParam::softplus);
}

TEST_CASE("GPT-2 gate_stats: effective gates and restart mixes per layer, by hand",
          "[gpt2][gates]") {
  // The expected numbers are worked out by hand from the definitions: clamp g = max(w, 1e-8),
  // softplus g = ln(1 + e^w) (w itself above 20), alpha = clamp(a, 0, 0.5); mean, min and max
  // over the layer's values. Raw values are chosen on every branch: below the clamp floor, a
  // outside [0, 0.5] on both sides, softplus on both sides of 0 and past 20.
  constexpr double kFloor = 1e-8;
  auto expect = [](const nn::Summary& s, double mean, double min, double max) {
    // The gates are computed in float: a few float roundings (2^-24 each) of relative error.
    CHECK(s.mean == Approx(mean).epsilon(5e-7).margin(1e-15));
    CHECK(s.min == Approx(min).epsilon(5e-7).margin(1e-15));
    CHECK(s.max == Approx(max).epsilon(5e-7).margin(1e-15));
  };
  auto set = [](nn::GPT2<float>& m, const char* name, std::initializer_list<float> v) {
    REQUIRE(m.parameter(name).size() == v.size());
    m.set_parameter(name, std::vector<float>(v));
  };

  SECTION("per-head clamp gates with self-restart") {
    nn::GPT2<float> model(tiny(nn::Arm::ra));  // 2 layers, 2 heads
    model.init_gpt2(1);
    set(model, "h.0.attn.w_std", {0.75f, -0.5f});  // g = 0.75, 1e-8 (the floor)
    set(model, "h.0.attn.w_rec", {0.25f, 0.125f});
    set(model, "h.0.attn.a", {-0.25f, 0.375f});  // alpha = 0, 0.375
    set(model, "h.1.attn.w_std", {1.5f, 2.f});
    set(model, "h.1.attn.w_rec", {0.f, 3.f});  // g = 1e-8, 3
    set(model, "h.1.attn.a", {0.75f, 0.5f});   // alpha = 0.5, 0.5
    const auto stats = model.gate_stats();
    REQUIRE(stats.size() == 2);
    for (const auto& s : stats) {
      CHECK(s.gated);
      CHECK(s.restart);
    }
    expect(stats[0].g_std, (0.75 + kFloor) / 2, kFloor, 0.75);
    expect(stats[0].g_rec, 0.1875, 0.125, 0.25);
    expect(stats[0].alpha, 0.1875, 0.0, 0.375);
    expect(stats[1].g_std, 1.75, 1.5, 2.0);
    expect(stats[1].g_rec, (kFloor + 3.0) / 2, kFloor, 3.0);
    expect(stats[1].alpha, 0.5, 0.5, 0.5);
    // The mean really includes the floor: 0.375 alone is off by 5e-9 (relative 1.3e-8).
    CHECK(stats[0].g_std.mean != Approx(0.375).epsilon(1e-9).margin(0));

    // The GPU model reads only the tail of the layout that holds every gate and restart value
    // (base = its first offset): the same numbers.
    const auto& layout = model.layout();
    index_t first = layout.total;
    for (const auto& s : layout.layers)
      for (index_t off : {s.w_std, s.w_rec, s.a}) first = std::min(first, off);
    const auto params = model.parameters();
    const auto tail = nn::gpt2_gate_stats(
        model.config(), layout,
        std::span<const float>(params).subspan(static_cast<std::size_t>(first)), first);
    REQUIRE(tail.size() == 2);
    for (std::size_t l = 0; l < 2; ++l) {
      for (auto [got, want] :
           {std::pair{tail[l].g_std, stats[l].g_std}, std::pair{tail[l].g_rec, stats[l].g_rec},
            std::pair{tail[l].alpha, stats[l].alpha}}) {
        CHECK(got.mean == want.mean);
        CHECK(got.min == want.min);
        CHECK(got.max == want.max);
      }
    }
  }

  SECTION("per-layer softplus gates without restart") {
    auto cfg = tiny(nn::Arm::ra);
    cfg.gates = GateMode::per_layer;
    cfg.gate_param = GateParam::softplus;
    cfg.restart = false;
    nn::GPT2<float> model(cfg);
    model.init_gpt2(1);
    set(model, "h.0.attn.w_std", {0.f});    // ln 2
    set(model, "h.0.attn.w_rec", {-1.f});   // ln(1 + 1/e)
    set(model, "h.1.attn.w_std", {25.f});   // past 20: w itself
    set(model, "h.1.attn.w_rec", {-20.f});  // ln(1 + e^-20) = 2.0611536e-9
    const auto stats = model.gate_stats();
    REQUIRE(stats.size() == 2);
    const double g[2][2] = {{0.69314718055994531, 0.31326168751822286},
                            {25.0, 2.0611536203143810e-9}};
    for (std::size_t l = 0; l < 2; ++l) {
      INFO("layer " << l);
      CHECK(stats[l].gated);
      CHECK_FALSE(stats[l].restart);
      expect(stats[l].g_std, g[l][0], g[l][0], g[l][0]);  // one value per layer
      expect(stats[l].g_rec, g[l][1], g[l][1], g[l][1]);
      expect(stats[l].alpha, 0.0, 0.0, 0.0);  // no restart: the empty summary
    }
  }

  SECTION("the baseline has neither") {
    nn::GPT2<float> model(tiny(nn::Arm::baseline));
    model.init_gpt2(1);
    const auto stats = model.gate_stats();
    REQUIRE(stats.size() == 2);
    for (const auto& s : stats) {
      CHECK_FALSE(s.gated);
      CHECK_FALSE(s.restart);
    }
  }
}
