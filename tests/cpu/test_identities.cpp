// tests/cpu/test_identities.cpp — identities I1-I4 of design.md §2 and "R = 0 is the
// baseline, bit for bit", over every supported (D, R) pair, in double.
//
//   I1  RA(Qf, Kf, V; g) = plain causal attention on (Qf ⊙ √g, Kf ⊙ √g, V), same 1/√D
//   I2  w_std = w_rec = 1: RA block = plain attention block on the un-permuted split of fused
//   I3  repacked baseline weights, w_std = 1, w_rec = 0: RA block = baseline block with the
//       last R dims of each head's q zeroed (up to the clamp floor g_rec = 1e-8)
//   I4  repacked weights, any gates: the logits are
//       (w_std · Q_std K_stdᵀ + w_rec · (Q_low K_lowᵀ)ᵀ) / √D, checked through lse and O
//   R = 0: gates 1/1 vs none, any w_rec, Rank<0> vs runtime 0 give identical bits
// The largest error seen per identity is printed at the end of the run.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;
using test::MaxError;

// ---- the per-identity summary ----------------------------------------------------------------

struct IdentityRecord {
  double abs = 0.0;       // largest |error|
  double max_want = 0.0;  // the scale of the values where it was seen
  std::string where = "-";
  int cases = 0;
};

std::map<std::string, IdentityRecord>& identity_log() {
  static std::map<std::string, IdentityRecord> log;
  return log;
}

void record(const std::string& identity, const MaxError& e, const std::string& where) {
  auto& r = identity_log()[identity];
  ++r.cases;
  if (r.cases == 1 || e.abs > r.abs) {
    r.abs = e.abs;
    r.max_want = e.max_want;
    r.where = where + " " + e.at;
  }
}

struct IdentitySummary : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats&) override {
    if (identity_log().empty()) return;
    std::cout << "\nLargest error per identity (CPU backend, double):\n";
    for (const auto& [name, r] : identity_log())
      std::cout << "  " << std::left << std::setw(12) << name << " max |error| " << std::setw(12)
                << r.abs << " (max |value| " << r.max_want << ", " << r.cases << " cases, worst at "
                << r.where << ")\n";
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(IdentitySummary)

namespace {

// ---- shared setup ----------------------------------------------------------------------------

// A baseline attention layer's weights: W_q, W_k, W_v, W_o (C,C) and biases (C).
struct Baseline {
  index_t C;
  std::vector<double> w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o;
  Baseline(std::mt19937_64& rng, index_t c) : C(c) {
    const double s = 1.5 / std::sqrt(double(C));  // O(1) logits: attention far from uniform
    for (auto* w : {&w_q, &w_k, &w_v, &w_o}) *w = test::random_normal<double>(rng, C * C, s);
    for (auto* b : {&b_q, &b_k, &b_v, &b_o}) *b = test::random_normal<double>(rng, C, 0.1);
  }
  StridedView<const double, 2> mat(const std::vector<double>& w) const {
    return make_view(w.data(), shape(C, C));  // (C,C)
  }
  StridedView<const double, 1> vec(const std::vector<double>& b) const {
    return make_view(b.data(), shape(C));  // (C)
  }
};

// A fused block's parameters in the layout AttentionBlockWeights expects.
struct FusedWeights {
  index_t C;
  std::vector<double> w_attn, b_attn, w_o, b_o;
  std::vector<float> w_std, w_rec, a;
  AttentionBlockWeights<double> view() const {
    return {make_view(w_attn.data(), shape(3 * C, C)),
            make_view(b_attn.data(), shape(3 * C)),
            make_view(w_o.data(), shape(C, C)),
            make_view(b_o.data(), shape(C)),
            w_std.empty() ? nullptr : w_std.data(),
            w_rec.empty() ? nullptr : w_rec.data(),
            a.empty() ? nullptr : a.data()};
  }
};

FusedWeights repacked(const Baseline& base, index_t H, int R) {
  const index_t C = base.C;
  FusedWeights f{
      C, std::vector<double>(3 * C * C), std::vector<double>(3 * C), base.w_o, base.b_o, {}, {},
      {}};
  cpu::repack_qkv(C, H, R, base.mat(base.w_q), base.mat(base.w_k), base.mat(base.w_v),
                  base.vec(base.b_q), base.vec(base.b_k), base.vec(base.b_v),
                  make_view(f.w_attn.data(), shape(3 * C, C)),
                  make_view(f.b_attn.data(), shape(3 * C)));
  return f;
}

std::vector<double> run_block(const AttentionBlockConfig& cfg, const FusedWeights& w,
                              const std::vector<double>& x, index_t B, index_t T,
                              cpu::BlockBuffers<double>* keep = nullptr) {
  cpu::BlockBuffers<double> local;
  std::vector<double> y(x.size());
  test::poison(y);
  cpu::block_forward<double>(cfg, make_view(x.data(), shape(B, T, cfg.C)), w.view(),
                             make_view(y.data(), shape(B, T, cfg.C)), keep ? *keep : local);
  return y;
}

MaxError compare(const std::vector<double>& got, const std::vector<double>& want) {
  return test::max_error(test::Dense{{static_cast<index_t>(got.size())}, got},
                         test::Dense{{static_cast<index_t>(want.size())}, want});
}

template <int D, int R>
void check_identities() {
  RA_TEST_RNG(rng);
  constexpr index_t B = 2, H = 2, T = 7, C = H * D;
  const std::string pair = "D=" + std::to_string(D) + " R=" + std::to_string(R);
  const auto x = test::random_normal<double>(rng, B * T * C);

  {  // I1: gates applied once to Q equal √g on both sides.
    const auto fused = test::random_normal<double>(rng, B * T * 3 * C);
    auto fused3 = make_view(fused.data(), shape(B, T, 3 * C));  // (B,T,3C)
    auto qkv = folded_views(fused3, H, Int<D>{});  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const auto w_std = test::random_uniform(rng, H, 0.2, 1.5),
               w_rec = test::random_uniform(rng, H, 0.2, 1.5),
               a = test::random_uniform(rng, H, 0.0, 0.5);
    const auto shp = shape(B, H, T, Int<D>{});
    std::vector<double> o_ra(B * H * T * D), o_plain(o_ra.size()), qs(o_ra.size()), ks(o_ra.size());
    test::poison(o_ra);
    test::poison(o_plain);
    auto qsv = make_view(qs.data(), shp);  // (B,H,T,D) strides (HTD,TD,D,1)
    auto ksv = make_view(ks.data(), shp);  // (B,H,T,D)
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h)
        for (index_t t = 0; t < T; ++t)
          for (index_t d = 0; d < D; ++d) {
            const double s =
                std::sqrt(test::naive_gate(d < D - R ? w_std[h] : w_rec[h], GateParam::clamp));
            qsv(b, h, t, d) = qkv.q(b, h, t, d) * s;
            ksv(b, h, t, d) = qkv.k(b, h, t, d) * s;
          }
    cpu::attention_forward(
        folded_attention<Rank<R>>(qkv.q, qkv.k, qkv.v, gates::per_head(w_std.data(), w_rec.data()),
                                  causal, restart::per_head(a.data())),
        make_view(o_ra.data(), shp));
    cpu::attention_forward(
        folded_attention<Rank<0>>(make_view(static_cast<const double*>(qs.data()), shp),
                                  make_view(static_cast<const double*>(ks.data()), shp), qkv.v,
                                  gates::none(), causal, restart::per_head(a.data())),
        make_view(o_plain.data(), shp));
    const auto e = compare(o_ra, o_plain);
    record("I1", e, pair);
    INFO("I1: " << e);
    CHECK(e.abs <= 1e-13 * (1.0 + e.max_want));
  }

  // The rest builds blocks: R and 0 must be instantiated in this build.
  if (!test::block_supported(D, R) || !test::block_supported(D, 0)) return;
  const Baseline base(rng, C);
  FusedWeights split = repacked(base, H, 0);  // R = 0: W_attn = [W_q; W_k; W_v]

  {  // I2: gates 1 / 1 change nothing: the RA block is the plain block on the same fused split.
    AttentionBlockConfig ra_cfg{C, H, R, GateMode::per_layer, GateParam::clamp, false, true};
    AttentionBlockConfig plain_cfg{C, H, 0, GateMode::none, GateParam::clamp, false, true};
    FusedWeights ones = split;
    ones.w_std = {1.f};
    ones.w_rec = {1.f};
    const auto e = compare(run_block(ra_cfg, ones, x, B, T), run_block(plain_cfg, split, x, B, T));
    record("I2", e, pair);
    INFO("I2: " << e);
    CHECK(e.abs == 0.0);  // multiplying by g = 1 is exact
  }

  {  // I3: repacked, w_std = 1, w_rec = 0 is the baseline with q's last R dims per head zeroed.
    FusedWeights ra = repacked(base, H, R);
    ra.w_std = {1.f, 1.f};
    ra.w_rec = {0.f, 0.f};
    FusedWeights zeroed = split;
    for (index_t h = 0; h < H; ++h)
      for (index_t row = (h + 1) * D - R; row < (h + 1) * D; ++row) {
        for (index_t j = 0; j < C; ++j) zeroed.w_attn[row * C + j] = 0.0;
        zeroed.b_attn[row] = 0.0;
      }
    AttentionBlockConfig ra_cfg{C, H, R, GateMode::per_head, GateParam::clamp, false, true};
    AttentionBlockConfig plain_cfg{C, H, 0, GateMode::none, GateParam::clamp, false, true};
    const auto e = compare(run_block(ra_cfg, ra, x, B, T), run_block(plain_cfg, zeroed, x, B, T));
    record("I3", e, pair);
    INFO("I3: " << e);
    // w_rec = 0 means g_rec = 1e-8 (the clamp floor), not 0: the reciprocal term survives at
    // 1e-8 relative. Everything else is double rounding.
    CHECK(e.abs <= 1e-7 * (1.0 + e.max_want));
  }

  {  // I4: the logits of the repacked block, through lse and O.
    FusedWeights ra = repacked(base, H, R);
    ra.w_std = test::random_uniform(rng, 1, 0.2, 1.5);
    ra.w_rec = test::random_uniform(rng, 1, 0.2, 1.5);
    AttentionBlockConfig cfg{C, H, R, GateMode::per_layer, GateParam::clamp, false, true};
    cpu::BlockBuffers<double> buffers;
    run_block(cfg, ra, x, B, T, &buffers);
    auto fused = make_view(static_cast<const double*>(buffers.fused.data()),
                           shape(B, T, 3 * C));  // (B,T,3C)
    auto qkv = folded_views(fused, H, D);        // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    std::vector<double> o(B * H * T * D);
    std::vector<float> lse(B * H * T);
    test::poison(o);
    test::poison(lse);
    cpu::attention_forward(folded_attention(qkv.q, qkv.k, qkv.v, R,
                                            gates::per_layer(ra.w_std.data(), ra.w_rec.data())),
                           make_view(o.data(), shape(B, H, T, D)), lse.data());

    // Baseline projections Q, K, V (B,T,C) by the tier-1 GEMM.
    auto x2 = make_view(x.data(), shape(B * T, C));  // (BT,C)
    auto project = [&](const std::vector<double>& w, const std::vector<double>& b) {
      return test::naive_gemm(x2, base.mat(w), base.vec(b)).values;
    };
    const auto q = project(base.w_q, base.b_q), k = project(base.w_k, base.b_k),
               v = project(base.w_v, base.b_v);
    const auto want = test::naive_reciprocal(
        make_view(q.data(), shape(B, T, C)), make_view(k.data(), shape(B, T, C)),
        make_view(v.data(), shape(B, T, C)), H, R, ra.w_std[0], ra.w_rec[0]);
    const auto e_o = test::max_error(test::dense(make_view(o.data(), shape(B, H, T, D))), want.o);
    const auto e_lse = test::max_error(test::Dense{{B, H, T}, {lse.begin(), lse.end()}}, want.lse);
    record("I4 (O)", e_o, pair);
    record("I4 (lse)", e_lse, pair);
    INFO("I4 O: " << e_o);
    INFO("I4 lse (fp32): " << e_lse);
    CHECK(e_o.abs <= 1e-12 * (1.0 + e_o.max_want));
    CHECK(e_lse.abs <= 2.0 * 0x1p-24 * (1.0 + e_lse.max_want));
  }

  {  // Gates of exactly 1 are bit-exact at the attention level too (I2 without the GEMMs).
    const auto fused = test::random_normal<double>(rng, B * T * 3 * C);
    auto qkv = folded_views(make_view(fused.data(), shape(B, T, 3 * C)), H, D);  // 3 x (B,H,T,D)
    std::vector<double> o1(B * H * T * D), o2(o1.size());
    const float one = 1.f;
    cpu::attention_forward(folded_attention(qkv.q, qkv.k, qkv.v, R, gates::per_layer(&one, &one)),
                           make_view(o1.data(), shape(B, H, T, D)));
    cpu::attention_forward(folded_attention(qkv.q, qkv.k, qkv.v, 0),
                           make_view(o2.data(), shape(B, H, T, D)));
    CHECK(o1 == o2);
  }

  if constexpr (R == 0) {  // R = 0 is the baseline, bit for bit.
    const auto fused = test::random_normal<double>(rng, B * T * 3 * C);
    auto qkv =
        folded_views(make_view(fused.data(), shape(B, T, 3 * C)), H, Int<D>{});  // 3 x (B,H,T,D)
    const auto shp = shape(B, H, T, Int<D>{});
    const auto w_std = test::random_uniform(rng, H, 0.2, 1.5);
    const auto w_rec1 = test::random_uniform(rng, H, 0.2, 1.5),
               w_rec2 = test::random_uniform(rng, H, 0.2, 1.5);
    std::vector<double> o_static(B * H * T * D), o_runtime(o_static.size()),
        o_rec1(o_static.size()), o_rec2(o_static.size());
    cpu::attention_forward(folded_attention<Rank<0>>(qkv.q, qkv.k, qkv.v),
                           make_view(o_static.data(), shp));
    cpu::attention_forward(folded_attention(qkv.q, qkv.k, qkv.v, 0),
                           make_view(o_runtime.data(), shp));
    cpu::attention_forward(
        folded_attention(qkv.q, qkv.k, qkv.v, 0, gates::per_head(w_std.data(), w_rec1.data())),
        make_view(o_rec1.data(), shp));
    cpu::attention_forward(
        folded_attention(qkv.q, qkv.k, qkv.v, 0, gates::per_head(w_std.data(), w_rec2.data())),
        make_view(o_rec2.data(), shp));
    CHECK(o_static == o_runtime);  // compile-time and runtime R = 0: the same function
    CHECK(o_rec1 == o_rec2);       // with R = 0, w_rec has no dimension to act on

    AttentionBlockConfig gated{C, H, 0, GateMode::per_layer, GateParam::clamp, false, true};
    AttentionBlockConfig plain{C, H, 0, GateMode::none, GateParam::clamp, false, true};
    FusedWeights ones = split;
    ones.w_std = {1.f};
    ones.w_rec = {0.25f};
    const auto y_gated = run_block(gated, ones, x, B, T),
               y_plain = run_block(plain, split, x, B, T);
    CHECK(y_gated == y_plain);
    record("R=0 bitwise", compare(y_gated, y_plain), pair);
  }
}

}  // namespace

#define RA_IDENTITY_CASE(D, R)                                               \
  TEST_CASE("identities I1-I4 and R = 0 on the CPU backend, D=" #D " R=" #R, \
            "[identities][d" #D "][r" #R "]") {                              \
    check_identities<D, R>();                                                \
  }
RA_TEST_DR_PAIRS(RA_IDENTITY_CASE)
#undef RA_IDENTITY_CASE
