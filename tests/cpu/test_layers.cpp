// tests/cpu/test_layers.cpp — the GPT-2 layers' CPU kernels and nn layers: LayerNorm, GELU,
// token + position embedding, softmax cross-entropy, the tied LM head, the MLP and dropout.
//
// Forwards against naive double loops; every gradient against central finite differences
// of the layer's own forward in double (loss L = Σ y ⊙ r for a fixed random r, so dL/dy = r;
// the cross-entropy layers are losses already). Bad input is checked for an error naming
// the problem.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <ra/cpu.hpp>
#include <ra/nn.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

// Central differences of `loss` over every element of `param` against `grad`; returns the
// worst error relative to 1 + max |gradient|.
double fd_error(const char* name, std::vector<double>& param, const std::vector<double>& grad,
                const std::function<double()>& loss, double h = 1e-6) {
  REQUIRE(param.size() == grad.size());
  test::Dense got{{static_cast<index_t>(param.size())}, {}}, want = got;
  for (std::size_t i = 0; i < param.size(); ++i) {
    const double p0 = param[i];
    param[i] = p0 + h;
    const double lp = loss();
    param[i] = p0 - h;
    const double lm = loss();
    param[i] = p0;
    want.values.push_back((lp - lm) / (2 * h));
    got.values.push_back(grad[i]);
  }
  const auto e = test::max_error(got, want);
  INFO(name << ": " << e);
  CHECK(e.abs <= 1e-6 * (1.0 + e.max_want));
  return e.abs / (1.0 + e.max_want);
}

template <class V>
auto view2(V& v, index_t r, index_t c) {
  return make_view(v.data(), shape(r, c));  // (r,c)
}
template <class V>
auto view1(V& v, index_t n) {
  return make_view(v.data(), shape(n));  // (n)
}

}  // namespace

TEST_CASE("layernorm forward equals the naive loop and its gradients match finite differences",
          "[layers][layernorm]") {
  RA_TEST_RNG(rng);
  const index_t N = 5, C = 12;
  auto x = test::random_normal<double>(rng, N * C, 2.0);
  for (index_t i = 0; i < N * C; ++i) x[i] += 0.5 * (i % C);  // rows with a nonzero mean
  auto w = test::random_normal<double>(rng, C);
  auto b = test::random_normal<double>(rng, C);
  const auto r = test::random_normal<double>(rng, N * C);
  std::vector<double> y(N * C);
  std::vector<float> mean(N), rstd(N);
  test::poison(y);
  cpu::layernorm_forward(view2(x, N, C), view1(w, C), view1(b, C), view2(y, N, C), mean.data(),
                         rstd.data());
  double worst = 0.0;
  for (index_t i = 0; i < N; ++i) {
    double mu = 0.0, var = 0.0;
    for (index_t c = 0; c < C; ++c) mu += x[i * C + c] / C;
    for (index_t c = 0; c < C; ++c) var += (x[i * C + c] - mu) * (x[i * C + c] - mu) / C;
    const double rs = 1.0 / std::sqrt(var + 1e-5);
    CHECK(mean[i] == Approx(mu).epsilon(1e-6));
    CHECK(rstd[i] == Approx(rs).epsilon(1e-6));
    for (index_t c = 0; c < C; ++c)
      worst = std::max(worst, std::abs(y[i * C + c] - ((x[i * C + c] - mu) * rs * w[c] + b[c])));
  }
  CHECK(worst < 1e-12);

  auto loss = [&] {
    std::vector<double> out(N * C);
    cpu::layernorm_forward(view2(x, N, C), view1(w, C), view1(b, C), view2(out, N, C));
    return dot(out, r);
  };
  std::vector<double> dx(N * C), dw(C), db(C);
  test::poison(dx);
  cpu::layernorm_backward(view2(x, N, C), view1(w, C), view2(r, N, C), view2(dx, N, C),
                          view1(dw, C), view1(db, C));
  fd_error("dx", x, dx, loss);
  fd_error("dweight", w, dw, loss);
  fd_error("dbias", b, db, loss);

  SECTION("without bias the output is x̂ · w") {
    std::vector<double> y2(N * C);
    cpu::layernorm_forward(view2(x, N, C), view1(w, C), StridedView<const double, 1>{},
                           view2(y2, N, C));
    for (index_t i = 0; i < N * C; ++i) CHECK(y2[i] == Approx(y[i] - b[i % C]).margin(1e-12));
  }
  SECTION("a weight of the wrong size is named") {
    std::vector<double> w3(C + 1);
    CHECK_THROWS_WITH(
        cpu::layernorm_forward(view2(x, N, C), view1(w3, C + 1), view1(b, C), view2(y, N, C)),
        Catch::Contains("weight.extent(0)") && Catch::Contains("13"));
  }
}

TEST_CASE("gelu matches its formula and its gradient matches finite differences",
          "[layers][gelu]") {
  RA_TEST_RNG(rng);
  const index_t N = 3, M = 17;
  auto x = test::random_normal<double>(rng, N * M, 2.5);
  const auto r = test::random_normal<double>(rng, N * M);
  std::vector<double> y(N * M);
  cpu::gelu_forward(view2(x, N, M), view2(y, N, M));
  for (index_t i = 0; i < N * M; ++i) {
    const double v = x[i];
    const double want =
        0.5 * v * (1 + std::tanh(std::sqrt(2 / 3.141592653589793) * (v + 0.044715 * v * v * v)));
    CHECK(y[i] == Approx(want).epsilon(1e-14).margin(1e-15));
  }
  // Known values: gelu(0) = 0, gelu(1) ≈ 0.841192, gelu(-3) ≈ -0.003637.
  std::vector<double> k{0.0, 1.0, -3.0}, ky(3);
  cpu::gelu_forward(view2(k, 1, 3), view2(ky, 1, 3));
  CHECK(ky[0] == 0.0);
  CHECK(ky[1] == Approx(0.8411919906).epsilon(1e-9));
  CHECK(ky[2] == Approx(-0.0036373920).epsilon(1e-6));

  auto loss = [&] {
    std::vector<double> out(N * M);
    cpu::gelu_forward(view2(x, N, M), view2(out, N, M));
    return dot(out, r);
  };
  std::vector<double> dx(N * M);
  cpu::gelu_backward(view2(x, N, M), view2(r, N, M), view2(dx, N, M));
  fd_error("dx", x, dx, loss);
}

TEST_CASE("embedding forward gathers rows and its gradient matches finite differences",
          "[layers][embedding]") {
  RA_TEST_RNG(rng);
  const index_t B = 2, T = 5, V = 7, C = 6, Tmax = 8;
  // Repeated tokens, so dwte accumulates several positions into one row.
  std::vector<std::int32_t> tok{3, 1, 3, 0, 6, 6, 6, 2, 3, 1};
  auto wte = test::random_normal<double>(rng, V * C);
  auto wpe = test::random_normal<double>(rng, Tmax * C);
  const auto r = test::random_normal<double>(rng, B * T * C);
  auto tokens = make_view(static_cast<const std::int32_t*>(tok.data()), shape(B, T));  // (B,T)
  std::vector<double> out(B * T * C);
  test::poison(out);
  cpu::embedding_forward(tokens, view2(wte, V, C), view2(wpe, Tmax, C),
                         make_view(out.data(), shape(B, T, C)));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < C; ++c)
        CHECK(out[(b * T + t) * C + c] == wte[tok[b * T + t] * C + c] + wpe[t * C + c]);

  auto loss = [&] {
    std::vector<double> o(B * T * C);
    cpu::embedding_forward(tokens, view2(wte, V, C), view2(wpe, Tmax, C),
                           make_view(o.data(), shape(B, T, C)));
    return dot(o, r);
  };
  // The backward adds: start from a known offset and subtract it.
  std::vector<double> dwte(V * C, 1.0), dwpe(Tmax * C, -2.0);
  cpu::embedding_backward(tokens, make_view(static_cast<const double*>(r.data()), shape(B, T, C)),
                          view2(dwte, V, C), view2(dwpe, Tmax, C));
  for (double& g : dwte) g -= 1.0;
  for (double& g : dwpe) g += 2.0;
  fd_error("dwte", wte, dwte, loss);
  fd_error("dwpe", wpe, dwpe, loss);

  SECTION("a token outside the vocabulary is named with its position") {
    tok[7] = 9;
    CHECK_THROWS_WITH(
        cpu::embedding_forward(tokens, view2(wte, V, C), view2(wpe, Tmax, C),
                               make_view(out.data(), shape(B, T, C))),
        Catch::Contains("(1,2)") && Catch::Contains("is 9") && Catch::Contains("[0, 7)"));
    tok[7] = -1;
    CHECK_THROWS_WITH(cpu::embedding_forward(tokens, view2(wte, V, C), view2(wpe, Tmax, C),
                                             make_view(out.data(), shape(B, T, C))),
                      Catch::Contains("is -1"));
  }
  SECTION("a sequence longer than wpe is named") {
    CHECK_THROWS_WITH(cpu::embedding_forward(tokens, view2(wte, V, C), view2(wpe, 4, C),
                                             make_view(out.data(), shape(B, T, C))),
                      Catch::Contains("sequence length T") && Catch::Contains("max_seq"));
  }
}

TEST_CASE(
    "softmax cross-entropy: loss equals the naive sum, ignore index, padded columns, "
    "gradient by finite differences",
    "[layers][cross_entropy]") {
  RA_TEST_RNG(rng);
  const index_t N = 6, V = 5, Vp = 8;
  auto z = test::random_normal<double>(rng, N * Vp, 3.0);
  std::vector<std::int32_t> tgt{4, -1, 0, 2, -1, 1};
  auto targets = make_view(static_cast<const std::int32_t*>(tgt.data()), shape(N));  // (N)
  double want = 0.0;
  int n = 0;
  for (index_t i = 0; i < N; ++i) {
    if (tgt[i] < 0) continue;
    double m = -1e300, s = 0.0;
    for (index_t j = 0; j < V; ++j) m = std::max(m, z[i * Vp + j]);
    for (index_t j = 0; j < V; ++j) s += std::exp(z[i * Vp + j] - m);
    want += m + std::log(s) - z[i * Vp + tgt[i]];
    ++n;
  }
  want /= n;
  std::vector<double> dz(N * Vp);
  std::vector<float> losses(N);
  test::poison(dz);
  const double got =
      cpu::softmax_cross_entropy(view2(z, N, Vp), V, targets, view2(dz, N, Vp), losses.data());
  CHECK(got == Approx(want).epsilon(1e-13));
  CHECK(losses[1] == 0.f);
  for (index_t i = 0; i < N; ++i)
    for (index_t j = V; j < Vp; ++j) CHECK(dz[i * Vp + j] == 0.0);  // padded columns
  for (index_t j = 0; j < Vp; ++j) CHECK(dz[1 * Vp + j] == 0.0);    // ignored row
  auto loss = [&] {
    return cpu::softmax_cross_entropy(view2(z, N, Vp), V, targets, StridedView<double, 2>{});
  };
  fd_error("dlogits", z, dz, loss);

  SECTION("all targets ignored: loss 0, zero gradient") {
    std::vector<std::int32_t> none(N, -1);
    const double l = cpu::softmax_cross_entropy(
        view2(z, N, Vp), V, make_view(static_cast<const std::int32_t*>(none.data()), shape(N)),
        view2(dz, N, Vp));
    CHECK(l == 0.0);
    for (double g : dz) CHECK(g == 0.0);
  }
  SECTION("a target outside the vocabulary is named") {
    tgt[3] = 5;
    CHECK_THROWS_WITH(loss(), Catch::Contains("target 3 is 5") && Catch::Contains("[0, 5)"));
  }
}

TEST_CASE(
    "tied LM head + cross-entropy: chunked equals unchunked, gradients by finite "
    "differences",
    "[layers][cross_entropy]") {
  RA_TEST_RNG(rng);
  const index_t N = 7, C = 6, V = 9, Vp = 16;
  auto h = test::random_normal<double>(rng, N * C);
  auto wte = test::random_normal<double>(rng, Vp * C);
  std::vector<std::int32_t> tgt{8, 0, -1, 3, 3, 5, 1};
  auto targets = make_view(static_cast<const std::int32_t*>(tgt.data()), shape(N));  // (N)
  std::vector<double> dh(N * C), dwte(Vp * C);
  test::poison(dh);
  test::poison(dwte);
  const double l3 = cpu::lm_head_cross_entropy(view2(h, N, C), view2(wte, Vp, C), V, targets,
                                               view2(dh, N, C), view2(dwte, Vp, C), nullptr, 3);
  // The same through materialised logits.
  std::vector<double> z(N * Vp, 0.0);
  for (index_t i = 0; i < N; ++i)
    for (index_t v = 0; v < Vp; ++v)
      for (index_t c = 0; c < C; ++c) z[i * Vp + v] += h[i * C + c] * wte[v * C + c];
  const double lz =
      cpu::softmax_cross_entropy(view2(z, N, Vp), V, targets, StridedView<double, 2>{});
  CHECK(l3 == Approx(lz).epsilon(1e-13));
  for (index_t v = V; v < Vp; ++v)
    for (index_t c = 0; c < C; ++c) CHECK(dwte[v * C + c] == 0.0);  // padded rows

  auto loss = [&] {
    const StridedView<double, 2> none{};
    return cpu::lm_head_cross_entropy(view2(h, N, C), view2(wte, Vp, C), V, targets, none, none);
  };
  fd_error("dh", h, dh, loss);
  fd_error("dwte", wte, dwte, loss);
}

TEST_CASE("MLP equals gemm -> gelu -> gemm and its gradients match finite differences",
          "[layers][mlp]") {
  RA_TEST_RNG(rng);
  const index_t N = 4, C = 5, F = 4 * C;
  auto x = test::random_normal<double>(rng, N * C);
  auto w_fc = test::random_normal<double>(rng, F * C, 0.5);
  auto b_fc = test::random_normal<double>(rng, F, 0.5);
  auto w_proj = test::random_normal<double>(rng, C * F, 0.5);
  auto b_proj = test::random_normal<double>(rng, C, 0.5);
  const auto r = test::random_normal<double>(rng, N * C);
  auto weights = [&] {
    return nn::MLP<double, double>::Weights{view2(w_fc, F, C), view1(b_fc, F), view2(w_proj, C, F),
                                            view1(b_proj, C)};
  };
  const cpu::device dev;
  nn::MLP<double, double> mlp;
  std::vector<double> y(N * C);
  test::poison(y);
  mlp.forward(view2(x, N, C), weights(), view2(y, N, C), dev);
  double worst = 0.0;
  for (index_t i = 0; i < N; ++i)
    for (index_t o = 0; o < C; ++o) {
      double s = b_proj[o];
      for (index_t f = 0; f < F; ++f) {
        double hf = b_fc[f];
        for (index_t c = 0; c < C; ++c) hf += x[i * C + c] * w_fc[f * C + c];
        s += cpu::detail::gelu(hf) * w_proj[o * F + f];
      }
      worst = std::max(worst, std::abs(y[i * C + o] - s));
    }
  CHECK(worst < 1e-12);

  auto loss = [&] {
    nn::MLP<double, double> m;
    std::vector<double> out(N * C);
    m.forward(view2(x, N, C), weights(), view2(out, N, C), dev);
    return dot(out, r);
  };
  std::vector<double> dx(N * C), dw_fc(F * C), db_fc(F), dw_proj(C * F), db_proj(C);
  mlp.backward(view2(r, N, C), view2(dx, N, C),
               {view2(dw_fc, F, C), view1(db_fc, F), view2(dw_proj, C, F), view1(db_proj, C)}, dev);
  fd_error("dx", x, dx, loss);
  fd_error("dW_fc", w_fc, dw_fc, loss);
  fd_error("db_fc", b_fc, db_fc, loss);
  fd_error("dW_proj", w_proj, dw_proj, loss);
  fd_error("db_proj", b_proj, db_proj, loss);
}

TEST_CASE("dropout: deterministic seeded mask, rate p, scale 1/(1-p), backward = forward mask",
          "[layers][dropout]") {
  const index_t N = 64, M = 64;
  std::vector<double> ones(N * M, 1.0), again(N * M, 1.0), other(N * M, 1.0);
  const nn::Dropout d{0.25f};
  d.apply(view2(ones, N, M), 42, 3);
  d.apply(view2(again, N, M), 42, 3);
  d.apply(view2(other, N, M), 42, 4);
  CHECK(ones == again);
  CHECK(ones != other);
  index_t dropped = 0;
  for (double v : ones) {
    CHECK((v == 0.0 || v == Approx(1.0 / 0.75).epsilon(1e-15)));
    dropped += v == 0.0;
  }
  // 4096 Bernoulli(0.25) draws: mean 1024, sd ~28.
  CHECK(dropped > 1024 - 140);
  CHECK(dropped < 1024 + 140);
  std::vector<double> same(N * M, 1.0);
  nn::Dropout{0.f}.apply(view2(same, N, M), 42, 3);
  CHECK(same == std::vector<double>(N * M, 1.0));
  CHECK_THROWS_WITH(nn::Dropout{1.f}.validate(),
                    Catch::Contains("dropout") && Catch::Contains("[0, 1)"));
}
