// tests/subdirectory/flash.cu — the folded attention forward on the GPU in a project that adds
// ra with add_subdirectory(): its kernels come from ra_add_flash_instantiations(). Where a GPU
// exists, checks O against a naive loop; exits 77 without one (built, not run).
#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("parent_flash: no CUDA device: built, not run\n");
    return 77;
  }
  constexpr ra::index_t B = 1, T = 5, H = 1, D = ra::SupportedHeadDims::values[0], C = H * D;
  constexpr int R = ra::SupportedRanks::values[0];
  std::vector<float> host(B * T * 3 * C);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = std::sin(0.37f * static_cast<float>(i));
  ra::cuda::DeviceBuffer<float> fused(B * T * 3 * C), out(B * T * C);
  RA_CUDA_CHECK(cudaMemcpy(fused.data(), host.data(), fused.bytes(), cudaMemcpyHostToDevice));
  auto qkv = ra::folded_views(ra::make_view(fused.data(), ra::shape(B, T, 3 * C)), H, D);
  auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T, C)), H, D);
  ra::cuda::attention_forward(
      ra::cuda::make_params(ra::folded_attention(qkv.q, qkv.k, qkv.v, R), o, nullptr), nullptr);
  std::vector<float> got(B * T * C);
  RA_CUDA_CHECK(cudaMemcpy(got.data(), out.data(), out.bytes(), cudaMemcpyDeviceToHost));
  // Naive causal attention, row by row (Qf = host[t][0:C], Kf = [C:2C], V = [2C:3C]).
  double worst = 0.0;
  for (ra::index_t i = 0; i < T; ++i) {
    std::vector<double> p(static_cast<std::size_t>(i + 1));
    double m = -INFINITY, l = 0.0;
    for (ra::index_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (ra::index_t d = 0; d < D; ++d) s += host[i * 3 * C + d] * host[j * 3 * C + C + d];
      p[j] = s / std::sqrt(static_cast<double>(D));
      m = std::max(m, p[j]);
    }
    for (auto& x : p) l += (x = std::exp(x - m));
    for (ra::index_t d = 0; d < D; ++d) {
      double o_id = 0.0;
      for (ra::index_t j = 0; j <= i; ++j) o_id += p[j] / l * host[j * 3 * C + 2 * C + d];
      worst = std::max(worst, std::abs(o_id - got[i * C + d]));
    }
  }
  std::printf("parent_flash: max |O - naive| = %g\n", worst);
  return worst < 1e-5 ? 0 : 1;
}
