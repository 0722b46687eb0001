// tests/cuda/test_elementwise.cu — the element-wise training kernels (ra/cuda/elementwise.cuh):
// GELU forward and backward (also in place), add (also in place), round_to, and dropout, which
// must reproduce nn::Dropout's mask (p 0.1 / 0.5, two sites), do nothing at p = 0 and reject a
// bad p; and the strided GELU row passes (ra/cuda/gelu.cuh), bit for bit the packed kernels. float
// and bf16 over 37 rows of 200 (925 packs of bf16: not a multiple of the 256-thread block); outputs
// poisoned with NaN first.
//
// Precision (tests/common/precision.hpp): gelu, gelu backward and add against the exact
// reference at most 2x the naive one's error plus the floor, per element, per row of 200 and
// in relative L2. Both from training_reference.hpp: exact in double (√(2/π) and 0.044715 in
// double); naive in fp32 with the kernels' fp32 constants and std::tanh, the output rounded
// once to T. Floors (u of T): gelu ½x(1 + t): u·½|x|·‖(1, t)‖₂; gelu backward dy·gelu'(x):
// u·|dy|·‖(½, ½t, ½x·s', −½x·s'·t²)‖₂ with s' = √(2/π)(1 + 3·0.044715x²); add: u·‖(a, b)‖₂.
// Exact checks stay exact: the in-place results and round_to bit for bit, the dropout mask
// element by element; dropout values (one product by 1/(1 − p), scaled in double on both
// sides) within one ulp of nn::Dropout's, which the GPU rounds through fp32.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <ra/cuda/elementwise.cuh>
#include <ra/cuda/gelu.cuh>
#include <ra/nn/dropout.hpp>

#include "training_test_utils.cuh"

namespace {

using ra::DType;
using ra::index_t;
using ra::test::as_double;
using ra::test::sz;

constexpr index_t kRow = 200;  // a row of the precision rule

}  // namespace

TEMPLATE_TEST_CASE("training GELU forward and backward and add keep the precision rule",
                   "[sanitize][cuda][training][elementwise]", float, ra::bf16) {
  using T = TestType;
  const index_t n = 37 * kRow;  // 925 packs of bf16: not a multiple of the 256-thread block
  ra::test::TrainingCase<T> tc("", 199);
  INFO(ra::test::describe(tc.dtype, 37, 200));
  auto g = tc.next_rng();
  const auto x = ra::test::random_vector<T>(n, g, 2.f);
  const auto dy = ra::test::random_vector<T>(n, g);
  auto x_d = ra::test::to_device(x);
  auto dy_d = ra::test::to_device(dy);
  auto y_d = ra::test::poisoned<T>(n), dx_d = ra::test::poisoned<T>(n);

  const auto xd = as_double(x), dyd = as_double(dy);
  ra::cuda::gelu_forward(x_d.data(), y_d.data(), n, tc.stream);
  RA_CHECK_PRECISION(tc.judge("gelu", y_d, ra::test::gelu_reference<float, T>(xd),
                              ra::test::gelu_reference<double, T>(xd), kRow));
  ra::cuda::gelu_backward(dy_d.data(), x_d.data(), dx_d.data(), n, tc.stream);
  const auto dx = ra::test::to_host(dx_d.data(), n);
  RA_CHECK_PRECISION(tc.judge("gelu backward", dx,
                              ra::test::gelu_backward_reference<float, T>(dyd, xd),
                              ra::test::gelu_backward_reference<double, T>(dyd, xd), kRow));
  // In place (dx aliasing dy): the same bits.
  ra::cuda::gelu_backward(dy_d.data(), x_d.data(), dy_d.data(), n, tc.stream);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(dy_d.data(), n), dx));

  auto a_d = ra::test::to_device(x);
  auto b_d = ra::test::to_device(dy);
  ra::test::poison(y_d.data(), n);
  ra::cuda::add(a_d.data(), b_d.data(), y_d.data(), n, tc.stream);
  const auto sum = ra::test::to_host(y_d.data(), n);
  RA_CHECK_PRECISION(tc.judge("add", sum, ra::test::add_reference<float, T>(xd, dyd),
                              ra::test::add_reference<double, T>(xd, dyd), kRow));
  ra::cuda::add(a_d.data(), b_d.data(), a_d.data(), n, tc.stream);  // c aliasing a
  CHECK(ra::test::bitwise_equal(ra::test::to_host(a_d.data(), n), sum));

  // round_to: T(x) from fp32, any length.
  const auto xf = ra::test::random_vector<float>(n - 1, g);
  auto xf_d = ra::test::to_device(xf);
  ra::cuda::round_to(xf_d.data(), y_d.data(), n - 1, tc.stream);
  std::vector<T> rounded(xf.size());
  for (std::size_t i = 0; i < xf.size(); ++i) rounded[i] = T(xf[i]);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(y_d.data(), n - 1), rounded));

  CHECK_THROWS_AS(ra::cuda::add(a_d.data(), b_d.data(), y_d.data(), n - 1, tc.stream), ra::error);
  CHECK_THROWS_WITH(ra::cuda::gelu_forward(x_d.data(), y_d.data(), n - 1, tc.stream),
                    Catch::Contains("length"));
  CHECK_THROWS_WITH(ra::cuda::gelu_forward(x_d.data() + 1, y_d.data(), n - 8, tc.stream),
                    Catch::Contains("pointer") && Catch::Contains("16-byte"));
}

// The row passes of ra/cuda/gelu.cuh (an fp32 GEMM's GELU epilogue, ra/cuda/gemm.cuh) over
// strided rows of any length: the bits of the packed kernels above (one element math), rows
// of 37 x 203 (not a multiple of the 256-thread block), row strides 208 (x) and 211 (y, dy),
// the padding between rows left as poisoned.
TEMPLATE_TEST_CASE("training gelu_rows and gelu_grad_rows give the packed kernels' bits",
                   "[sanitize][cuda][training][gelu]", float, ra::bf16) {
  using T = TestType;
  const index_t R = 37, C = 203, ldx = 208, ldy = 211;
  ra::test::Stream stream;
  auto g = ra::test::rng(302);
  const auto x = ra::test::random_vector<T>(R * ldx, g, 2.f);
  const auto dy = ra::test::random_vector<T>(R * ldy, g);
  // The (R,C) part of a strided matrix, compact; the padding must still be poison.
  const auto rows_of = [&](const std::vector<T>& all, index_t ld, bool padding_poisoned) {
    std::vector<T> out;
    index_t touched = 0;
    for (index_t i = 0; i < R; ++i) {
      out.insert(out.end(), all.begin() + i * ld, all.begin() + i * ld + C);
      for (index_t j = C; j < ld; ++j) touched += !ra::test::is_poison(all[sz(i * ld + j)]);
    }
    if (padding_poisoned) CHECK(touched == 0);
    return out;
  };
  // Packed reference: the compact (R,C) matrices, padded to whole packs with zeros.
  const index_t n = (R * C + 7) / 8 * 8;
  auto compact = [&](const std::vector<T>& all, index_t ld) {
    auto v = rows_of(all, ld, false);
    v.resize(sz(n), T(0.f));
    return v;
  };
  auto xc_d = ra::test::to_device(compact(x, ldx));
  auto dyc_d = ra::test::to_device(compact(dy, ldy));
  ra::cuda::DeviceBuffer<T> yc_d(n), dxc_d(n);
  ra::cuda::gelu_forward(xc_d.data(), yc_d.data(), n, stream);
  ra::cuda::gelu_backward(dyc_d.data(), xc_d.data(), dxc_d.data(), n, stream);
  auto y_packed = ra::test::to_host(yc_d.data(), n), dx_packed = ra::test::to_host(dxc_d.data(), n);
  y_packed.resize(sz(R * C));
  dx_packed.resize(sz(R * C));

  auto x_d = ra::test::to_device(x);
  ra::cuda::DeviceBuffer<T> y_d(R * ldy);
  ra::test::poison(y_d.data(), y_d.size());
  ra::cuda::gelu_rows(x_d.data(), ldx, y_d.data(), ldy, R, C, stream);
  CHECK(ra::test::bitwise_equal(rows_of(ra::test::to_host(y_d.data(), R * ldy), ldy, true),
                                y_packed));
  // dy ⊙= gelu'(x) in place; the padding of dy (random values) must not change.
  auto dy_d = ra::test::to_device(dy);
  ra::cuda::gelu_grad_rows(x_d.data(), ldx, dy_d.data(), ldy, R, C, stream);
  const auto dx = ra::test::to_host(dy_d.data(), R * ldy);
  CHECK(ra::test::bitwise_equal(rows_of(dx, ldy, false), dx_packed));
  std::vector<T> pad_before, pad_after;
  for (index_t i = 0; i < R; ++i)
    for (index_t j = C; j < ldy; ++j) {
      pad_before.push_back(dy[sz(i * ldy + j)]);
      pad_after.push_back(dx[sz(i * ldy + j)]);
    }
  CHECK(ra::test::bitwise_equal(pad_after, pad_before));

  // Empty matrices are no-ops (null pointers allowed); bad arguments are named.
  ra::cuda::gelu_rows(static_cast<const T*>(nullptr), C, static_cast<T*>(nullptr), C, 0, C, stream);
  ra::cuda::gelu_grad_rows(static_cast<const T*>(nullptr), 0, static_cast<T*>(nullptr), 0, R, 0,
                           stream);
  CHECK_THROWS_WITH(ra::cuda::gelu_rows(x_d.data(), C - 1, y_d.data(), ldy, R, C, stream),
                    Catch::Contains("'ldx' is 202") && Catch::Contains("cols = 203"));
  CHECK_THROWS_WITH(ra::cuda::gelu_rows(x_d.data(), ldx, y_d.data(), 7, R, C, stream),
                    Catch::Contains("'ldy' is 7"));
  CHECK_THROWS_WITH(ra::cuda::gelu_grad_rows(x_d.data(), ldx, dy_d.data(), 7, R, C, stream),
                    Catch::Contains("'lddy' is 7"));
  CHECK_THROWS_WITH(ra::cuda::gelu_rows(x_d.data(), ldx, y_d.data(), ldy, -1, C, stream),
                    Catch::Contains("'rows' is -1"));
  CHECK_THROWS_WITH(ra::cuda::gelu_rows(x_d.data(), ldx, y_d.data(), ldy, R, -2, stream),
                    Catch::Contains("'cols' is -2"));
  CHECK_THROWS_WITH(
      ra::cuda::gelu_grad_rows(static_cast<const T*>(nullptr), ldx, dy_d.data(), ldy, R, C, stream),
      Catch::Contains("'x' is a null pointer"));
  CHECK_THROWS_WITH(
      ra::cuda::gelu_rows(x_d.data(), ldx, static_cast<T*>(nullptr), ldy, R, C, stream),
      Catch::Contains("'y' is a null pointer"));
  RA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

TEMPLATE_TEST_CASE("training dropout reproduces the mask of nn::Dropout",
                   "[sanitize][cuda][training][dropout]", float, ra::bf16) {
  using T = TestType;
  const index_t R = 37, C = 200, n = R * C;
  ra::test::TrainingCase<T> tc("", 299);
  const DType dt = tc.dtype;
  auto g = tc.next_rng();
  std::vector<T> x(sz(n));  // |x| >= 0.5: an element is dropped exactly when it reads 0
  const auto v = ra::test::random_vector<float>(n, g);
  for (index_t i = 0; i < n; ++i) x[sz(i)] = T(std::copysign(0.5f + std::abs(v[sz(i)]), v[sz(i)]));
  const std::uint64_t mask_seed = g();
  // One ulp of the output type: the GPU scales in fp32, nn::Dropout in double.
  const double ulp = dt == DType::f32 ? 0x1p-22 : 0x1p-7;
  for (float p : {0.1f, 0.5f}) {
    std::vector<std::vector<bool>> masks;
    for (std::uint64_t site : {3u, 11u}) {
      INFO(ra::test::describe(dt, R, C) << " p=" << p << " site=" << site);
      std::vector<T> ref = x;
      ra::nn::Dropout{p}.apply(ra::make_view(ref.data(), ra::shape(R, C)), mask_seed, site);
      auto d = ra::test::to_device(x);
      ra::cuda::dropout(d.data(), n, p, mask_seed, site, tc.stream);
      const auto out = ra::test::to_host(d.data(), n);
      index_t mask_mismatch = 0, value_mismatch = 0, dropped = 0;
      std::vector<bool> mask(sz(n));
      for (index_t i = 0; i < n; ++i) {
        const double o = ra::convert<double>(out[sz(i)]), e = ra::convert<double>(ref[sz(i)]);
        mask[sz(i)] = o != 0.0;
        dropped += o == 0.0;
        mask_mismatch += (o == 0.0) != (e == 0.0);
        value_mismatch += !(std::abs(o - e) <= ulp * std::abs(e));
      }
      CHECK(mask_mismatch == 0);
      CHECK(value_mismatch == 0);
      // 7400 Bernoulli(p) draws: sd <= 0.006 of n.
      CHECK(std::abs(static_cast<double>(dropped) / static_cast<double>(n) - p) < 0.03);
      masks.push_back(std::move(mask));
    }
    CHECK(masks[0] != masks[1]);  // sites draw different masks
  }
  auto d = ra::test::to_device(x);
  ra::cuda::dropout(d.data(), n, 0.f, mask_seed, 3, tc.stream);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(d.data(), n), x));
  CHECK_THROWS_AS(ra::cuda::dropout(d.data(), n, 1.f, mask_seed, 3, tc.stream), ra::error);
  CHECK_THROWS_WITH(ra::cuda::dropout(d.data(), n, 1.f, mask_seed, 3, tc.stream),
                    Catch::Contains("dropout"));
  CHECK_THROWS_WITH(ra::cuda::dropout(d.data(), n, -0.25f, mask_seed, 3, tc.stream),
                    Catch::Contains("dropout") && Catch::Contains("[0, 1)"));
}
