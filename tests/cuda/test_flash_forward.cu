// tests/cuda/test_flash_forward.cu — the attention forward kernels against the CPU backend in
// double, by the precision rule (tests/common/precision.hpp; flash_case.hpp runs a case).
//
// Every supported (D, R) pair, dtype and gate mode, with and without self-restart, on both
// tensor-core paths where built; inputs read straight from a fused (B,T,3C) buffer (and, in one
// case, as separate tensors); O', O before the restart mix and lse written into memory
// poisoned with NaN first. T covers 1, ragged tails (7, 130, 1000, 1025) and exact multiples of
// the forward's 128-row tile (128, 1024); softplus gates at several T; a gate below the clamp
// floor.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/device.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/sm90/flash_forward.cuh>
#include <ra/cuda/sm90/support.cuh>

#include "cuda_test_utils.cuh"
#include "../common/dr_test_case.hpp"
#include "flash_case.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::cuda::ForwardPath;
using ra::test::FlashCase;

// The tensor-core paths to test, each by name: mma.sync everywhere, and the sm_90a kernel
// where this build and device have it (fp16/bf16); fp32 has one (SIMT) path.
std::vector<ForwardPath> paths_for(DType dtype) {
  std::vector<ForwardPath> paths{ForwardPath::mma_sync};
  if (dtype != DType::f32 && ra::cuda::sm90::flash_forward_available())
    paths.push_back(ForwardPath::tma_wgmma);
  return paths;
}

// The long-T forward runs the baseline and the reference rank.
constexpr bool rank_0_or_4(int, int R) {
  return R == 0 || R == 4;
}

}  // namespace

// One Catch test case per (D, R) pair (dr_test_case.hpp): "..., D=64 R=4", tagged [d64][r4].
RA_DR_TEST_CASE(ra::test::every_pair, "flash forward keeps the precision rule", "[flash][cuda]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  auto rng = ra::test::rng(ra::test::dr_salt(0xf0, static_cast<int>(dtype), D, R));
  for (ForwardPath path : paths_for(dtype))
    for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head})
      for (bool restart : {false, true})
        for (int T : {1, 7, 128, 130}) {
          FlashCase c;
          c.dtype = dtype;
          c.B = 2, c.T = T, c.H = 3, c.D = D, c.R = R;
          c.gates = gm;
          c.param = gm == GateMode::per_layer && (T == 7 || T == 128) ? GateParam::softplus
                                                                      : GateParam::clamp;
          c.below_floor = gm == GateMode::per_head && T == 130;
          c.restart = restart;
          c.path = path;
          ra::test::run_flash_case(c, rng);
        }
}

RA_DR_TEST_CASE(rank_0_or_4, "flash forward at long T, ragged and whole tiles",
                "[flash][cuda][long]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  auto rng = ra::test::rng(ra::test::dr_salt(0xf1, static_cast<int>(dtype), D, R));
  for (ForwardPath path : paths_for(dtype))
    for (int T : {1000, 1024, 1025}) {
      FlashCase c;
      c.dtype = dtype;
      c.B = 1, c.T = T, c.H = 2, c.D = D, c.R = R;
      c.gates = GateMode::per_head;
      c.param = T == 1024 ? GateParam::softplus : GateParam::clamp;
      c.restart = R == 4;
      c.path = path;
      ra::test::run_flash_case(c, rng);
    }
}

// The sm_90a forward changes schedule at ra::cuda::sm90::kLongRows rows (three consumer
// warpgroups at D = 64): every gate mode and restart on both sides of the switch.
RA_DR_TEST_CASE(rank_0_or_4, "flash forward on the sm_90a long-row schedule",
                "[flash][cuda][long]") {
  if (!ra::cuda::sm90::flash_forward_available()) {
    WARN("skipped: no sm_90a forward on this GPU or in this build");
    SUCCEED();
    return;
  }
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  auto rng = ra::test::rng(ra::test::dr_salt(0xf3, static_cast<int>(dtype), D, R));
  constexpr int kLong = ra::cuda::sm90::kLongRows;
  for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head})
    for (bool restart : {false, true})
      for (int T : {kLong - 1, kLong + 70}) {
        FlashCase c;
        c.dtype = dtype;
        c.B = 1, c.T = T, c.H = 1, c.D = D, c.R = R;
        c.gates = gm;
        c.param = gm == GateMode::per_head ? GateParam::softplus : GateParam::clamp;
        c.restart = restart;
        c.path = ForwardPath::tma_wgmma;
        ra::test::run_flash_case(c, rng);
      }
}

TEST_CASE("flash forward reads any strides", "[flash][cuda]") {
  auto rng = ra::test::rng(0xf2);
  for (DType dtype : {DType::f16, DType::bf16, DType::f32})
    for (ForwardPath path : paths_for(dtype))
      for (int T : {7, 200}) {
        FlashCase c;
        c.dtype = dtype;
        c.B = 2, c.T = T, c.H = 2, c.D = 64, c.R = ra::test::reference_rank();
        c.gates = GateMode::per_layer;
        c.restart = true;
        c.separate_inputs = true;
        c.path = path;
        ra::test::run_flash_case(c, rng);
      }
}

TEST_CASE("a node of compile-time D and R launches the same kernel as runtime ints",
          "[flash][cuda]") {
  // ra::eval of a node with an Int<D> head dim and a Rank<R> skips the runtime dispatch
  // (attention_forward(node, ...)); its output must be the runtime path's, bit for bit.
  constexpr int D = ra::SupportedHeadDims::values[0];
  constexpr int R = ra::SupportedRanks::values[ra::SupportedRanks::size - 1] < D
                        ? ra::SupportedRanks::values[ra::SupportedRanks::size - 1]
                        : 0;
  const ra::index_t B = 2, T = 130, H = 3;
  auto rng = ra::test::rng(0xf7);
  for (bool restart : {false, true}) {
    INFO("D=" << D << " R=" << R << " restart " << restart);
    const auto host = ra::test::random_vector<ra::bf16>(B * H * T * D * 3, rng);
    const auto in = ra::test::to_device(host);
    const auto params = ra::test::to_device(std::vector<float>{0.9f, 0.4f, 0.1f, 0.2f, 0.3f});
    ra::cuda::DeviceBuffer<ra::bf16> o1(B * H * T * D), o2(B * H * T * D);
    ra::test::poison(o1.data(), o1.size());
    ra::test::poison(o2.data(), o2.size());
    const auto shp = ra::shape(B, H, T, ra::Int<D>{});
    auto q = ra::make_view(static_cast<const ra::bf16*>(in.data()), shp);
    auto k = ra::make_view(static_cast<const ra::bf16*>(in.data()) + B * H * T * D, shp);
    auto v = ra::make_view(static_cast<const ra::bf16*>(in.data()) + 2 * B * H * T * D, shp);
    const auto g = ra::gates::per_layer(params.data(), params.data() + 1);
    const auto r = restart ? ra::restart::per_head(params.data() + 2) : ra::restart::none();
    auto fixed = ra::folded_attention<ra::Rank<R>>(q, k, v, g, ra::causal, r);
    STATIC_REQUIRE(decltype(fixed)::kHeadDim == D);
    ra::eval(ra::make_view(o1.data(), shp), fixed, ra::cuda::device{});
    auto runtime = ra::folded_attention(q, k, v, R, g, ra::causal, r);
    ra::cuda::attention_forward(
        ra::cuda::make_params(runtime, ra::make_view(o2.data(), shp), nullptr), nullptr);
    const auto h1 = ra::test::to_host(o1.data(), o1.size());
    CHECK(ra::test::bitwise_equal(h1, ra::test::to_host(o2.data(), o2.size())));
    CHECK_FALSE(ra::test::is_poison(h1.front()));
    CHECK_FALSE(ra::test::is_poison(h1.back()));
  }
}

TEST_CASE("R = 0 without gates is bit-for-bit the R = 0 path with unit gates", "[flash][cuda]") {
  // The baseline and RA share one kernel family: gates of exactly 1 change no bit.
  const ra::index_t B = 2, T = 300, H = 2, D = ra::SupportedHeadDims::values[0], C = H * D;
  if (!ra::SupportedRanks::contains(0)) {  // a build narrowed without the baseline refuses it
    CHECK_THROWS_AS(ra::check_head_dim_and_rank("attention", static_cast<int>(D), 0),
                    ra::unsupported);
    return;
  }
  auto rng = ra::test::rng(0xf3);
  auto host = ra::test::random_vector<ra::fp16>(B * T * 3 * C, rng);
  const auto fused = ra::test::to_device(host);
  const auto ones = ra::test::to_device(std::vector<float>{1.f, 1.f});
  ra::cuda::DeviceBuffer<ra::fp16> o1(B * T * C), o2(B * T * C);
  ra::test::poison(o1.data(), o1.size());
  ra::test::poison(o2.data(), o2.size());
  auto qkv = ra::folded_views(ra::make_view(fused.data(), ra::shape(B, T, 3 * C)), H, D);
  auto out1 = ra::heads(ra::make_view(o1.data(), ra::shape(B, T, C)), H, D);
  auto out2 = ra::heads(ra::make_view(o2.data(), ra::shape(B, T, C)), H, D);
  auto base = ra::folded_attention(qkv.q, qkv.k, qkv.v, 0);
  auto gated = ra::folded_attention(qkv.q, qkv.k, qkv.v, 0,
                                    ra::gates::per_layer(ones.data(), ones.data() + 1));
  ra::cuda::attention_forward(ra::cuda::make_params(base, out1, nullptr), nullptr);
  ra::cuda::attention_forward(ra::cuda::make_params(gated, out2, nullptr), nullptr);
  const auto h1 = ra::test::to_host(o1.data(), o1.size());
  CHECK(ra::test::bitwise_equal(h1, ra::test::to_host(o2.data(), o2.size())));
  CHECK_FALSE(ra::test::is_poison(h1.back()));
}

TEST_CASE("the sm_90a forward is present exactly where the build put it", "[flash][cuda]") {
  // The build says whether it compiled sm_90a code (RA_TEST_BUILT_FOR_SM90A, set by
  // tests/CMakeLists.txt from CMAKE_CUDA_ARCHITECTURES); on an sm_90 device such a build must
  // run the sm_90a forward (so its tests above ran), and no other build or device may claim it.
  cudaDeviceProp prop{};
  RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
#ifdef RA_TEST_BUILT_FOR_SM90A
  const bool built_for_sm90a = true;
#else
  const bool built_for_sm90a = false;
#endif
  const bool expected = built_for_sm90a && prop.major == 9 && prop.minor == 0;
  INFO("device sm_" << prop.major << prop.minor << ", built for sm_90a: " << built_for_sm90a);
  CHECK(ra::cuda::sm90::flash_forward_available() == expected);
}

TEST_CASE("attention_forward rejects bad parameters with a clear error", "[flash][cuda]") {
  // A valid call but for the one field each section breaks (inputs may share memory, the
  // outputs O and o_pre have their own).
  ra::cuda::DeviceBuffer<ra::fp16> buf(3 * 64 * 64 + 8), out(64 * 64), out_pre(64 * 65 + 64);
  ra::cuda::AttentionParams p;
  p.q = p.k = p.v = buf.data();
  p.o = out.data();
  p.batch = 1, p.heads = 1, p.seq = 64, p.seq_k = 64, p.head_dim = 64, p.rank = 4;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = 64;
  p.scale = 0.125f;
  SECTION("unsupported head dim") {
    p.head_dim = 48;
    REQUIRE_THROWS_WITH(
        ra::cuda::attention_forward(p, nullptr),
        Catch::Contains("head dim D = 48") && Catch::Contains(ra::SupportedHeadDims::to_string()));
  }
  SECTION("rank not below D") {
    const int D = ra::SupportedHeadDims::values[0];
    p.head_dim = D;
    p.rank = D;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("R = " + std::to_string(D)));
  }
  SECTION("misaligned row stride") {
    p.k_row_stride = 67;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("stride") && Catch::Contains("67"));
  }
  SECTION("misaligned o_pre stride") {
    p.o_pre = out_pre.data();
    p.o_pre_row_stride = 65;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("o_pre stride") && Catch::Contains("65"));
  }
  SECTION("fewer keys than queries; fewer queries than keys (no decode kernel yet)") {
    p.seq_k = 32;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("'T_k' is 32") && Catch::Contains("T_k >= T_q = 64"));
    p.seq = 16;
    REQUIRE_THROWS_AS(ra::cuda::attention_forward(p, nullptr), ra::unsupported);
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("T_q = 16") && Catch::Contains("T_k = 32"));
  }
  SECTION("output sharing memory with an input or another output") {
    // Qf, Kf, V at rows 0, 64, 128 of one buffer; O placed on Qf, then across Kf and V.
    p.k = buf.data() + 64 * 64, p.v = buf.data() + 2 * 64 * 64;
    p.o = buf.data();
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("output 'O' overlaps input 'Qf'"));
    p.o = buf.data() + 2 * 64 * 64 - 64;  // O's first row is Kf's last
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("output 'O' overlaps input 'Kf'"));
  }
  SECTION("the sm_90a path where it cannot run") {
    p.path = ra::cuda::ForwardPath::tma_wgmma;
    p.dtype = DType::f32;
    ra::cuda::DeviceBuffer<float> q32(3 * 64 * 64), o32(64 * 64);
    p.q = p.k = p.v = q32.data();
    p.o = o32.data();
    REQUIRE_THROWS_AS(ra::cuda::attention_forward(p, nullptr), ra::unsupported);
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("path = tma_wgmma") && Catch::Contains("fp16 and bf16"));
    if (!ra::cuda::sm90::flash_forward_available()) {
      p.dtype = DType::f16;
      p.q = p.k = p.v = buf.data();
      p.o = out.data();
      REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                          Catch::Contains("path = tma_wgmma") && Catch::Contains("no sm_90a code"));
    }
  }
  SECTION("null pointer") {
    p.v = nullptr;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr), Catch::Contains("null"));
  }
  SECTION("gates without values") {
    p.gates = {GateMode::per_head, GateParam::clamp, nullptr, nullptr};
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr), Catch::Contains("gates"));
  }
  SECTION("mismatched dtypes in type-erased views") {
    ra::cuda::DeviceBuffer<ra::bf16> other(64 * 64);
    const auto shape4 = ra::shape(1, 1, 64, 64);
    const ra::AnyView q = ra::erase(ra::make_view(buf.data(), shape4));
    const ra::AnyView v_bf16 = ra::erase(ra::make_view(other.data(), shape4));
    REQUIRE_THROWS_WITH(
        ra::cuda::make_params(q, q, v_bf16, q, 4, ra::gates::none(), ra::restart::none(), nullptr),
        Catch::Contains("'V' has dtype bf16") && Catch::Contains("expected fp16 like 'Qf'"));
  }
  SECTION("non-unit head-dim stride in a view") {
    auto v4 = ra::make_view(buf.data(), ra::shape(1, 1, 64, 64), {4096, 4096, 1, 64});
    auto node = ra::folded_attention(v4, v4, v4, 4);
    REQUIRE_THROWS_WITH(ra::cuda::make_params(node, v4, nullptr), Catch::Contains("stride(3)"));
  }
  SECTION("o_pre of another shape") {
    auto v4 = ra::make_view(buf.data(), ra::shape(1, 1, 64, 64));
    auto small = ra::make_view(buf.data(), ra::shape(1, 1, 32, 64));
    auto node = ra::folded_attention(v4, v4, v4, 4);
    REQUIRE_THROWS_WITH(ra::cuda::make_params(node, v4, nullptr, small),
                        Catch::Contains("'o_pre' has shape"));
  }
}

TEST_CASE("flash forward, a small set for compute-sanitizer", "[sanitize]") {
  // Run under every compute-sanitizer tool on the GPU machine (scripts/gpu_check.sh): every D
  // and dtype once, ragged T, all features on, both tensor-core paths.
  auto rng = ra::test::rng(0xf4);
  for (DType dtype : {DType::f16, DType::bf16, DType::f32})
    for (ForwardPath path : paths_for(dtype))
      for (int D : ra::SupportedHeadDims::values)
        for (int T : {7, 130}) {
          FlashCase c;
          c.dtype = dtype;
          c.B = 1, c.T = T, c.H = 2, c.D = D, c.R = ra::test::reference_rank();
          c.gates = GateMode::per_head;
          c.restart = true;
          c.path = path;
          ra::test::run_flash_case(c, rng);
        }
}
