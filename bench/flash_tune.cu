// bench/flash_tune.cu — re-checks the tile shape of the attention forward kernels on the
// GPU at hand: times several FlashTile instantiations of the mma.sync kernel, and on sm_90
// the sm_90a kernel's schedules (ForwardTile), side by side on the same inputs, each checked
// against the default mma.sync tiles (max |diff|), and prints a table (and JSON with
// --json PATH). The default tiles in tile_table.cuh and sm90/flash_forward.cuh carry the
// reason measured here.
//
//   flash_tune [--json PATH] [--iters N]
//
// It launches tile variants directly; the default dispatch lives in ra_flash_kernels.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include <ra/core.hpp>
#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/sm90/flash_forward.cuh>
#include <ra/cuda/tile_table.cuh>

namespace {

using ra::index_t;

struct Result {
  std::string variant;
  int D, T;
  double median_us, tflops;
  double max_diff;  // vs the mma.sync default tiles on the same inputs
};

__global__ void fill_normal(ra::fp16* x, index_t n, unsigned seed) {
  for (index_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    // Cheap hash -> roughly normal via sum of uniforms; the values only need to be non-trivial.
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed;
    float s = 0.f;
    for (int k = 0; k < 4; ++k) {
      h ^= h << 13;
      h ^= h >> 17;
      h ^= h << 5;
      s += (h & 0xffff) / 65536.f;
    }
    x[i] = ra::fp16((s - 2.f) * 1.7f);
  }
}

/// Launches one forward variant: the mma.sync kernel with tile Tile, or (Sm90) the sm_90a kernel
/// with schedule Tile.
template <int D, class Tile, bool Sm90>
void launch(const ra::cuda::AttentionParams& p) {
  if constexpr (Sm90) {
    ra::cuda::sm90::flash_forward<ra::fp16, D, 4, ra::GateMode::per_layer, false, Tile>(p, nullptr);
  } else {
    ra::cuda::launch_flash_forward<ra::fp16, D, 4, ra::GateMode::per_layer, false, Tile>(p,
                                                                                         nullptr);
  }
}

template <int D, class Tile, bool Sm90 = false>
Result time_variant(const char* name, int B, int H, int T, int iters) {
  const index_t C = H * D;
  // Several input sets, rotated, so repeated runs do not just measure L2.
  const int sets = 3;
  std::vector<ra::cuda::DeviceBuffer<ra::fp16>> fused;
  for (int s = 0; s < sets; ++s) {
    fused.emplace_back(B * T * 3 * C);
    fill_normal<<<1024, 256>>>(fused.back().data(), fused.back().size(), 17u + s);
    RA_CUDA_CHECK_LAUNCH();
  }
  ra::cuda::DeviceBuffer<ra::fp16> out(B * T * C);
  ra::cuda::DeviceBuffer<float> gates(2);
  const float g[2] = {0.9f, 0.1f};
  RA_CUDA_CHECK(cudaMemcpy(gates.data(), g, sizeof g, cudaMemcpyHostToDevice));
  std::vector<ra::cuda::AttentionParams> params;
  auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T, C)), H, D);
  for (int s = 0; s < sets; ++s) {
    auto qkv = ra::folded_views(ra::make_view(fused[s].data(), ra::shape(B, T, 3 * C)), H, D);
    auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, 4,
                                     ra::gates::per_layer(gates.data(), gates.data() + 1));
    params.push_back(ra::cuda::make_params(node, o, nullptr));
  }
  // Correctness first: this variant against the default mma.sync tiles on input set 0.
  auto snapshot = [&] {
    std::vector<ra::fp16> h(out.size());
    RA_CUDA_CHECK(cudaMemcpy(h.data(), out.data(), out.bytes(), cudaMemcpyDeviceToHost));
    return h;
  };
  ra::cuda::launch_flash_forward<ra::fp16, D, 4, ra::GateMode::per_layer, false,
                                 ra::cuda::FlashForwardTraits<D>>(params[0], nullptr);
  const auto want = snapshot();
  RA_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  launch<D, Tile, Sm90>(params[0]);
  const auto got = snapshot();
  double max_diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(static_cast<float>(got[i]) - static_cast<float>(want[i]));
    max_diff = std::isfinite(d) ? std::max(max_diff, d) : INFINITY;
  }
  for (int i = 0; i < 5; ++i) launch<D, Tile, Sm90>(params[i % sets]);
  cudaEvent_t e0, e1;
  RA_CUDA_CHECK(cudaEventCreate(&e0));
  RA_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    RA_CUDA_CHECK(cudaEventRecord(e0));
    launch<D, Tile, Sm90>(params[i % sets]);
    RA_CUDA_CHECK(cudaEventRecord(e1));
    RA_CUDA_CHECK(cudaEventSynchronize(e1));
    RA_CUDA_CHECK(cudaEventElapsedTime(&ms[i], e0, e1));
  }
  RA_CUDA_CHECK(cudaEventDestroy(e0));
  RA_CUDA_CHECK(cudaEventDestroy(e1));
  std::nth_element(ms.begin(), ms.begin() + iters / 2, ms.end());
  const double us = ms[iters / 2] * 1e3;
  const double flops = 2.0 * B * H * double(T) * T * D;  // causal forward
  return {name, D, T, us, flops / (us * 1e-6) / 1e12, max_diff};
}

int run(int argc, char** argv) {
  const char* json = nullptr;
  int iters = 50;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json = argv[++i];
    } else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = ra::parse_integer<int>("flash_tune: --iters", argv[++i], 1, 1 << 20);
    }
  }
  cudaDeviceProp prop{};
  RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int B = 8, H = 12;
  std::vector<Result> rs;
  for (int T : {1024, 2048, 4096}) {
    using namespace ra::cuda;
    rs.push_back(time_variant<64, FlashTile<64, 128, 64, 2>>("d64 mma 128x64 w8 b2 (default)", B, H,
                                                             T, iters));
    rs.push_back(
        time_variant<64, FlashTile<64, 128, 64, 1>>("d64 mma 128x64 w8 b1", B, H, T, iters));
    rs.push_back(
        time_variant<64, FlashTile<64, 128, 128, 1>>("d64 mma 128x128 w8 b1", B, H, T, iters));
    rs.push_back(time_variant<64, FlashTile<64, 64, 64, 4>>("d64 mma 64x64 w4 b4", B, H, T, iters));
    rs.push_back(
        time_variant<64, FlashTile<64, 64, 128, 2>>("d64 mma 64x128 w4 b2", B, H, T, iters));
    rs.push_back(
        time_variant<64, FlashTile<64, 192, 64, 1>>("d64 mma 192x64 w12 b1", B, H, T, iters));
    rs.push_back(time_variant<32, FlashTile<32, 128, 64, 2>>("d32 mma 128x64 w8 b2 (default)", B,
                                                             H * 2, T, iters));
    rs.push_back(time_variant<128, FlashTile<128, 128, 64, 1>>("d128 mma 128x64 w8 b1 (default)", B,
                                                               H / 2, T, iters));
    rs.push_back(
        time_variant<128, FlashTile<128, 64, 64, 2>>("d128 mma 64x64 w4 b2", B, H / 2, T, iters));
    rs.push_back(
        time_variant<128, FlashTile<128, 128, 32, 1>>("d128 mma 128x32 w8 b1", B, H / 2, T, iters));
    if (sm90::flash_forward_available()) {  // the sm_90a kernel's schedules
      using sm90::ForwardTile;
      rs.push_back(time_variant<64, ForwardTile<64, 2, true>, true>(
          "d64 sm90 2wg pingpong (default, T < 2048)", B, H, T, iters));
      rs.push_back(
          time_variant<64, ForwardTile<64, 2, false>, true>("d64 sm90 2wg", B, H, T, iters));
      rs.push_back(time_variant<64, ForwardTile<64, 3, true>, true>("d64 sm90 3wg pingpong (default, T >= 2048)", B, H,
                                                                    T, iters));
      rs.push_back(
          time_variant<64, ForwardTile<64, 3, false>, true>("d64 sm90 3wg", B, H, T, iters));
      rs.push_back(time_variant<128, ForwardTile<128, 2, true>, true>(
          "d128 sm90 2wg pingpong (default)", B, H / 2, T, iters));
      rs.push_back(
          time_variant<128, ForwardTile<128, 2, false>, true>("d128 sm90 2wg", B, H / 2, T, iters));
    }
  }
  std::printf(
      "\nflash forward tile variants on %s (fp16, causal, R=4, per-layer gates, B=8, "
      "C=768)\n",
      prop.name);
  std::printf("%-32s %5s %6s %10s %8s %10s\n", "variant", "D", "T", "median us", "TFLOP/s",
              "max |diff|");
  for (const auto& r : rs)
    std::printf("%-32s %5d %6d %10.1f %8.1f %10.2e\n", r.variant.c_str(), r.D, r.T, r.median_us,
                r.tflops, r.max_diff);
  if (json) {
    std::string j = "{\"device\": \"" + std::string(prop.name) + "\", \"records\": [\n";
    char line[512];
    for (std::size_t i = 0; i < rs.size(); ++i) {
      std::snprintf(line, sizeof line,
                    "  {\"variant\": \"%s\", \"D\": %d, \"T\": %d, \"median_us\": %.3f, "
                    "\"tflops\": %.2f, \"max_diff\": %.3e}%s\n",
                    rs[i].variant.c_str(), rs[i].D, rs[i].T, rs[i].median_us, rs[i].tflops,
                    rs[i].max_diff, i + 1 < rs.size() ? "," : "");
      j += line;
    }
    j += "]}\n";
    ra::write_file_atomic(json, j, "flash_tune");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flash_tune: error: %s\n", e.what());
    return 1;
  }
}
