// tests/cpu/test_errors.cpp — bad input to the core views and the expression nodes.
//
// Each case checks the exception type and that its message names the argument (or the
// operation), the value received and what was expected — the house rule for host errors.
#include <catch2/catch.hpp>

#include <ra/core.hpp>
#include <ra/expr.hpp>

#include <array>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using ra::index_t;

}  // namespace

TEST_CASE("errors: make_view", "[errors][view]") {
  std::vector<float> buf(64);
  REQUIRE_THROWS_AS(ra::make_view(buf.data(), ra::shape(2, -3)), ra::error);
  REQUIRE_THROWS_WITH(ra::make_view(buf.data(), ra::shape(2, -3)),
                      Contains("make_view") && Contains("'shape'") && Contains("(2,-3)") &&
                          Contains("non-negative"));
  REQUIRE_THROWS_WITH(ra::make_view(static_cast<float*>(nullptr), ra::shape(2, 3)),
                      Contains("'data'") && Contains("null pointer") && Contains("valid pointer"));
  REQUIRE_THROWS_WITH(ra::make_view(buf.data(), ra::shape(4, 4), {4, -1}),
                      Contains("'strides'") && Contains("(4,-1)") && Contains("non-negative"));
  REQUIRE_THROWS_WITH(ra::make_view(buf.data(), ra::shape(-1, 4), {4, 1}),
                      Contains("'shape'") && Contains("(-1,4)"));
  // A null pointer is fine for an empty tensor (nothing is ever read through it).
  REQUIRE_NOTHROW(ra::make_view(static_cast<float*>(nullptr), ra::shape(0, 3)));
}

TEST_CASE("errors: split, join, slice, select, view", "[errors][view]") {
  std::vector<float> buf(2 * 7 * 6);
  auto t = ra::make_view(buf.data(), ra::shape(2, 7, 6));  // (2,7,6) strides (42,6,1)

  SECTION("split of a non-divisible extent") {
    REQUIRE_THROWS_AS((ra::split<3, 1>(t)), ra::error);
    REQUIRE_THROWS_WITH((ra::split<3, 1>(t)), Contains("split") &&
                                                  Contains("'extent of the split axis' is 7") &&
                                                  Contains("a multiple of 3"));
    REQUIRE_THROWS_WITH((ra::split<4, 2>(t)), Contains("is 6") && Contains("a multiple of 4"));
  }
  SECTION("join of parts that are not adjacent") {
    auto parts = ra::split<3, 2>(t);  // 3 x (2,7,2) strides (42,6,1)
    using Part = typename decltype(parts)::value_type;
    const std::array<Part, 2> gap{parts[0], parts[2]};
    REQUIRE_THROWS_AS(ra::join<2>(gap), ra::error);
    REQUIRE_THROWS_WITH(ra::join<2>(gap), Contains("join") && Contains("part 1") &&
                                              Contains("does not follow part 0") &&
                                              Contains("axis 2"));
    const std::array<Part, 3> swapped{parts[1], parts[0], parts[2]};
    REQUIRE_THROWS_WITH(ra::join<2>(swapped), Contains("part 1") && Contains("does not follow"));
    // Adjacent in memory along axis 2, but joined along axis 1: also refused.
    REQUIRE_THROWS_WITH(ra::join<1>(parts), Contains("does not follow") && Contains("axis 1"));
  }
  SECTION("join of parts with different layouts") {
    auto a = ra::slice<1>(t, 0, 3);  // (2,3,6)
    auto b = ra::slice<1>(t, 3, 7);  // (2,4,6)
    const std::array<decltype(a), 2> parts{a, b};
    REQUIRE_THROWS_WITH(ra::join<1>(parts),
                        Contains("part 1 has layout (2,4,6)") && Contains("expected (2,3,6)"));
  }
  SECTION("slice out of range") {
    REQUIRE_THROWS_AS(ra::slice<1>(t, 2, 9), ra::error);
    REQUIRE_THROWS_WITH(ra::slice<1>(t, 2, 9), Contains("slice") && Contains("[2, 9)") &&
                                                   Contains("axis 1") && Contains("extent 7"));
    REQUIRE_THROWS_WITH(ra::slice<0>(t, -1, 1), Contains("[-1, 1)") && Contains("extent 2"));
    REQUIRE_THROWS_WITH(ra::slice<2>(t, 4, 3),
                        Contains("[4, 3)") && Contains("0 <= begin <= end <= extent"));
    REQUIRE_NOTHROW(ra::slice<1>(t, 7, 7));
  }
  SECTION("select out of range") {
    REQUIRE_THROWS_WITH(ra::select<1>(t, 7), Contains("select") && Contains("'index' is 7") &&
                                                 Contains("[0, 7)") && Contains("axis 1"));
    REQUIRE_THROWS_WITH(ra::select<0>(t, -1), Contains("'index' is -1") && Contains("[0, 2)"));
  }
  SECTION("view with the wrong element count or a negative extent") {
    REQUIRE_THROWS_WITH(ra::view(t, ra::shape(5, 5)),
                        Contains("view") && Contains("'shape'") && Contains("(5,5)") &&
                            Contains("84 elements") && Contains("(2,7,6)"));
    REQUIRE_THROWS_WITH(ra::view(t, ra::shape(-2, -42)),
                        Contains("'shape'") && Contains("(-2,-42)") && Contains("non-negative"));
  }
}

TEST_CASE("errors: heads and folded_views", "[errors][folded]") {
  std::vector<float> buf(2 * 3 * 100);
  auto btc = ra::make_view(buf.data(), ra::shape(2, 3, 10));  // (B,T,C) = (2,3,10)
  REQUIRE_THROWS_WITH(ra::heads(btc, 3, 4), Contains("heads") && Contains("'channels' is 10") &&
                                                Contains("H * D = 3 * 4"));
  REQUIRE_THROWS_WITH(ra::heads(btc, 0, 4), Contains("'H' is 0") && Contains("positive"));
  REQUIRE_THROWS_WITH(ra::heads(btc, 2, 0), Contains("'D' is 0") && Contains("positive"));

  auto fused = ra::make_view(buf.data(), ra::shape(2, 3, 100));  // (B,T,3C) with 3C = 100
  REQUIRE_THROWS_AS(ra::folded_views(fused, 2, 16), ra::error);
  REQUIRE_THROWS_WITH(ra::folded_views(fused, 2, 16), Contains("folded_views") &&
                                                          Contains("'fused.extent(2)' is 100") &&
                                                          Contains("3 * H * D = 96"));
  REQUIRE_THROWS_WITH(ra::folded_views(fused, 2, ra::Int<32>{}),
                      Contains("'fused.extent(2)' is 100") && Contains("3 * H * D = 192"));
  REQUIRE_THROWS_WITH(ra::folded_views(fused, 0, 16), Contains("H = 0") && Contains("positive"));
  REQUIRE_THROWS_WITH(ra::folded_views(fused, 2, -4), Contains("D = -4") && Contains("positive"));
}

TEST_CASE("errors: folded_attention", "[errors][attention]") {
  const index_t B = 2, H = 2, T = 5, D = 32;
  std::vector<float> buf(B * 3 * (T + 1) * D);
  auto q = ra::make_view(buf.data(), ra::shape(B, H, T, D));       // (B,H,T,D)
  auto k6 = ra::make_view(buf.data(), ra::shape(B, H, T + 1, D));  // (B,H,T+1,D)
  auto v3 = ra::make_view(buf.data(), ra::shape(B, 3, T, D));      // (B,3,T,D)
  const float w_std = 0.9f, w_rec = 0.1f;

  SECTION("mismatched shapes") {
    // Kf and V share (B,H,T_k,D); Qf may have fewer rows (T_q <= T_k), never more.
    REQUIRE_THROWS_AS(ra::folded_attention<ra::Rank<4>>(q, k6, q), ra::error);
    REQUIRE_THROWS_WITH(ra::folded_attention<ra::Rank<4>>(q, k6, q),
                        Contains("folded_attention") && Contains("'Kf' has shape (2,2,6,32)") &&
                            Contains("'V' has shape (2,2,5,32)"));
    REQUIRE_THROWS_WITH(ra::folded_attention<ra::Rank<4>>(k6, q, q),
                        Contains("folded_attention") && Contains("'T_k' is 5") &&
                            Contains("T_k >= T_q = 6"));
    REQUIRE_NOTHROW(ra::folded_attention<ra::Rank<4>>(q, k6, k6));
    REQUIRE_THROWS_WITH(ra::folded_attention(q, q, v3, 4),
                        Contains("'V' has shape (2,3,5,32)") && Contains("expected equal shapes"));
  }
  SECTION("R >= D or R < 0") {
    REQUIRE_THROWS_WITH(ra::folded_attention(q, q, q, 32),
                        Contains("'R' is 32") && Contains("0 <= R < D = 32"));
    REQUIRE_THROWS_WITH(ra::folded_attention(q, q, q, -1),
                        Contains("'R' is -1") && Contains("0 <= R < D = 32"));
    auto q0 = ra::make_view(buf.data(), ra::shape(B, H, T, 0));  // (B,H,T,0)
    REQUIRE_THROWS_WITH(ra::folded_attention(q0, q0, q0, 0),
                        Contains("'D' is 0") && Contains("positive head dim"));
  }
  SECTION("missing gate pointers") {
    REQUIRE_THROWS_WITH(
        ra::folded_attention(q, q, q, 4, ra::gates::per_head(nullptr, &w_rec)),
        Contains("'gates.w_std'") && Contains("null pointer") && Contains("gate parameters"));
    REQUIRE_THROWS_WITH(
        ra::folded_attention<ra::Rank<4>>(q, q, q, ra::gates::per_layer(&w_std, nullptr)),
        Contains("'gates.w_rec'") && Contains("null pointer"));
    REQUIRE_NOTHROW(ra::folded_attention(q, q, q, 4, ra::gates::per_layer(&w_std, &w_rec)));
    REQUIRE_NOTHROW(ra::folded_attention(q, q, q, 4, ra::gates::none()));
  }
}

TEST_CASE("errors: gemm", "[errors][gemm]") {
  std::vector<float> buf(256);
  auto a = ra::make_view(buf.data(), ra::shape(3, 4));   // (M,K) = (3,4)
  auto w = ra::make_view(buf.data(), ra::shape(5, 6));   // (N,K') = (5,6)
  auto w4 = ra::make_view(buf.data(), ra::shape(5, 4));  // (N,K) = (5,4)
  auto b4 = ra::make_view(buf.data(), ra::shape(4));     // (4)
  REQUIRE_THROWS_WITH(ra::gemm(a, w), Contains("gemm") && Contains("'W.extent(1)' is 6") &&
                                          Contains("K = A.extent(1) = 4"));
  REQUIRE_THROWS_WITH(ra::gemm(a, w4, b4),
                      Contains("'bias.extent(0)' is 4") && Contains("N = W.extent(0) = 5"));
  auto g = ra::gemm(a, w4);
  auto y = ra::make_view(buf.data(), ra::shape(3, 4));  // (3,4), expected (3,5)
  REQUIRE_THROWS_WITH(g.validate_output(y),
                      Contains("output has shape (3,4)") && Contains("expected (3,5)"));
}

TEST_CASE("errors: AttentionBlockConfig", "[errors][block]") {
  auto with = [](ra::index_t C, ra::index_t H, int R) {
    ra::AttentionBlockConfig cfg;
    cfg.C = C;
    cfg.H = H;
    cfg.R = R;
    return cfg;
  };
  REQUIRE_THROWS_WITH(with(100, 3, 0).validate(), Contains("AttentionBlockConfig") &&
                                                      Contains("'C' is 100") &&
                                                      Contains("a multiple of H = 3"));
  REQUIRE_THROWS_WITH(with(0, 12, 0).validate(), Contains("'C' is 0") && Contains("positive"));
  REQUIRE_THROWS_WITH(with(768, 0, 0).validate(), Contains("'H' is 0") && Contains("positive"));
  REQUIRE_THROWS_WITH(with(768, -2, 0).validate(), Contains("'H' is -2"));
  REQUIRE_THROWS_WITH(with(768, 12, -1).validate(),
                      Contains("'R' is -1") && Contains("non-negative"));
  // D = C / H must be a supported head dim, R a supported rank; the message lists them.
  REQUIRE_THROWS_AS(with(96, 2, 0).validate(), ra::unsupported);
  REQUIRE_THROWS_WITH(with(96, 2, 0).validate(),
                      Contains("head dim D = 48") && Contains(ra::SupportedHeadDims::to_string()));
  REQUIRE_THROWS_AS(with(768, 12, 3).validate(), ra::unsupported);
  REQUIRE_THROWS_WITH(with(768, 12, 3).validate(),
                      Contains("rank R = 3") && Contains(ra::SupportedRanks::to_string()));
  REQUIRE_NOTHROW(with(768, 12, 4).validate());
  REQUIRE(with(768, 12, 4).head_dim() == 64);
}

TEST_CASE("errors: attention block weights and buffers", "[errors][block]") {
  const index_t B = 1, T = 3, C = 64, H = 2;
  ra::AttentionBlockConfig cfg;
  cfg.C = C;
  cfg.H = H;
  cfg.R = 4;
  cfg.gates = ra::GateMode::per_head;
  cfg.restart = true;
  std::vector<float> mem(4 * C * C + 8 * C + 16, 0.0f);
  const float* p = mem.data();
  using W2 = ra::StridedView<const float, 2>;
  using W1 = ra::StridedView<const float, 1>;
  const float gates[2] = {0.9f, 0.9f};
  const float alpha[2] = {0.05f, 0.05f};
  ra::AttentionBlockWeights<float> w;
  w.w_attn = ra::make_view(p, ra::shape(3 * C, C));  // (3C,C)
  w.b_attn = ra::make_view(p, ra::shape(3 * C));     // (3C)
  w.w_o = ra::make_view(p, ra::shape(C, C));         // (C,C)
  w.b_o = ra::make_view(p, ra::shape(C));            // (C)
  w.w_std = gates;
  w.w_rec = gates;
  w.a = alpha;
  REQUIRE_NOTHROW(w.validate(cfg));

  SECTION("weights") {
    auto bad = w;
    bad.w_attn = W2(ra::make_view(p, ra::shape(C, C)));  // (C,C), expected (3C,C)
    REQUIRE_THROWS_WITH(bad.validate(cfg),
                        Contains("'w_attn' has shape (64,64)") && Contains("expected (192,64)"));
    bad = w;
    bad.w_o = W2(ra::make_view(p, ra::shape(C, 2 * C)));  // (C,2C)
    REQUIRE_THROWS_WITH(bad.validate(cfg),
                        Contains("'w_o' has shape (64,128)") && Contains("expected (64,64)"));
    bad = w;
    bad.b_attn = W1(ra::make_view(p, ra::shape(C)));  // (C), expected (3C)
    REQUIRE_THROWS_WITH(bad.validate(cfg),
                        Contains("'b_attn.extent(0)' is 64") && Contains("3C = 192"));
    bad = w;
    bad.b_o = W1(ra::make_view(p, ra::shape(C + 1)));
    REQUIRE_THROWS_WITH(bad.validate(cfg), Contains("'b_o.extent(0)' is 65") && Contains("C = 64"));
    bad = w;
    bad.w_rec = nullptr;
    REQUIRE_THROWS_WITH(bad.validate(cfg), Contains("'w_std/w_rec'") && Contains("null pointer") &&
                                               Contains("2 gate value(s)"));
    bad = w;
    bad.a = nullptr;
    REQUIRE_THROWS_WITH(bad.validate(cfg),
                        Contains("'a'") && Contains("null pointer") && Contains("H restart"));
  }

  SECTION("inputs of the attention_block expression") {
    const ra::index_t D = C / 2;
    std::vector<float> x(B * T * C), dx(B * T * C);
    auto xv = ra::StridedView<const float, 3>(ra::make_view(x.data(), ra::shape(B, T, C)));
    REQUIRE_NOTHROW(ra::attention_block<ra::DynamicRank>(cfg, xv, w, D));
    auto x_bad = ra::StridedView<const float, 3>(ra::make_view(x.data(), ra::shape(B, 1, 2 * C)));
    REQUIRE_THROWS_WITH(ra::attention_block<ra::DynamicRank>(cfg, x_bad, w, D),
                        Contains("attention_block") && Contains("'x' has shape (1,1,128)") &&
                            Contains("expected (B,T,64)"));
    REQUIRE_THROWS_WITH(ra::attention_block<ra::DynamicRank>(cfg, xv, w, ra::Int<16>{}),
                        Contains("'D' is 16") && Contains("C / H = 32"));
    REQUIRE_THROWS_WITH(ra::attention_block<ra::Rank<8>>(cfg, xv, w, D),
                        Contains("'Rank' is 8") && Contains("cfg.R = 4"));
    auto dx_bad = ra::make_view(dx.data(), ra::shape(B, 1, C));
    REQUIRE_THROWS_WITH(ra::attention_block<ra::DynamicRank>(
                            cfg, xv, w, D, ra::AttentionBlockGrads<float>{}, dx_bad),
                        Contains("'dx' has shape (1,1,64)") && Contains("like x"));
    auto bad_cfg = cfg;
    bad_cfg.C = 65;
    REQUIRE_THROWS_WITH(
        ra::attention_block<ra::DynamicRank>(bad_cfg, xv, w, D),
        Contains("attention_block") && Contains("'C' is 65") && Contains("a multiple of H = 2"));
  }
}
