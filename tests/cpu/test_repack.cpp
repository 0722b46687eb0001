// tests/cpu/test_repack.cpp — cpu::repack_qkv is the row permutation of design.md §1
// "Weight repacking": every row of W_attn comes from the baseline row the spec names, every
// baseline row is used exactly once, biases move with their rows, any strides work, and bad
// shapes throw with a message naming the argument.
#include <catch2/catch.hpp>

#include <map>
#include <utility>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

// Entries that name their origin: matrix m (0 = q, 1 = k, 2 = v), row i, column j.
double tag(int m, index_t i, index_t j) {
  return m * 1e6 + i * 1e3 + j;
}
double bias_tag(int m, index_t i) {
  return -(m * 1e6 + i * 1e3) - 1.0;
}

struct Source {
  int matrix;
  index_t row;
};

// The spec's table, written out per head: W_attn row -> baseline (matrix, row).
std::vector<Source> spec_sources(index_t C, index_t H, int R) {
  const index_t D = C / H, Ds = D - R;
  std::vector<Source> s(3 * C);
  for (index_t h = 0; h < H; ++h) {
    const index_t a = h * D, b = a + D;
    for (index_t d = 0; d < Ds; ++d) {
      s[a + d] = {0, a + d};      // Qf rows [a, a+D_std) <- W_q rows [a, a+D_std)
      s[C + a + d] = {1, a + d};  // Kf rows [a, a+D_std) <- W_k rows [a, a+D_std)
    }
    for (index_t i = 0; i < R; ++i) {
      s[a + Ds + i] = {1, b - R + i};      // Qf rows [a+D_std, b) <- W_k rows [b-R, b)
      s[C + a + Ds + i] = {0, b - R + i};  // Kf rows [a+D_std, b) <- W_q rows [b-R, b)
    }
    for (index_t d = 0; d < D; ++d) s[2 * C + a + d] = {2, a + d};  // V rows unchanged
  }
  return s;
}

struct Baseline {
  index_t C;
  std::vector<double> w[3], b[3];
  explicit Baseline(index_t c) : C(c) {
    for (int m = 0; m < 3; ++m) {
      w[m].resize(C * C);
      b[m].resize(C);
      for (index_t i = 0; i < C; ++i) {
        for (index_t j = 0; j < C; ++j) w[m][i * C + j] = tag(m, i, j);
        b[m][i] = bias_tag(m, i);
      }
    }
  }
  StridedView<const double, 2> mat(int m) const { return make_view(w[m].data(), shape(C, C)); }
  StridedView<const double, 1> vec(int m) const { return make_view(b[m].data(), shape(C)); }
};

}  // namespace

TEST_CASE("repack_qkv moves every row (and its bias) where the spec says", "[repack]") {
  const std::pair<index_t, index_t> shapes[] = {{64, 2}, {96, 3}, {24, 3}, {128, 1}};
  for (const auto& [C, H] : shapes) {
    const index_t D = C / H;
    for (int R : {0, 1, 3, 4, 8, 16}) {
      if (R >= D) continue;
      INFO("C=" << C << " H=" << H << " R=" << R);
      const Baseline base(C);
      std::vector<double> w_attn(3 * C * C), b_attn(3 * C);
      test::poison(w_attn);
      test::poison(b_attn);
      cpu::repack_qkv(C, H, R, base.mat(0), base.mat(1), base.mat(2), base.vec(0), base.vec(1),
                      base.vec(2), make_view(w_attn.data(), shape(3 * C, C)),
                      make_view(b_attn.data(), shape(3 * C)));
      const auto spec = spec_sources(C, H, R);
      std::map<std::pair<int, index_t>, int> uses;
      bool rows_ok = true;
      for (index_t row = 0; row < 3 * C; ++row) {
        const Source s = spec[row];
        ++uses[{s.matrix, s.row}];
        for (index_t j = 0; j < C; ++j) rows_ok &= w_attn[row * C + j] == tag(s.matrix, s.row, j);
        CHECK(b_attn[row] == bias_tag(s.matrix, s.row));
        const auto src = cpu::repack_source(C, H, R, row);
        CHECK(int(src.matrix) == s.matrix);
        CHECK(src.row == s.row);
      }
      CHECK(rows_ok);
      CHECK(uses.size() == static_cast<std::size_t>(3 * C));  // a permutation: each row once
      for (const auto& [key, n] : uses) CHECK(n == 1);
    }
  }
}

TEST_CASE("repack_qkv reads and writes strided views", "[repack]") {
  constexpr index_t C = 64, H = 2;
  constexpr int R = 4;
  const Baseline base(C);
  // W_k stored transposed (column-major): read through a transposed view, no copy.
  std::vector<double> wk_t(C * C);
  for (index_t i = 0; i < C; ++i)
    for (index_t j = 0; j < C; ++j) wk_t[j * C + i] = base.w[1][i * C + j];
  auto wk_view = transpose<1, 0>(
      make_view(static_cast<const double*>(wk_t.data()), shape(C, C)));  // (C,C) strides (1,C)
  // W_attn written with a padded row stride, and in float.
  std::vector<float> w_attn(3 * C * (C + 3), -1.f), b_attn(3 * C);
  auto w_view = make_view(w_attn.data(), shape(3 * C, C), {C + 3, 1});  // (3C,C) strides (C+3,1)
  cpu::repack_qkv(C, H, R, base.mat(0), wk_view, base.mat(2), base.vec(0), base.vec(1), base.vec(2),
                  w_view, make_view(b_attn.data(), shape(3 * C)));
  const auto spec = spec_sources(C, H, R);
  bool ok = true;
  for (index_t row = 0; row < 3 * C; ++row) {
    for (index_t j = 0; j < C; ++j)
      ok &= w_view(row, j) == static_cast<float>(tag(spec[row].matrix, spec[row].row, j));
    for (index_t j = C; j < C + 3; ++j) ok &= w_attn[row * (C + 3) + j] == -1.f;  // padding kept
  }
  CHECK(ok);
}

TEST_CASE("repack_qkv without biases leaves the biases alone", "[repack]") {
  constexpr index_t C = 64, H = 2;
  const Baseline base(C);
  std::vector<double> w_attn(3 * C * C);
  const StridedView<const double, 1> none{};
  REQUIRE_NOTHROW(cpu::repack_qkv(C, H, 8, base.mat(0), base.mat(1), base.mat(2), none, none, none,
                                  make_view(w_attn.data(), shape(3 * C, C)),
                                  StridedView<double, 1>{}));
  CHECK(w_attn[0] == tag(0, 0, 0));
}

TEST_CASE("repack_qkv rejects bad shapes with a message naming the argument", "[repack][errors]") {
  constexpr index_t C = 64, H = 2;
  const Baseline base(C);
  std::vector<double> w_attn(3 * C * C), b_attn(3 * C), small(C * (C + 1));
  auto wa = make_view(w_attn.data(), shape(3 * C, C));  // (3C,C)
  auto ba = make_view(b_attn.data(), shape(3 * C));     // (3C)
  auto q = base.mat(0), k = base.mat(1), v = base.mat(2);
  auto bq = base.vec(0), bk = base.vec(1), bv = base.vec(2);
  auto wide = make_view(static_cast<const double*>(small.data()), shape(C, C + 1));   // (C,C+1)
  auto short_b = make_view(static_cast<const double*>(b_attn.data()), shape(C - 1));  // (C-1)

  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, wide, k, v, bq, bk, bv, wa, ba),
                      Catch::Contains("'w_q' has shape (64,65)"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, q, wide, v, bq, bk, bv, wa, ba),
                      Catch::Contains("'w_k' has shape"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, q, k, wide, bq, bk, bv, wa, ba),
                      Catch::Contains("'w_v' has shape"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, q, k, v, bq, bk, bv,
                                      make_view(w_attn.data(), shape(3 * C - 1, C)), ba),
                      Catch::Contains("'w_attn' has shape (191,64)"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, q, k, v, bq, short_b, bv, wa, ba),
                      Catch::Contains("'b_k.extent(0)' is 63"));
  REQUIRE_THROWS_WITH(
      cpu::repack_qkv(C, H, 0, q, k, v, bq, bk, bv, wa, make_view(b_attn.data(), shape(3 * C - 3))),
      Catch::Contains("'b_attn.extent(0)' is 189"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 32, q, k, v, bq, bk, bv, wa, ba),
                      Catch::Contains("argument 'R' is 32, expected 0 <= R < D = 32"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, -1, q, k, v, bq, bk, bv, wa, ba),
                      Catch::Contains("argument 'R' is -1"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, 3, 0, q, k, v, bq, bk, bv, wa, ba),
                      Catch::Contains("argument 'C' is 64, expected a multiple of H = 3"));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(-64, H, 0, q, k, v, bq, bk, bv, wa, ba),
                      Catch::Contains("argument 'C' is -64"));
  const StridedView<const double, 2> null_v(nullptr, make_layout(shape(C, C)));
  REQUIRE_THROWS_WITH(cpu::repack_qkv(C, H, 0, q, k, null_v, bq, bk, bv, wa, ba),
                      Catch::Contains("'w_v' is a null pointer"));
  REQUIRE_THROWS_WITH(cpu::repack_source(C, H, 4, 3 * C), Catch::Contains("argument 'row' is 192"));
}
