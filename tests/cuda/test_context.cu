// tests/cuda/test_context.cu — the process-wide cuBLAS context can be released and made again,
// and what compute-sanitizer's initcheck sees of memory that cuBLASLt's GEMMs wrote.
//
// The [initcheck] case is a minimal reproduction (scripts/gpu_check.sh runs it under
// `compute-sanitizer --tool initcheck` on its own): a cuBLASLt GEMM writes Y, then a plain
// kernel reads every element of Y, and every row sum is checked against the host, so all of Y
// was written. On an H200 (CUDA 13.0, cuBLASLt 13) initcheck still reports the plain kernel's
// reads of most of Y as uninitialised: the tool does not see the GEMM kernels' stores (TMA),
// see docs/NOTES.md. Buffers that GEMMs write in ra's models are zeroed once at allocation.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <ra/cuda/buffer.cuh>
#include <ra/cuda/gemm.cuh>

#include "cuda_test_utils.cuh"

namespace {

using ra::index_t;

// Sums each row of y (rows x cols, bf16) into out (fp32): reads every element once.
__global__ void row_sums(const ra::bf16* y, index_t rows, index_t cols, float* out) {
  const index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  float s = 0.f;
  for (index_t c = 0; c < cols; ++c) s += static_cast<float>(y[r * cols + c]);
  out[r] = s;
}

// Y = X · Wᵀ on `ctx` (bf16, GPT-2's qkv shape at small size), then the row sums of Y by a plain
// kernel; returns the row sums.
std::vector<float> gemm_then_read(ra::cuda::Context& ctx, const std::vector<ra::bf16>& x,
                                  const std::vector<ra::bf16>& w, index_t M, index_t N, index_t K) {
  const auto xd = ra::test::to_device(x), wd = ra::test::to_device(w);
  ra::cuda::DeviceBuffer<ra::bf16> y(M * N);
  ra::cuda::DeviceBuffer<float> sums(M);
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const ra::cuda::GemmPlan plan(ctx, ra::cuda::GemmShape::compact(M, N, K, ra::DType::bf16, false),
                                ws.data(), ra::cuda::kGemmWorkspaceBytes);
  plan.run(xd.data(), wd.data(), nullptr, y.data(), nullptr);
  row_sums<<<static_cast<unsigned>((M + 127) / 128), 128>>>(y.data(), M, N, sums.data());
  RA_CUDA_CHECK_LAUNCH();
  return ra::test::to_host(sums.data(), M);
}

}  // namespace

TEST_CASE("a plain kernel reads what a cuBLASLt GEMM wrote", "[cuda][initcheck]") {
  const index_t M = 256, N = 384, K = 128;
  auto g = ra::test::rng(0xc0);
  const auto x = ra::test::random_vector<ra::bf16>(M * K, g);
  const auto w = ra::test::random_vector<ra::bf16>(N * K, g, 0.1f);
  const auto sums = gemm_then_read(ra::cuda::default_context(), x, w, M, N, K);
  // Every row sum against the host's: each element of Y was written by the GEMM.
  int wrong = 0;
  for (index_t r = 0; r < M; ++r) {
    double want = 0.0, scale = 0.0;
    for (index_t c = 0; c < N; ++c) {
      double y = 0.0;
      for (index_t k = 0; k < K; ++k)
        y += static_cast<double>(static_cast<float>(x[r * K + k])) *
             static_cast<float>(w[c * K + k]);
      want += y;
      scale += std::abs(y);
    }
    const float got = sums[static_cast<std::size_t>(r)];
    // bf16 rounding of each of the N elements of Y, and fp32 sums: well inside 2^-7 of Σ|y|.
    if (!std::isfinite(got) || std::abs(got - want) > 0x1p-7 * scale + 1e-3) ++wrong;
  }
  CHECK(wrong == 0);
}

TEST_CASE("the default context can be released and made again", "[cuda][context][alloc]") {
  const index_t M = 64, N = 64, K = 64;
  auto g = ra::test::rng(0xc1);
  const auto x = ra::test::random_vector<ra::bf16>(M * K, g);
  const auto w = ra::test::random_vector<ra::bf16>(N * K, g);
  const auto first = gemm_then_read(ra::cuda::default_context(), x, w, M, N, K);
  const auto before = ra::test::free_device_bytes();
  ra::cuda::release_default_context();
  const auto released = ra::test::free_device_bytes();
  INFO("free device memory " << before << " -> " << released << " bytes");
  CHECK(released > before);  // the handles' device memory went back
  const auto again = gemm_then_read(ra::cuda::default_context(), x, w, M, N, K);
  CHECK(ra::test::bitwise_equal(first, again));
  ra::cuda::release_default_context();
  ra::cuda::release_default_context();  // releasing nothing is allowed
  CHECK(ra::test::bitwise_equal(gemm_then_read(ra::cuda::default_context(), x, w, M, N, K), first));
}
