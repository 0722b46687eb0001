// tests/cuda/test_smoke.cu — the GPU test binary's first real test: a kernel writes each
// element's coordinates through a strided view into poisoned device memory, checked on the host
// element by element (unwritten or misplaced elements keep the poison and fail).
#include <catch2/catch.hpp>

#include <ra/core.hpp>
#include <ra/cuda/check.cuh>

#include <cstdint>
#include <cstring>
#include <sstream>
#include <vector>

namespace {

// Writes 1000·t + d into element (t, d) of a (T, D) view, through its strides.
template <class V>
__global__ void write_coordinates(V out) {
  const ra::index_t t = blockIdx.x, d = threadIdx.x;
  if (t < out.extent(0) && d < out.extent(1)) out(t, d) = static_cast<float>(1000 * t + d);
}

}  // namespace

TEST_CASE("a kernel writes through a strided view into poisoned device memory", "[cuda][smoke]") {
  // A (T, 3D) buffer; the view is its middle D columns: (T, D) strides (3D, 1).
  const ra::index_t T = 37, D = 64;
  const std::size_t n = static_cast<std::size_t>(T * 3 * D);
  float* buf = nullptr;
  RA_CUDA_CHECK(cudaMalloc(&buf, n * sizeof(float)));
  RA_CUDA_CHECK(cudaMemset(buf, 0xff, n * sizeof(float)));  // 0xffffffff is a NaN

  auto all = ra::make_view(buf, ra::shape(T, 3 * D));  // (T,3D) strides (3D,1)
  auto mid = ra::split<3, 1>(all)[1];                  // (T,D) strides (3D,1)
  write_coordinates<<<static_cast<unsigned>(T), static_cast<unsigned>(D)>>>(mid);
  RA_CUDA_CHECK_LAUNCH();
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<float> host(n);
  RA_CUDA_CHECK(cudaMemcpy(host.data(), buf, n * sizeof(float), cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaFree(buf));

  int wrong = 0;
  std::ostringstream first;
  for (ra::index_t t = 0; t < T; ++t)
    for (ra::index_t c = 0; c < 3 * D; ++c) {
      const float got = host[static_cast<std::size_t>(t * 3 * D + c)];
      std::uint32_t bits;
      std::memcpy(&bits, &got, sizeof bits);
      const bool in_view = c >= D && c < 2 * D;
      const bool ok = in_view ? got == static_cast<float>(1000 * t + (c - D)) : bits == 0xffffffffu;
      if (!ok && wrong++ < 5) first << " (" << t << "," << c << ")=" << got;
    }
  INFO("wrong elements (first five):" << first.str());
  REQUIRE(wrong == 0);
}
