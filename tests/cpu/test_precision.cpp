// tests/cpu/test_precision.cpp — fp32, fp16 and bf16 storage against the double reference,
// by the precision rule of tests/common/precision.hpp: error at most twice a naive
// same-precision implementation's (tests/common/same_precision_*.hpp) plus u·‖terms‖₂, per element,
// per row and in relative L2.
//
// The CPU backend computes in double and rounds only where it stores (outputs, and the
// fused / O' intermediates of the block), so it must pass with room to spare; these cases also
// check the naive implementations and the rule themselves, which the GPU tests lean on.
#include <catch2/catch.hpp>

#include <vector>

#include <ra/cpu.hpp>

#include "../common/same_precision_attention.hpp"
#include "../common/same_precision_gemm.hpp"
#include "../common/precision.hpp"
#include "reference.hpp"

namespace {

using namespace ra;

std::string type_name(DType t) {
  return detail::concat(t);
}

// Gate and restart draws of one case: `floor` puts w_rec below the clamp floor (g = 1e-8,
// no gradient) and a outside [0, 0.5] in some heads.
struct Params {
  std::vector<float> w_std, w_rec, a;
};

Params draw_params(std::mt19937_64& rng, index_t H, bool floor) {
  Params p{test::random_uniform(rng, H, 0.5, 1.5), test::random_uniform(rng, H, 0.05, 1.5),
           test::random_uniform(rng, H, 0.0, 0.5)};
  if (floor) {
    p.w_rec[0] = -0.5f;
    p.a[0] = 0.6f;
    if (H > 1) p.a[1] = -0.1f;
  }
  return p;
}

}  // namespace

TEMPLATE_TEST_CASE("attention forward and backward in storage precision keep the precision rule",
                   "[precision][attention]", float, fp16, bf16) {
  using T = TestType;
  RA_TEST_RNG(rng);
  const std::string ty = type_name(dtype_v<T>);
  constexpr index_t B = 2, H = 3, D = 64;
  constexpr int R = 4;
  for (index_t S : {1, 33}) {
    for (int mode = 0; mode < 3; ++mode) {
      // per head clamp + restart; per layer softplus; per head below the clamp floor + restart
      const auto p = draw_params(rng, H, mode == 2);
      const Gates g = mode == 1
                          ? gates::per_layer(p.w_std.data(), p.w_rec.data(), GateParam::softplus)
                          : gates::per_head(p.w_std.data(), p.w_rec.data());
      const Restart r = mode == 1 ? restart::none() : restart::per_head(p.a.data());
      INFO("S = " << S << ", gates " << g.mode << "/" << g.param << ", restart " << r.enabled());
      const auto shp = shape(B, H, S, D);
      const std::size_t n = B * H * S * D;
      const auto q = test::random_normal<T>(rng, n), k = test::random_normal<T>(rng, n),
                 v = test::random_normal<T>(rng, n), d_o = test::random_normal<T>(rng, n);
      const auto qd = test::converted<double>(q), kd = test::converted<double>(k),
                 vd = test::converted<double>(v), dod = test::converted<double>(d_o);
      auto qv = make_view(q.data(), shp), kv = make_view(k.data(), shp),
           vv = make_view(v.data(), shp), dov = make_view(d_o.data(), shp);  // (B,H,T,D)
      auto qdv = make_view(qd.data(), shp), kdv = make_view(kd.data(), shp),
           vdv = make_view(vd.data(), shp), dodv = make_view(dod.data(), shp);

      // Ours (T storage) and the exact reference (double storage, same inputs).
      std::vector<T> o(n), dq(n), dk(n), dv(n);
      std::vector<float> lse(B * H * S);
      std::vector<double> o_x(n), dq_x(n), dk_x(n), dv_x(n);
      std::vector<float> lse_x(B * H * S);
      for (auto* x : {&o, &dq, &dk, &dv}) test::poison(*x);
      const std::size_t ng = g.mode == GateMode::per_head ? H : 1;
      std::vector<float> dws(ng), dwr(ng), da(H), dws_x(ng), dwr_x(ng), da_x(H);
      const auto node = folded_attention(qv, kv, vv, R, g, causal, r);
      const auto node_x = folded_attention(qdv, kdv, vdv, R, g, causal, r);
      cpu::attention_forward(node, make_view(o.data(), shp), lse.data());
      cpu::attention_forward(node_x, make_view(o_x.data(), shp), lse_x.data());
      cpu::attention_backward(node, dov, make_view(dq.data(), shp), make_view(dk.data(), shp),
                              make_view(dv.data(), shp), {dws.data(), dwr.data(), da.data()});
      cpu::attention_backward(node_x, dodv, make_view(dq_x.data(), shp),
                              make_view(dk_x.data(), shp), make_view(dv_x.data(), shp),
                              {dws_x.data(), dwr_x.data(), da_x.data()});

      const auto nv = test::same_precision_attention<T>(qv, kv, vv, R, g, r, dov);
      auto as_double = [](const auto& x) {
        std::vector<double> d(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) d[i] = convert<double>(x[i]);
        return d;
      };
      const std::string fam = "cpu attention " + ty;
      RA_CHECK_PRECISION(test::judge(fam, "O'", as_double(o), nv.o, o_x, nv.o_floor, D));
      RA_CHECK_PRECISION(
          test::judge(fam, "lse", as_double(lse), nv.lse, as_double(lse_x), nv.lse_floor, 1));
      RA_CHECK_PRECISION(test::judge(fam, "dQf", as_double(dq), nv.dq, dq_x, nv.dq_floor, D));
      RA_CHECK_PRECISION(test::judge(fam, "dKf", as_double(dk), nv.dk, dk_x, nv.dk_floor, D));
      RA_CHECK_PRECISION(test::judge(fam, "dV", as_double(dv), nv.dv, dv_x, nv.dv_floor, D));
      RA_CHECK_PRECISION(test::judge(fam, "d w_std", as_double(dws), nv.d_w_std, as_double(dws_x),
                                     nv.d_w_std_floor, 1));
      RA_CHECK_PRECISION(test::judge(fam, "d w_rec", as_double(dwr), nv.d_w_rec, as_double(dwr_x),
                                     nv.d_w_rec_floor, 1));
      if (r.enabled())
        RA_CHECK_PRECISION(
            test::judge(fam, "d a", as_double(da), nv.d_a, as_double(da_x), nv.d_a_floor, 1));
    }
  }
}

TEMPLATE_TEST_CASE("gemm in storage precision keeps the precision rule", "[precision][gemm]", float,
                   fp16, bf16) {
  using T = TestType;
  RA_TEST_RNG(rng);
  constexpr index_t M = 37, K = 96, N = 50;
  const auto a = test::random_normal<T>(rng, M * K), w = test::random_normal<T>(rng, N * K),
             b = test::random_normal<T>(rng, N);
  auto av = make_view(a.data(), shape(M, K));  // (M,K)
  auto wv = make_view(w.data(), shape(N, K));  // (N,K)
  auto bv = make_view(b.data(), shape(N));     // (N)
  std::vector<T> y(M * N);
  test::poison(y);
  cpu::gemm_forward(gemm(av, wv, bv), make_view(y.data(), shape(M, N)));
  const auto exact = test::naive_gemm(av, wv, bv);
  const auto naive = test::same_precision_gemm<T>(av, wv, bv);
  RA_CHECK_PRECISION(test::judge("cpu gemm " + type_name(dtype_v<T>), "Y",
                                 test::dense(make_view(y.data(), shape(M, N))).values, naive.y,
                                 exact.values, naive.floor, N));
}

TEMPLATE_TEST_CASE("the block in storage precision keeps the precision rule", "[precision][block]",
                   float, fp16, bf16) {
  using T = TestType;
  RA_TEST_RNG(rng);
  constexpr index_t B = 2, S = 17, C = 128, H = 2, D = 64;
  const AttentionBlockConfig cfg{C, H, 8, GateMode::per_layer, GateParam::clamp, true, true};
  const double ws = 1.0 / std::sqrt(double(C));
  const auto x = test::random_normal<T>(rng, B * S * C);
  const auto w_attn = test::random_normal<T>(rng, 3 * C * C, 1.5 * ws),
             b_attn = test::random_normal<T>(rng, 3 * C, 0.1),
             w_o = test::random_normal<T>(rng, C * C, ws),
             b_o = test::random_normal<T>(rng, C, 0.1);
  std::vector<float> w_std{0.9f}, w_rec{0.3f}, a = test::random_uniform(rng, H, 0.0, 0.5);
  auto weights = [&](const auto& wa, const auto& ba, const auto& wo, const auto& bo) {
    using E = typename std::remove_cvref_t<decltype(wa)>::value_type;
    return AttentionBlockWeights<E>{make_view(wa.data(), shape(3 * C, C)),
                                    make_view(ba.data(), shape(3 * C)),
                                    make_view(wo.data(), shape(C, C)),
                                    make_view(bo.data(), shape(C)),
                                    w_std.data(),
                                    w_rec.data(),
                                    a.data()};
  };

  // Ours: stores fused and O' in T, as the GPU will.
  std::vector<T> y(B * S * C);
  test::poison(y);
  cpu::BlockBuffers<T> buffers;
  cpu::block_forward<T>(cfg, make_view(x.data(), shape(B, S, C)), weights(w_attn, b_attn, w_o, b_o),
                        make_view(y.data(), shape(B, S, C)), buffers);

  // Exact: the same rounded inputs, everything in double.
  const auto xd = test::converted<double>(x);
  const auto wad = test::converted<double>(w_attn), bad = test::converted<double>(b_attn),
             wod = test::converted<double>(w_o), bod = test::converted<double>(b_o);
  std::vector<double> y_exact(y.size());
  cpu::BlockBuffers<double> exact_buffers;
  cpu::block_forward<double>(cfg, make_view(xd.data(), shape(B, S, C)), weights(wad, bad, wod, bod),
                             make_view(y_exact.data(), shape(B, S, C)), exact_buffers);

  // Naive same precision: fp32-accumulated GEMMs and attention, each result rounded to T.
  const auto fused = test::same_precision_gemm<T>(make_view(x.data(), shape(B * S, C)),
                                                  make_view(w_attn.data(), shape(3 * C, C)),
                                                  make_view(b_attn.data(), shape(3 * C)));
  const auto fused_t = test::converted<T>(fused.y);
  auto fused3 = make_view(fused_t.data(), shape(B, S, 3 * C));  // (B,T,3C)
  auto qkv = folded_views(fused3, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto att = test::same_precision_attention<T>(
      qkv.q, qkv.k, qkv.v, cfg.R, gates::per_layer(w_std.data(), w_rec.data()),
      restart::per_head(a.data()), StridedView<const T, 4>{});
  std::vector<T> o(B * S * C);
  auto o_view = heads(make_view(o.data(), shape(B, S, C)), H, D);  // (B,H,T,D) strides (TC,D,C,1)
  for (std::size_t i = 0; i < att.o.size(); ++i)
    o_view.at(test::unravel<4>({B, H, S, D}, i)) = convert<T>(att.o[i]);
  const auto y_naive = test::same_precision_gemm<T>(make_view(o.data(), shape(B * S, C)),
                                                    make_view(w_o.data(), shape(C, C)),
                                                    make_view(b_o.data(), shape(C)));
  RA_CHECK_PRECISION(test::judge("cpu block " + type_name(dtype_v<T>), "y",
                                 test::dense(make_view(y.data(), shape(B * S, C))).values,
                                 y_naive.y, y_exact, y_naive.floor, C));
}
