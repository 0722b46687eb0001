// tests/cuda/test_layernorm.cu — the GPU LayerNorm of training (ra/cuda/layernorm.cuh): forward
// (y, mean, rstd) with and without bias; backward dx without dres, with a separate dres and with
// dres aliasing dx; dw, db. float and bf16, rows 37 and 130 (not multiples of the 8 rows of a
// block), C = 64 and 200; outputs poisoned with NaN first.
//
// Precision (tests/common/precision.hpp): each output's error against the exact reference at
// most 2x the naive one's plus the floor, per element, per row and in relative L2. Both come
// from training_reference.hpp's layernorm_reference: exact in double; naive in fp32 with
// sequential sums over the row (μ, σ², mean(g), mean(g·x̂)) and over rows (dw, db), r =
// 1/√(σ² + ε), y and dx rounded to T, mean, rstd, dw, db stored in fp32 (from the naive's own
// mean and r). Floors: mean u32·‖x_i‖₂/C; rstd u32·r·(1 + ½‖(x_i − μ)²‖₂/(C(σ² + ε))); y
// u_T·‖(x̂·w, b)‖₂; dx u_T·‖(r·g, r·mean(g), r·x̂·mean(g·x̂), dres)‖₂ with g = dy ⊙ w; dw
// u32·‖dy ⊙ x̂‖₂ and db u32·‖dy‖₂ over a column. Rows: y and dx a token's C values; mean and
// rstd all N values (one statistic per token, one scale); dw and db all C values.
#include <catch2/catch.hpp>

#include <cstdint>
#include <utility>
#include <vector>

#include <ra/cuda/layernorm.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::index_t;
using ra::test::as_double;

}  // namespace

TEMPLATE_TEST_CASE("training LayerNorm forward and backward keep the precision rule",
                   "[sanitize][cuda][training][layernorm]", float, ra::bf16) {
  using T = TestType;
  ra::test::TrainingCase<T> tc("layernorm", 100);
  for (auto [N, C] : {std::pair<index_t, index_t>{37, 64}, {130, 200}})
    for (bool bias : {false, true}) {
      INFO(ra::test::describe(tc.dtype, N, C) << (bias ? " bias" : " no-bias"));
      auto g = tc.next_rng();
      const auto x = ra::test::offset_rows<T>(N, C, g);
      const auto w = ra::test::random_vector<T>(C, g, 0.5f);
      const auto b = ra::test::random_vector<T>(bias ? C : 0, g, 0.5f);
      auto x_d = ra::test::to_device(x);
      auto w_d = ra::test::to_device(w);
      auto b_d = ra::test::to_device(b);
      auto y_d = ra::test::poisoned<T>(N * C);
      auto mean_d = ra::test::poisoned<float>(N), rstd_d = ra::test::poisoned<float>(N);
      ra::cuda::layernorm_forward(x_d.data(), w_d.data(), bias ? b_d.data() : nullptr, y_d.data(),
                                  mean_d.data(), rstd_d.data(), N, C, tc.stream);
      const auto xd = as_double(x), wd = as_double(w), bd = as_double(b);
      const auto exact = ra::test::layernorm_reference<double, T>(xd, wd, bd, {}, {}, N, C);
      const auto naive = ra::test::layernorm_reference<float, T>(xd, wd, bd, {}, {}, N, C);
      RA_CHECK_PRECISION(tc.judge("y", y_d, naive.y, exact.y, C));
      RA_CHECK_PRECISION(tc.judge("mean", mean_d, naive.mean, exact.mean, N));
      RA_CHECK_PRECISION(tc.judge("rstd", rstd_d, naive.rstd, exact.rstd, N));

      for (int res : {0, 1, 2}) {  // dres: none, a separate buffer, aliasing dx
        INFO("dres " << (res == 0 ? "none" : res == 1 ? "separate" : "aliasing dx"));
        const auto dy = ra::test::random_vector<T>(N * C, g);
        const auto dres = ra::test::random_vector<T>(res ? N * C : 0, g);
        auto dy_d = ra::test::to_device(dy);
        auto dres_d = ra::test::to_device(dres);
        auto dx_d = res == 2 ? ra::test::to_device(dres) : ra::test::poisoned<T>(N * C);
        auto dw_d = ra::test::poisoned<float>(C), db_d = ra::test::poisoned<float>(C);
        ra::cuda::DeviceBuffer<float> scratch(ra::cuda::layernorm_backward_scratch(N, C));
        const T* dres_p = res == 0 ? nullptr : res == 1 ? dres_d.data() : dx_d.data();
        ra::cuda::layernorm_backward(dy_d.data(), x_d.data(), w_d.data(), mean_d.data(),
                                     rstd_d.data(), dres_p, dx_d.data(), dw_d.data(), db_d.data(),
                                     N, C, scratch.data(), tc.stream);
        const auto dyd = as_double(dy), dresd = as_double(dres);
        const auto bx = ra::test::layernorm_reference<double, T>(xd, wd, {}, dyd, dresd, N, C);
        const auto bn = ra::test::layernorm_reference<float, T>(xd, wd, {}, dyd, dresd, N, C);
        RA_CHECK_PRECISION(tc.judge("dx", dx_d, bn.dx, bx.dx, C));
        RA_CHECK_PRECISION(tc.judge("dw", dw_d, bn.dw, bx.dw, C));
        RA_CHECK_PRECISION(tc.judge("db", db_d, bn.db, bx.db, C));
      }
    }
}
