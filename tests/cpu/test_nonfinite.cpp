// tests/cpu/test_nonfinite.cpp — gate and restart values that are NaN or infinite are refused
// by name wherever they are host memory: the CPU attention (forward and backward), the
// attention block layer and the GPT-2 model. Left through, the clamp floors NaN silently and
// softplus or restart turn every output into NaN.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <ra/cpu.hpp>
#include <ra/nn.hpp>

namespace {

using namespace ra;
using Catch::Matchers::Contains;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("attention refuses non-finite gate and restart values, naming them",
          "[nonfinite][attention]") {
  const index_t B = 1, H = 2, T = 3, D = 64;
  const int R = 4;
  std::vector<float> q(B * H * T * D, 0.1f), k(q), v(q), o(q.size()), d_o(q.size(), 1.f);
  std::vector<float> dq(q.size()), dk(q.size()), dv(q.size());
  auto view = [&](std::vector<float>& x) { return make_view(x.data(), shape(B, H, T, D)); };
  auto cview = [&](const std::vector<float>& x) {
    return make_view(static_cast<const float*>(x.data()), shape(B, H, T, D));
  };
  std::vector<float> w_std{0.9f, 0.9f}, w_rec{0.1f, 0.1f}, a{0.05f, 0.05f};
  auto run = [&](GateParam p, bool restart) {
    auto node = folded_attention(cview(q), cview(k), cview(v), R,
                                 gates::per_head(w_std.data(), w_rec.data(), p), causal,
                                 restart ? restart::per_head(a.data()) : restart::none());
    cpu::attention_forward(node, view(o));
  };
  auto run_backward = [&] {
    auto node = folded_attention(cview(q), cview(k), cview(v), R,
                                 gates::per_head(w_std.data(), w_rec.data()), causal,
                                 restart::per_head(a.data()));
    cpu::attention_backward(node, cview(d_o), view(dq), view(dk), view(dv));
  };
  REQUIRE_NOTHROW(run(GateParam::clamp, true));
  REQUIRE_NOTHROW(run_backward());

  SECTION("NaN w_std, clamp") {
    w_std[1] = kNaN;
    CHECK_THROWS_WITH(run(GateParam::clamp, false), Contains("cpu::attention_forward") &&
                                                        Contains("'gates.w_std[1]' is nan") &&
                                                        Contains("expected a finite value"));
    CHECK_THROWS_WITH(run_backward(),
                      Contains("cpu::attention_backward") && Contains("'gates.w_std[1]' is nan"));
  }
  SECTION("infinite w_rec, softplus") {
    w_rec[0] = -kInf;
    CHECK_THROWS_WITH(run(GateParam::softplus, false), Contains("'gates.w_rec[0]' is -inf"));
  }
  SECTION("NaN restart") {
    a[1] = kNaN;
    CHECK_THROWS_WITH(run(GateParam::clamp, true), Contains("'restart.a[1]' is nan"));
    CHECK_THROWS_WITH(run_backward(), Contains("'restart.a[1]' is nan"));
  }
  SECTION("per-layer gates read one value only") {
    w_std[1] = kNaN;  // not a per-layer gate: never read
    auto node = folded_attention(cview(q), cview(k), cview(v), R,
                                 gates::per_layer(w_std.data(), w_rec.data()));
    CHECK_NOTHROW(cpu::attention_forward(node, view(o)));
    w_std[0] = kInf;
    CHECK_THROWS_WITH(cpu::attention_forward(node, view(o)), Contains("'gates.w_std[0]' is inf"));
  }
}

TEST_CASE("the attention block layer and GPT-2 refuse non-finite gates, naming the tensor",
          "[nonfinite][gpt2]") {
  AttentionBlockConfig cfg;
  cfg.C = 64;
  cfg.H = 1;
  cfg.R = 4;
  cfg.gates = GateMode::per_layer;
  cfg.restart = true;
  nn::AttentionBlock<float> block(cfg);
  block.init_gpt2(1, 1);
  std::vector<float> x(2 * 64, 0.5f), y(x.size());
  const auto xv =
      make_view(static_cast<const float*>(x.data()), shape(index_t{1}, index_t{2}, index_t{64}));
  const auto yv = make_view(y.data(), shape(index_t{1}, index_t{2}, index_t{64}));
  REQUIRE_NOTHROW(block.forward(xv, yv, cpu::device{}));
  block.parameters().a[0] = kNaN;
  CHECK_THROWS_WITH(block.forward(xv, yv, cpu::device{}), Contains("'restart.a[0]' is nan"));

  nn::GPT2Config g;
  g.vocab = 257;
  g.max_seq = 8;
  g.n_layer = 2;
  g.n_head = 1;
  g.C = 64;
  g.arm = nn::Arm::ra;
  g.gates = GateMode::per_head;
  g.gate_param = GateParam::softplus;
  nn::GPT2<float> model(g);
  model.init_gpt2(1);
  std::vector<std::int32_t> tokens(8, 3);
  const auto tv =
      make_view(static_cast<const std::int32_t*>(tokens.data()), shape(index_t{1}, index_t{8}));
  REQUIRE(std::isfinite(model.forward(tv, tv)));
  model.set_parameter("h.1.attn.w_rec", std::vector<float>{kNaN});
  CHECK_THROWS_WITH(model.forward(tv, tv), Contains("nn::GPT2::forward") &&
                                               Contains("'h.1.attn.w_rec[0]' is nan") &&
                                               Contains("expected a finite"));
}
