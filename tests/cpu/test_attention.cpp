// tests/cpu/test_attention.cpp — cpu::attention_forward against the naive double-loop
// reference, for every supported (D, R) pair, every gate mode and parameterisation, with and
// without self-restart, on ragged shapes (T = 1, T = 7, B = 1), with compact inputs and with
// Qf/Kf/V read straight from a fused (B,T,3C) buffer and O written through heads() of a
// (B,T,C) buffer. Outputs and lse are poisoned with NaN first.
#include <catch2/catch.hpp>

#include <algorithm>
#include <utility>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;
using test::Dense;
using test::max_error;

struct GateCase {
  GateMode mode;
  GateParam param;
};

constexpr GateCase kGateCases[] = {{GateMode::none, GateParam::clamp},
                                   {GateMode::per_layer, GateParam::clamp},
                                   {GateMode::per_head, GateParam::clamp},
                                   {GateMode::per_layer, GateParam::softplus},
                                   {GateMode::per_head, GateParam::softplus}};

struct ShapeCase {
  index_t B, H, T;
};

constexpr ShapeCase kShapes[] = {{2, 2, 7}, {1, 2, 1}, {1, 3, 7}};

// Raw gate and restart values owned by a test, and the node parameters that point at them.
struct Params {
  std::vector<float> w_std, w_rec, a;
  Gates gates{};
  Restart restart{};
};

Params make_params(std::mt19937_64& rng, GateCase gc, bool with_restart, index_t H) {
  Params p;
  const std::size_t n = gc.mode == GateMode::per_head ? H : 1;
  // Clamp gates away from the floor (the floor is a gradient test); softplus raw values of
  // either sign. Restart values on both sides of [0, 0.5] exercise the clamp.
  const double lo = gc.param == GateParam::clamp ? 0.2 : -1.5;
  p.w_std = test::random_uniform(rng, n, lo, 1.5);
  p.w_rec = test::random_uniform(rng, n, lo, 1.5);
  p.a = test::random_uniform(rng, H, -0.1, 0.6);
  if (gc.mode == GateMode::per_layer)
    p.gates = gates::per_layer(&p.w_std[0], &p.w_rec[0], gc.param);
  if (gc.mode == GateMode::per_head)
    p.gates = gates::per_head(p.w_std.data(), p.w_rec.data(), gc.param);
  if (with_restart) p.restart = restart::per_head(p.a.data());
  return p;
}

// Compact (B,H,T,D) double inputs, static head dim Int<D>, compile-time rank Rank<R>.
template <int D, int R>
void check_compact(std::mt19937_64& rng, ShapeCase s, GateCase gc, bool with_restart) {
  const auto n = static_cast<std::size_t>(s.B * s.H * s.T * D);
  auto q = test::random_normal<double>(rng, n), k = test::random_normal<double>(rng, n),
       v = test::random_normal<double>(rng, n);
  std::vector<double> o(n);
  std::vector<float> lse(static_cast<std::size_t>(s.B * s.H * s.T));
  test::poison(o);
  test::poison(lse);
  const auto shp = shape(s.B, s.H, s.T, Int<D>{});
  auto qv = make_view(static_cast<const double*>(q.data()), shp);  // (B,H,T,D) strides (HTD,TD,D,1)
  auto kv = make_view(static_cast<const double*>(k.data()), shp);  // (B,H,T,D)
  auto vv = make_view(static_cast<const double*>(v.data()), shp);  // (B,H,T,D)
  auto ov = make_view(o.data(), shp);                              // (B,H,T,D)
  const Params p = make_params(rng, gc, with_restart, s.H);
  auto node = folded_attention<Rank<R>>(qv, kv, vv, p.gates, causal, p.restart);
  STATIC_REQUIRE(decltype(node)::kHeadDim == D);
  STATIC_REQUIRE(decltype(node)::kRank == R);
  cpu::attention_forward(node, ov, lse.data());

  const auto want = test::naive_attention(qv, kv, vv, R, p.gates, p.restart);
  const auto e = max_error(test::dense(ov), want.o);
  INFO("O': " << e);
  CHECK(e.abs <= 1e-12 * (1.0 + e.max_want));
  Dense got_lse{{s.B, s.H, s.T}, {lse.begin(), lse.end()}};
  const auto el = max_error(got_lse, want.lse);
  INFO("lse: " << el);
  CHECK(el.abs <= 2.0 * 0x1p-24 * (1.0 + el.max_want));
}

// Float inputs read from a fused (B,T,3C) buffer, O' written through heads() of a (B,T,C)
// buffer, runtime rank, evaluated through ra::eval on the CPU device.
template <int D>
void check_fused(std::mt19937_64& rng, int R, ShapeCase s, GateCase gc, bool with_restart) {
  const index_t C = s.H * D;
  auto fused = test::random_normal<float>(rng, static_cast<std::size_t>(s.B * s.T * 3 * C));
  std::vector<float> out(static_cast<std::size_t>(s.B * s.T * C));
  test::poison(out);
  auto fv = make_view(static_cast<const float*>(fused.data()), shape(s.B, s.T, 3 * C));  // (B,T,3C)
  auto qkv = folded_views(fv, s.H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  auto o =
      heads(make_view(out.data(), shape(s.B, s.T, C)), s.H, D);  // (B,H,T,D) strides (TC,D,C,1)
  // The views alias the buffers (extent-1 modes may carry any stride).
  REQUIRE(qkv.k.data() == fused.data() + C);
  REQUIRE(qkv.v.data() == fused.data() + 2 * C);
  if (s.B > 1) REQUIRE(qkv.q.stride(0) == s.T * 3 * C);
  if (s.T > 1) REQUIRE(qkv.q.stride(2) == 3 * C);
  if (s.T > 1) REQUIRE(o.stride(2) == C);
  const Params p = make_params(rng, gc, with_restart, s.H);
  auto node = folded_attention(qkv.q, qkv.k, qkv.v, R, p.gates, causal, p.restart);
  ra::eval(o, node, cpu::device{});

  const auto want = test::naive_attention(qkv.q, qkv.k, qkv.v, R, p.gates, p.restart);
  const auto e = max_error(test::dense(o), want.o);
  INFO("O' (fused layout, fp32 output): " << e);
  // Computed in double from the same float inputs: only the final rounding to float differs.
  CHECK(e.abs <= 0x1p-24 * (1.0 + e.max_want));
}

template <int D, int R>
void check_forward_matrix() {
  RA_TEST_RNG(rng);
  for (const ShapeCase s : kShapes)
    for (const GateCase gc : kGateCases)
      for (bool with_restart : {false, true}) {
        INFO("B=" << s.B << " H=" << s.H << " T=" << s.T << " gates " << gc.mode << "/" << gc.param
                  << " restart " << with_restart);
        check_compact<D, R>(rng, s, gc, with_restart);
        check_fused<D>(rng, R, s, gc, with_restart);
      }
}

template <int... Ds, int... Rs>
std::vector<std::pair<int, int>> supported_pairs(IntList<Ds...>, IntList<Rs...>) {
  std::vector<std::pair<int, int>> r;
  for (int d : {Ds...})
    for (int rank : {Rs...})
      if (rank < d) r.emplace_back(d, rank);
  return r;
}

#define RA_LIST_PAIR(D, R) {D, R},
const std::vector<std::pair<int, int>> kTestedPairs = {RA_TEST_DR_PAIRS(RA_LIST_PAIR)};
#undef RA_LIST_PAIR

}  // namespace

#define RA_FORWARD_CASE(D, R)                                                   \
  TEST_CASE("cpu attention forward equals the naive reference, D=" #D " R=" #R, \
            "[attention][d" #D "][r" #R "]") {                                  \
    check_forward_matrix<D, R>();                                               \
  }
RA_TEST_DR_PAIRS(RA_FORWARD_CASE)
#undef RA_FORWARD_CASE

TEST_CASE("the (D, R) test matrix covers every supported pair", "[attention][matrix]") {
  for (const auto& pr : supported_pairs(SupportedHeadDims{}, SupportedRanks{})) {
    INFO("D=" << pr.first << " R=" << pr.second);
    CHECK(std::find(kTestedPairs.begin(), kTestedPairs.end(), pr) != kTestedPairs.end());
  }
}

TEST_CASE("cpu attention forward on empty shapes writes nothing and does not throw",
          "[attention]") {
  std::vector<float> q(64, 1.f);
  auto empty = make_view(static_cast<const float*>(q.data()), shape(0, 2, 5, 32));  // (0,H,T,D)
  std::vector<float> o(1, 7.f);
  auto ov = make_view(o.data(), shape(0, 2, 5, 32));  // (0,H,T,D)
  auto node = folded_attention(empty, empty, empty, 4);
  REQUIRE_NOTHROW(cpu::attention_forward(node, ov));
  auto no_rows = make_view(static_cast<const float*>(q.data()), shape(1, 2, 0, 32));  // (B,H,0,D)
  auto node2 = folded_attention(no_rows, no_rows, no_rows, 4);
  REQUIRE_NOTHROW(cpu::attention_forward(node2, make_view(o.data(), shape(1, 2, 0, 32))));
  CHECK(o[0] == 7.f);
}

TEST_CASE("cpu attention rejects bad input with a message naming the problem",
          "[attention][errors]") {
  std::vector<float> buf(2 * 2 * 4 * 32, 0.5f);
  const float* c = buf.data();
  auto q = make_view(c, shape(2, 2, 4, 32));        // (B,H,T,D)
  auto short_k = make_view(c, shape(2, 2, 3, 32));  // (B,H,T-1,D)
  std::vector<float> out(buf.size());
  auto o = make_view(out.data(), shape(2, 2, 4, 32));      // (B,H,T,D)
  auto bad_o = make_view(out.data(), shape(2, 2, 4, 16));  // (B,H,T,D/2)

  REQUIRE_THROWS_WITH(folded_attention(q, short_k, q, 0), Catch::Contains("'Kf' has shape"));
  REQUIRE_THROWS_WITH(folded_attention(q, q, q, 32), Catch::Contains("argument 'R' is 32"));
  REQUIRE_THROWS_WITH(folded_attention(q, q, q, -1), Catch::Contains("argument 'R' is -1"));
  REQUIRE_THROWS_WITH(folded_attention(q, q, q, 4, gates::per_layer(nullptr, nullptr)),
                      Catch::Contains("gates.w_std"));
  auto node = folded_attention(q, q, q, 4);
  REQUIRE_THROWS_WITH(cpu::attention_forward(node, bad_o), Catch::Contains("'O' has shape"));
  REQUIRE_THROWS_WITH(cpu::attention_backward(node, o, o, o, bad_o),
                      Catch::Contains("'dV' has shape"));
  auto null_o = TensorView<float, DynShape<4>>(nullptr, make_layout(shape(2, 2, 4, 32)));
  REQUIRE_THROWS_WITH(cpu::attention_forward(node, null_o),
                      Catch::Contains("'O' is a null pointer"));
  REQUIRE_NOTHROW(cpu::attention_forward(node, o));
}
