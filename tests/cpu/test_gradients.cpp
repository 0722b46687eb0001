// tests/cpu/test_gradients.cpp — identity I5: every analytic gradient of the CPU backend
// matches central finite differences of its own forward, in double.
//
// Block level (B=2, T=5, C=64, H=2, D=32, R ∈ {0, 4, 8}): dx, dW_attn, db_attn, dW_o, db_o,
// d w_std, d w_rec, d a for per-layer and per-head gates, clamp and softplus, restart on.
// Attention level: dQf, dKf, dV, gates and restart over every supported (D, R) pair.
// Plus the kinks: the clamp floor (w < 1e-8) and a outside [0, 0.5] pass zero gradient.
// Loss L = Σ y ⊙ r for a fixed random r, so dL/dy = r.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <ra/cpu.hpp>
#include <ra/nn.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of `loss` with respect to elements of `param`, against the analytic
// gradient `grad`: every element of a small tensor, a fresh random sample of kSample
// elements of a large one (the seed is printed; each run checks other elements). Double
// parameters move by kStepDouble; float parameters (gates, restart) by about 2^-12, with the
// difference of the perturbed values as the exact denominator.
//
// The step of a double parameter balances the two errors of a central difference:
// truncation h^2 |d3L/dp3| / 6 and rounding e_L / h, where e_L is the rounding error of the
// computed loss. e_L is not eps |L|: L sums hundreds of outputs, each from length-D dot
// products and softmax sums, and measures ~2e-13 here. With h = 1e-6 the rounding term alone
// reached 2e-7, above the tolerance: 2 of 100 fresh seeds failed (D = 128, R = 4, dKf, error
// 1.8e-7 and 2.2e-7 against bounds 1.6e-7 and 2.1e-7). Over 25 seeds the worst error as a
// fraction of the tolerance was 0.22-0.62 with h = 1e-6, 0.02-0.07 with 1e-5, 0.009-0.026
// with 2^-15 and 0.02-0.14 with 1e-4 (truncation takes over), hence 2^-15.
constexpr std::size_t kSample = 256;
constexpr double kStepDouble = 0x1p-15;

template <class P, class G>
test::MaxError check_fd(std::mt19937_64& rng, const char* name, std::vector<P>& param,
                        const std::vector<G>& grad, const std::function<double()>& loss,
                        double tol) {
  REQUIRE(param.size() == grad.size());
  std::vector<std::size_t> idx(param.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  if (idx.size() > kSample) {
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(kSample);
  }
  test::Dense got{{static_cast<index_t>(idx.size())}, {}}, want = got;
  for (std::size_t i : idx) {
    const P p0 = param[i];
    const double h = std::is_same_v<P, float> ? 0x1p-12 : kStepDouble;
    const P plus = static_cast<P>(p0 + h), minus = static_cast<P>(p0 - h);
    param[i] = plus;
    const double lp = loss();
    param[i] = minus;
    const double lm = loss();
    param[i] = p0;
    want.values.push_back((lp - lm) / (static_cast<double>(plus) - static_cast<double>(minus)));
    got.values.push_back(static_cast<double>(grad[i]));
  }
  const auto e = test::max_error(got, want);
  INFO(name << " (" << idx.size() << " of " << param.size() << " elements): " << e);
  CHECK(e.abs <= tol * (1.0 + e.max_want));
  return e;
}

// One block with double weights, float gates, its input and the loss weights r.
struct BlockProblem {
  static constexpr index_t B = 2, T = 5, C = 64, H = 2;
  AttentionBlockConfig cfg;
  std::vector<double> x, w_attn, b_attn, w_o, b_o, r;
  std::vector<float> w_std, w_rec, a;
  cpu::BlockBuffers<double> buffers;

  BlockProblem(std::mt19937_64& rng, int R, GateMode mode, GateParam param, bool restart)
      : cfg{C, H, R, mode, param, restart, true} {
    // Weights large enough that attention is far from uniform.
    x = test::random_normal<double>(rng, B * T * C);
    w_attn = test::random_normal<double>(rng, 3 * C * C, 0.25);
    b_attn = test::random_normal<double>(rng, 3 * C, 0.5);
    w_o = test::random_normal<double>(rng, C * C, 0.25);
    b_o = test::random_normal<double>(rng, C, 0.5);
    r = test::random_normal<double>(rng, B * T * C);
    const std::size_t n = static_cast<std::size_t>(cfg.gate_count());
    const double lo = param == GateParam::clamp ? 0.3 : -1.0;
    w_std = test::random_uniform(rng, n, lo, 1.2);
    w_rec = test::random_uniform(rng, n, lo, 1.2);
    a = test::random_uniform(rng, H, 0.05, 0.45);
  }

  AttentionBlockWeights<double> weights() const {
    AttentionBlockWeights<double> w;
    w.w_attn = make_view(w_attn.data(), shape(3 * C, C));  // (3C,C)
    w.b_attn = make_view(b_attn.data(), shape(3 * C));     // (3C)
    w.w_o = make_view(w_o.data(), shape(C, C));            // (C,C)
    w.b_o = make_view(b_o.data(), shape(C));               // (C)
    w.w_std = w_std.empty() ? nullptr : w_std.data();
    w.w_rec = w_rec.empty() ? nullptr : w_rec.data();
    w.a = a.data();
    return w;
  }

  StridedView<const double, 3> xv() const { return make_view(x.data(), shape(B, T, C)); }

  double loss() {
    std::vector<double> y(B * T * C);
    cpu::block_forward<double>(cfg, xv(), weights(), make_view(y.data(), shape(B, T, C)), buffers);
    return dot(y, r);
  }
};

struct BlockGrads {
  std::vector<double> x, w_attn, b_attn, w_o, b_o;
  std::vector<float> w_std, w_rec, a;
};

BlockGrads analytic(BlockProblem& p) {
  const index_t B = p.B, T = p.T, C = p.C;
  BlockGrads g{std::vector<double>(B * T * C),
               std::vector<double>(3 * C * C),
               std::vector<double>(3 * C),
               std::vector<double>(C * C),
               std::vector<double>(C),
               std::vector<float>(p.w_std.size()),
               std::vector<float>(p.w_rec.size()),
               std::vector<float>(p.a.size())};
  for (auto* v : {&g.x, &g.w_attn, &g.b_attn, &g.w_o, &g.b_o}) test::poison(*v);
  cpu::AttentionBlockGrads<double> views{make_view(g.w_attn.data(), shape(3 * C, C)),
                                         make_view(g.b_attn.data(), shape(3 * C)),
                                         make_view(g.w_o.data(), shape(C, C)),
                                         make_view(g.b_o.data(), shape(C)),
                                         g.w_std.empty() ? nullptr : g.w_std.data(),
                                         g.w_rec.empty() ? nullptr : g.w_rec.data(),
                                         g.a.data()};
  cpu::block_backward<double>(p.cfg, p.xv(), p.weights(), make_view(p.r.data(), shape(B, T, C)),
                              make_view(g.x.data(), shape(B, T, C)), views, p.buffers);
  return g;
}

// The largest FD error seen per gradient, printed once at the end of each case.
void check_block_case(int R, GateMode mode, GateParam param, bool restart) {
  if (!test::block_supported(32, R)) return;
  RA_TEST_RNG(rng);
  INFO("R=" << R << " gates " << mode << "/" << param << " restart " << restart);
  BlockProblem p(rng, R, mode, param, restart);
  const BlockGrads g = analytic(p);
  auto loss = [&] { return p.loss(); };
  // Double parameters: truncation and rounding of the difference quotient stayed below 3e-9
  // of 1 + max |gradient| over 25 seeds (kStepDouble); float gate gradients carry fp32
  // rounding and h ~ 2^-12.
  constexpr double kTol = 1e-7, kTolFloat = 2e-5;
  std::ostringstream summary;
  summary << "I5 R=" << R << " " << mode << "/" << param << " restart=" << restart << ":";
  auto note = [&](const char* n, const test::MaxError& e) { summary << " " << n << " " << e.abs; };
  note("dx", check_fd(rng, "dx", p.x, g.x, loss, kTol));
  note("dW_attn", check_fd(rng, "dW_attn", p.w_attn, g.w_attn, loss, kTol));
  note("db_attn", check_fd(rng, "db_attn", p.b_attn, g.b_attn, loss, kTol));
  note("dW_o", check_fd(rng, "dW_o", p.w_o, g.w_o, loss, kTol));
  note("db_o", check_fd(rng, "db_o", p.b_o, g.b_o, loss, kTol));
  if (mode != GateMode::none) {
    note("dw_std", check_fd(rng, "d w_std", p.w_std, g.w_std, loss, kTolFloat));
    note("dw_rec", check_fd(rng, "d w_rec", p.w_rec, g.w_rec, loss, kTolFloat));
  }
  if (restart) note("da", check_fd(rng, "d a", p.a, g.a, loss, kTolFloat));
  WARN(summary.str());
}

// Attention level: compact (B,H,T,D) double inputs, per-head clamp gates, restart on.
template <int D, int R>
void check_attention_gradients() {
  RA_TEST_RNG(rng);
  constexpr index_t B = 1, H = 2, T = 4;
  const std::size_t n = B * H * T * D;
  auto q = test::random_normal<double>(rng, n), k = test::random_normal<double>(rng, n),
       v = test::random_normal<double>(rng, n), r = test::random_normal<double>(rng, n);
  auto w_std = test::random_uniform(rng, H, 0.3, 1.5),
       w_rec = test::random_uniform(rng, H, 0.3, 1.5), a = test::random_uniform(rng, H, 0.05, 0.45);
  const auto shp = shape(B, H, T, Int<D>{});
  auto node = [&] {
    return folded_attention<Rank<R>>(make_view(static_cast<const double*>(q.data()), shp),
                                     make_view(static_cast<const double*>(k.data()), shp),
                                     make_view(static_cast<const double*>(v.data()), shp),
                                     gates::per_head(w_std.data(), w_rec.data()), causal,
                                     restart::per_head(a.data()));
  };
  auto loss = [&] {
    std::vector<double> o(n);
    cpu::attention_forward(node(), make_view(o.data(), shp));
    return dot(o, r);
  };
  std::vector<double> dq(n), dk(n), dv(n);
  std::vector<float> g_std(H), g_rec(H), g_a(H);
  for (auto* t : {&dq, &dk, &dv}) test::poison(*t);
  cpu::attention_backward(node(), make_view(static_cast<const double*>(r.data()), shp),
                          make_view(dq.data(), shp), make_view(dk.data(), shp),
                          make_view(dv.data(), shp),
                          cpu::AttentionGrads{g_std.data(), g_rec.data(), g_a.data()});
  check_fd(rng, "dQf", q, dq, loss, 1e-7);
  check_fd(rng, "dKf", k, dk, loss, 1e-7);
  check_fd(rng, "dV", v, dv, loss, 1e-7);
  check_fd(rng, "d w_std", w_std, g_std, loss, 2e-5);
  if (R > 0) check_fd(rng, "d w_rec", w_rec, g_rec, loss, 2e-5);
  check_fd(rng, "d a", a, g_a, loss, 2e-5);
  if (R == 0) CHECK(g_rec == std::vector<float>(H, 0.f));
}

}  // namespace

// The block cases below are registered where at least one of their ranks is instantiated at
// D = 32; check_block_case skips (with a WARN) the ones that are not.
namespace {
constexpr bool any_rank_instantiated(std::initializer_list<int> ranks) {
  for (int R : ranks)
    if (test::block_instantiated(32, R)) return true;
  return false;
}
}  // namespace

RA_TEST_CASE_IF(any_rank_instantiated({0, 4, 8}),
                "I5: block gradients match central finite differences (per-layer, clamp)",
                "[gradients][block][I5]") {
  for (int R : {0, 4, 8}) check_block_case(R, GateMode::per_layer, GateParam::clamp, true);
}

RA_TEST_CASE_IF(any_rank_instantiated({0, 4, 8}),
                "I5: block gradients match central finite differences (per-head, softplus)",
                "[gradients][block][I5]") {
  for (int R : {0, 4, 8}) check_block_case(R, GateMode::per_head, GateParam::softplus, true);
}

RA_TEST_CASE_IF(any_rank_instantiated({4, 8, 0}),
                "I5: block gradients match central finite differences (other gate forms)",
                "[gradients][block][I5]") {
  check_block_case(4, GateMode::per_head, GateParam::clamp, true);
  check_block_case(8, GateMode::per_layer, GateParam::softplus, false);
  check_block_case(0, GateMode::none, GateParam::clamp, false);
}

#define RA_GRADIENT_CASE(D, R)                                                          \
  TEST_CASE("I5: attention gradients match central finite differences, D=" #D " R=" #R, \
            "[gradients][attention][I5][d" #D "][r" #R "]") {                           \
    check_attention_gradients<D, R>();                                                  \
  }
RA_TEST_DR_PAIRS(RA_GRADIENT_CASE)
#undef RA_GRADIENT_CASE

RA_TEST_CASE_IF(test::block_instantiated(32, 4),
                "the clamp floor and the restart clamp pass zero gradient", "[gradients][kinks]") {
  RA_TEST_RNG(rng);
  for (GateMode mode : {GateMode::per_layer, GateMode::per_head}) {
    INFO("gates " << mode);
    BlockProblem p(rng, 4, mode, GateParam::clamp, true);
    // Below the floor the effective gate is the constant 1e-8; outside [0, 0.5] alpha is
    // constant. Both gradients must be exactly zero, and so is the difference quotient.
    p.w_std.assign(p.w_std.size(), 1e-9f);
    p.w_rec.assign(p.w_rec.size(), -0.25f);
    p.a = {-0.125f, 0.75f};
    const BlockGrads g = analytic(p);
    for (float v : g.w_std) CHECK(v == 0.f);
    for (float v : g.w_rec) CHECK(v == 0.f);
    for (float v : g.a) CHECK(v == 0.f);
    const double l0 = p.loss();
    p.w_std.assign(p.w_std.size(), 5e-9f);
    p.w_rec.assign(p.w_rec.size(), -0.5f);
    p.a = {-0.25f, 0.875f};
    CHECK(p.loss() == l0);

    // Inside the active range the same gradients are not zero (the check above can fail).
    p.w_std.assign(p.w_std.size(), 0.9f);
    p.w_rec.assign(p.w_rec.size(), 0.1f);
    p.a = {0.05f, 0.05f};
    const BlockGrads live = analytic(p);
    for (float v : live.w_std) CHECK(v != 0.f);
    for (float v : live.w_rec) CHECK(v != 0.f);
    for (float v : live.a) CHECK(v != 0.f);
  }
}

RA_TEST_CASE_IF(test::block_instantiated(32, 4),
                "nn::AttentionBlock backward equals cpu::block_backward", "[gradients][nn]") {
  RA_TEST_RNG(rng);
  BlockProblem p(rng, 4, GateMode::per_head, GateParam::clamp, true);
  const BlockGrads want = analytic(p);
  nn::AttentionBlock<double> block(p.cfg);
  auto& params = block.parameters();
  params.w_attn = p.w_attn;
  params.b_attn = p.b_attn;
  params.w_o = p.w_o;
  params.b_o = p.b_o;
  params.w_std = p.w_std;
  params.w_rec = p.w_rec;
  params.a = p.a;
  std::vector<double> y(p.x.size()), dx(p.x.size());
  block.forward(p.xv(), make_view(y.data(), shape(p.B, p.T, p.C)), cpu::device{});
  block.backward(make_view(static_cast<const double*>(p.r.data()), shape(p.B, p.T, p.C)),
                 make_view(dx.data(), shape(p.B, p.T, p.C)), cpu::device{});
  const auto& got = block.gradients();
  CHECK(dx == want.x);
  CHECK(got.w_attn == want.w_attn);
  CHECK(got.b_attn == want.b_attn);
  CHECK(got.w_o == want.w_o);
  CHECK(got.b_o == want.b_o);
  CHECK(got.w_std == want.w_std);
  CHECK(got.w_rec == want.w_rec);
  CHECK(got.a == want.a);
}
