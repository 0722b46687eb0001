// tests/consumer/cuda.cu — builds against the installed ra::cuda (C++20 core headers in a CUDA
// translation unit, the checking macros, no architectures forced by the package) and, where a
// GPU exists, checks that a folded view addresses the same elements on the device as on the
// host. Exits 77 only when there is truly no device (the rule of tests/cuda/main.cu: the
// runtime says cudaErrorNoDevice or counts 0 devices, or no CUDA driver is installed and no
// /dev/nvidiaN exists); CTest reports that as skipped (the test consumer_cuda). Any other CUDA
// error fails.
#include <ra/core.hpp>
#include <ra/cuda/check.cuh>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

constexpr ra::index_t B = 2, T = 3, H = 2, D = 32, C = H * D;

// Writes, through the Qf view, each element's flat (b,h,t,d) index.
template <class QView>
__global__ void write_indices(QView q) {
  const ra::index_t i = blockIdx.x * static_cast<ra::index_t>(blockDim.x) + threadIdx.x;
  if (i >= B * H * T * D) return;
  const ra::index_t d = i % D, t = i / D % T, h = i / (D * T) % H, b = i / (D * T * H);
  q(b, h, t, d) = static_cast<float>(i);
}

bool has_nvidia_device_node() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev", ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 6 && name.rfind("nvidia", 0) == 0 &&
        name.find_first_not_of("0123456789", 6) == std::string::npos)
      return true;
  }
  return false;
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  int driver = 0;
  const bool no_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0;
  if (e == cudaErrorNoDevice || (e == cudaSuccess && devices == 0) ||
      (e == cudaErrorInsufficientDriver && no_driver && !has_nvidia_device_node())) {
    std::printf("consumer_cuda: no CUDA device: %s\n",
                e == cudaSuccess ? "cudaGetDeviceCount returned 0" : cudaGetErrorString(e));
    return 77;
  }
  if (e != cudaSuccess) {
    std::printf("consumer_cuda: cudaGetDeviceCount failed: %s (%s), CUDA driver version %d\n",
                cudaGetErrorString(e), cudaGetErrorName(e), driver);
    return 1;
  }
  float* fused = nullptr;
  RA_CUDA_CHECK(cudaMalloc(&fused, sizeof(float) * B * T * 3 * C));
  RA_CUDA_CHECK(cudaMemset(fused, 0xff, sizeof(float) * B * T * 3 * C));  // NaN everywhere
  auto fused_v = ra::make_view(fused, ra::shape(B, T, 3 * C));            // (B,T,3C)
  auto qkv = ra::folded_views(fused_v, H, ra::Int<D>{});  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  write_indices<<<(B * H * T * D + 127) / 128, 128>>>(qkv.q);
  RA_CUDA_CHECK_LAUNCH();
  std::vector<float> host(B * T * 3 * C);
  RA_CUDA_CHECK(
      cudaMemcpy(host.data(), fused, sizeof(float) * host.size(), cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaFree(fused));
  int wrong = 0;
  for (ra::index_t b = 0; b < B; ++b)
    for (ra::index_t h = 0; h < H; ++h)
      for (ra::index_t t = 0; t < T; ++t)
        for (ra::index_t d = 0; d < D; ++d) {
          const float want = static_cast<float>(((b * H + h) * T + t) * D + d);
          wrong += host[(b * T + t) * 3 * C + h * D + d] != want;
        }
  std::printf("consumer_cuda: %d wrong elements of %ld\n", wrong, static_cast<long>(B * H * T * D));
  return wrong == 0 ? 0 : 1;
}
