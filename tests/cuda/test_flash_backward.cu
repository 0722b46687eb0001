// tests/cuda/test_flash_backward.cu — the attention backward kernels against the CPU backend.
//
// Fresh random Qf, Kf, V (one fused (B,T,3C) buffer) and dO'; the GPU forward supplies O' and
// lse as in training; the GPU backward writes dQf, dKf, dV into a (B,T,3C) gradient buffer
// poisoned with NaN, through folded views. Parameter gradients (gates, restart) are checked
// against the CPU's, relative to the magnitude of the terms they sum.
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
#include <ra/cuda/flash_backward.cuh>

#include "cuda_test_utils.cuh"
#include "flash_reference.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::index_t;

struct Case {
  DType dtype;
  int B, T, H, D, R;
  GateMode gates;
  GateParam param;
  bool restart;
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << c.dtype << " B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " R=" << c.R
     << " gates=" << c.gates << "/" << c.param << " restart=" << c.restart
     << " seed=" << ra::test::seed();
  return os.str();
}

struct Outputs {
  std::vector<double> dfused;  // as double, from the element type
  std::vector<float> d_w_std, d_w_rec, d_a;
};

template <class T>
Outputs run_gpu(const Case& c, const ra::test::FoldedProblem& pb, const std::vector<T>& fused_h,
                const std::vector<T>& dout_h) {
  const index_t B = c.B, T_ = c.T, H = c.H, D = c.D, C = H * D;
  const auto n_gates = static_cast<index_t>(pb.w_std.size());
  const auto fused = ra::test::to_device(fused_h), dout = ra::test::to_device(dout_h);
  const auto w_std = ra::test::to_device(pb.w_std), w_rec = ra::test::to_device(pb.w_rec),
             a = ra::test::to_device(pb.a);
  ra::cuda::DeviceBuffer<T> out(B * T_ * C), dfused(B * T_ * 3 * C);
  ra::cuda::DeviceBuffer<float> lse(B * H * T_), dw_std(n_gates), dw_rec(n_gates), da(H),
      ws(ra::cuda::backward_workspace_floats(B, H, T_));
  for (auto* buf : {&dw_std, &dw_rec, &da, &ws}) ra::test::poison(buf->data(), buf->size());
  ra::test::poison(dfused.data(), dfused.size());

  auto qkv = ra::folded_views(ra::make_view(fused.data(), ra::shape(B, T_, 3 * C)), H, D);
  auto grads = ra::folded_views(ra::make_view(dfused.data(), ra::shape(B, T_, 3 * C)), H, D);
  auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T_, C)), H, D);
  auto d_o = ra::heads(ra::make_view(dout.data(), ra::shape(B, T_, C)), H, D);
  ra::Gates g{c.gates, c.param, w_std.data(), w_rec.data()};
  ra::Restart r{c.restart ? a.data() : nullptr};
  auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, c.R, g, ra::causal, r);
  ra::cuda::attention_forward(ra::cuda::make_params(node, o, lse.data()), nullptr);
  ra::cuda::attention_backward(
      ra::cuda::make_backward_params(node, o, lse.data(), d_o, grads.q, grads.k, grads.v,
                                     dw_std.data(), dw_rec.data(), c.restart ? da.data() : nullptr,
                                     ws.data()),
      nullptr);
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<T> got(dfused.size());
  RA_CUDA_CHECK(cudaMemcpy(got.data(), dfused.data(), dfused.bytes(), cudaMemcpyDeviceToHost));
  Outputs res;
  res.dfused.resize(got.size());
  for (std::size_t i = 0; i < got.size(); ++i) res.dfused[i] = static_cast<float>(got[i]);
  res.d_w_std.resize(n_gates);
  res.d_w_rec.resize(n_gates);
  res.d_a.resize(H);
  RA_CUDA_CHECK(cudaMemcpy(res.d_w_std.data(), dw_std.data(), n_gates * 4, cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaMemcpy(res.d_w_rec.data(), dw_rec.data(), n_gates * 4, cudaMemcpyDeviceToHost));
  RA_CUDA_CHECK(cudaMemcpy(res.d_a.data(), da.data(), H * 4, cudaMemcpyDeviceToHost));
  return res;
}

// Relative Frobenius error of one third of the (B,T,3C) gradient (0 = dQf, 1 = dKf, 2 = dV).
double part_error(const std::vector<double>& got, const std::vector<double>& ref, index_t C,
                  int part, bool& finite, std::size_t& worst) {
  double num = 0, den = 0, worst_d = -1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if ((static_cast<index_t>(i) % (3 * C)) / C != part) continue;
    if (!std::isfinite(got[i])) finite = false;
    const double d = std::abs(got[i] - ref[i]);
    if (!(d <= worst_d)) {
      worst_d = std::isfinite(d) ? d : INFINITY;
      worst = i;
    }
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

template <class T>
void run_case(const Case& c, std::mt19937_64& rng) {
  const index_t B = c.B, T_ = c.T, H = c.H, D = c.D, C = H * D;
  auto fused = ra::test::random_vector<T>(B * T_ * 3 * C, rng);
  auto dout = ra::test::random_vector<T>(B * T_ * C, rng);
  ra::test::FoldedProblem pb;
  pb.dtype = c.dtype;
  pb.batch = c.B, pb.seq = c.T, pb.heads = c.H, pb.head_dim = c.D, pb.rank = c.R;
  pb.gate_mode = c.gates;
  pb.gate_param = c.param;
  ra::test::randomize_parameters(pb, c.restart, rng);
  const int n_gates = static_cast<int>(pb.w_std.size());
  pb.fused = fused.data();
  ra::test::ReferenceGrads ref;
  ra::test::reference_folded_attention_backward(pb, dout.data(), ref);
  const Outputs got = run_gpu<T>(c, pb, fused, dout);

  const double u = ra::unit_roundoff(c.dtype);
  const double tol_rel = std::max(8 * u, 2e-5);
  INFO(describe(c));
  const char* names[3] = {"dQf", "dKf", "dV"};
  for (int part = 0; part < 3; ++part) {
    bool finite = true;
    std::size_t worst = 0;
    const double err = part_error(got.dfused, ref.dfused, C, part, finite, worst);
    INFO(names[part] << ": relative error " << err << ", worst element at flat index " << worst
                     << " (B,T,3C): got " << got.dfused[worst] << ", want " << ref.dfused[worst]);
    CHECK(finite);
    CHECK(err <= tol_rel);
  }
  // Parameter gradients: a float sum of many terms, judged against the sum of |terms|, with
  // a floor for sums whose exact value is 0 (T = 1: dS = P (dP - Δ) vanishes) but whose
  // float terms carry the rounding of O' and V.
  const double tol_sum = std::max(8 * u, 1e-5);
  const double floor = 8 * u * std::sqrt(static_cast<double>(B * H * T_ * D)) + 1e-6;
  if (c.gates != GateMode::none) {
    for (int i = 0; i < n_gates; ++i) {
      INFO("d w_std[" << i << "] got " << got.d_w_std[i] << " want " << ref.d_w_std[i]
                      << " (sum of |terms| " << ref.w_std_l1[i] << ")");
      CHECK(std::abs(got.d_w_std[i] - ref.d_w_std[i]) <= tol_sum * ref.w_std_l1[i] + floor);
      INFO("d w_rec[" << i << "] got " << got.d_w_rec[i] << " want " << ref.d_w_rec[i]
                      << " (sum of |terms| " << ref.w_rec_l1[i] << ")");
      CHECK(std::abs(got.d_w_rec[i] - ref.d_w_rec[i]) <= tol_sum * ref.w_rec_l1[i] + floor);
    }
  }
  if (c.restart) {
    for (int h = 0; h < c.H; ++h) {
      INFO("d a[" << h << "] got " << got.d_a[h] << " want " << ref.d_a[h] << " (sum of |terms| "
                  << ref.a_l1[h] << ")");
      CHECK(std::abs(got.d_a[h] - ref.d_a[h]) <= tol_sum * ref.a_l1[h] + floor);
    }
  }
}

void run_and_check(const Case& c, std::mt19937_64& rng) {
  switch (c.dtype) {
    case DType::f16:
      run_case<ra::fp16>(c, rng);
      break;
    case DType::bf16:
      run_case<ra::bf16>(c, rng);
      break;
    case DType::f32:
      run_case<float>(c, rng);
      break;
  }
}

}  // namespace

TEST_CASE("flash backward matches the CPU backend over the (D, R) matrix",
          "[flash_backward][cuda]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  std::mt19937_64 rng(ra::test::seed() + 10 + static_cast<int>(dtype));
  for (int D : ra::SupportedHeadDims::values)
    for (int R : ra::SupportedRanks::values) {
      if (R >= D) continue;
      for (GateMode gm : {GateMode::none, GateMode::per_layer, GateMode::per_head})
        for (bool restart : {false, true})
          for (int T : {1, 7, 130})
            run_and_check({dtype, 2, T, 3, D, R, gm,
                           T == 7 ? GateParam::softplus : GateParam::clamp, restart},
                          rng);
    }
}

TEST_CASE("flash backward at long ragged T", "[flash_backward][cuda][long]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  std::mt19937_64 rng(ra::test::seed() + 20 + static_cast<int>(dtype));
  for (int D : ra::SupportedHeadDims::values)
    for (int T : {1000, 1025})
      run_and_check({dtype, 1, T, 2, D, ra::SupportedRanks::contains(4) ? 4 : 0,
                     GateMode::per_layer, GateParam::clamp, true},
                    rng);
}

TEST_CASE("flash backward is deterministic", "[flash_backward][cuda]") {
  const Case c{DType::bf16,
               2,
               300,
               2,
               64,
               ra::SupportedRanks::contains(4) ? 4 : 0,
               GateMode::per_head,
               GateParam::clamp,
               true};
  std::mt19937_64 rng(ra::test::seed() + 30);
  auto fused = ra::test::random_vector<ra::bf16>(2 * 300 * 3 * 128, rng);
  auto dout = ra::test::random_vector<ra::bf16>(2 * 300 * 128, rng);
  ra::test::FoldedProblem pb;
  pb.dtype = c.dtype;
  pb.batch = c.B, pb.seq = c.T, pb.heads = c.H, pb.head_dim = c.D, pb.rank = c.R;
  pb.gate_mode = c.gates;
  pb.w_std = {0.7f, 1.1f};
  pb.w_rec = {0.2f, 0.4f};
  pb.a = {0.1f, 0.3f};
  const Outputs first = run_gpu<ra::bf16>(c, pb, fused, dout);
  const Outputs second = run_gpu<ra::bf16>(c, pb, fused, dout);
  CHECK(first.dfused == second.dfused);
  CHECK(first.d_w_std == second.d_w_std);
  CHECK(first.d_w_rec == second.d_w_rec);
  CHECK(first.d_a == second.d_a);
}

TEST_CASE("attention_backward rejects bad parameters with a clear error",
          "[flash_backward][cuda]") {
  ra::cuda::DeviceBuffer<ra::fp16> buf(4 * 64 * 64);
  ra::cuda::DeviceBuffer<float> lse(64), ws(ra::cuda::backward_workspace_floats(1, 1, 64));
  ra::cuda::AttentionBackwardParams p;
  p.fwd.q = p.fwd.k = p.fwd.v = p.fwd.o = buf.data();
  p.fwd.lse = lse.data();
  p.fwd.batch = 1, p.fwd.heads = 1, p.fwd.seq = 64, p.fwd.head_dim = 64, p.fwd.rank = 4;
  p.fwd.q_row_stride = p.fwd.k_row_stride = p.fwd.v_row_stride = p.fwd.o_row_stride = 64;
  p.d_out = p.dq = p.dk = p.dv = buf.data();
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
  SECTION("misaligned gradient stride") {
    p.dk_row_stride = 65;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr),
                        Catch::Contains("gradient stride") && Catch::Contains("65"));
  }
  SECTION("unsupported rank") {
    p.fwd.rank = 3;
    REQUIRE_THROWS_WITH(ra::cuda::attention_backward(p, nullptr), Catch::Contains("R = 3"));
  }
}

TEST_CASE("flash backward, a small set for compute-sanitizer", "[sanitize]") {
  std::mt19937_64 rng(ra::test::seed() + 40);
  for (DType dtype : {DType::f16, DType::bf16, DType::f32})
    for (int D : ra::SupportedHeadDims::values)
      run_and_check({dtype, 1, 70, 2, D, ra::SupportedRanks::contains(4) ? 4 : 0,
                     GateMode::per_head, GateParam::clamp, true},
                    rng);
}
