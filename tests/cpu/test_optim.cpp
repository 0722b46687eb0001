// tests/cpu/test_optim.cpp — AdamW against hand-computed updates (bias correction, decoupled
// weight decay on decayed tensors only, global-norm clipping), the warmup + cosine
// learning-rate schedule at known points, and AdamW with SPAM against a double-precision
// reference written out here (spikes, momentum resets, warm-ups), its phase at known steps and
// its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <ra/nn/adamw.hpp>
#include <ra/nn/gpt2.hpp>
#include <ra/nn/schedule.hpp>

#include "reference.hpp"

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

// ---- AdamW with SPAM (ra/nn/adamw.hpp) --------------------------------------------------------

namespace {

// SPAM written out from the paper's rule, in double throughout (moments included), with its own
// bookkeeping: nothing here calls into nn::SpamConfig.
struct SpamReference {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, wd = 0.1, clip = 0.0;
  double theta = 0.0;
  std::uint64_t interval = 0, warmup = 0, delay = 0;
  std::vector<double> m, v;
  std::vector<bool> decay;
  std::uint64_t t = 0, spikes = 0;

  void step(std::vector<double>& p, const std::vector<float>& grad, double lr) {
    ++t;
    double sq = 0.0;
    for (float g : grad) sq += double(g) * double(g);
    const double scale = clip > 0.0 ? std::min(1.0, clip / (std::sqrt(sq) + 1e-6)) : 1.0;
    const std::uint64_t k = t % interval;  // this test always resets
    if (k == 0) {
      std::fill(m.begin(), m.end(), 0.0);
      std::fill(v.begin(), v.end(), 0.0);
    }
    double w = 1.0;
    if (t >= interval && k < warmup)
      w = 1.0 -
          0.99 * 0.5 * (1.0 + std::cos(3.14159265358979323846 * double(k) / double(warmup + 1)));
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i] * scale;
      if (k >= delay && v[i] > 0.0 && g * g > theta * v[i]) {
        g = (g < 0 ? -1.0 : 1.0) * std::sqrt(theta * v[i]);
        ++spikes;
      }
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const double mh = m[i] / (1 - std::pow(beta1, double(t)));
      const double vh = v[i] / (1 - std::pow(beta2, double(t)));
      p[i] -= lr * (w * mh / (std::sqrt(vh) + eps) + (decay[i] ? wd : 0.0) * p[i]);
    }
  }
};

}  // namespace

TEST_CASE("SPAM's phase: resets every ΔT steps, clipping after the delay, cosine warm-up",
          "[optim][spam]") {
  const nn::SpamConfig d;  // the paper's defaults
  CHECK(d.threshold == 5000.0);
  CHECK(d.reset_interval == 500);
  CHECK(d.warmup == 150);
  CHECK(d.clip_delay == 20);
  auto p = d.at(1);
  CHECK_FALSE(p.reset);
  CHECK_FALSE(p.clip);           // the second moment is too young
  CHECK(p.warmup_scale == 1.0);  // no warm-up before the first reset: the schedule has its own
  CHECK(d.at(19).clip == false);
  CHECK(d.at(20).clip);
  p = d.at(500);
  CHECK(p.reset);
  CHECK_FALSE(p.clip);
  CHECK(p.since_reset == 0);
  CHECK(p.warmup_scale == Approx(0.01));
  CHECK(d.at(501).warmup_scale ==
        Approx(1.0 - 0.99 * 0.5 * (1.0 + std::cos(3.14159265358979323846 / 151.0))));
  CHECK(d.at(575).warmup_scale == Approx(1.0 - 0.99 * 0.5).epsilon(0.02));  // about half way
  CHECK(d.at(649).warmup_scale > 0.99);
  CHECK(d.at(650).warmup_scale == 1.0);
  CHECK(d.at(520).clip);
  CHECK(d.at(519).clip == false);
  CHECK(d.at(1000).reset);
  for (std::uint64_t t = 500; t < 650; ++t) CHECK(d.at(t + 1).warmup_scale >= d.at(t).warmup_scale);
  // ΔT = 0: never a reset, never a warm-up.
  nn::SpamConfig never = d;
  never.reset_interval = 0;
  CHECK_FALSE(never.at(500).reset);
  CHECK(never.at(500).warmup_scale == 1.0);
  CHECK(never.at(500).since_reset == 500);
  // Plain AdamW has no phase.
  const auto plain = nn::AdamWConfig{}.phase(500);
  CHECK_FALSE(plain.reset);
  CHECK_FALSE(plain.clip);
  CHECK(plain.warmup_scale == 1.0);
}

TEST_CASE("AdamW + SPAM matches a double-precision reference over spikes, resets and warm-ups",
          "[optim][spam]") {
  RA_TEST_RNG(rng);
  // Tensor 0 (elements 0..3) decays, tensor 1 (4..6) does not.
  const std::vector<Tensor> table{{0, 4, true}, {4, 3, false}};
  const std::size_t n = 7;
  nn::AdamWConfig cfg;
  cfg.kind = nn::OptimizerKind::adamw_spam;
  cfg.grad_clip = 8.0;        // on, and reached by the spike step
  cfg.spam.threshold = 25.0;  // |g| > 5·√v is a spike
  cfg.spam.reset_interval = 4;
  cfg.spam.warmup = 2;
  cfg.spam.clip_delay = 1;
  nn::AdamW opt(n, table, cfg);
  SpamReference ref;
  ref.clip = cfg.grad_clip;
  ref.theta = cfg.spam.threshold;
  ref.interval = 4;
  ref.warmup = 2;
  ref.delay = 1;
  ref.m.assign(n, 0.0);
  ref.v.assign(n, 0.0);
  ref.decay = {true, true, true, true, false, false, false};

  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<float> p(n);
  for (auto& x : p) x = static_cast<float>(u(rng));
  std::vector<double> want(p.begin(), p.end());
  std::uint64_t spikes = 0;
  for (int t = 1; t <= 11; ++t) {
    INFO("step " << t);
    std::vector<float> g(n);
    for (auto& x : g) x = static_cast<float>(0.5 * u(rng));
    if (t == 6)
      g[2] = 40.f;              // a spike inside a period (k = 2 >= delay): clipped, and the
                                // global norm (> 8) is clipped first
    if (t == 10) g[5] = -30.f;  // a negative spike after the second reset (k = 2)
    const double lr = 1e-2 * (1.0 + 0.1 * t);
    const auto r = opt.step(p, g, lr);
    ref.step(want, g, lr);
    CHECK(r.spam.reset == (t % 4 == 0));
    if (t == 4 || t == 8) {
      CHECK(r.spam.warmup_scale == Approx(0.01));
      CHECK(r.spikes == 0);  // the moments were just zeroed: nothing to compare with
    }
    if (t == 6 || t == 10) CHECK(r.spikes >= 1);
    if (t == 6) CHECK(r.clip_scale < 1.0);
    spikes += r.spikes;
    CHECK(opt.spikes() == spikes);
    CHECK(spikes == ref.spikes);
    for (std::size_t i = 0; i < n; ++i) {
      INFO("element " << i);
      // fp32 moments and parameters against double ones: a few fp32 roundings per step.
      CHECK(p[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
      CHECK(opt.first_moment()[i] == Approx(ref.m[i]).epsilon(1e-5).margin(1e-7));
      CHECK(opt.second_moment()[i] == Approx(ref.v[i]).epsilon(1e-5).margin(1e-9));
    }
  }
  CHECK(spikes >= 2);
  CHECK(opt.steps() == 11);
}

TEST_CASE("SPAM that never resets nor clips is AdamW bit for bit", "[optim][spam]") {
  RA_TEST_RNG(rng);
  const std::vector<Tensor> table{{0, 3, true}, {3, 2, false}};
  nn::AdamWConfig plain, spam;
  spam.kind = nn::OptimizerKind::adamw_spam;
  spam.spam.threshold = 0.0;
  spam.spam.reset_interval = 0;
  nn::AdamW a(5, table, plain), b(5, table, spam);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> pa(5), pb;
  for (auto& x : pa) x = nd(rng);
  pb = pa;
  for (int t = 0; t < 5; ++t) {
    std::vector<float> g(5);
    for (auto& x : g) x = nd(rng);
    a.step(pa, g, 1e-2);
    b.step(pb, g, 1e-2);
  }
  CHECK(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)) == 0);
  CHECK(b.spikes() == 0);
}

TEST_CASE("SPAM bad input names the problem", "[optim][spam][errors]") {
  CHECK(nn::parse_optimizer_kind("adamw") == nn::OptimizerKind::adamw);
  CHECK(nn::parse_optimizer_kind("adamw_spam") == nn::OptimizerKind::adamw_spam);
  CHECK(nn::name(nn::OptimizerKind::adamw_spam) == "adamw_spam");
  CHECK_THROWS_WITH(nn::parse_optimizer_kind("spam"),
                    Catch::Contains("'spam'") && Catch::Contains("'adamw_spam'"));
  const std::vector<Tensor> table{{0, 2, true}};
  nn::AdamWConfig bad;
  bad.kind = nn::OptimizerKind::adamw_spam;
  bad.spam.reset_interval = 10;
  bad.spam.warmup = 11;
  CHECK_THROWS_WITH(nn::AdamW(2, table, bad), Catch::Contains("spam warmup") &&
                                                  Catch::Contains("11") &&
                                                  Catch::Contains("reset interval 10"));
  bad.spam.warmup = 5;
  bad.spam.threshold = -1.0;
  CHECK_THROWS_WITH(nn::AdamW(2, table, bad), Catch::Contains("spam threshold"));
  // The same values are ignored by plain AdamW.
  bad.kind = nn::OptimizerKind::adamw;
  CHECK_NOTHROW(nn::AdamW(2, table, bad));
}
