// tests/cpu/test_attention_offset.cpp — folded attention with fewer query rows than keys
// (T_q < T_k: the causal mask aligned bottom-right, as decoding needs), on the CPU:
//   forward   O' and lse against the double-loop definition (tests/cpu/reference.hpp), over
//             every supported (D, R) pair, every gate mode, with and without self-restart;
//   backward  equal to the square backward of the full T_k rows with dO' = 0 on the first
//             T_k − T_q rows (those rows then add nothing to dKf, dV or the parameter
//             gradients): dQf is its last T_q rows, dKf, dV and the gate and restart gradients
//             are its own;
//   errors    T_k < T_q, and Qf/Kf that differ in B, H or D, each named.
#include <catch2/catch.hpp>

#include <array>
#include <utility>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;
using test::Dense;
using test::max_error;

struct Raw {
  std::vector<float> w_std, w_rec, a;
  Gates gates{};
  Restart restart{};
};

Raw raw_params(std::mt19937_64& rng, GateMode mode, GateParam param, bool with_restart, index_t H) {
  Raw p;
  const std::size_t n = mode == GateMode::per_head ? H : 1;
  p.w_std = test::random_uniform(rng, n, 0.2, 1.5);
  p.w_rec = test::random_uniform(rng, n, 0.2, 1.5);
  p.a = test::random_uniform(rng, H, -0.1, 0.6);
  if (mode == GateMode::per_layer) p.gates = gates::per_layer(&p.w_std[0], &p.w_rec[0], param);
  if (mode == GateMode::per_head) p.gates = gates::per_head(p.w_std.data(), p.w_rec.data(), param);
  if (with_restart) p.restart = restart::per_head(p.a.data());
  return p;
}

// Rows [first, first + n) of a compact (B,H,T,D) buffer, as a (B,H,n,D) view.
auto rows_view(std::vector<double>& buf, index_t B, index_t H, index_t T, index_t D, index_t first,
               index_t n) {
  return make_view(buf.data() + first * D, shape(B, H, n, D),
                   std::array<index_t, 4>{H * T * D, T * D, D, 1});
}

void check_pair(std::mt19937_64& rng, int D, int R) {
  constexpr index_t B = 2, H = 2;
  for (const auto& [Tq, Tk] : {std::pair<index_t, index_t>{1, 9}, {3, 8}, {5, 5}, {0, 4}})
    for (GateMode mode : {GateMode::none, GateMode::per_layer, GateMode::per_head})
      for (bool with_restart : {false, true}) {
        INFO("D=" << D << " R=" << R << " T_q=" << Tq << " T_k=" << Tk << " gates " << mode
                  << " restart " << with_restart);
        const Raw p = raw_params(rng, mode, GateParam::softplus, with_restart, H);
        const auto n_k = static_cast<std::size_t>(B * H * Tk * D);
        // The full problem has T_k query rows; the offset problem takes its last T_q.
        auto q = test::random_normal<double>(rng, n_k), k = test::random_normal<double>(rng, n_k),
             v = test::random_normal<double>(rng, n_k), d_o = test::random_normal<double>(rng, n_k);
        for (index_t b = 0; b < B; ++b)  // dO' = 0 on the rows the offset problem lacks
          for (index_t h = 0; h < H; ++h)
            for (index_t t = 0; t < (Tk - Tq) * D; ++t) d_o[((b * H + h) * Tk) * D + t] = 0.0;
        const auto qs = rows_view(q, B, H, Tk, D, Tk - Tq, Tq);
        const auto ks = rows_view(k, B, H, Tk, D, 0, Tk);
        const auto vs = rows_view(v, B, H, Tk, D, 0, Tk);
        auto node = folded_attention(qs, ks, vs, R, p.gates, causal, p.restart);
        CHECK(node.spec().query_offset() == Tk - Tq);

        // Forward against the definition.
        std::vector<double> o(static_cast<std::size_t>(B * H * Tq * D));
        std::vector<float> lse(static_cast<std::size_t>(B * H * Tq));
        test::poison(o);
        test::poison(lse);
        auto ov = make_view(o.data(), shape(B, H, Tq, D));
        cpu::attention_forward(node, ov, lse.data());
        const auto want = test::naive_attention(qs, ks, vs, R, p.gates, p.restart);
        const auto e = max_error(test::dense(ov), want.o);
        INFO("O': " << e);
        CHECK(e.abs <= 1e-12 * (1.0 + e.max_want));
        const auto el = max_error(Dense{{B, H, Tq}, {lse.begin(), lse.end()}}, want.lse);
        INFO("lse: " << el);
        CHECK(el.abs <= 2.0 * 0x1p-24 * (1.0 + el.max_want));

        // Backward against the full square backward with zero dO' on the missing rows.
        const auto qf = rows_view(q, B, H, Tk, D, 0, Tk);
        auto full = folded_attention(qf, ks, vs, R, p.gates, causal, p.restart);
        std::vector<double> dq(n_k), dk(n_k), dv(n_k), dq_full(n_k), dk_full(n_k), dv_full(n_k);
        test::poison(dq);
        test::poison(dk);
        test::poison(dv);
        float g[6] = {}, g_full[6] = {};
        const auto dos = rows_view(d_o, B, H, Tk, D, Tk - Tq, Tq);
        cpu::attention_backward(node, dos, rows_view(dq, B, H, Tq, D, 0, Tq),
                                rows_view(dk, B, H, Tk, D, 0, Tk),
                                rows_view(dv, B, H, Tk, D, 0, Tk), {&g[0], &g[2], &g[4]});
        cpu::attention_backward(
            full, rows_view(d_o, B, H, Tk, D, 0, Tk), rows_view(dq_full, B, H, Tk, D, 0, Tk),
            rows_view(dk_full, B, H, Tk, D, 0, Tk), rows_view(dv_full, B, H, Tk, D, 0, Tk),
            {&g_full[0], &g_full[2], &g_full[4]});
        const auto edq = max_error(test::dense(rows_view(dq, B, H, Tq, D, 0, Tq)),
                                   test::dense(rows_view(dq_full, B, H, Tk, D, Tk - Tq, Tq)));
        const auto edk = max_error(test::dense(rows_view(dk, B, H, Tk, D, 0, Tk)),
                                   test::dense(rows_view(dk_full, B, H, Tk, D, 0, Tk)));
        const auto edv = max_error(test::dense(rows_view(dv, B, H, Tk, D, 0, Tk)),
                                   test::dense(rows_view(dv_full, B, H, Tk, D, 0, Tk)));
        INFO("dQf: " << edq << " dKf: " << edk << " dV: " << edv);
        CHECK(edq.abs <= 1e-12 * (1.0 + edq.max_want));
        CHECK(edk.abs <= 1e-12 * (1.0 + edk.max_want));
        CHECK(edv.abs <= 1e-12 * (1.0 + edv.max_want));
        // The parameter gradients are rounded to float from double sums of different length.
        const int n_g = mode == GateMode::per_head ? 2 : 1;
        for (int i = 0; i < (mode == GateMode::none ? 0 : n_g); ++i) {
          CHECK(g[i] == Approx(g_full[i]).epsilon(4 * 0x1p-24).margin(1e-12));
          CHECK(g[2 + i] == Approx(g_full[2 + i]).epsilon(4 * 0x1p-24).margin(1e-12));
        }
        for (int h = 0; h < (with_restart ? 2 : 0); ++h)
          CHECK(g[4 + h] == Approx(g_full[4 + h]).epsilon(4 * 0x1p-24).margin(1e-12));
      }
}

TEST_CASE(
    "cpu attention: T_q < T_k (bottom-right causal) matches the definition and the "
    "square backward, every (D, R)",
    "[attention][offset]") {
  RA_TEST_RNG(rng);
  for (int D : SupportedHeadDims::values)
    for (int R : SupportedRanks::values)
      if (R < D) check_pair(rng, D, R);
}

TEST_CASE("cpu attention: T_k < T_q and Qf/Kf of different B, H or D are refused by name",
          "[attention][offset][errors]") {
  std::vector<double> buf(4 * 2 * 9 * 16, 0.0);
  const auto q = make_view(static_cast<const double*>(buf.data()), shape(1, 2, 5, 16));
  const auto k = make_view(static_cast<const double*>(buf.data()), shape(1, 2, 4, 16));
  CHECK_THROWS_WITH(folded_attention(q, k, k, 4),
                    Catch::Contains("'T_k' is 4") && Catch::Contains("T_k >= T_q = 5"));
  const auto k_h = make_view(static_cast<const double*>(buf.data()), shape(1, 3, 6, 16));
  CHECK_THROWS_WITH(folded_attention(q, k_h, k_h, 4),
                    Catch::Contains("'Qf' and 'Kf' differ in H (2 vs 3)"));
  const auto k_d = make_view(static_cast<const double*>(buf.data()), shape(1, 2, 6, 8));
  CHECK_THROWS_WITH(folded_attention(q, k_d, k_d, 4),
                    Catch::Contains("'Qf' and 'Kf' differ in D (16 vs 8)"));
  const auto k_b = make_view(static_cast<const double*>(buf.data()), shape(2, 2, 6, 16));
  CHECK_THROWS_WITH(folded_attention(q, k_b, k_b, 4),
                    Catch::Contains("'Qf' and 'Kf' differ in B (1 vs 2)"));
  const auto v_short = make_view(static_cast<const double*>(buf.data()), shape(1, 2, 5, 16));
  const auto k_ok = make_view(static_cast<const double*>(buf.data()), shape(1, 2, 6, 16));
  CHECK_THROWS_WITH(folded_attention(q, k_ok, v_short, 4),
                    Catch::Contains("'Kf'") && Catch::Contains("'V'"));
}

}  // namespace
