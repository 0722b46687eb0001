// tests/cuda/test_flash_backward.cu — the attention backward kernels against the CPU backend
// in double, by the precision rule (tests/common/precision.hpp; flash_case.hpp runs a case).
//
// Fresh random Qf, Kf, V (one fused (B,T,3C) buffer) and dO'; the GPU forward supplies O', O
// and lse as in training; the GPU backward writes dQf, dKf, dV (folded into a (B,T,3C)
// gradient buffer, or compact) and the gate and restart gradients into memory poisoned with
// NaN. Every output is judged per element, per row and in relative L2 against twice the error
// of the naive same-precision backward plus u·‖terms‖₂. T covers 1, ragged tails (7, 130,
// 1025) and exact multiples of the backward's 64-row tile (64, 1024); the long-T cases run
// every gate mode with and without restart; softplus gates at several T; a gate below the
// clamp floor. Each case runs on every tensor-core path of the backward this build and device
// have (mma.sync everywhere; for fp16/bf16 at D = 64 and 128 on an sm_90 GPU with a 90a build,
// the sm_90a dK/dV and dQ passes, and the sm_90a dK/dV pass beside the mma.sync dQ pass),
// named in the case's description.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/sm90/support.cuh>

#include "cuda_test_utils.cuh"
#include "../common/dr_test_case.hpp"
#include "flash_case.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::index_t;
using ra::cuda::BackwardPath;
using ra::test::FlashCase;

// The tensor-core paths of the backward to test, each by name: mma.sync everywhere, and the
// sm_90a kernels where this build and device have them (fp16/bf16, D = 64 and 128):
// tma_wgmma (dK/dV and dQ on sm_90a) and tma_wgmma_dkdv (the sm_90a dK/dV pass beside the
// mma.sync dQ pass, so a fault of either dQ kernel shows against the other); fp32 has one
// (SIMT) path.
std::vector<BackwardPath> paths_for(DType dtype, int D) {
  std::vector<BackwardPath> paths{BackwardPath::mma_sync};
  if (dtype != DType::f32 && ra::cuda::sm90::backward_head_dim_supported(D) &&
      ra::cuda::sm90::flash_forward_available()) {
    paths.push_back(BackwardPath::tma_wgmma);
    paths.push_back(BackwardPath::tma_wgmma_dkdv);
  }
  return paths;
}

FlashCase backward_case(DType dtype, int B, int T, int H, int D, int R, GateMode gm, bool restart) {
  FlashCase c;
  c.dtype = dtype;
  c.B = B, c.T = T, c.H = H, c.D = D, c.R = R;
  c.gates = gm;
  c.restart = restart;
  c.backward = true;
  return c;
}

// The long-T backward runs one rank per head dim.
constexpr bool at_reference_rank(int, int R) {
  return R == ra::test::reference_rank();
}

constexpr bool d64_or_128_at_reference_rank(int D, int R) {
  return (D == 64 || D == 128) && at_reference_rank(D, R);
}

}  // namespace

// One Catch test case per (D, R) pair (dr_test_case.hpp): "..., D=64 R=4", tagged [d64][r4].
RA_DR_TEST_CASE(ra::test::every_pair, "flash backward keeps the precision rule",
                "[flash_backward][cuda]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  auto rng = ra::test::rng(ra::test::dr_salt(0xb0, static_cast<int>(dtype), D, R));
  for (BackwardPath path : paths_for(dtype, D))
    for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head})
      for (bool restart : {false, true})
        for (int T : {1, 7, 64, 130, 200}) {
          FlashCase c = backward_case(dtype, 2, T, 3, D, R, gm, restart);
          c.param = gm == GateMode::per_layer && (T == 7 || T == 64) ? GateParam::softplus
                                                                     : GateParam::clamp;
          c.below_floor = gm == GateMode::per_head && T == 130;
          c.compact_grads = restart && gm == GateMode::per_layer;
          c.backward_path = path;
          ra::test::run_flash_case(c, rng);
        }
}

RA_DR_TEST_CASE(d64_or_128_at_reference_rank,
                "flash backward at long T over every gate mode and restart",
                "[flash_backward][cuda][long]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  auto rng = ra::test::rng(ra::test::dr_salt(0xb1, static_cast<int>(dtype), D, R));
  for (BackwardPath path : paths_for(dtype, D)) {
    // Both of this path's kernels run at long T on the other paths.
    if (path == BackwardPath::tma_wgmma_dkdv) continue;
    for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head})
      for (bool restart : {false, true})
        for (int T : {1024, 1025}) {
          FlashCase c = backward_case(dtype, 1, T, 2, D, R, gm, restart);
          c.param = T == 1024 && gm == GateMode::per_layer ? GateParam::softplus : GateParam::clamp;
          c.compact_grads = T == 1024;
          c.backward_path = path;
          ra::test::run_flash_case(c, rng);
        }
  }
}

RA_DR_TEST_CASE(at_reference_rank, "flash backward at long T in fp32",
                "[flash_backward][cuda][long]") {
  auto rng = ra::test::rng(ra::test::dr_salt(0xb2, 0, D, R));
  ra::test::run_flash_case(backward_case(DType::f32, 1, 1025, 2, D, R, GateMode::per_head, true),
                           rng);
}

TEST_CASE("flash backward is deterministic on every path", "[flash_backward][cuda]") {
  // The head dims of the sm_90a backward that this build's list has.
  const index_t D =
      GENERATE(filter([](int d) { return ra::SupportedHeadDims::contains(d); }, values({64, 128})));
  const index_t B = 2, T = 300, H = 2, C = H * D;
  const int R = ra::test::reference_rank();
  auto rng = ra::test::rng(0xb3);
  const auto fused = ra::test::to_device(ra::test::random_vector<ra::bf16>(B * T * 3 * C, rng));
  const auto dout = ra::test::to_device(ra::test::random_vector<ra::bf16>(B * T * C, rng));
  const auto w_std = ra::test::to_device(std::vector<float>{0.7f, 1.1f}),
             w_rec = ra::test::to_device(std::vector<float>{0.2f, 0.4f}),
             a = ra::test::to_device(std::vector<float>{0.1f, 0.3f});
  ra::cuda::DeviceBuffer<ra::bf16> out(B * T * C), out_pre(B * T * C), dfused(B * T * 3 * C);
  ra::cuda::DeviceBuffer<float> lse(B * H * T), dws(H), dwr(H), da(H),
      ws(ra::cuda::backward_workspace_floats(B, H, T));
  const auto in = ra::folded_views(ra::make_view(fused.data(), ra::shape(B, T, 3 * C)), H, D);
  const auto grads = ra::folded_views(ra::make_view(dfused.data(), ra::shape(B, T, 3 * C)), H, D);
  const auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T, C)), H, D);
  const auto o_pre = ra::heads(ra::make_view(out_pre.data(), ra::shape(B, T, C)), H, D);
  const auto d_o = ra::heads(ra::make_view(dout.data(), ra::shape(B, T, C)), H, D);
  const auto node =
      ra::folded_attention(in.q, in.k, in.v, R, ra::gates::per_head(w_std.data(), w_rec.data()),
                           ra::causal, ra::restart::per_head(a.data()));
  const auto fwd = ra::cuda::make_params(node, o, lse.data(), o_pre);
  const BackwardPath path = GENERATE_COPY(from_range(paths_for(DType::bf16, D)));
  INFO("D = " << D << ", backward path " << ra::cuda::path_name(path));
  auto run = [&] {
    for (auto* b : {&dws, &dwr, &da}) ra::test::poison(b->data(), b->size());
    ra::test::poison(dfused.data(), dfused.size());
    ra::cuda::attention_forward(fwd, nullptr);
    auto bwd = ra::cuda::make_backward_params(fwd, d_o, grads.q, grads.k, grads.v, dws.data(),
                                              dwr.data(), da.data(), ws.data());
    bwd.path = path;
    ra::cuda::attention_backward(bwd, nullptr);
    std::vector<float> p = ra::test::to_host(dws.data(), H);
    for (auto* b : {&dwr, &da}) {
      const auto h = ra::test::to_host(b->data(), H);
      p.insert(p.end(), h.begin(), h.end());
    }
    return std::make_pair(ra::test::to_host(dfused.data(), dfused.size()), p);
  };
  const auto first = run(), second = run();
  CHECK(ra::test::bitwise_equal(first.first, second.first));
  CHECK(ra::test::bitwise_equal(first.second, second.second));
  CHECK_FALSE(ra::test::is_poison(first.first.back()));
}

TEST_CASE("the sm_90a backward is tested exactly where the build put it",
          "[flash_backward][cuda]") {
  // A build with sm_90a code (RA_TEST_BUILT_FOR_SM90A, tests/CMakeLists.txt) on an sm_90 device
  // must test both sm_90a backward paths at D = 64 and 128 in fp16 and bf16 (so the cases above
  // ran them), and nowhere else; the automatic path stays on mma.sync until measured
  // (sm90/support.cuh).
  cudaDeviceProp prop{};
  RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
#ifdef RA_TEST_BUILT_FOR_SM90A
  const bool built_for_sm90a = true;
#else
  const bool built_for_sm90a = false;
#endif
  const bool expected = built_for_sm90a && prop.major == 9 && prop.minor == 0;
  INFO("device sm_" << prop.major << prop.minor << ", built for sm_90a: " << built_for_sm90a);
  for (int D : {64, 128}) {
    CHECK(paths_for(DType::f16, D).size() == (expected ? 3u : 1u));
    CHECK(paths_for(DType::bf16, D).size() == (expected ? 3u : 1u));
  }
  CHECK(paths_for(DType::f32, 64).size() == 1u);
  CHECK(paths_for(DType::f16, 96).size() == 1u);
  for (int D : {32, 64, 80, 96, 128})
    CHECK_FALSE(ra::cuda::sm90::automatic_prefers_sm90_backward(D));
}

TEST_CASE("flash backward with B = 0 or T = 0 writes zero parameter gradients",
          "[flash_backward][cuda]") {
  const index_t H = 3, D = 64;
  ra::cuda::DeviceBuffer<ra::fp16> buf(64);
  const auto w = ra::test::to_device(std::vector<float>{0.5f, 0.6f, 0.7f});
  ra::cuda::DeviceBuffer<float> lse(1), dws(H), dwr(H), da(H), ws(1);
  for (index_t B : {0, 2}) {
    const index_t T = B == 0 ? 5 : 0;
    INFO("B = " << B << ", T = " << T);
    for (auto* b : {&dws, &dwr, &da}) ra::test::poison(b->data(), b->size());
    const auto v = ra::make_view(static_cast<const ra::fp16*>(buf.data()), ra::shape(B, H, T, D),
                                 {H * T * D, T * D, D, 1});
    const auto o = ra::make_view(buf.data(), ra::shape(B, H, T, D), {H * T * D, T * D, D, 1});
    const auto node = ra::folded_attention(v, v, v, ra::test::reference_rank(),
                                           ra::gates::per_head(w.data(), w.data()), ra::causal,
                                           ra::restart::per_head(w.data()));
    const auto fwd = ra::cuda::make_params(node, o, lse.data(), o);
    ra::cuda::attention_forward(fwd, nullptr);
    ra::cuda::attention_backward(ra::cuda::make_backward_params(fwd, v, o, o, o, dws.data(),
                                                                dwr.data(), da.data(), ws.data()),
                                 nullptr);
    for (auto* b : {&dws, &dwr, &da})
      CHECK(ra::test::to_host(b->data(), H) == std::vector<float>(H, 0.f));
  }
}

TEST_CASE("attention_backward rejects bad parameters with a clear error",
          "[flash_backward][cuda]") {
  ra::cuda::DeviceBuffer<ra::fp16> buf(4 * 64 * 64);
  ra::cuda::DeviceBuffer<float> lse(64), ws(ra::cuda::backward_workspace_floats(1, 1, 64)), a(1);
  // A valid call but for the one field each section breaks: Qf, Kf, V, O' at rows 0..255 of
  // buf, dO' and the gradients in grads, all in memory of their own.
  ra::cuda::DeviceBuffer<ra::fp16> grads(4 * 64 * 64);
  ra::cuda::AttentionBackwardParams p;
  p.fwd.q = buf.data(), p.fwd.k = buf.data() + 64 * 64, p.fwd.v = buf.data() + 2 * 64 * 64;
  p.fwd.o = buf.data() + 3 * 64 * 64;
  p.fwd.lse = lse.data();
  p.fwd.batch = 1, p.fwd.heads = 1, p.fwd.seq = 64, p.fwd.seq_k = 64, p.fwd.head_dim = 64;
  p.fwd.rank = 4;
  p.fwd.q_row_stride = p.fwd.k_row_stride = p.fwd.v_row_stride = p.fwd.o_row_stride = 64;
  p.d_out = grads.data(), p.dq = grads.data() + 64 * 64, p.dk = grads.data() + 2 * 64 * 64;
  p.dv = grads.data() + 3 * 64 * 64;
  p.do_row_stride = p.dq_row_stride = p.dk_row_stride = p.dv_row_stride = 64;
  p.workspace = ws.data();
  SECTION("missing lse") {
    p.fwd.lse = nullptr;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr), Catch::Contains("lse"));
  }
  SECTION("missing workspace") {
    p.workspace = nullptr;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr), Catch::Contains("workspace"));
  }
  SECTION("restart without the forward's O before the mix") {
    p.fwd.restart = ra::restart::per_head(a.data());
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("fwd.o_pre") && Catch::Contains("restart is on"));
  }
  SECTION("misaligned gradient stride") {
    p.dk_row_stride = 65;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("gradient stride") && Catch::Contains("65"));
  }
  SECTION("gradients sharing memory with an input or another gradient") {
    p.dk = p.dq;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("output 'dQf' overlaps output 'dKf'"));
    p.dk = buf.data() + 64 * 64;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("output 'dKf' overlaps input 'Kf'"));
    p.dk = grads.data() + 2 * 64 * 64;
    p.workspace = reinterpret_cast<float*>(p.dv);
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("output 'dV' overlaps output 'workspace'"));
  }
  SECTION("the sm_90a path where it cannot run") {
    p.path = BackwardPath::tma_wgmma;
    if (!ra::cuda::sm90::flash_forward_available()) {
      REQUIRE_THROWS_AS(ra::cuda::attention_backward(p, nullptr), ra::unsupported);
      REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                          Catch::Contains("path = tma_wgmma") && Catch::Contains("no sm_90a code"));
    }
    // A head dim of the build's list that the sm_90a backward does not take.
    for (int D : ra::SupportedHeadDims::values) {
      if (ra::cuda::sm90::backward_head_dim_supported(D) || D > 64) continue;
      p.fwd.head_dim = D;
      p.fwd.q_row_stride = p.fwd.k_row_stride = p.fwd.v_row_stride = p.fwd.o_row_stride = D;
      p.do_row_stride = p.dq_row_stride = p.dk_row_stride = p.dv_row_stride = D;
      REQUIRE_THROWS_AS(ra::cuda::attention_backward(p, nullptr), ra::unsupported);
      REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                          Catch::Contains("path = tma_wgmma") &&
                              Catch::Contains("D = 64 and 128 only, not D = " + std::to_string(D)));
      break;
    }
    // fp32 has one (SIMT) path.
    ra::cuda::DeviceBuffer<float> in32(4 * 64 * 64), g32(4 * 64 * 64);
    p.fwd.dtype = DType::f32;
    p.fwd.head_dim = 64;
    p.fwd.q_row_stride = p.fwd.k_row_stride = p.fwd.v_row_stride = p.fwd.o_row_stride = 64;
    p.do_row_stride = p.dq_row_stride = p.dk_row_stride = p.dv_row_stride = 64;
    p.fwd.q = in32.data(), p.fwd.k = in32.data() + 64 * 64, p.fwd.v = in32.data() + 2 * 64 * 64;
    p.fwd.o = in32.data() + 3 * 64 * 64;
    p.d_out = g32.data(), p.dq = g32.data() + 64 * 64, p.dk = g32.data() + 2 * 64 * 64;
    p.dv = g32.data() + 3 * 64 * 64;
    REQUIRE_THROWS_AS(ra::cuda::attention_backward(p, nullptr), ra::unsupported);
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("path = tma_wgmma") && Catch::Contains("fp16 and bf16"));
  }
  SECTION("unsupported rank") {
    p.fwd.rank = 3;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr), Catch::Contains("R = 3"));
  }
  SECTION("gradient views of another shape or dtype") {
    const auto g = ra::make_view(buf.data(), ra::shape(1, 1, 64, 64));
    const auto wrong_t = ra::make_view(buf.data(), ra::shape(1, 1, 32, 64));
    ra::cuda::DeviceBuffer<ra::bf16> other(64 * 64);
    const auto wrong_dtype = ra::make_view(other.data(), ra::shape(1, 1, 64, 64));
    CHECK_THROWS_WITH(ra::cuda::make_backward_params(p.fwd, g, g, wrong_t, g, nullptr, nullptr,
                                                     nullptr, ws.data()),
                      Catch::Contains("'dKf' has shape (1,1,32,64)"));
    CHECK_THROWS_WITH(ra::cuda::make_backward_params(p.fwd, g, g, g, wrong_dtype, nullptr, nullptr,
                                                     nullptr, ws.data()),
                      Catch::Contains("'dV' has dtype bf16, expected fp16"));
  }
}

TEST_CASE("flash backward, a small set for compute-sanitizer", "[sanitize]") {
  auto rng = ra::test::rng(0xb4);
  for (DType dtype : {DType::f16, DType::bf16, DType::f32})
    for (int D : ra::SupportedHeadDims::values)
      for (BackwardPath path : paths_for(dtype, D)) {
        FlashCase c = backward_case(dtype, 1, 200, 2, D, ra::test::reference_rank(),
                                    GateMode::per_head, true);
        c.backward_path = path;
        ra::test::run_flash_case(c, rng);
      }
}
