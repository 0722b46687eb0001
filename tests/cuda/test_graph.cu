// tests/cuda/test_graph.cu — ra::cuda::Graph: capture and replay, failure handling, and the
// whole attention block captured as one graph.
//
// A replay must equal direct execution bit for bit, allocate nothing, and read device-side
// parameters at replay time: after set_gates / set_restart, a replay of the old graph equals a
// direct forward with the new values (and differs from the old output).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include <ra/cuda.cuh>

#include "cuda_test_utils.cuh"

namespace {

using ra::index_t;
using ra::cuda::AttentionPath;
using ra::cuda::Graph;

__global__ void axpy(float a, const float* x, float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += a * x[i];
}

void enqueue_axpys(cudaStream_t s, const float* x, float* y, int n) {
  RA_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<std::size_t>(n) * sizeof(float), s));
  axpy<<<(n + 255) / 256, 256, 0, s>>>(2.f, x, y, n);
  RA_CUDA_CHECK_LAUNCH();
  axpy<<<(n + 255) / 256, 256, 0, s>>>(-0.5f, x, y, n);
  RA_CUDA_CHECK_LAUNCH();
}

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  RA_CUDA_CHECK(cudaStreamIsCapturing(s, &status));
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace

TEST_CASE("Graph replays what the callable enqueued, reading device memory at replay",
          "[cuda][graph]") {
  ra::test::Stream s;
  const int n = 1000;
  auto g = ra::test::rng(6000);
  auto x = ra::test::to_device(ra::test::uniform_floats(n, g, -1.f, 1.f));
  ra::cuda::DeviceBuffer<float> y_direct(n), y_graph(n);

  enqueue_axpys(s, x.data(), y_direct.data(), n);
  const auto direct = ra::test::to_host(y_direct.data(), n);

  Graph graph =
      Graph::capture(s, [&](cudaStream_t st) { enqueue_axpys(st, x.data(), y_graph.data(), n); });
  CHECK_FALSE(capturing(s));
  CHECK(graph.node_count() == 3);  // memset + two kernels
  ra::test::poison(y_graph.data(), n);
  graph.upload(s);
  graph.replay(s);
  CHECK(ra::test::bitwise_equal(ra::test::to_host(y_graph.data(), n), direct));
  graph.replay(s);  // the memset node resets y: replays do not accumulate
  CHECK(ra::test::bitwise_equal(ra::test::to_host(y_graph.data(), n), direct));

  // New input values, same pointers: the replay sees them.
  const auto x2 = ra::test::uniform_floats(n, g, -1.f, 1.f);
  RA_CUDA_CHECK(cudaMemcpy(x.data(), x2.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  graph.replay(s);
  const auto replayed = ra::test::to_host(y_graph.data(), n);
  enqueue_axpys(s, x.data(), y_direct.data(), n);
  const auto direct2 = ra::test::to_host(y_direct.data(), n);
  CHECK(ra::test::bitwise_equal(replayed, direct2));
  CHECK_FALSE(ra::test::bitwise_equal(replayed, direct));

  Graph moved = std::move(graph);
  CHECK(graph.empty());
  CHECK_FALSE(moved.empty());
  CHECK_THROWS_WITH(graph.replay(s), Catch::Contains("empty"));
}

TEST_CASE("Graph::capture ends a failed capture and leaves the stream usable",
          "[cuda][graph][errors]") {
  ra::test::Stream s;
  const int n = 256;
  ra::cuda::DeviceBuffer<float> x(n), y(n);

  SECTION("the callable throws") {
    CHECK_THROWS_WITH(Graph::capture(s,
                                     [&](cudaStream_t st) {
                                       enqueue_axpys(st, x.data(), y.data(), n);
                                       throw ra::error("thrown while capturing");
                                     }),
                      Catch::Contains("thrown while capturing"));
  }
  SECTION("the callable synchronises") {
    CHECK_THROWS_AS(Graph::capture(s, [&] { RA_CUDA_CHECK(cudaStreamSynchronize(s)); }),
                    ra::cuda_error);
  }
  SECTION("the callable allocates device memory") {
    const auto count = ra::cuda::allocation_count();
    CHECK_THROWS_AS(Graph::capture(s, [&] { ra::cuda::DeviceBuffer<float> scratch(16); }),
                    ra::cuda_error);
    CHECK(ra::cuda::allocation_count() == count);
  }
  SECTION("the legacy default stream") {
    CHECK_THROWS_WITH(Graph::capture(nullptr, [] {}), Catch::Contains("stream"));
  }
  CHECK_FALSE(capturing(s));
  enqueue_axpys(s, x.data(), y.data(), n);  // the stream still works
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
}

TEST_CASE("a captured block forward replays bit for bit and sees new gate values",
          "[cuda][graph][block][alloc]") {
  ra::cuda::Context ctx;
  ra::test::Stream s;
  ra::AttentionBlockConfig cfg;
  cfg.C = 256;
  cfg.H = 4;
  cfg.R = 4;
  cfg.gates = ra::GateMode::per_layer;
  cfg.restart = true;
  const index_t B = 2, T_ = 100, C = cfg.C;
  ra::cuda::AttentionBlock<ra::fp16> block(cfg, B, T_ + 28, /*plan_unfused=*/true, &ctx);

  auto g = ra::test::rng(7000);
  const float sw = 1.f / 16.f;  // 1/sqrt(C)
  const auto w_attn = ra::test::random_vector<ra::fp16>(3 * C * C, g, sw);
  const auto w_o = ra::test::random_vector<ra::fp16>(C * C, g, sw);
  const auto b_attn = ra::test::random_vector<ra::fp16>(3 * C, g, 0.2f);
  const auto b_o = ra::test::random_vector<ra::fp16>(C, g, 0.2f);
  const float w_std = 0.9f, w_rec = 0.1f;
  const std::vector<float> a(static_cast<std::size_t>(cfg.H), 0.05f);
  ra::AttentionBlockWeights<ra::fp16> w;
  w.w_attn = ra::make_view(w_attn.data(), ra::shape(3 * C, C));  // (3C,C)
  w.b_attn = ra::make_view(b_attn.data(), ra::shape(3 * C));     // (3C)
  w.w_o = ra::make_view(w_o.data(), ra::shape(C, C));            // (C,C)
  w.b_o = ra::make_view(b_o.data(), ra::shape(C));               // (C)
  w.w_std = &w_std;
  w.w_rec = &w_rec;
  w.a = a.data();
  block.load(w);
  auto x = ra::test::to_device(ra::test::random_vector<ra::fp16>(B * T_ * C, g));
  ra::cuda::DeviceBuffer<ra::fp16> y_direct(B * T_ * C), y_graph(B * T_ * C);

  for (AttentionPath path : {AttentionPath::fused, AttentionPath::unfused}) {
    INFO("path " << path << " seed " << ra::test::seed());
    block.set_gates(w_std, w_rec);
    block.set_restart(0.05f);
    block.forward(x.data(), y_direct.data(), B, T_, s, path);  // also plans B·T's GEMMs
    const auto direct = ra::test::to_host(y_direct.data(), y_direct.size());

    const auto count = ra::cuda::allocation_count();
    const Graph graph = Graph::capture(
        s, [&](cudaStream_t st) { block.forward(x.data(), y_graph.data(), B, T_, st, path); });
    CHECK(graph.node_count() >= 3);  // two GEMMs and the attention step at least
    ra::test::poison(y_graph.data(), y_graph.size());
    graph.replay(s);
    CHECK(ra::test::bitwise_equal(ra::test::to_host(y_graph.data(), y_graph.size()), direct));
    // Instantiation and the first launch may take device memory for the graph itself; from
    // here on nothing may.
    const auto free_bytes = ra::test::free_device_bytes();

    // New gate and restart values, written to the block's device parameters.
    block.set_gates(0.4f, 0.8f);
    block.set_restart(0.3f);
    ra::test::poison(y_graph.data(), y_graph.size());
    graph.replay(s);
    const auto replayed = ra::test::to_host(y_graph.data(), y_graph.size());
    block.forward(x.data(), y_direct.data(), B, T_, s, path);
    const auto direct2 = ra::test::to_host(y_direct.data(), y_direct.size());
    CHECK(ra::test::bitwise_equal(replayed, direct2));
    CHECK_FALSE(ra::test::bitwise_equal(replayed, direct));
    CHECK(ra::test::free_device_bytes() == free_bytes);
    CHECK(ra::cuda::allocation_count() == count);
  }
}
