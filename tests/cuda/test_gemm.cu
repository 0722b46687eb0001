// tests/cuda/test_gemm.cu — the cuBLASLt GEMM (GemmPlan, and ra::eval on cuda::device)
// against the CPU backend in double, by the precision rule (tests/common/precision.hpp).
//
// fp32, fp16 and bf16; with and without bias; ragged M (1, 7, 129, 1000); compact and padded
// row strides for A and Y. Y is poisoned with NaN first and its padding columns must keep the
// poison (nothing written outside the (M,N) view).
//
// Precision: Y's error against the double reference at most 2x that of the naive GEMM of
// tests/common/same_precision_gemm.hpp (fp32 sequential sums over k, then the bias; Y rounded
// once to the element type) plus the floor u·‖terms‖₂ (u of the element type; terms a_ik·w_jk
// and b_j), per element, per row of Y (N values) and in relative L2.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <vector>

#include <ra/cuda.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "reference.hpp"

namespace {

using ra::index_t;

struct GemmCase {
  index_t M, N, K;
  index_t lda, ldy;
  bool bias;
  bool via_plan;  // GemmPlan with a workspace; else ra::eval on cuda::device (no workspace)
};

std::string describe(const GemmCase& c, ra::DType t) {
  std::ostringstream os;
  os << t << " M=" << c.M << " N=" << c.N << " K=" << c.K << " lda=" << c.lda << " ldy=" << c.ldy
     << (c.bias ? " bias" : " no-bias") << (c.via_plan ? " GemmPlan" : " cuda::device")
     << " seed=" << ra::test::seed();
  return os.str();
}

template <class T>
void run_gemm_case(ra::cuda::Context& ctx, cudaStream_t stream, const GemmCase& c,
                   std::uint64_t salt) {
  const ra::DType dtype = ra::dtype_v<T>;
  INFO(describe(c, dtype));
  auto g = ra::test::rng(salt);
  const auto a = ra::test::random_vector<T>(c.M * c.lda, g);
  const auto w = ra::test::random_vector<T>(c.N * c.K, g, 1.f / std::sqrt(float(c.K)));
  const auto b = ra::test::random_vector<T>(c.bias ? c.N : 0, g, 0.5f);
  auto a_d = ra::test::to_device(a);
  auto w_d = ra::test::to_device(w);
  auto b_d = ra::test::to_device(b);
  ra::cuda::DeviceBuffer<T> y_d(c.M * c.ldy);
  ra::test::poison(y_d.data(), y_d.size());

  const T* bias = c.bias ? b_d.data() : nullptr;
  if (c.via_plan) {
    ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
    const ra::cuda::GemmShape shape{c.M, c.N, c.K, c.lda, c.K, c.ldy, dtype, c.bias};
    const ra::cuda::GemmPlan plan(ctx, shape, ws.data(), ra::cuda::kGemmWorkspaceBytes);
    plan.run(a_d.data(), w_d.data(), bias, y_d.data(), stream);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));  // ws is freed at scope exit
  } else {
    const auto av = ra::make_view(static_cast<const T*>(a_d.data()), ra::shape(c.M, c.K),
                                  {c.lda, 1});  // (M,K) strides (lda,1)
    const auto wv = ra::make_view(static_cast<const T*>(w_d.data()),
                                  ra::shape(c.N, c.K));  // (N,K) strides (K,1)
    const auto yv = ra::make_view(y_d.data(), ra::shape(c.M, c.N), {c.ldy, 1});  // (M,N) (ldy,1)
    const ra::cuda::device dev{stream, &ctx};
    if (c.bias) {
      const auto bv = ra::make_view(bias, ra::shape(c.N));  // (N)
      ra::eval(yv, ra::gemm(av, wv, bv), dev);
    } else {
      ra::eval(yv, ra::gemm(av, wv), dev);
    }
  }

  const auto y = ra::test::to_host(y_d.data(), y_d.size());
  std::vector<T> y_mn;  // the (M,N) view, compact
  index_t untouched_padding = 0, padding = 0;
  for (index_t i = 0; i < c.M; ++i)
    for (index_t j = 0; j < c.ldy; ++j) {
      const T& v = y[static_cast<std::size_t>(i * c.ldy + j)];
      if (j < c.N) {
        y_mn.push_back(v);
      } else {
        ++padding;
        untouched_padding += ra::test::is_poison(v) ? 1 : 0;
      }
    }
  CHECK(untouched_padding == padding);
  const void* bias_h = c.bias ? b.data() : nullptr;
  const auto ref =
      ra::test::reference_gemm(dtype, c.M, c.N, c.K, a.data(), c.lda, w.data(), bias_h);
  const auto naive = ra::test::naive_gemm(dtype, c.M, c.N, c.K, a.data(), c.lda, w.data(), bias_h);
  std::vector<double> out(y_mn.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = ra::convert<double>(y_mn[i]);
  std::ostringstream family;
  family << "gemm Y " << dtype;
  RA_CHECK_PRECISION(ra::test::judge(family.str(), "Y", out, naive.values, ref, naive.floor, c.N));
}

}  // namespace

TEMPLATE_TEST_CASE("cuBLASLt GEMM Y = A·Wᵀ + bias matches the CPU reference", "[cuda][gemm]", float,
                   ra::fp16, ra::bf16) {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  std::uint64_t salt = 0;
  for (index_t M : {1, 7, 129, 1000})
    for (auto [N, K] : {std::pair<index_t, index_t>{96, 64}, {768, 256}})
      for (bool padded : {false, true})
        for (bool bias : {false, true})
          for (bool via_plan : {false, true}) {
            // 8 elements of padding keep rows 16-byte aligned for every element type.
            const index_t lda = padded ? K + 8 : K, ldy = padded ? N + 8 : N;
            run_gemm_case<TestType>(ctx, stream, {M, N, K, lda, ldy, bias, via_plan}, ++salt);
          }
}

TEST_CASE("GemmPlan and cuda::device reject what cuBLASLt cannot take", "[cuda][gemm][errors]") {
  using ra::fp16;
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const index_t M = 16, N = 32, K = 64;
  ra::cuda::DeviceBuffer<fp16> a(M * K + 8), w(N * K), b(N), y(M * N);
  const auto shape = ra::cuda::GemmShape::compact(M, N, K, ra::DType::f16, /*bias=*/false);

  SECTION("a row stride shorter than a row") {
    auto s = shape;
    s.lda = K - 8;
    CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, s, nullptr, 0), Catch::Contains("lda"));
  }
  SECTION("TF32 for a 16-bit type") {
    auto s = shape;
    s.tf32 = true;
    CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, s, nullptr, 0), Catch::Contains("tf32"));
  }
  SECTION("a pointer that breaks the planned alignment") {
    const ra::cuda::GemmPlan plan(ctx, shape, nullptr, 0);
    CHECK_THROWS_WITH(plan.run(a.data() + 1, w.data(), nullptr, y.data(), stream),
                      Catch::Contains("'A'") && Catch::Contains("aligned"));
  }
  SECTION("a bias for a plan without one, and the wrong element type") {
    const ra::cuda::GemmPlan plan(ctx, shape, nullptr, 0);
    CHECK_THROWS_WITH(plan.run(a.data(), w.data(), b.data(), y.data(), stream),
                      Catch::Contains("bias"));
    ra::cuda::DeviceBuffer<ra::bf16> yb(M * N);
    const auto* ab = reinterpret_cast<const ra::bf16*>(a.data());
    const auto* wb = reinterpret_cast<const ra::bf16*>(w.data());
    CHECK_THROWS_WITH(plan.run(ab, wb, static_cast<const ra::bf16*>(nullptr), yb.data(), stream),
                      Catch::Contains("element type"));
  }
  SECTION("a view whose rows are not contiguous") {
    // W read through a transposed view: unit stride along N, not along K.
    const auto wt = ra::make_view(static_cast<const fp16*>(w.data()), ra::shape(K, N));  // (K,N)
    const auto w_nk = ra::transpose<1, 0>(wt);  // (N,K) strides (1,N)
    const auto av = ra::make_view(static_cast<const fp16*>(a.data()), ra::shape(M, K));
    const auto yv = ra::make_view(y.data(), ra::shape(M, N));
    CHECK_THROWS_WITH(ra::eval(yv, ra::gemm(av, w_nk), ra::cuda::device{stream, &ctx}),
                      Catch::Contains("W.stride(1)"));
  }
  SECTION("a node that is not the planned one") {
    const ra::cuda::GemmPlan plan(ctx, shape, nullptr, 0);
    const auto av = ra::make_view(static_cast<const fp16*>(a.data()), ra::shape(M + 1, K));
    const auto wv = ra::make_view(static_cast<const fp16*>(w.data()), ra::shape(N, K));
    const auto yv = ra::make_view(y.data(), ra::shape(M + 1, N));
    CHECK_THROWS_WITH(plan.run(ra::gemm(av, wv), yv, stream), Catch::Contains("planned"));
  }
  SECTION("M = 0 runs nothing and writes nothing") {
    ra::test::poison(y.data(), y.size());
    const ra::cuda::GemmPlan plan(ctx, ra::cuda::GemmShape::compact(0, N, K, ra::DType::f16, false),
                                  nullptr, 0);
    plan.run(a.data(), w.data(), nullptr, y.data(), stream);
    const auto host = ra::test::to_host(y.data(), y.size());
    index_t poisoned = 0;
    for (const auto& v : host) poisoned += ra::test::is_poison(v) ? 1 : 0;
    CHECK(poisoned == y.size());
  }
}

TEST_CASE("GemmPlan::run makes no device allocation", "[cuda][gemm][alloc]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const index_t M = 256, N = 768, K = 256;
  ra::cuda::DeviceBuffer<ra::bf16> a(M * K), w(N * K), b(N), y(M * N);
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const ra::cuda::GemmPlan plan(ctx, ra::cuda::GemmShape::compact(M, N, K, ra::DType::bf16, true),
                                ws.data(), ra::cuda::kGemmWorkspaceBytes);
  plan.run(a.data(), w.data(), b.data(), y.data(), stream);  // warm-up: lazy module loading
  const auto count = ra::cuda::allocation_count();
  const auto free_bytes = ra::test::free_device_bytes();
  for (int i = 0; i < 3; ++i) plan.run(a.data(), w.data(), b.data(), y.data(), stream);
  CHECK(ra::test::free_device_bytes() == free_bytes);
  CHECK(ra::cuda::allocation_count() == count);
}
