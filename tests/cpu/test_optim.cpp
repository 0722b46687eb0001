// tests/cpu/test_optim.cpp — AdamW against hand-computed updates (bias correction, decoupled
// weight decay on decayed tensors only, global-norm clipping) and the warmup + cosine
// learning-rate schedule at known points.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <ra/nn/adamw.hpp>
#include <ra/nn/gpt2.hpp>
#include <ra/nn/schedule.hpp>

namespace {

using namespace ra;

struct Tensor {
  index_t offset, n;
  bool decay;
  index_t size() const { return n; }
};

}  // namespace

TEST_CASE(
    "AdamW: the first step moves each parameter by lr·(sign(g) + λp) and the second "
    "matches the formula",
    "[optim][adamw]") {
  // Tensor 0 (elements 0, 1) decays, tensor 1 (elements 2, 3) does not.
  const std::vector<Tensor> table{{0, 2, true}, {2, 2, false}};
  nn::AdamWConfig cfg;
  cfg.grad_clip = 0.0;  // off here; see the clipping case
  nn::AdamW opt(4, table, cfg);
  std::vector<float> p{1.0f, -2.0f, 0.5f, 3.0f};
  const std::vector<float> g1{0.3f, -0.4f, 1.2f, 0.0f};
  const auto s1 = opt.step(p, g1, 0.1);
  CHECK(s1.grad_norm == Approx(1.3).epsilon(1e-7));
  CHECK(s1.clip_scale == 1.0);
  CHECK(opt.steps() == 1);
  // Step 1: m̂ = g, v̂ = g², so the Adam direction is g / (|g| + ε) ≈ sign(g); a zero
  // gradient gives no move at all.
  CHECK(p[0] == Approx(1.0 - 0.1 * (1.0 + 0.1 * 1.0)).epsilon(1e-6));     // 0.89
  CHECK(p[1] == Approx(-2.0 - 0.1 * (-1.0 + 0.1 * -2.0)).epsilon(1e-6));  // -1.88
  CHECK(p[2] == Approx(0.5 - 0.1 * 1.0).epsilon(1e-6));                   // 0.4, no decay
  CHECK(p[3] == 3.0f);

  // Step 2, written out: m = β1 m + (1-β1) g, v = β2 v + (1-β2) g², bias-corrected.
  const std::vector<float> g2{-0.1f, 0.2f, 0.6f, 0.5f};
  std::vector<double> want(4);
  for (int i = 0; i < 4; ++i) {
    const double m1 = 0.1 * g1[i], v1 = 0.05 * g1[i] * g1[i];
    const double m2 = 0.9 * m1 + 0.1 * g2[i], v2 = 0.95 * v1 + 0.05 * g2[i] * g2[i];
    const double mh = m2 / (1 - 0.9 * 0.9), vh = v2 / (1 - 0.95 * 0.95);
    const double wd = i < 2 ? 0.1 : 0.0;
    want[i] = p[i] - 0.05 * (mh / (std::sqrt(vh) + 1e-8) + wd * p[i]);
  }
  opt.step(p, g2, 0.05);
  for (int i = 0; i < 4; ++i) CHECK(p[i] == Approx(want[i]).epsilon(1e-6));
  CHECK(opt.first_moment()[3] == Approx(0.1 * 0.5).epsilon(1e-6));
  CHECK(opt.second_moment()[0] == Approx(0.95 * 0.05 * 0.09 + 0.05 * 0.01).epsilon(1e-6));
}

TEST_CASE("AdamW: global-norm clipping scales every gradient by clip / ‖g‖", "[optim][adamw]") {
  const std::vector<Tensor> table{{0, 3, false}};
  nn::AdamW clipped(3, table);  // clip 1.0 by default
  nn::AdamWConfig off;
  off.grad_clip = 0.0;
  nn::AdamW manual(3, table, off);
  std::vector<float> a{0.1f, 0.2f, 0.3f}, b = a;
  const std::vector<float> g{3.f, -4.f, 12.f};  // ‖g‖ = 13
  const auto s = clipped.step(a, g, 1e-2);
  CHECK(s.grad_norm == Approx(13.0));
  CHECK(s.clip_scale == Approx(1.0 / 13.0).epsilon(1e-6));
  std::vector<float> g_scaled(3);
  for (int i = 0; i < 3; ++i) g_scaled[i] = static_cast<float>(g[i] * s.clip_scale);
  manual.step(b, g_scaled, 1e-2);
  // Step 1 is scale-free (g / |g|), so compare the moments: m = 0.1 · g / 13.
  for (int i = 0; i < 3; ++i) {
    CHECK(clipped.first_moment()[i] == Approx(0.1 * g[i] / 13.0).epsilon(1e-6));
    CHECK(clipped.first_moment()[i] == Approx(manual.first_moment()[i]).epsilon(1e-6));
    CHECK(a[i] == Approx(b[i]).epsilon(1e-6));
  }
  // A norm under the limit is left alone.
  const std::vector<float> small{0.3f, 0.4f, 0.0f};
  CHECK(clipped.step(a, small, 1e-2).clip_scale == 1.0);
}

TEST_CASE("AdamW decays exactly the GPT-2 tensors the table marks: 2-D weights and embeddings",
          "[optim][adamw]") {
  auto cfg = nn::GPT2Config::gpt2_124m(257);
  cfg.n_layer = 1;
  cfg.arm = nn::Arm::ra;
  cfg.restart = true;
  for (const auto& p : nn::gpt2_layout(cfg).table) {
    INFO(p.name);
    const bool matrix = p.cols > 1;
    CHECK(p.decay == matrix);
    if (p.name == "wte" || p.name == "wpe" || p.name.find(".w_attn") != std::string::npos)
      CHECK(p.decay);
    if (p.name.find("bias") != std::string::npos || p.name.find("ln") != std::string::npos ||
        p.name.find("w_std") != std::string::npos || p.name.find("attn.a") != std::string::npos)
      CHECK_FALSE(p.decay);
  }
}

TEST_CASE("AdamW bad input names the problem", "[optim][adamw][errors]") {
  const std::vector<Tensor> table{{0, 2, true}};
  nn::AdamW opt(2, table);
  std::vector<float> p(2), g(3);
  CHECK_THROWS_WITH(opt.step(p, g, 0.1), Catch::Contains("grads.size()") && Catch::Contains("3"));
  std::vector<float> nan{std::numeric_limits<float>::quiet_NaN(), 0.f};
  CHECK_THROWS_WITH(opt.step(p, nan, 0.1),
                    Catch::Contains("gradient norm") && Catch::Contains("finite"));
  CHECK(opt.steps() == 0);  // a refused step is not counted
  const std::vector<Tensor> outside{{1, 2, true}};
  CHECK_THROWS_WITH(nn::AdamW(2, outside), Catch::Contains("outside"));
  nn::AdamWConfig bad;
  bad.beta2 = 1.0;
  CHECK_THROWS_WITH(nn::AdamW(2, table, bad), Catch::Contains("beta2"));
}

TEST_CASE("learning-rate schedule: linear warmup, cosine to min_lr, flat after", "[optim][lr]") {
  const nn::CosineSchedule s{1.0, 0.1, 10, 110};
  CHECK(s.at(0) == Approx(0.1));  // (0 + 1) / 10
  CHECK(s.at(4) == Approx(0.5));
  CHECK(s.at(9) == Approx(1.0));
  CHECK(s.at(10) == Approx(1.0));   // cosine starts at the peak
  CHECK(s.at(60) == Approx(0.55));  // half way: (max + min) / 2
  CHECK(s.at(35) == Approx(0.1 + 0.45 * (1 + std::cos(3.141592653589793 / 4))));
  CHECK(s.at(110) == Approx(0.1));
  CHECK(s.at(1000) == Approx(0.1));
  for (index_t k = 10; k < 110; ++k) CHECK(s.at(k + 1) <= s.at(k));
  // Wall-clock mode: warmup by steps, decay by the elapsed share of the budget.
  CHECK(s.at_progress(3, 0.9) == Approx(0.4));
  CHECK(s.at_progress(50, 0.5) == Approx(0.55));
  CHECK(s.at_progress(50, 1.7) == Approx(0.1));
  const nn::CosineSchedule no_warmup{2.0, 0.0, 0, 4};
  CHECK(no_warmup.at(0) == Approx(2.0));
  CHECK(no_warmup.at(2) == Approx(1.0));
  CHECK_THROWS_WITH((nn::CosineSchedule{1.0, 2.0, 0, 4}.validate()), Catch::Contains("min_lr"));
  CHECK_THROWS_WITH((nn::CosineSchedule{1.0, 0.1, 0, 0}.validate()), Catch::Contains("total"));
}
