// tests/cuda/test_training_kernels.cu — the GPU training kernels against double-precision host
// references written as plain loops (no ra/cpu, no Eigen in a .cu file):
//
//   LayerNorm   forward (y, mean, rstd) with and without bias; backward dx without dres, with
//               a separate dres and with dres aliasing dx; dw, db (ra/cuda/layernorm.cuh)
//   GELU, add   forward, backward (also in place), add (also in place), round_to
//               (ra/cuda/elementwise.cuh)
//   dropout     the mask of nn::Dropout element by element (p 0.1 / 0.5, two sites), p = 0 is a
//               no-op, a bad p throws
//   reductions  column_sums with 1 and 2 outputs (rows 1, 63, 64, 65, 1000), sum and sum of
//               squares, determinism (two runs bit-identical)             (ra/cuda/reduce.cuh)
//   embedding   forward; backward dwpe (zero rows T <= t < max_seq), dwte accumulated onto a
//               non-zero dwte with repeated tokens; TokenBuckets on the host
//               (ra/cuda/embedding.cuh)
//   cross-entropy  per-row loss, in-place gradient, padded columns (NaN on input) and ignored
//               rows, grad = false leaves the logits alone, bad vocab throws
//   GemmPlan    dX = dY·W (w_kn), dW = dYᵀ·X (a_km + w_kn, y_f32 for bf16), accumulate, and
//               the validation of the new flags (ra/cuda/gemm.cuh)
//   AdamW       cuda::AdamW against nn::AdamW over 3 steps (+ a NaN step that must change
//               nothing), the bf16 working copy, restore()/first_moment()     (ra/cuda/adamw.cuh)
//
// float and bf16 for every element-wise, LayerNorm, embedding, cross-entropy and GEMM case, with
// row counts that are not multiples of the block sizes (37, 130) and C = 64 / 200.
// Tolerances: cuda_test_utils.cuh's relative L2 per output type (bf16 1e-2, fp32 1e-4; fp32
// outputs — statistics, parameter gradients, losses — use 1e-4 whatever the input type, since
// their inputs are exact in fp32); dropout: identical mask, values within 1 ulp (2^-22 / 2^-7
// relative); sums in double: 1e-12 of Σ|x|; AdamW: 1e-6 relative per element.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ra/cuda.cuh>
#include <ra/cuda/adamw.cuh>
#include <ra/cuda/cross_entropy.cuh>
#include <ra/cuda/elementwise.cuh>
#include <ra/cuda/embedding.cuh>
#include <ra/cuda/layernorm.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/nn/adamw.hpp>
#include <ra/nn/dropout.hpp>

#include "cuda_test_utils.cuh"

namespace {

using ra::DType;
using ra::index_t;
using ra::test::check_close;
using ra::test::compare;
using ra::test::tolerance;

constexpr double kTolF32 = 1e-4;  // fp32 outputs (tolerance(DType::f32))

std::size_t sz(index_t n) {
  return static_cast<std::size_t>(n);
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = ra::convert<double>(v[i]);
  return d;
}

/// A value of T whose bytes are all ones (NaN), as poison() writes.
template <class T>
T poison_value() {
  unsigned char ones[sizeof(T)];
  std::memset(ones, 0xff, sizeof ones);
  T x;
  std::memcpy(&x, ones, sizeof x);
  return x;
}

/// (N,C) values normal(0, 1) plus a per-row offset in [-2, 2]: rows with non-zero means.
template <class T>
std::vector<T> offset_rows(index_t N, index_t C, std::mt19937_64& g) {
  const auto v = ra::test::random_vector<float>(N * C, g);
  const auto off = ra::test::uniform_floats(N, g, -2.f, 2.f);
  std::vector<T> x(sz(N * C));
  for (index_t i = 0; i < N * C; ++i) x[sz(i)] = T(v[sz(i)] + off[sz(i / C)]);
  return x;
}

std::string describe(DType t, index_t N, index_t C) {
  std::ostringstream os;
  os << t << " rows=" << N << " C=" << C << " seed=" << ra::test::seed();
  return os.str();
}

// ---- double references -------------------------------------------------------------------

struct LayerNormRef {
  std::vector<double> y, mean, rstd, dx, dw, db;
};

// Forward (b empty: no bias) and, when dy is not empty, backward (dres empty: none).
LayerNormRef layernorm_ref(const std::vector<double>& x, const std::vector<double>& w,
                           const std::vector<double>& b, const std::vector<double>& dy,
                           const std::vector<double>& dres, index_t N, index_t C) {
  LayerNormRef r;
  r.y.resize(sz(N * C));
  r.dx.resize(dy.empty() ? 0 : sz(N * C));
  r.dw.assign(sz(C), 0.0);
  r.db.assign(sz(C), 0.0);
  for (index_t i = 0; i < N; ++i) {
    const double* xr = x.data() + i * C;
    double mu = 0.0, var = 0.0;
    for (index_t c = 0; c < C; ++c) mu += xr[c];
    mu /= static_cast<double>(C);
    for (index_t c = 0; c < C; ++c) var += (xr[c] - mu) * (xr[c] - mu);
    const double rs = 1.0 / std::sqrt(var / static_cast<double>(C) + 1e-5);
    r.mean.push_back(mu);
    r.rstd.push_back(rs);
    for (index_t c = 0; c < C; ++c)
      r.y[sz(i * C + c)] = (xr[c] - mu) * rs * w[sz(c)] + (b.empty() ? 0.0 : b[sz(c)]);
    if (dy.empty()) continue;
    double mg = 0.0, mgx = 0.0;
    for (index_t c = 0; c < C; ++c) {
      const double xh = (xr[c] - mu) * rs, d = dy[sz(i * C + c)];
      mg += d * w[sz(c)];
      mgx += d * w[sz(c)] * xh;
      r.dw[sz(c)] += d * xh;
      r.db[sz(c)] += d;
    }
    mg /= static_cast<double>(C);
    mgx /= static_cast<double>(C);
    for (index_t c = 0; c < C; ++c) {
      const index_t k = i * C + c;
      const double xh = (xr[c] - mu) * rs;
      r.dx[sz(k)] =
          rs * (dy[sz(k)] * w[sz(c)] - mg - xh * mgx) + (dres.empty() ? 0.0 : dres[sz(k)]);
    }
  }
  return r;
}

double gelu_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

double gelu_grad_ref(double x) {
  const double s = 0.7978845608028654, k = 0.044715;
  const double t = std::tanh(s * (x + k * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * k * x * x);
}

// Σ_r op(r, c) for the reduction tests: (x, x²).
struct SquareOp {
  const float* x;
  index_t cols;
  __device__ float2 operator()(index_t r, index_t c) const {
    const float v = x[r * cols + c];
    return make_float2(v, v * v);
  }
};

// A parameter table entry as cuda::AdamW and nn::AdamW read it.
struct TableEntry {
  index_t offset, n;
  bool decay;
  index_t size() const { return n; }
};

// max_i |a_i − b_i| / |b_i| (b_i = 0 counts as 1e-30).
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    m = std::max(m, d / std::max(std::abs(static_cast<double>(b[i])), 1e-30));
  }
  return m;
}

// max |a - b| over max |b|: for values that may cancel to near zero (the moments).
double max_rel_to_max(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0.0, r = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
    r = std::max(r, std::abs(static_cast<double>(b[i])));
  }
  return d / std::max(r, 1e-30);
}

}  // namespace

// ---- LayerNorm ---------------------------------------------------------------------------

TEMPLATE_TEST_CASE("training LayerNorm forward and backward match the double reference",
                   "[sanitize][cuda][training][layernorm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  ra::test::Stream stream;
  std::uint64_t salt = 100;
  for (auto [N, C] : {std::pair<index_t, index_t>{37, 64}, {130, 200}})
    for (bool bias : {false, true}) {
      INFO(describe(dt, N, C) << (bias ? " bias" : " no-bias"));
      auto g = ra::test::rng(++salt);
      const auto x = offset_rows<T>(N, C, g);
      const auto w = ra::test::random_vector<T>(C, g, 0.5f);
      const auto b = ra::test::random_vector<T>(bias ? C : 0, g, 0.5f);
      auto x_d = ra::test::to_device(x);
      auto w_d = ra::test::to_device(w);
      auto b_d = ra::test::to_device(b);
      ra::cuda::DeviceBuffer<T> y_d(N * C);
      ra::cuda::DeviceBuffer<float> mean_d(N), rstd_d(N);
      ra::test::poison(y_d.data(), y_d.size());
      ra::test::poison(mean_d.data(), N);
      ra::test::poison(rstd_d.data(), N);
      ra::cuda::layernorm_forward(x_d.data(), w_d.data(), bias ? b_d.data() : nullptr, y_d.data(),
                                  mean_d.data(), rstd_d.data(), N, C, stream);
      const auto fwd = layernorm_ref(as_double(x), as_double(w), as_double(b), {}, {}, N, C);
      check_close(compare(ra::test::to_host(y_d.data(), N * C), fwd.y), tolerance(dt), "y");
      check_close(compare(ra::test::to_host(mean_d.data(), N), fwd.mean), kTolF32, "mean");
      check_close(compare(ra::test::to_host(rstd_d.data(), N), fwd.rstd), kTolF32, "rstd");

      for (int res : {0, 1, 2}) {  // dres: none, a separate buffer, aliasing dx
        INFO("dres " << (res == 0 ? "none" : res == 1 ? "separate" : "aliasing dx"));
        const auto dy = ra::test::random_vector<T>(N * C, g);
        const auto dres = ra::test::random_vector<T>(res ? N * C : 0, g);
        auto dy_d = ra::test::to_device(dy);
        auto dres_d = ra::test::to_device(dres);
        ra::cuda::DeviceBuffer<T> dx_d(N * C);
        if (res == 2) {
          dx_d = ra::test::to_device(dres);
        } else {
          ra::test::poison(dx_d.data(), dx_d.size());
        }
        ra::cuda::DeviceBuffer<float> dw_d(C), db_d(C);
        ra::cuda::DeviceBuffer<float> scratch(ra::cuda::layernorm_backward_scratch(N, C));
        ra::test::poison(dw_d.data(), C);
        ra::test::poison(db_d.data(), C);
        const T* dres_p = res == 0 ? nullptr : res == 1 ? dres_d.data() : dx_d.data();
        ra::cuda::layernorm_backward(dy_d.data(), x_d.data(), w_d.data(), mean_d.data(),
                                     rstd_d.data(), dres_p, dx_d.data(), dw_d.data(), db_d.data(),
                                     N, C, scratch.data(), stream);
        const auto bwd =
            layernorm_ref(as_double(x), as_double(w), {}, as_double(dy), as_double(dres), N, C);
        check_close(compare(ra::test::to_host(dx_d.data(), N * C), bwd.dx), tolerance(dt), "dx");
        check_close(compare(ra::test::to_host(dw_d.data(), C), bwd.dw), kTolF32, "dw");
        check_close(compare(ra::test::to_host(db_d.data(), C), bwd.db), kTolF32, "db");
      }
    }
}

// ---- GELU, add, dropout ------------------------------------------------------------------

TEMPLATE_TEST_CASE("training GELU forward and backward and add match the double reference",
                   "[sanitize][cuda][training][elementwise]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  const index_t n = 37 * 200;  // 925 packs of bf16: not a multiple of the 256-thread block
  INFO(describe(dt, 37, 200));
  ra::test::Stream stream;
  auto g = ra::test::rng(200);
  const auto x = ra::test::random_vector<T>(n, g, 2.f);
  const auto dy = ra::test::random_vector<T>(n, g);
  auto x_d = ra::test::to_device(x);
  auto dy_d = ra::test::to_device(dy);
  ra::cuda::DeviceBuffer<T> y_d(n), dx_d(n);
  ra::test::poison(y_d.data(), n);
  ra::test::poison(dx_d.data(), n);

  std::vector<double> ref_y(sz(n)), ref_dx(sz(n)), ref_sum(sz(n));
  for (index_t i = 0; i < n; ++i) {
    const double v = ra::convert<double>(x[sz(i)]), d = ra::convert<double>(dy[sz(i)]);
    ref_y[sz(i)] = gelu_ref(v);
    ref_dx[sz(i)] = d * gelu_grad_ref(v);
    ref_sum[sz(i)] = v + d;
  }
  ra::cuda::gelu_forward(x_d.data(), y_d.data(), n, stream);
  check_close(compare(ra::test::to_host(y_d.data(), n), ref_y), tolerance(dt), "gelu");
  ra::cuda::gelu_backward(dy_d.data(), x_d.data(), dx_d.data(), n, stream);
  const auto dx = ra::test::to_host(dx_d.data(), n);
  check_close(compare(dx, ref_dx), tolerance(dt), "gelu backward");
  // In place (dx aliasing dy): the same bits.
  ra::cuda::gelu_backward(dy_d.data(), x_d.data(), dy_d.data(), n, stream);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(dy_d.data(), n), dx));

  auto a_d = ra::test::to_device(x);
  auto b_d = ra::test::to_device(dy);
  ra::test::poison(y_d.data(), n);
  ra::cuda::add(a_d.data(), b_d.data(), y_d.data(), n, stream);
  const auto sum = ra::test::to_host(y_d.data(), n);
  check_close(compare(sum, ref_sum), tolerance(dt), "add");
  ra::cuda::add(a_d.data(), b_d.data(), a_d.data(), n, stream);  // c aliasing a
  CHECK(ra::test::bitwise_equal(ra::test::to_host(a_d.data(), n), sum));

  // round_to: T(x) from fp32, any length.
  const auto xf = ra::test::random_vector<float>(n - 1, g);
  auto xf_d = ra::test::to_device(xf);
  ra::cuda::round_to(xf_d.data(), y_d.data(), n - 1, stream);
  std::vector<T> rounded(xf.size());
  for (std::size_t i = 0; i < xf.size(); ++i) rounded[i] = T(xf[i]);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(y_d.data(), n - 1), rounded));

  CHECK_THROWS_AS(ra::cuda::add(a_d.data(), b_d.data(), y_d.data(), n - 1, stream), ra::error);
  CHECK_THROWS_WITH(ra::cuda::gelu_forward(x_d.data(), y_d.data(), n - 1, stream),
                    Catch::Contains("length"));
  CHECK_THROWS_WITH(ra::cuda::gelu_forward(x_d.data() + 1, y_d.data(), n - 8, stream),
                    Catch::Contains("pointer") && Catch::Contains("16-byte"));
}

TEMPLATE_TEST_CASE("training dropout reproduces the mask of nn::Dropout",
                   "[sanitize][cuda][training][dropout]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  const index_t R = 37, C = 200, n = R * C;
  ra::test::Stream stream;
  auto g = ra::test::rng(300);
  std::vector<T> x(sz(n));  // |x| >= 0.5: an element is dropped exactly when it reads 0
  const auto v = ra::test::random_vector<float>(n, g);
  for (index_t i = 0; i < n; ++i) x[sz(i)] = T(std::copysign(0.5f + std::abs(v[sz(i)]), v[sz(i)]));
  const std::uint64_t mask_seed = g();
  // One ulp of the output type: the GPU scales in fp32, nn::Dropout in double.
  const double ulp = dt == DType::f32 ? 0x1p-22 : 0x1p-7;
  for (float p : {0.1f, 0.5f}) {
    std::vector<std::vector<bool>> masks;
    for (std::uint64_t site : {3u, 11u}) {
      INFO(describe(dt, R, C) << " p=" << p << " site=" << site);
      std::vector<T> ref = x;
      ra::nn::Dropout{p}.apply(ra::make_view(ref.data(), ra::shape(R, C)), mask_seed, site);
      auto d = ra::test::to_device(x);
      ra::cuda::dropout(d.data(), n, p, mask_seed, site, stream);
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
  ra::cuda::dropout(d.data(), n, 0.f, mask_seed, 3, stream);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(d.data(), n), x));
  CHECK_THROWS_AS(ra::cuda::dropout(d.data(), n, 1.f, mask_seed, 3, stream), ra::error);
  CHECK_THROWS_WITH(ra::cuda::dropout(d.data(), n, 1.f, mask_seed, 3, stream),
                    Catch::Contains("dropout"));
  CHECK_THROWS_WITH(ra::cuda::dropout(d.data(), n, -0.25f, mask_seed, 3, stream),
                    Catch::Contains("dropout") && Catch::Contains("[0, 1)"));
}

// ---- reductions --------------------------------------------------------------------------

TEST_CASE("training column_sums and sum match double and are deterministic",
          "[sanitize][cuda][training][reduce]") {
  ra::test::Stream stream;
  const index_t cols = 300;  // two column blocks, the second partial
  std::uint64_t salt = 400;
  for (index_t rows : {1, 63, 64, 65, 1000}) {
    INFO("rows=" << rows << " cols=" << cols << " seed=" << ra::test::seed());
    auto g = ra::test::rng(++salt);
    const auto x = ra::test::random_vector<float>(rows * cols, g);
    auto x_d = ra::test::to_device(x);
    std::vector<double> s(sz(cols), 0.0), q(sz(cols), 0.0);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) {
        const double v = x[sz(r * cols + c)];
        s[sz(c)] += v;
        q[sz(c)] += v * v;
      }
    const SquareOp op{x_d.data(), cols};
    ra::cuda::DeviceBuffer<float> scratch(ra::cuda::column_sums_scratch(rows, cols, 2));
    ra::cuda::DeviceBuffer<float> one(cols), s_d(cols), q_d(cols), q2_d(cols);
    for (auto* b : {&one, &s_d, &q_d, &q2_d}) ra::test::poison(b->data(), cols);
    ra::cuda::column_sums<1>(op, rows, cols, one.data(), nullptr, scratch.data(), stream);
    ra::cuda::column_sums<2>(op, rows, cols, s_d.data(), q_d.data(), scratch.data(), stream);
    const auto h_one = ra::test::to_host(one.data(), cols);
    const auto h_s = ra::test::to_host(s_d.data(), cols);
    const auto h_q = ra::test::to_host(q_d.data(), cols);
    check_close(compare(h_one, s), kTolF32, "column sums (1 output)");
    check_close(compare(h_s, s), kTolF32, "column sums");
    check_close(compare(h_q, q), kTolF32, "column sums of squares");
    CHECK(ra::test::bitwise_equal(h_one, h_s));  // the same order of additions
    // Again, and with only the second output wanted: the same bits.
    ra::cuda::column_sums<2>(op, rows, cols, s_d.data(), q_d.data(), scratch.data(), stream);
    ra::cuda::column_sums<2>(op, rows, cols, nullptr, q2_d.data(), scratch.data(), stream);
    CHECK(ra::test::bitwise_equal(ra::test::to_host(s_d.data(), cols), h_s));
    CHECK(ra::test::bitwise_equal(ra::test::to_host(q_d.data(), cols), h_q));
    CHECK(ra::test::bitwise_equal(ra::test::to_host(q2_d.data(), cols), h_q));
  }

  for (index_t n : {1, 257, 100003}) {
    INFO("sum n=" << n << " seed=" << ra::test::seed());
    auto g = ra::test::rng(++salt);
    const auto x = ra::test::random_vector<float>(n, g, 3.f);
    auto x_d = ra::test::to_device(x);
    ra::cuda::DeviceBuffer<double> out(4), scratch(ra::cuda::kSumScratch);
    double s = 0.0, q = 0.0, abs_sum = 0.0;
    for (float v : x) {
      s += v;
      q += static_cast<double>(v) * v;
      abs_sum += std::abs(v);
    }
    ra::cuda::sum(x_d.data(), n, false, out.data(), scratch.data(), stream);
    ra::cuda::sum(x_d.data(), n, true, out.data() + 1, scratch.data(), stream);
    ra::cuda::sum(x_d.data(), n, false, out.data() + 2, scratch.data(), stream);
    ra::cuda::sum(x_d.data(), n, true, out.data() + 3, scratch.data(), stream);
    const auto h = ra::test::to_host(out.data(), 4);
    CHECK(std::abs(h[0] - s) <= 1e-12 * abs_sum);
    CHECK(std::abs(h[1] - q) <= 1e-12 * q);
    CHECK(std::memcmp(&h[0], &h[2], sizeof(double)) == 0);
    CHECK(std::memcmp(&h[1], &h[3], sizeof(double)) == 0);
  }
}

// ---- embedding ---------------------------------------------------------------------------

TEST_CASE("training TokenBuckets groups positions by token in order",
          "[cuda][training][embedding]") {
  const std::vector<std::int32_t> tokens = {5, 2, 5, 7, 2, 5};
  const ra::cuda::TokenBuckets b(tokens);
  CHECK(b.ids == std::vector<std::int32_t>{2, 5, 7});
  CHECK(b.start == std::vector<std::int32_t>{0, 2, 5, 6});
  CHECK(b.rows == std::vector<std::int32_t>{1, 4, 0, 2, 5, 3});
  const ra::cuda::TokenBuckets empty(std::vector<std::int32_t>{});
  CHECK(empty.ids.empty());
  CHECK(empty.start == std::vector<std::int32_t>{0});
  CHECK(empty.rows.empty());
}

TEMPLATE_TEST_CASE("training embedding forward and backward match the double reference",
                   "[sanitize][cuda][training][embedding]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  const index_t B = 3, S = 37, max_seq = 45, V = 50, N = B * S;
  ra::test::Stream stream;
  std::uint64_t salt = 500;
  for (index_t C : {64, 200}) {
    INFO(describe(dt, N, C) << " B=" << B << " T=" << S << " max_seq=" << max_seq);
    auto g = ra::test::rng(++salt);
    std::uniform_int_distribution<std::int32_t> tok(0, 19);  // 111 positions, 20 ids: repeats
    std::vector<std::int32_t> tokens(sz(N));
    for (auto& t : tokens) t = tok(g);
    tokens[0] = tokens[40] = tokens[sz(N - 1)] = 7;
    const auto wte = ra::test::random_vector<T>(V * C, g);
    const auto wpe = ra::test::random_vector<T>(max_seq * C, g);
    auto tok_d = ra::test::to_device(tokens);
    auto wte_d = ra::test::to_device(wte);
    auto wpe_d = ra::test::to_device(wpe);
    ra::cuda::DeviceBuffer<T> out_d(N * C);
    ra::test::poison(out_d.data(), out_d.size());
    ra::cuda::embedding_forward(tok_d.data(), wte_d.data(), wpe_d.data(), out_d.data(), B, S, C,
                                stream);
    std::vector<double> ref(sz(N * C));
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c)
        ref[sz(n * C + c)] = ra::convert<double>(wte[sz(tokens[sz(n)] * C + c)]) +
                             ra::convert<double>(wpe[sz((n % S) * C + c)]);
    check_close(compare(ra::test::to_host(out_d.data(), N * C), ref), tolerance(dt), "out");

    // Backward: dwpe overwritten (poisoned first), dwte added onto a non-zero dwte.
    const auto dout = ra::test::random_vector<T>(N * C, g);
    const auto dwte0 = ra::test::random_vector<float>(V * C, g);
    auto dout_d = ra::test::to_device(dout);
    auto dwte_d = ra::test::to_device(dwte0);
    ra::cuda::DeviceBuffer<float> dwpe_d(max_seq * C);
    ra::test::poison(dwpe_d.data(), dwpe_d.size());
    const ra::cuda::TokenBuckets hb(tokens);
    auto ids_d = ra::test::to_device(hb.ids);
    auto start_d = ra::test::to_device(hb.start);
    auto rows_d = ra::test::to_device(hb.rows);
    const ra::cuda::DeviceTokenBuckets db{ids_d.data(), start_d.data(), rows_d.data(),
                                          static_cast<index_t>(hb.ids.size())};
    ra::cuda::embedding_backward(dout_d.data(), db, dwte_d.data(), dwpe_d.data(), B, S, max_seq, C,
                                 stream);
    std::vector<double> ref_wpe(sz(max_seq * C), 0.0), ref_wte = as_double(dwte0);
    std::vector<bool> touched(sz(V), false);
    for (index_t n = 0; n < N; ++n) {
      touched[sz(tokens[sz(n)])] = true;
      for (index_t c = 0; c < C; ++c) {
        const double d = ra::convert<double>(dout[sz(n * C + c)]);
        ref_wpe[sz((n % S) * C + c)] += d;
        ref_wte[sz(tokens[sz(n)] * C + c)] += d;
      }
    }
    const auto dwpe = ra::test::to_host(dwpe_d.data(), max_seq * C);
    const auto dwte = ra::test::to_host(dwte_d.data(), V * C);
    check_close(compare(dwpe, ref_wpe), kTolF32, "dwpe");
    check_close(compare(dwte, ref_wte), kTolF32, "dwte");
    index_t nonzero_tail = 0, changed_untouched = 0;
    for (index_t i = S * C; i < max_seq * C; ++i) nonzero_tail += dwpe[sz(i)] != 0.f;
    for (index_t v = 0; v < V; ++v)
      for (index_t c = 0; c < C; ++c)
        changed_untouched += !touched[sz(v)] && dwte[sz(v * C + c)] != dwte0[sz(v * C + c)];
    CHECK(nonzero_tail == 0);       // rows t >= T of dwpe are exactly 0
    CHECK(changed_untouched == 0);  // rows of tokens absent from the batch keep their value
  }
}

// ---- cross-entropy -----------------------------------------------------------------------

TEMPLATE_TEST_CASE("training cross_entropy: per-row loss and in-place gradient",
                   "[sanitize][cuda][training][cross_entropy]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  const index_t V = 257, Vp = 320;
  ra::test::Stream stream;
  std::uint64_t salt = 600;
  for (index_t N : {37, 130}) {
    INFO(describe(dt, N, Vp) << " vocab=" << V);
    auto g = ra::test::rng(++salt);
    auto logits = ra::test::random_vector<T>(N * Vp, g, 3.f);
    for (index_t i = 0; i < N; ++i)  // padded columns hold NaN: they must be ignored
      for (index_t j = V; j < Vp; ++j) logits[sz(i * Vp + j)] = poison_value<T>();
    std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(V - 1));
    std::vector<std::int32_t> targets(sz(N));
    for (auto& t : targets) t = tok(g);
    targets[1] = static_cast<std::int32_t>(V - 1);
    targets[2] = 0;
    targets[5] = targets[sz(N - 1)] = -1;
    index_t valid = 0;
    for (auto t : targets) valid += t >= 0;
    const double inv_n = 1.0 / static_cast<double>(valid);

    std::vector<double> ref_loss(sz(N), 0.0), ref_grad(sz(N * V), 0.0);
    for (index_t i = 0; i < N; ++i) {
      if (targets[sz(i)] < 0) continue;
      double m = -INFINITY, l = 0.0;
      for (index_t j = 0; j < V; ++j) m = std::max(m, ra::convert<double>(logits[sz(i * Vp + j)]));
      for (index_t j = 0; j < V; ++j)
        l += std::exp(ra::convert<double>(logits[sz(i * Vp + j)]) - m);
      const double lse = m + std::log(l);
      ref_loss[sz(i)] = lse - ra::convert<double>(logits[sz(i * Vp + targets[sz(i)])]);
      for (index_t j = 0; j < V; ++j)
        ref_grad[sz(i * V + j)] =
            (std::exp(ra::convert<double>(logits[sz(i * Vp + j)]) - lse) - (j == targets[sz(i)])) *
            inv_n;
    }

    auto z_d = ra::test::to_device(logits);
    auto t_d = ra::test::to_device(targets);
    ra::cuda::DeviceBuffer<float> loss_d(N);
    for (bool grad : {false, true}) {
      INFO((grad ? "grad" : "no grad"));
      ra::test::poison(loss_d.data(), N);
      ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, V, Vp,
                              static_cast<float>(inv_n), grad, stream);
      const auto loss = ra::test::to_host(loss_d.data(), N);
      check_close(compare(loss, ref_loss), kTolF32, "loss");
      CHECK(loss[5] == 0.f);
      CHECK(loss[sz(N - 1)] == 0.f);
      const auto z = ra::test::to_host(z_d.data(), N * Vp);
      if (!grad) {
        CHECK(ra::test::bitwise_equal(z, logits));
        continue;
      }
      std::vector<T> real;
      index_t nonzero = 0;  // padded columns and ignored rows must read exactly 0
      for (index_t i = 0; i < N; ++i)
        for (index_t j = 0; j < Vp; ++j) {
          const T v = z[sz(i * Vp + j)];
          if (j < V) real.push_back(v);
          if (j >= V || targets[sz(i)] < 0) nonzero += ra::convert<double>(v) != 0.0;
        }
      CHECK(nonzero == 0);
      check_close(compare(real, ref_grad), tolerance(dt), "dlogits");
    }
    CHECK_THROWS_AS(
        ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, 0, Vp, 1.f, true, stream),
        ra::error);
    CHECK_THROWS_WITH(
        ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, 0, Vp, 1.f, true, stream),
        Catch::Contains("vocab"));
    CHECK_THROWS_WITH(ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, Vp + 1, Vp,
                                              1.f, true, stream),
                      Catch::Contains("vocab") && Catch::Contains("321"));
  }
}

// ---- GemmPlan training flags -------------------------------------------------------------

TEMPLATE_TEST_CASE("training GemmPlan dX = dY·W and dW = dYᵀ·X, with and without accumulate",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t Nl = 96, Kl = 64;  // the layer: y (M,Nl) = x (M,Kl) · W (Nl,Kl)ᵀ
  std::uint64_t salt = 700;
  for (index_t M : {37, 130})
    for (bool acc : {false, true}) {
      INFO(describe(dt, M, Kl) << " N=" << Nl << (acc ? " accumulate" : ""));
      auto g = ra::test::rng(++salt);
      const auto dy = ra::test::random_vector<T>(M * Nl, g);
      const auto w = ra::test::random_vector<T>(Nl * Kl, g, 1.f / std::sqrt(float(Nl)));
      const auto x = ra::test::random_vector<T>(M * Kl, g);
      auto dy_d = ra::test::to_device(dy);
      auto w_d = ra::test::to_device(w);
      auto x_d = ra::test::to_device(x);

      // dX (M,Kl) = dY (M,Nl) · W (Nl,Kl): W is stored (k,n).
      const auto dx0 = ra::test::random_vector<T>(M * Kl, g);
      auto dx_d = ra::test::to_device(dx0);
      if (!acc) ra::test::poison(dx_d.data(), dx_d.size());
      ra::cuda::GemmShape sx{M, Kl, Nl, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
      sx.w_kn = true;
      sx.accumulate = acc;
      const ra::cuda::GemmPlan px(ctx, sx, ws.data(), ra::cuda::kGemmWorkspaceBytes);
      px.run(dy_d.data(), w_d.data(), static_cast<const T*>(nullptr), dx_d.data(), stream);
      std::vector<double> ref_dx(sz(M * Kl));
      for (index_t i = 0; i < M; ++i)
        for (index_t j = 0; j < Kl; ++j) {
          double s = acc ? ra::convert<double>(dx0[sz(i * Kl + j)]) : 0.0;
          for (index_t k = 0; k < Nl; ++k)
            s += ra::convert<double>(dy[sz(i * Nl + k)]) * ra::convert<double>(w[sz(k * Kl + j)]);
          ref_dx[sz(i * Kl + j)] = s;
        }
      check_close(compare(ra::test::to_host(dx_d.data(), M * Kl), ref_dx), tolerance(dt), "dX");

      // dW (Nl,Kl) = dYᵀ · X: dY stored (k,m) = (M,Nl), X stored (k,n) = (M,Kl); fp32 out.
      const auto dw0 = ra::test::random_vector<float>(Nl * Kl, g);
      auto dw_d = ra::test::to_device(dw0);
      if (!acc) ra::test::poison(dw_d.data(), dw_d.size());
      ra::cuda::GemmShape sw{Nl, Kl, M, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
      sw.a_km = true;
      sw.w_kn = true;
      sw.y_f32 = dt != DType::f32;
      sw.accumulate = acc;
      const ra::cuda::GemmPlan pw(ctx, sw, ws.data(), ra::cuda::kGemmWorkspaceBytes);
      pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr), dw_d.data(), stream);
      std::vector<double> ref_dw(sz(Nl * Kl));
      for (index_t n = 0; n < Nl; ++n)
        for (index_t j = 0; j < Kl; ++j) {
          double s = acc ? static_cast<double>(dw0[sz(n * Kl + j)]) : 0.0;
          for (index_t i = 0; i < M; ++i)
            s += ra::convert<double>(dy[sz(i * Nl + n)]) * ra::convert<double>(x[sz(i * Kl + j)]);
          ref_dw[sz(n * Kl + j)] = s;
        }
      check_close(compare(ra::test::to_host(dw_d.data(), Nl * Kl), ref_dw), kTolF32, "dW");
      if (dt != DType::f32) {  // a y_f32 plan takes an fp32 Y only
        ra::cuda::DeviceBuffer<T> wrong(Nl * Kl);
        CHECK_THROWS_WITH(
            pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr), wrong.data(), stream),
            Catch::Contains("output element type"));
      }
      RA_CUDA_CHECK(cudaStreamSynchronize(stream));  // ws outlives the plans' work
    }
}

// The MLP's GELU in cuBLASLt's epilogues (what the bf16 GPT-2 uses): Y = gelu(X·Wᵀ + b) with
// the pre-activation in aux, then dX = (dY·W) ⊙ gelu'(aux), against the tanh-form GELU of
// the CPU model: relative L2 2e-3 in fp32 (the epilogue's tanh need not be correctly rounded),
// the usual 1e-2 in bf16 (the precision the model runs the epilogues in).
TEMPLATE_TEST_CASE("training GemmPlan GELU epilogues match the tanh-form GELU",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t M = 130, N = 256, K = 64;  // y (M,N) = x (M,K) · W (N,K)ᵀ + b
  auto g = ra::test::rng(0x6e1);
  const auto x = ra::test::random_vector<T>(M * K, g);
  const auto w = ra::test::random_vector<T>(N * K, g, 1.f / std::sqrt(float(K)));
  const auto b = ra::test::random_vector<T>(N, g, 0.5f);
  const auto dy = ra::test::random_vector<T>(M * K, g);
  ra::cuda::GemmShape f = ra::cuda::GemmShape::compact(M, N, K, dt, true);
  f.epilogue = ra::cuda::GemmEpilogue::gelu_aux;
  f.aux_ld = N;
  ra::cuda::GemmShape d{M, N, K, /*lda=*/K, /*ldw=*/N, /*ldy=*/N, dt, false};
  d.w_kn = true;  // dX (M,N) = dY (M,K) · W2 (K,N)
  d.epilogue = ra::cuda::GemmEpilogue::dgelu;
  d.aux_ld = N;
  ra::cuda::GemmPlan pf, pd;
  try {
    pf = ra::cuda::GemmPlan(ctx, f, ws.data(), ra::cuda::kGemmWorkspaceBytes);
    pd = ra::cuda::GemmPlan(ctx, d, ws.data(), ra::cuda::kGemmWorkspaceBytes);
  } catch (const ra::error& e) {
    WARN("cuBLASLt has no GELU epilogue algorithm here (the model uses separate kernels): "
         << e.what());
    return;
  }
  auto x_d = ra::test::to_device(x);
  auto w_d = ra::test::to_device(w);
  auto b_d = ra::test::to_device(b);
  auto dy_d = ra::test::to_device(dy);
  ra::cuda::DeviceBuffer<T> y_d(M * N), aux_d(M * N), dx_d(M * N);
  ra::test::poison(y_d.data(), y_d.size());
  ra::test::poison(aux_d.data(), aux_d.size());
  ra::test::poison(dx_d.data(), dx_d.size());
  CHECK_THROWS_WITH(pf.run(x_d.data(), w_d.data(), b_d.data(), y_d.data(), stream),
                    Catch::Contains("run_with_aux"));
  pf.run_with_aux(x_d.data(), w_d.data(), b_d.data(), y_d.data(), aux_d.data(), stream);
  std::vector<double> pre(sz(M * N)), y(sz(M * N)), dx(sz(M * N));
  const auto aux = ra::test::to_host(aux_d.data(), M * N);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double s = ra::convert<double>(b[sz(j)]);
      for (index_t k = 0; k < K; ++k)
        s += ra::convert<double>(x[sz(i * K + k)]) * ra::convert<double>(w[sz(j * K + k)]);
      pre[sz(i * N + j)] = s;
      y[sz(i * N + j)] = gelu_ref(s);
    }
  check_close(compare(aux, pre), tolerance(dt), "aux (pre-activation)");
  const double tol = dt == DType::f32 ? 2e-3 : tolerance(dt);
  check_close(compare(ra::test::to_host(y_d.data(), M * N), y), tol, "gelu(y)");
  // dX = (dY · W2) ⊙ gelu'(aux), W2 (K,N) = the first K·N values of w read as (K,N).
  pd.run_with_aux(dy_d.data(), w_d.data(), nullptr, dx_d.data(), aux_d.data(), stream);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double s = 0.0;
      for (index_t k = 0; k < K; ++k)
        s += ra::convert<double>(dy[sz(i * K + k)]) * ra::convert<double>(w[sz(k * N + j)]);
      dx[sz(i * N + j)] = s * gelu_grad_ref(ra::convert<double>(aux[sz(i * N + j)]));
    }
  check_close(compare(ra::test::to_host(dx_d.data(), M * N), dx), tol, "dgelu(dx)");
  RA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// The bias gradient in the epilogue of the weight-gradient product (what GPT-2's backward
// uses): dW (Nl,Kl) = dYᵀ·X and db (Nl) = column sums of dY from one GEMM.
TEMPLATE_TEST_CASE("training GemmPlan bias_grad epilogue gives dW and db in one GEMM",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t M = 130, Nl = 96, Kl = 64;
  auto g = ra::test::rng(0x6e2);
  const auto dy = ra::test::random_vector<T>(M * Nl, g);
  const auto x = ra::test::random_vector<T>(M * Kl, g);
  ra::cuda::GemmShape sw{Nl, Kl, M, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
  sw.a_km = true;
  sw.w_kn = true;
  sw.y_f32 = dt != DType::f32;
  sw.epilogue = ra::cuda::GemmEpilogue::bias_grad;
  ra::cuda::GemmPlan pw;
  try {
    pw = ra::cuda::GemmPlan(ctx, sw, ws.data(), ra::cuda::kGemmWorkspaceBytes);
  } catch (const ra::error& e) {
    WARN("cuBLASLt has no BGRADB algorithm here (the model uses column_sums): " << e.what());
    return;
  }
  auto dy_d = ra::test::to_device(dy);
  auto x_d = ra::test::to_device(x);
  ra::cuda::DeviceBuffer<float> dw_d(Nl * Kl), db_d(Nl);
  ra::test::poison(dw_d.data(), dw_d.size());
  ra::test::poison(db_d.data(), db_d.size());
  pw.run_with_aux(dy_d.data(), x_d.data(), nullptr, dw_d.data(), db_d.data(), stream);
  std::vector<double> ref_dw(sz(Nl * Kl)), ref_db(sz(Nl));
  for (index_t n = 0; n < Nl; ++n) {
    for (index_t i = 0; i < M; ++i) ref_db[sz(n)] += ra::convert<double>(dy[sz(i * Nl + n)]);
    for (index_t j = 0; j < Kl; ++j) {
      double s = 0.0;
      for (index_t i = 0; i < M; ++i)
        s += ra::convert<double>(dy[sz(i * Nl + n)]) * ra::convert<double>(x[sz(i * Kl + j)]);
      ref_dw[sz(n * Kl + j)] = s;
    }
  }
  check_close(compare(ra::test::to_host(dw_d.data(), Nl * Kl), ref_dw), kTolF32, "dW");
  check_close(compare(ra::test::to_host(db_d.data(), Nl), ref_db), kTolF32, "db");
  CHECK_THROWS_WITH(pw.run(dy_d.data(), x_d.data(), nullptr, dw_d.data(), stream),
                    Catch::Contains("run_with_aux"));
  RA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

TEST_CASE("training GemmPlan rejects bad training flags", "[cuda][training][gemm][errors]") {
  const auto& ctx = ra::cuda::default_context();
  using ra::cuda::GemmPlan;
  using ra::cuda::GemmShape;
  // ldw >= K would do for W (N,K); W stored (K,N) needs ldw >= N.
  auto s = GemmShape::compact(16, 128, 64, DType::bf16, false);
  s.w_kn = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0),
                    Catch::Contains("ldw") && Catch::Contains("N = 128"));
  // A stored (K,M) needs lda >= M.
  s = GemmShape::compact(128, 32, 64, DType::bf16, false);
  s.a_km = true;
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0),
                    Catch::Contains("lda") && Catch::Contains("M = 128"));
  // y_f32 is for 16-bit inputs.
  s = GemmShape::compact(16, 32, 64, DType::f32, false);
  s.y_f32 = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("y_f32"));
  // The bias epilogue is for forward products: neither with y_f32 nor with accumulate.
  s = GemmShape::compact(16, 32, 64, DType::bf16, true);
  s.y_f32 = true;
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("bias"));
  s.y_f32 = false;
  s.accumulate = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("bias"));
}

// ---- AdamW -------------------------------------------------------------------------------

TEST_CASE("training cuda::AdamW matches nn::AdamW", "[sanitize][cuda][training][adamw]") {
  // Decayed and undecayed tensors, and 10 trailing elements in no tensor (no decay).
  const std::vector<TableEntry> table = {
      {0, 300, true}, {300, 37, false}, {337, 500, true}, {837, 163, false}};
  const index_t n = 1010;
  ra::nn::AdamWConfig cfg;  // weight_decay 0.1, grad_clip 1
  ra::nn::AdamW cpu(sz(n), table, cfg);
  ra::cuda::AdamW gpu(n, table, cfg);
  // The constructor and restore() fill device memory with cudaMemset / pageable cudaMemcpy on
  // the legacy stream, which `stream` (non-blocking) does not wait for.
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  ra::test::Stream stream;
  auto g = ra::test::rng(800);
  std::vector<float> params = ra::test::random_vector<float>(n, g);
  auto p_d = ra::test::to_device(params);
  ra::cuda::DeviceBuffer<ra::bf16> work_d(n);
  ra::test::poison(work_d.data(), n);

  // Gradient scales: clipped (norm ~32), unclipped (norm ~0.3), a NaN step, clipped again.
  const float sigmas[] = {1.f, 0.01f, 1.f, 3.f};
  const double lrs[] = {1e-2, 2e-2, 1e-2, 5e-3};
  for (int step = 0; step < 4; ++step) {
    INFO("step " << step << " seed=" << ra::test::seed());
    auto grads = ra::test::random_vector<float>(n, g, sigmas[step]);
    if (step == 2) {  // nothing may change, on either side
      grads[17] = std::numeric_limits<float>::quiet_NaN();
      auto g_d = ra::test::to_device(grads);
      const auto p_before = ra::test::to_host(p_d.data(), n);
      const auto w_before = ra::test::to_host(work_d.data(), n);
      const auto m_before = gpu.first_moment(), v_before = gpu.second_moment();
      CHECK_THROWS_AS(cpu.step(params, grads, lrs[step]), ra::error);
      CHECK_THROWS_AS(gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream),
                      ra::error);
      CHECK_THROWS_WITH(gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream),
                        Catch::Contains("finite"));
      CHECK(gpu.steps() == 2);
      CHECK(ra::test::bitwise_equal(ra::test::to_host(p_d.data(), n), p_before));
      CHECK(ra::test::bitwise_equal(ra::test::to_host(work_d.data(), n), w_before));
      CHECK(ra::test::bitwise_equal(gpu.first_moment(), m_before));
      CHECK(ra::test::bitwise_equal(gpu.second_moment(), v_before));
      continue;
    }
    auto g_d = ra::test::to_device(grads);
    const auto rc = cpu.step(params, grads, lrs[step]);
    const auto rg = gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream);
    CHECK(rg.grad_norm == Approx(rc.grad_norm).epsilon(1e-12));
    CHECK(rg.clip_scale == Approx(rc.clip_scale).epsilon(1e-12));
    if (sigmas[step] >= 1.f) CHECK(rc.clip_scale < 0.1);  // clipping is exercised
    CHECK(gpu.steps() == cpu.steps());
    const auto p = ra::test::to_host(p_d.data(), n);
    const std::vector<float> m_ref(cpu.first_moment().begin(), cpu.first_moment().end());
    const std::vector<float> v_ref(cpu.second_moment().begin(), cpu.second_moment().end());
    // fp32 update arithmetic (the CPU's is double): a parameter near zero carries the
    // rounding of the larger ones, so errors are measured against the largest parameter.
    CHECK(max_rel_to_max(p, params) <= 1e-6);
    // A first moment can cancel to near zero over steps of either sign: its error is measured
    // against the largest moment.
    CHECK(max_rel_to_max(gpu.first_moment(), m_ref) <= 1e-6);
    CHECK(max_rel(gpu.second_moment(), v_ref) <= 1e-6);
    const auto work = ra::test::to_host(work_d.data(), n);
    index_t stale = 0;  // the working copy is the rounded master parameters
    for (index_t i = 0; i < n; ++i) stale += work[sz(i)].bits != ra::bf16(p[sz(i)]).bits;
    CHECK(stale == 0);
  }

  // restore() from first_moment() / second_moment() / steps(): the same state, the same step.
  ra::cuda::AdamW copy(n, table, cfg);
  copy.restore(gpu.first_moment(), gpu.second_moment(), gpu.steps());
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(copy.steps() == gpu.steps());
  CHECK(ra::test::bitwise_equal(copy.first_moment(), gpu.first_moment()));
  CHECK(ra::test::bitwise_equal(copy.second_moment(), gpu.second_moment()));
  auto p2_d = ra::test::to_device(ra::test::to_host(p_d.data(), n));
  auto g_d = ra::test::to_device(ra::test::random_vector<float>(n, g));
  gpu.step(p_d.data(), g_d.data(), work_d.data(), 1e-2, stream);
  copy.step(p2_d.data(), g_d.data(), static_cast<float*>(nullptr), 1e-2, stream);
  CHECK(
      ra::test::bitwise_equal(ra::test::to_host(p_d.data(), n), ra::test::to_host(p2_d.data(), n)));
  CHECK(ra::test::bitwise_equal(copy.first_moment(), gpu.first_moment()));

  const std::vector<float> short_m(sz(n - 1)), full(sz(n));
  CHECK_THROWS_AS(copy.restore(short_m, full, 1), ra::error);
  CHECK_THROWS_WITH(copy.restore(full, short_m, 1), Catch::Contains("restore"));
}
