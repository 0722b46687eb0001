// tests/cuda/test_flash_forward.cu — the attention forward kernels against the CPU backend.
//
// Every supported (D, R) pair, dtype and gate mode, with and without self-restart, on fresh
// random inputs read straight from a fused (B,T,3C) buffer; O' is written in (B,T,C) layout
// into memory poisoned with NaN first, so an unwritten element fails. Ragged T (1, 7, 130,
// 1000, 1025) exercises partial tiles and the causal edge.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/flash_forward.cuh>

#include "cuda_test_utils.cuh"
#include "flash_reference.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;

struct Case {
  DType dtype;
  int B, T, H, D, R;
  GateMode gates;
  GateParam param;
  bool restart;
  bool separate_inputs;  // Q, K, V as three compact (B,H,T,D) tensors instead of fused
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << c.dtype << " B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " R=" << c.R
     << " gates=" << c.gates << "/" << c.param << " restart=" << c.restart
     << (c.separate_inputs ? " separate" : " fused") << " seed=" << ra::test::seed();
  return os.str();
}

struct Errors {
  double max_abs = 0, rel_fro = 0, lse_max_abs = 0;
  std::size_t worst = 0;
  bool all_finite = true;
};

template <class T>
Errors run_case(const Case& c, std::mt19937_64& rng) {
  const ra::index_t B = c.B, T_ = c.T, H = c.H, D = c.D, C = H * D;
  auto host_fused = ra::test::random_vector<T>(static_cast<std::size_t>(B * T_ * 3 * C), rng);

  ra::test::FoldedProblem pb;
  pb.dtype = c.dtype;
  pb.batch = c.B, pb.seq = c.T, pb.heads = c.H, pb.head_dim = c.D, pb.rank = c.R;
  pb.gate_mode = c.gates;
  pb.gate_param = c.param;
  ra::test::randomize_parameters(pb, c.restart, rng);
  pb.fused = host_fused.data();
  std::vector<double> ref_o;
  std::vector<float> ref_lse;
  ra::test::reference_folded_attention(pb, ref_o, ref_lse);

  ra::cuda::DeviceBuffer<T> fused(B * T_ * 3 * C), out(B * T_ * C);
  ra::cuda::DeviceBuffer<float> lse(B * H * T_);
  ra::test::poison(out.data(), out.size());
  ra::test::poison(lse.data(), lse.size());
  const auto w_std = ra::test::to_device(pb.w_std), w_rec = ra::test::to_device(pb.w_rec),
             a = ra::test::to_device(pb.a);

  auto dfused = ra::make_view(fused.data(), ra::shape(B, T_, 3 * C));  // (B,T,3C)
  auto qkv = ra::folded_views(dfused, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T_, C)), H, D);  // strides (TC,D,C,1)
  ra::Gates g{c.gates, c.param, w_std.data(), w_rec.data()};
  ra::Restart r{c.restart ? a.data() : nullptr};

  ra::cuda::DeviceBuffer<T> q_sep, k_sep, v_sep;
  if (c.separate_inputs) {
    // The same values as three compact (B,H,T,D) tensors: other strides, same answer.
    std::vector<T> hq(B * H * T_ * D), hk(hq.size()), hv(hq.size());
    auto hf = ra::folded_views(ra::make_view(host_fused.data(), ra::shape(B, T_, 3 * C)), H, D);
    std::size_t i = 0;
    for (ra::index_t b = 0; b < B; ++b)
      for (ra::index_t h = 0; h < H; ++h)
        for (ra::index_t t = 0; t < T_; ++t)
          for (ra::index_t d = 0; d < D; ++d, ++i) {
            hq[i] = hf.q(b, h, t, d);
            hk[i] = hf.k(b, h, t, d);
            hv[i] = hf.v(b, h, t, d);
          }
    q_sep = ra::cuda::DeviceBuffer<T>(hq.size());
    k_sep = ra::cuda::DeviceBuffer<T>(hq.size());
    v_sep = ra::cuda::DeviceBuffer<T>(hq.size());
    RA_CUDA_CHECK(cudaMemcpy(q_sep.data(), hq.data(), q_sep.bytes(), cudaMemcpyHostToDevice));
    RA_CUDA_CHECK(cudaMemcpy(k_sep.data(), hk.data(), k_sep.bytes(), cudaMemcpyHostToDevice));
    RA_CUDA_CHECK(cudaMemcpy(v_sep.data(), hv.data(), v_sep.bytes(), cudaMemcpyHostToDevice));
    auto shape4 = ra::shape(B, H, T_, D);
    auto node = ra::folded_attention(ra::make_view(q_sep.data(), shape4),
                                     ra::make_view(k_sep.data(), shape4),
                                     ra::make_view(v_sep.data(), shape4), c.R, g, ra::causal, r);
    ra::cuda::attention_forward(ra::cuda::make_params(node, o, lse.data()), nullptr);
  } else {
    RA_CUDA_CHECK(
        cudaMemcpy(fused.data(), host_fused.data(), fused.bytes(), cudaMemcpyHostToDevice));
    auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, c.R, g, ra::causal, r);
    ra::cuda::attention_forward(ra::cuda::make_params(node, o, lse.data()), nullptr);
  }
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<T> got(out.size());
  std::vector<float> got_lse(lse.size());
  RA_CUDA_CHECK(cudaMemcpy(got.data(), out.data(), out.bytes(), cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaMemcpy(got_lse.data(), lse.data(), lse.bytes(), cudaMemcpyDeviceToHost));

  Errors e;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double x = static_cast<float>(got[i]);
    if (!std::isfinite(x)) e.all_finite = false;
    const double d = std::abs(x - ref_o[i]);
    if (!(d <= e.max_abs)) {  // NaN-safe: a NaN becomes the worst element
      e.max_abs = std::isfinite(d) ? d : INFINITY;
      e.worst = i;
    }
    num += d * d;
    den += ref_o[i] * ref_o[i];
  }
  e.rel_fro = std::sqrt(num / (den > 0 ? den : 1));
  for (std::size_t i = 0; i < got_lse.size(); ++i) {
    const double d = std::abs(static_cast<double>(got_lse[i]) - ref_lse[i]);
    if (!std::isfinite(got_lse[i])) e.all_finite = false;
    e.lse_max_abs = std::max(e.lse_max_abs, std::isfinite(d) ? d : INFINITY);
  }
  return e;
}

// Error bounds from the unit roundoff u of the element type: P and Q̂ are rounded to T once
// and O once, with fp32 accumulation; the floor covers fp32's exp/accumulation error.
void check(const Case& c, const Errors& e) {
  const double u = ra::unit_roundoff(c.dtype);
  const double tol_abs = std::max(8 * u, 2e-5);
  const double tol_rel = std::max(4 * u, 1e-5);
  const double tol_lse = std::max(16 * u, 2e-5);
  INFO(describe(c));
  INFO("max |err| = " << e.max_abs << " at flat index " << e.worst << " (B,T,C order), rel = "
                      << e.rel_fro << ", lse max |err| = " << e.lse_max_abs);
  CHECK(e.all_finite);
  CHECK(e.max_abs <= tol_abs);
  CHECK(e.rel_fro <= tol_rel);
  CHECK(e.lse_max_abs <= tol_lse);
}

template <class F>
void for_each_supported(F&& f) {
  for (int D : ra::SupportedHeadDims::values)
    for (int R : ra::SupportedRanks::values)
      if (R < D) f(D, R);
}

void run_and_check(const Case& c, std::mt19937_64& rng) {
  Errors e;
  switch (c.dtype) {
    case DType::f16:
      e = run_case<ra::fp16>(c, rng);
      break;
    case DType::bf16:
      e = run_case<ra::bf16>(c, rng);
      break;
    case DType::f32:
      e = run_case<float>(c, rng);
      break;
  }
  check(c, e);
}

}  // namespace

// Runs the enclosing test once per tensor-core path (wgmma where built for sm_90a, and
// mma.sync), restoring the automatic choice afterwards.
struct PathScope {
  explicit PathScope(ra::cuda::ForwardPath p) { ra::cuda::set_forward_path(p); }
  ~PathScope() { ra::cuda::set_forward_path(ra::cuda::ForwardPath::automatic); }
};

const char* path_name(ra::cuda::ForwardPath p) {
  return p == ra::cuda::ForwardPath::mma_sync ? "mma.sync"
         : p == ra::cuda::ForwardPath::wgmma  ? "wgmma"
                                              : "automatic";
}

// The wgmma path runs where this binary holds sm_90a code for the device.
bool wgmma_built() {
  return ra::cuda::has_wgmma_code<ra::fp16, ra::SupportedHeadDims::values[0], 0, GateMode::none,
                                  false>();
}

// The paths to test: mma.sync everywhere, wgmma where built; fp32 has one (SIMT) path.
std::vector<ra::cuda::ForwardPath> paths_for(DType dtype) {
  std::vector<ra::cuda::ForwardPath> paths{ra::cuda::ForwardPath::mma_sync};
  if (dtype != DType::f32 && wgmma_built()) paths.push_back(ra::cuda::ForwardPath::wgmma);
  return paths;
}

TEST_CASE("flash forward matches the CPU backend over the (D, R) matrix", "[flash][cuda]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  std::mt19937_64 rng(ra::test::seed() + static_cast<int>(dtype));
  UNSCOPED_INFO("seed " << ra::test::seed());
  for (auto path : paths_for(dtype)) {
    PathScope scope(path);
    INFO("path " << path_name(path));
    for_each_supported([&](int D, int R) {
      for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head}) {
        for (bool restart : {false, true}) {
          for (int T : {1, 7, 130}) {
            const GateParam param = (T == 7) ? GateParam::softplus : GateParam::clamp;
            run_and_check({dtype, 2, T, 3, D, R, gm, param, restart, false}, rng);
          }
        }
      }
    });
  }
}

TEST_CASE("flash forward at long ragged T", "[flash][cuda][long]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  std::mt19937_64 rng(ra::test::seed() + 100 + static_cast<int>(dtype));
  for (auto path : paths_for(dtype)) {
    PathScope scope(path);
    INFO("path " << path_name(path));
    for_each_supported([&](int D, int R) {
      if (R != 0 && R != 4) return;
      for (int T : {1000, 1025})
        run_and_check({dtype, 1, T, 2, D, R, GateMode::per_head, GateParam::clamp, R == 4, false},
                      rng);
    });
  }
}

TEST_CASE("flash forward reads any strides", "[flash][cuda]") {
  std::mt19937_64 rng(ra::test::seed() + 200);
  for (DType dtype : {DType::f16, DType::bf16})
    for (auto path : paths_for(dtype)) {
      PathScope scope(path);
      INFO("path " << path_name(path));
      for (int T : {7, 200})
        run_and_check({dtype, 2, T, 2, 64, 4, GateMode::per_layer, GateParam::clamp, true, true},
                      rng);
    }
}

TEST_CASE("R = 0 without gates is bit-for-bit the R = 0 path with unit gates", "[flash][cuda]") {
  // The baseline and RA share one kernel family: gates of exactly 1 change no bit.
  const ra::index_t B = 2, T = 300, H = 2, D = 64, C = H * D;
  std::mt19937_64 rng(ra::test::seed() + 300);
  auto host = ra::test::random_vector<ra::fp16>(B * T * 3 * C, rng);
  ra::cuda::DeviceBuffer<ra::fp16> fused(B * T * 3 * C), o1(B * T * C), o2(B * T * C);
  ra::cuda::DeviceBuffer<float> ones(2);
  const float one[2] = {1.f, 1.f};
  RA_CUDA_CHECK(cudaMemcpy(fused.data(), host.data(), fused.bytes(), cudaMemcpyHostToDevice));
  RA_CUDA_CHECK(cudaMemcpy(ones.data(), one, 8, cudaMemcpyHostToDevice));
  auto qkv = ra::folded_views(ra::make_view(fused.data(), ra::shape(B, T, 3 * C)), H, D);
  auto out1 = ra::heads(ra::make_view(o1.data(), ra::shape(B, T, C)), H, D);
  auto out2 = ra::heads(ra::make_view(o2.data(), ra::shape(B, T, C)), H, D);
  auto base = ra::folded_attention(qkv.q, qkv.k, qkv.v, 0);
  auto gated = ra::folded_attention(qkv.q, qkv.k, qkv.v, 0,
                                    ra::gates::per_layer(ones.data(), ones.data() + 1));
  ra::cuda::attention_forward(ra::cuda::make_params(base, out1, nullptr), nullptr);
  ra::cuda::attention_forward(ra::cuda::make_params(gated, out2, nullptr), nullptr);
  std::vector<std::uint16_t> h1(o1.size()), h2(o2.size());
  RA_CUDA_CHECK(cudaMemcpy(h1.data(), o1.data(), o1.bytes(), cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaMemcpy(h2.data(), o2.data(), o2.bytes(), cudaMemcpyDeviceToHost));
  CHECK(h1 == h2);
}

TEST_CASE("attention_forward rejects bad parameters with a clear error", "[flash][cuda]") {
  ra::cuda::DeviceBuffer<ra::fp16> buf(3 * 64 * 64 + 8);
  ra::cuda::AttentionParams p;
  p.q = p.k = p.v = p.o = buf.data();
  p.batch = 1, p.heads = 1, p.seq = 64, p.head_dim = 64, p.rank = 4;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = 64;
  p.scale = 0.125f;
  SECTION("unsupported head dim") {
    p.head_dim = 48;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("head dim D = 48") && Catch::Contains("32, 64, 80"));
  }
  SECTION("rank not below D") {
    p.head_dim = 32;
    p.rank = 32;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr), Catch::Contains("R = 32"));
  }
  SECTION("misaligned row stride") {
    p.k_row_stride = 67;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Catch::Contains("stride") && Catch::Contains("67"));
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
}

TEST_CASE("flash forward, a small set for compute-sanitizer", "[sanitize]") {
  // Run under memcheck and racecheck on the GPU machine (scripts/gpu_check.sh): every D and
  // dtype once, ragged T, all features on, both tensor-core paths.
  std::mt19937_64 rng(ra::test::seed() + 400);
  for (DType dtype : {DType::f16, DType::bf16, DType::f32})
    for (auto path : paths_for(dtype)) {
      PathScope scope(path);
      INFO("path " << path_name(path));
      for (int D : ra::SupportedHeadDims::values)
        for (int T : {7, 130}) {
          const int R = ra::SupportedRanks::contains(4) ? 4 : 0;
          run_and_check({dtype, 1, T, 2, D, R, GateMode::per_head, GateParam::clamp, true, false},
                        rng);
        }
    }
}

TEST_CASE("the wgmma path is present where it should be", "[flash][cuda]") {
  // scripts/gpu_check.sh builds for sm_90a and sets RA_TEST_EXPECT_WGMMA=1, so a Hopper run
  // cannot silently test mma.sync twice.
  cudaDeviceProp prop{};
  RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const bool has = wgmma_built();
  WARN("device sm_" << prop.major << prop.minor << ": wgmma forward path "
                    << (has ? "available" : "not available"));
  const char* expect = std::getenv("RA_TEST_EXPECT_WGMMA");
  if (expect != nullptr && std::string(expect) == "1") CHECK(has);
}
