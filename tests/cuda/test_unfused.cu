// tests/cuda/test_unfused.cu — the unfused attention path (materialised scores, causal CUB
// softmax, cuBLAS batched GEMMs) against the CPU backend in double, by the precision rule
// (tests/common/precision.hpp).
//
// Every supported (D, R) pair, fp32 / fp16 / bf16, gates none / per-layer / per-head (clamp
// and softplus), self-restart off and on, at T = 1 and 7; then T = 1000 and 1025 with (D, R)
// cycling through the supported pairs. Qf, Kf, V are read in place from a fused (B,T,3C)
// buffer; O' goes into a (B,T,C) view with padded rows, poisoned with NaN first: every element
// of the view must be written and the padding must keep its poison. One plan per dtype, sized
// for the largest case, serves every case (runs below the planned maximum).
//
// Precision: O' and lse against the double reference, at most 2x the error of the naive
// attention of tests/common/same_precision_attention.hpp (fp32 sums; Q̂, P, O and O' rounded
// to the element type, as this path stores them; lse in fp32) plus its floors: u·‖terms‖₂ for
// O' (u of the element type; terms p_ij·v_jd, mixed by (1 − α) and α·v_id), and
// 16·u_fp32·(1 + max |logit| of the row) for lse; per element, per row (a head's D values of
// one token; lse: one value) and in relative L2.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <ra/cuda.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "reference.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::index_t;

struct UnfusedCase {
  DType dtype;
  index_t B, T, H, D;
  int R;
  GateMode gates;
  GateParam param;
  bool restart;
};

std::string describe(const UnfusedCase& c) {
  std::ostringstream os;
  os << c.dtype << " B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " R=" << c.R
     << " gates=" << c.gates << "/" << c.param << " restart=" << c.restart
     << " seed=" << ra::test::seed();
  return os.str();
}

struct GateConfig {
  GateMode mode;
  GateParam param;
};
constexpr GateConfig kGateConfigs[] = {{GateMode::none, GateParam::clamp},
                                       {GateMode::per_layer, GateParam::clamp},
                                       {GateMode::per_head, GateParam::clamp},
                                       {GateMode::per_layer, GateParam::softplus},
                                       {GateMode::per_head, GateParam::softplus}};

constexpr DType kDTypes[] = {DType::f32, DType::f16, DType::bf16};

// Padding of each O row: 8 elements keep rows 16-byte aligned for every element type.
constexpr index_t kPad = 8;

// Largest case of the tests below: every plan is made for it.
ra::cuda::UnfusedShape max_shape(DType t) {
  return {3, 2, 1025, 128, t};
}

template <class T>
void run_case(const ra::cuda::UnfusedAttention& plan, cudaStream_t stream, const UnfusedCase& c,
              std::uint64_t salt) {
  INFO(describe(c));
  const index_t B = c.B, T_ = c.T, H = c.H, D = c.D, C = H * D, Cp = C + kPad;
  auto g = ra::test::rng(salt);

  ra::test::AttentionProblem pb;
  pb.dtype = c.dtype;
  pb.B = B;
  pb.T = T_;
  pb.H = H;
  pb.D = D;
  pb.R = c.R;
  pb.gates = c.gates;
  pb.param = c.param;
  const auto fused = ra::test::random_vector<T>(B * T_ * 3 * C, g);
  pb.fused = fused.data();
  if (c.gates != GateMode::none) {
    const index_t n = c.gates == GateMode::per_head ? H : 1;
    // Clamp: some raw values below the floor; softplus: both signs.
    const float lo = c.param == GateParam::clamp ? -0.2f : -2.f;
    const float hi = c.param == GateParam::clamp ? 1.5f : 2.f;
    pb.w_std = ra::test::uniform_floats(n, g, lo, hi);
    pb.w_rec = ra::test::uniform_floats(n, g, lo, hi);
  }
  if (c.restart) pb.a = ra::test::uniform_floats(H, g, -0.1f, 0.6f);  // clamps at both ends

  auto fused_d = ra::test::to_device(fused);
  auto w_std_d = ra::test::to_device(pb.w_std);
  auto w_rec_d = ra::test::to_device(pb.w_rec);
  auto a_d = ra::test::to_device(pb.a);
  ra::cuda::DeviceBuffer<T> o_d(B * T_ * Cp);
  ra::cuda::DeviceBuffer<float> lse_d(B * H * T_);
  ra::test::poison(o_d.data(), o_d.size());
  ra::test::poison(lse_d.data(), lse_d.size());

  const auto fv = ra::make_view(static_cast<const T*>(fused_d.data()),
                                ra::shape(B, T_, 3 * C));  // (B,T,3C) strides (3TC,3C,1)
  const auto qkv = ra::folded_views(fv, H, D);             // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto ov = ra::make_view(o_d.data(), ra::shape(B, T_, C),
                                {T_ * Cp, Cp, 1});  // (B,T,C) strides (T·Cp,Cp,1)
  const auto oh = ra::heads(ov, H, D);              // (B,H,T,D) strides (T·Cp,D,Cp,1)
  const ra::Gates gates{c.gates, c.param, w_std_d.data(), w_rec_d.data()};
  const ra::Restart restart{c.restart ? a_d.data() : nullptr};
  const auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, c.R, gates, ra::causal, restart);
  plan.run(ra::cuda::make_params(node, oh, lse_d.data()), stream);

  const auto o_all = ra::test::to_host(o_d.data(), o_d.size());
  const auto lse = ra::test::to_host(lse_d.data(), lse_d.size());
  std::vector<double> o;  // (B,T,C) compact
  index_t padding = 0, untouched = 0;
  for (index_t r = 0; r < B * T_; ++r)
    for (index_t j = 0; j < Cp; ++j) {
      const T& v = o_all[static_cast<std::size_t>(r * Cp + j)];
      if (j < C) {
        o.push_back(ra::convert<double>(v));
      } else {
        ++padding;
        untouched += ra::test::is_poison(v) ? 1 : 0;
      }
    }
  CHECK(untouched == padding);

  std::vector<double> o_ref, lse_ref;
  ra::test::reference_attention(pb, o_ref, lse_ref);
  ra::test::Naive o_naive, lse_naive;
  ra::test::naive_attention(pb, o_naive, lse_naive);
  const std::vector<double> lse_out(lse.begin(), lse.end());
  std::ostringstream family;
  family << "unfused " << c.dtype;
  RA_CHECK_PRECISION(
      ra::test::judge(family.str() + " O'", "O'", o, o_naive.values, o_ref, o_naive.floor, D));
  RA_CHECK_PRECISION(ra::test::judge(family.str() + " lse", "lse", lse_out, lse_naive.values,
                                     lse_ref, lse_naive.floor, 1));
}

void run_case(const ra::cuda::UnfusedAttention& plan, cudaStream_t stream, const UnfusedCase& c,
              std::uint64_t salt) {
  ra::dispatch_dtype(
      c.dtype, [&](auto tag) { run_case<typename decltype(tag)::type>(plan, stream, c, salt); });
}

}  // namespace

TEST_CASE("unfused attention matches the CPU reference for every (D, R), dtype and gate mode",
          "[cuda][unfused]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const auto dims = ra::test::values(ra::SupportedHeadDims{});
  const auto ranks = ra::test::values(ra::SupportedRanks{});
  std::uint64_t salt = 1000;
  for (DType t : kDTypes) {
    const ra::cuda::UnfusedAttention plan(ctx, max_shape(t));
    for (int D : dims)
      for (int R : ranks) {
        if (R >= D) continue;
        for (const auto& gc : kGateConfigs)
          for (bool restart : {false, true})
            for (index_t T_ : {1, 7})
              run_case(plan, stream, {t, 2, T_, 2, D, R, gc.mode, gc.param, restart}, ++salt);
      }
  }
}

TEST_CASE("unfused attention matches the CPU reference at T = 1000 and 1025",
          "[cuda][unfused][long]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  std::vector<std::pair<int, int>> pairs;
  for (int D : ra::test::values(ra::SupportedHeadDims{}))
    for (int R : ra::test::values(ra::SupportedRanks{}))
      if (R < D) pairs.emplace_back(D, R);
  std::uint64_t salt = 2000;
  std::size_t next_pair = 0;
  for (DType t : kDTypes) {
    const ra::cuda::UnfusedAttention plan(ctx, max_shape(t));
    for (index_t T_ : {1000, 1025})
      for (const auto& gc : kGateConfigs)
        for (bool restart : {false, true}) {
          const auto [D, R] = pairs[next_pair++ % pairs.size()];
          const index_t B = T_ == 1000 ? 1 : 3;  // B = 3 (the planned maximum) at T = 1025
          run_case(plan, stream, {t, B, T_, 2, D, R, gc.mode, gc.param, restart}, ++salt);
        }
  }
}

TEST_CASE("UnfusedAttention allocates once when planned and never when run",
          "[cuda][unfused][alloc]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const index_t B = 2, H = 2, T_ = 64, D = 64, C = H * D;
  const auto before = ra::cuda::allocation_count();
  const ra::cuda::UnfusedAttention plan(ctx, {B, H, T_, D, DType::bf16});
  CHECK(ra::cuda::allocation_count() == before + 1);
  CHECK(plan.device_bytes() > 0);

  ra::cuda::DeviceBuffer<ra::bf16> fused(B * T_ * 3 * C), o(B * T_ * C);
  ra::test::poison(fused.data(), fused.size());  // values do not matter here
  const auto fv = ra::make_view(static_cast<const ra::bf16*>(fused.data()),
                                ra::shape(B, T_, 3 * C));  // (B,T,3C)
  const auto qkv = ra::folded_views(fv, H, D);             // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto oh = ra::heads(ra::make_view(o.data(), ra::shape(B, T_, C)), H, D);  // (TC,D,C,1)
  const auto p = ra::cuda::make_params(ra::folded_attention(qkv.q, qkv.k, qkv.v, 4), oh, nullptr);
  plan.run(p, stream);  // warm-up: lazy module loading, cuBLAS initialisation
  const auto count = ra::cuda::allocation_count();
  const auto free_bytes = ra::test::free_device_bytes();
  for (int i = 0; i < 3; ++i) plan.run(p, stream);
  CHECK(ra::test::free_device_bytes() == free_bytes);
  CHECK(ra::cuda::allocation_count() == count);
}

TEST_CASE("UnfusedAttention rejects problems outside its plan", "[cuda][unfused][errors]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const index_t B = 2, H = 2, T_ = 16, D = 64, C = H * D;
  const ra::cuda::UnfusedAttention plan(ctx, {B, H, T_, D, DType::f16});
  ra::cuda::DeviceBuffer<ra::fp16> fused(3 * B * T_ * 3 * C), o(3 * B * T_ * C);
  const auto params = [&](index_t b, index_t t) {
    const auto fv = ra::make_view(static_cast<const ra::fp16*>(fused.data()),
                                  ra::shape(b, t, 3 * C));  // (B,T,3C)
    const auto qkv = ra::folded_views(fv, H, D);            // 3 x (B,H,T,D)
    const auto oh = ra::heads(ra::make_view(o.data(), ra::shape(b, t, C)), H, D);
    return ra::cuda::make_params(ra::folded_attention(qkv.q, qkv.k, qkv.v, 0), oh, nullptr);
  };
  CHECK_THROWS_WITH(plan.run(params(B + 1, T_), stream), Catch::Contains("'batch'"));
  CHECK_THROWS_WITH(plan.run(params(B, T_ + 1), stream), Catch::Contains("'seq'"));
  auto p = params(B, T_);
  p.dtype = DType::bf16;
  CHECK_THROWS_WITH(plan.run(p, stream), Catch::Contains("'dtype'"));
  p = params(B, T_);
  p.k_row_stride = D - 8;
  CHECK_THROWS_WITH(plan.run(p, stream), Catch::Contains("k_row_stride"));
  p = params(B, T_);
  p.rank = static_cast<int>(D);
  CHECK_THROWS_WITH(plan.run(p, stream), Catch::Contains("'R' is 64"));
  p = params(B, T_);
  p.o = const_cast<ra::fp16*>(fused.data());  // O over Qf
  CHECK_THROWS_WITH(plan.run(p, stream), Catch::Contains("output 'O' overlaps input 'Qf'"));
  CHECK_THROWS_WITH(ra::cuda::UnfusedAttention(ctx, {0, H, T_, D, DType::f16}),
                    Catch::Contains("max batch"));
  CHECK_NOTHROW(plan.run(params(0, T_), stream));  // empty problems run nothing
}
