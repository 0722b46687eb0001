// tests/cpu/test_block.cpp — the attention block on the CPU backend: block_forward against
// gemm → attention → gemm by the tier-1 loops, the block expression with static D and R
// through ra::eval against block_forward, the nn::AttentionBlock layer (init, load_baseline,
// forward, backward), and bad input, each error checked for a message that names the problem.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <vector>

#include <ra/cpu.hpp>
#include <ra/nn.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

// Random block parameters of element type T that own their memory.
template <class T>
struct Params {
  index_t C;
  std::vector<T> w_attn, b_attn, w_o, b_o;
  std::vector<float> w_std, w_rec, a;
  Params(std::mt19937_64& rng, const AttentionBlockConfig& cfg) : C(cfg.C) {
    const double s = 1.5 / std::sqrt(double(C));
    w_attn = test::random_normal<T>(rng, 3 * C * C, s);
    b_attn = test::random_normal<T>(rng, 3 * C, 0.1);
    w_o = test::random_normal<T>(rng, C * C, s);
    b_o = test::random_normal<T>(rng, C, 0.1);
    const double lo = cfg.gate_param == GateParam::clamp ? 0.2 : -1.0;
    w_std = test::random_uniform(rng, std::max<index_t>(cfg.gate_count(), 1), lo, 1.5);
    w_rec = test::random_uniform(rng, std::max<index_t>(cfg.gate_count(), 1), lo, 1.5);
    a = test::random_uniform(rng, cfg.H, 0.0, 0.5);
  }
  AttentionBlockWeights<T> view() const {
    return {make_view(w_attn.data(), shape(3 * C, C)),
            make_view(b_attn.data(), shape(3 * C)),
            make_view(w_o.data(), shape(C, C)),
            make_view(b_o.data(), shape(C)),
            w_std.data(),
            w_rec.data(),
            a.data()};
  }
};

constexpr AttentionBlockConfig kConfigs[] = {
    {128, 2, 4, GateMode::per_head, GateParam::clamp, true, true},
    {128, 2, 0, GateMode::none, GateParam::clamp, false, true},
    {192, 3, 16, GateMode::per_layer, GateParam::softplus, false, false},
    {64, 2, 8, GateMode::per_head, GateParam::softplus, true, false},
};

// Whether this build instantiates any of kConfigs (a narrowed build may instantiate none).
constexpr bool any_config_instantiated() {
  for (const auto& cfg : kConfigs)
    if (test::block_instantiated(int(cfg.C / cfg.H), cfg.R)) return true;
  return false;
}

}  // namespace

RA_TEST_CASE_IF(any_config_instantiated(),
                "block_forward equals gemm -> attention -> gemm by the naive loops", "[block]") {
  RA_TEST_RNG(rng);
  for (const auto& cfg : kConfigs) {
    if (!test::block_supported(int(cfg.head_dim()), cfg.R)) continue;
    for (index_t T : {7, 1}) {
      const index_t B = T == 1 ? 1 : 2, C = cfg.C, H = cfg.H, D = cfg.head_dim();
      INFO("C=" << C << " H=" << H << " R=" << cfg.R << " gates " << cfg.gates << "/"
                << cfg.gate_param << " restart " << cfg.restart << " bias " << cfg.bias
                << " B=" << B << " T=" << T);
      const Params<double> p(rng, cfg);
      const auto x = test::random_normal<double>(rng, B * T * C);
      std::vector<double> y(B * T * C);
      test::poison(y);
      cpu::BlockBuffers<double> buffers;
      cpu::block_forward<double>(cfg, make_view(x.data(), shape(B, T, C)), p.view(),
                                 make_view(y.data(), shape(B, T, C)), buffers);

      const StridedView<const double, 1> no_bias{};
      const auto w = p.view();
      const auto fused = test::naive_gemm(make_view(x.data(), shape(B * T, C)), w.w_attn,
                                          cfg.bias ? w.b_attn : no_bias);
      auto fused3 = make_view(fused.values.data(), shape(B, T, 3 * C));  // (B,T,3C)
      const auto qkv = folded_views(fused3, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
      const auto att =
          test::naive_attention(qkv.q, qkv.k, qkv.v, cfg.R, w.gates(cfg), w.restart(cfg));
      std::vector<double> o(B * T * C);
      auto o_heads =
          heads(make_view(o.data(), shape(B, T, C)), H, D);  // (B,H,T,D) strides (TC,D,C,1)
      for (std::size_t i = 0; i < att.o.values.size(); ++i)
        o_heads.at(test::unravel<4>(att.o.extents, i)) = att.o.values[i];
      const auto want =
          test::naive_gemm(make_view(o.data(), shape(B * T, C)), w.w_o, cfg.bias ? w.b_o : no_bias);

      const auto e_fused =
          test::max_error(test::dense(make_view(buffers.fused.data(), shape(B * T, 3 * C))), fused);
      const auto e_y = test::max_error(test::dense(make_view(y.data(), shape(B * T, C))), want);
      INFO("fused: " << e_fused);
      INFO("y: " << e_y);
      CHECK(e_fused.abs <= 1e-13 * (1.0 + e_fused.max_want));
      CHECK(e_y.abs <= 1e-13 * (1.0 + e_y.max_want));
    }
  }
}

RA_TEST_CASE_IF(any_config_instantiated(),
                "ra::eval of the attention_block expression equals block_forward",
                "[block][expr]") {
  RA_TEST_RNG(rng);
  using T = float;
  for (const auto& cfg : kConfigs) {
    if (!test::block_supported(int(cfg.head_dim()), cfg.R)) continue;
    INFO("C=" << cfg.C << " H=" << cfg.H << " R=" << cfg.R);
    constexpr index_t B = 2, S = 5;
    const index_t C = cfg.C;
    const Params<T> p(rng, cfg);
    const auto x = test::random_normal<T>(rng, B * S * C);
    std::vector<T> y1(B * S * C), y2(y1.size());
    test::poison(y2);
    cpu::BlockBuffers<T> buffers;
    const auto xv = make_view(static_cast<const T*>(x.data()), shape(B, S, C));
    cpu::block_forward<T>(cfg, xv, p.view(), make_view(y1.data(), shape(B, S, C)), buffers);
    const std::vector<T> fused1(buffers.fused.data(), buffers.fused.data() + B * S * 3 * C);
    // The same expression with D and R as template arguments, on a device of its own.
    cpu::Workspace ws;
    dispatch_attention(int(cfg.head_dim()), cfg.R, [&](auto d, auto r) {
      constexpr int kR = static_cast<int>(decltype(r)::value);
      const auto expr = attention_block<Rank<kR>>(cfg, xv, p.view(), d);
      const auto tape = ra::eval(make_view(y2.data(), shape(B * S, C)), expr, cpu::device{&ws});
      const auto& fused2 = tape.tape.a_tape.fused;  // (BT,3C) in the workspace
      CHECK(std::vector<T>(fused2.data(), fused2.data() + fused2.size()) == fused1);
    });
    CHECK(y1 == y2);
  }
}

RA_TEST_CASE_IF(test::block_instantiated(64, 4),
                "nn::AttentionBlock: GPT-2 init, load_baseline, forward", "[block][nn]") {
  RA_TEST_RNG(rng);
  const AttentionBlockConfig cfg{128, 2, 4, GateMode::per_layer, GateParam::softplus, true, true};
  nn::AttentionBlock<float> block(cfg);
  const std::uint64_t seed = rng();
  block.init_gpt2(seed, 12);
  const auto& prm = block.parameters();
  auto stddev = [](const std::vector<float>& v) {
    double s = 0.0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s / double(v.size()));
  };
  CHECK(stddev(prm.w_attn) == Approx(0.02).epsilon(0.05));
  CHECK(stddev(prm.w_o) == Approx(0.02 / std::sqrt(24.0)).epsilon(0.05));
  CHECK(std::all_of(prm.b_attn.begin(), prm.b_attn.end(), [](float b) { return b == 0.f; }));
  CHECK(std::all_of(prm.b_o.begin(), prm.b_o.end(), [](float b) { return b == 0.f; }));
  REQUIRE(prm.w_std.size() == 1);
  CHECK(effective_gate(prm.w_std[0], cfg.gate_param) == Approx(0.9f));
  CHECK(effective_gate(prm.w_rec[0], cfg.gate_param) == Approx(0.1f));
  CHECK(prm.a == std::vector<float>(2, 0.05f));
  nn::AttentionBlock<float> same(cfg), other(cfg);
  same.init_gpt2(seed, 12);
  other.init_gpt2(seed + 1, 12);
  CHECK(same.parameters().w_attn == prm.w_attn);
  CHECK(other.parameters().w_attn != prm.w_attn);

  // load_baseline: W_attn is the repacked baseline; W_o, b_o are copied.
  const index_t C = cfg.C;
  std::vector<std::vector<double>> w(4), b(4);
  for (int i = 0; i < 4; ++i) {
    w[i] = test::random_normal<double>(rng, C * C, 0.1);
    b[i] = test::random_normal<double>(rng, C, 0.1);
  }
  auto mat = [&](int i) { return make_view(static_cast<const double*>(w[i].data()), shape(C, C)); };
  auto vec = [&](int i) { return make_view(static_cast<const double*>(b[i].data()), shape(C)); };
  block.load_baseline(mat(0), mat(1), mat(2), vec(0), vec(1), vec(2), mat(3), vec(3));
  std::vector<float> w_attn(3 * C * C), b_attn(3 * C);
  cpu::repack_qkv(C, cfg.H, cfg.R, mat(0), mat(1), mat(2), vec(0), vec(1), vec(2),
                  make_view(w_attn.data(), shape(3 * C, C)),
                  make_view(b_attn.data(), shape(3 * C)));
  CHECK(prm.w_attn == w_attn);
  CHECK(prm.b_attn == b_attn);
  CHECK(prm.w_o == test::converted<float>(w[3]));
  CHECK(prm.b_o == test::converted<float>(b[3]));

  // forward = block_forward with the block's weights.
  constexpr index_t B = 2, S = 6;
  const auto x = test::random_normal<float>(rng, B * S * C);
  std::vector<float> y(B * S * C), want(B * S * C);
  block.forward(make_view(x.data(), shape(B, S, C)), make_view(y.data(), shape(B, S, C)),
                cpu::device{});
  cpu::BlockBuffers<float> buffers;
  cpu::block_forward<float>(cfg, make_view(x.data(), shape(B, S, C)), block.weights(),
                            make_view(want.data(), shape(B, S, C)), buffers);
  CHECK(y == want);
}

RA_TEST_CASE_IF(test::block_instantiated(64, 4) && test::block_instantiated(32, 4),
                "the block rejects bad input with a message naming the problem",
                "[block][errors]") {
  RA_TEST_RNG(rng);
  const AttentionBlockConfig cfg{128, 2, 4, GateMode::per_head, GateParam::clamp, true, true};
  constexpr index_t B = 2, S = 3, C = 128;
  const Params<float> p(rng, cfg);
  std::vector<float> x(B * S * (C + 1)), y(B * S * (C + 1));
  cpu::BlockBuffers<float> buf;
  auto xv = make_view(x.data(), shape(B, S, C));  // (B,T,C)
  auto yv = make_view(y.data(), shape(B, S, C));  // (B,T,C)
  auto fwd = [&](const AttentionBlockConfig& c, const AttentionBlockWeights<float>& w,
                 StridedView<const float, 3> in,
                 StridedView<float, 3> out) { cpu::block_forward<float>(c, in, w, out, buf); };
  REQUIRE_NOTHROW(fwd(cfg, p.view(), xv, yv));

  SECTION("shape mismatches") {
    REQUIRE_THROWS_WITH(fwd(cfg, p.view(), make_view(x.data(), shape(B, S, C + 1)), yv),
                        Catch::Contains("'x' has shape (2,3,129)"));
    REQUIRE_THROWS_WITH(fwd(cfg, p.view(), xv, make_view(y.data(), shape(B, S + 1, C))),
                        Catch::Contains("'y' has shape (2,4,128)"));
    auto w = p.view();
    w.w_attn = make_view(p.w_attn.data(), shape(3 * C, C - 1));
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("'w_attn' has shape (384,127)"));
    w = p.view();
    w.w_o = make_view(p.w_o.data(), shape(C - 1, C));
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("'w_o' has shape (127,128)"));
    w = p.view();
    w.b_attn = make_view(p.b_attn.data(), shape(C));
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("'b_attn.extent(0)' is 128"));
    std::vector<float> dy(B * S * C), dx(B * S * C);
    REQUIRE_THROWS_WITH(
        cpu::block_backward<float>(cfg, xv, p.view(), make_view(dy.data(), shape(B, S - 1, C)),
                                   make_view(dx.data(), shape(B, S, C)), {}, buf),
        Catch::Contains("'dy' has shape (2,2,128)"));
    REQUIRE_THROWS_WITH(
        cpu::block_backward<float>(cfg, xv, p.view(), make_view(dy.data(), shape(B, S, C)),
                                   make_view(dx.data(), shape(B, S, C - 2)), {}, buf),
        Catch::Contains("'dx' has shape (2,3,126)"));
  }
  SECTION("R >= D and unsupported values") {
    auto c = cfg;
    c.C = 64;
    c.R = 32;  // D = 32
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c), Catch::Contains("R = 32"));
    REQUIRE_THROWS_AS(nn::AttentionBlock<float>(c), ra::unsupported);
    c.R = 3;
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c),
                        Catch::Contains("unsupported reciprocal rank R = 3"));
    c = cfg;
    c.C = 96;  // D = 48
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c),
                        Catch::Contains("unsupported head dim D = 48") &&
                            Catch::Contains(SupportedHeadDims::to_string()));
    REQUIRE_THROWS_WITH(fwd(c, p.view(), xv, yv), Catch::Contains("unsupported head dim D = 48"));
  }
  SECTION("negative and zero sizes") {
    auto c = cfg;
    c.C = -128;
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c), Catch::Contains("argument 'C' is -128"));
    c = cfg;
    c.H = 0;
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c), Catch::Contains("argument 'H' is 0"));
    c = cfg;
    c.R = -1;
    REQUIRE_THROWS_WITH(nn::AttentionBlock<float>(c), Catch::Contains("argument 'R' is -1"));
    REQUIRE_THROWS_WITH(make_view(x.data(), shape(B, -S, C)),
                        Catch::Contains("non-negative extents"));
  }
  SECTION("null data") {
    const StridedView<const float, 3> null_x(nullptr, make_layout(shape(B, S, C)));
    REQUIRE_THROWS_WITH(fwd(cfg, p.view(), null_x, yv), Catch::Contains("'x' is a null pointer"));
    const StridedView<float, 3> null_y(nullptr, make_layout(shape(B, S, C)));
    REQUIRE_THROWS_WITH(fwd(cfg, p.view(), xv, null_y), Catch::Contains("'y' is a null pointer"));
    auto w = p.view();
    w.w_o = StridedView<const float, 2>(nullptr, make_layout(shape(C, C)));
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("'w_o' is a null pointer"));
  }
  SECTION("missing gate and restart values") {
    auto w = p.view();
    w.w_rec = nullptr;
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("'w_std/w_rec' is a null pointer"));
    w = p.view();
    w.a = nullptr;
    REQUIRE_THROWS_WITH(fwd(cfg, w, xv, yv), Catch::Contains("argument 'a' is a null pointer"));
  }
  SECTION("backward before forward") {
    nn::AttentionBlock<float> block(cfg);
    std::vector<float> dy(B * S * C), dx(B * S * C);
    REQUIRE_THROWS_WITH(block.backward(make_view(dy.data(), shape(B, S, C)),
                                       make_view(dx.data(), shape(B, S, C)), cpu::device{}),
                        Catch::Contains("expected forward() first"));
  }
}
