// tests/cpu/test_precision.cpp — fp32, fp16 and bf16 storage against the double reference.
//
// The CPU backend computes in double and rounds only where it stores (outputs, and the
// fused / O' intermediates of the block). Its error against the exact result on the same
// rounded inputs must be at most twice the error of a naive same-precision implementation
// (fp32 accumulation, P rounded to the storage type) plus an absolute floor of one unit
// roundoff of the largest value. Each check prints the worst element and its index.
#include <catch2/catch.hpp>

#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

struct Verdict {
  test::MaxError ours, naive;
  double bound = 0.0;
};

template <class T>
Verdict judge(const test::Dense& ours, const test::Dense& naive, const test::Dense& exact) {
  Verdict v{test::max_error(ours, exact), test::max_error(naive, exact)};
  v.bound = 2.0 * v.naive.abs + unit_roundoff(dtype_v<T>) * v.ours.max_want;
  return v;
}

#define RA_CHECK_VERDICT(v)           \
  do {                                \
    INFO("ra:    " << (v).ours);      \
    INFO("naive: " << (v).naive);     \
    INFO("bound: " << (v).bound);     \
    CHECK((v).ours.abs <= (v).bound); \
  } while (false)

}  // namespace

TEMPLATE_TEST_CASE("attention in storage precision is within 2x of a naive same-precision one",
                   "[precision][attention]", float, fp16, bf16) {
  using T = TestType;
  RA_TEST_RNG(rng);
  constexpr index_t B = 2, H = 2, S = 33, D = 64;
  constexpr int R = 4;
  const auto shp = shape(B, H, S, D);
  const std::size_t n = B * H * S * D;
  const auto q = test::random_normal<T>(rng, n), k = test::random_normal<T>(rng, n),
             v = test::random_normal<T>(rng, n);
  const auto w_std = test::random_uniform(rng, H, 0.5, 1.5),
             w_rec = test::random_uniform(rng, H, 0.5, 1.5),
             a = test::random_uniform(rng, H, 0.0, 0.5);
  auto qv = make_view(q.data(), shp), kv = make_view(k.data(), shp),
       vv = make_view(v.data(), shp);  // (B,H,T,D)
  const Gates g = gates::per_head(w_std.data(), w_rec.data());
  const Restart r = restart::per_head(a.data());
  std::vector<T> o(n);
  test::poison(o);
  cpu::attention_forward(folded_attention(qv, kv, vv, R, g, causal, r), make_view(o.data(), shp));

  const auto exact = test::naive_attention(qv, kv, vv, R, g, r).o;
  const auto naive = test::naive_attention_same_precision<T>(qv, kv, vv, R, g, r);
  RA_CHECK_VERDICT(judge<T>(test::dense(make_view(o.data(), shp)), naive, exact));
}

TEMPLATE_TEST_CASE("gemm in storage precision is within 2x of a naive same-precision one",
                   "[precision][gemm]", float, fp16, bf16) {
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
  const auto naive = test::naive_gemm_same_precision<T>(av, wv, bv);
  RA_CHECK_VERDICT(judge<T>(test::dense(make_view(y.data(), shape(M, N))), naive, exact));
}

TEMPLATE_TEST_CASE("the block in storage precision is within 2x of a naive same-precision one",
                   "[precision][block]", float, fp16, bf16) {
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
  auto fused = test::naive_gemm_same_precision<T>(make_view(x.data(), shape(B * S, C)),
                                                  make_view(w_attn.data(), shape(3 * C, C)),
                                                  make_view(b_attn.data(), shape(3 * C)));
  const auto fused_t = test::converted<T>(fused.values);
  auto fused3 = make_view(fused_t.data(), shape(B, S, 3 * C));  // (B,T,3C)
  auto qkv = folded_views(fused3, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto o_heads = test::naive_attention_same_precision<T>(
      qkv.q, qkv.k, qkv.v, cfg.R, gates::per_layer(w_std.data(), w_rec.data()),
      restart::per_head(a.data()));
  std::vector<T> o(B * S * C);
  auto o_view = heads(make_view(o.data(), shape(B, S, C)), H, D);  // (B,H,T,D) strides (TC,D,C,1)
  for (std::size_t i = 0; i < o_heads.values.size(); ++i) {
    const auto c = test::unravel<4>(o_heads.extents, i);
    o_view.at(c) = convert<T>(o_heads.values[i]);
  }
  const auto y_naive = test::naive_gemm_same_precision<T>(make_view(o.data(), shape(B * S, C)),
                                                          make_view(w_o.data(), shape(C, C)),
                                                          make_view(b_o.data(), shape(C)));

  const test::Dense exact{{B * S, C}, y_exact};
  RA_CHECK_VERDICT(judge<T>(test::dense(make_view(y.data(), shape(B * S, C))), y_naive, exact));
}
