// tests/cuda/test_gemm_training.cu — the training flags of GemmPlan (ra/cuda/gemm.cuh): dX = dY·W
// (w_kn) and dW = dYᵀ·X (a_km + w_kn; an fp32 dW for bf16 inputs, y_f32), each overwriting and
// accumulating (beta = 1); the GELU epilogues (gelu_aux: Y = gelu(X·Wᵀ + b) with the
// pre-activation in aux; dgelu: dX = (dY·W) ⊙ gelu'(aux)); the bias-gradient epilogue (dW and
// db = column sums of dY in one GEMM); and the validation of the flags. float and bf16, M = 37
// and 130 (not multiples of a tile); outputs poisoned with NaN first.
//
// Precision (tests/common/precision.hpp): error against the exact reference at most 2x the
// naive one's plus the floor, per element, per row of the output and in relative L2. Both from
// training_reference.hpp: exact in double; naive with fp32 sums taken sequentially over the
// reduced dimension, then the bias, then (accumulate) the previous output, rounded once to the
// output type — T for dX, aux, gelu(y) and dgelu(dX), fp32 for dW and db. Floors: a product's
// u_out·‖terms‖₂ (terms the products, the bias, the previous output) + acc·‖partial sums‖₂,
// the first-order error of the fp32 accumulation, with acc = u32 for fp32 inputs and 2·u32 for
// bf16 inputs, which tensor cores accumulate by truncation (accumulation_unit() says why; on
// an H200 the fp32 dW of bf16 inputs had 1.2-1.6x the naive's error, worst elements 2.3x the
// old floor without this term); gelu(y) u_T·(|gelu'(s)|·‖terms of s‖₂ + ½|s|·‖(1, t)‖₂), gelu
// applied to the unrounded fp32 sum s; dgelu u_T·(|gelu'(aux)|·‖terms of the product‖₂ +
// |product|·‖terms of gelu'(aux)‖₂), aux as the forward stored it.
//
// The fp32 GELU epilogues are ra's own GELU pass after the product (cuBLASLt's fp32 GELU is
// not the tanh form to fp32 accuracy: 14-17x the naive's error on an H200); bf16 keeps
// cuBLASLt's epilogue (ra/cuda/gemm.cuh).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ra/cuda.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::DType;
using ra::index_t;
using ra::test::as_double;
using ra::test::judge_output;
using ra::test::sz;

}  // namespace

TEMPLATE_TEST_CASE("training GemmPlan dX = dY·W and dW = dYᵀ·X, overwriting and accumulating",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t Nl = 96, Kl = 64;  // the layer: y (M,Nl) = x (M,Kl) · W (Nl,Kl)ᵀ
  const double acc_unit = ra::test::accumulation_unit<T>();  // fp32 accumulation's unit error
  const auto family = [&](const char* what) {
    return ra::test::training_family(std::string("gemm ") + what, dt);
  };
  std::uint64_t salt = 700;
  for (index_t M : {37, 130})
    for (bool acc : {false, true}) {
      INFO(ra::test::describe(dt, M, Kl) << " N=" << Nl << (acc ? " accumulate" : ""));
      auto g = ra::test::rng(++salt);
      const auto dy = ra::test::random_vector<T>(M * Nl, g);
      const auto w = ra::test::random_vector<T>(Nl * Kl, g, 1.f / std::sqrt(float(Nl)));
      const auto x = ra::test::random_vector<T>(M * Kl, g);
      auto dy_d = ra::test::to_device(dy);
      auto w_d = ra::test::to_device(w);
      auto x_d = ra::test::to_device(x);

      // dX (M,Kl) = dY (M,Nl) · W (Nl,Kl): W is stored (k,n).
      const auto dx0 = ra::test::random_vector<T>(M * Kl, g);
      auto dx_d = ra::test::to_device(dx0);
      if (!acc) ra::test::poison(dx_d.data(), dx_d.size());
      ra::cuda::GemmShape sx{M, Kl, Nl, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
      sx.w_kn = true;
      sx.accumulate = acc;
      const ra::cuda::GemmPlan px(ctx, sx, ws.data(), ra::cuda::kGemmWorkspaceBytes);
      px.run(dy_d.data(), w_d.data(), static_cast<const T*>(nullptr), dx_d.data(), stream);
      const auto dy64 = as_double(dy), w64 = as_double(w), x64 = as_double(x);
      const auto dy_ik = [&](index_t i, index_t k) { return dy64[sz(i * Nl + k)]; };
      const auto w_kj = [&](index_t k, index_t j) { return w64[sz(k * Kl + j)]; };
      const auto dx0_64 = acc ? as_double(dx0) : std::vector<double>{};
      RA_CHECK_PRECISION(judge_output(
          family("dX"), "dX", ra::test::to_host(dx_d.data(), M * Kl),
          ra::test::product_reference<float, T>(M, Kl, Nl, dy_ik, w_kj, {}, dx0_64, acc_unit),
          ra::test::product_reference<double, T>(M, Kl, Nl, dy_ik, w_kj, {}, dx0_64, acc_unit),
          Kl));

      // dW (Nl,Kl) = dYᵀ · X: dY stored (k,m) = (M,Nl), X stored (k,n) = (M,Kl); fp32 out.
      const auto dw0 = ra::test::random_vector<float>(Nl * Kl, g);
      auto dw_d = ra::test::to_device(dw0);
      if (!acc) ra::test::poison(dw_d.data(), dw_d.size());
      ra::cuda::GemmShape sw{Nl, Kl, M, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
      sw.a_km = true;
      sw.w_kn = true;
      sw.y_f32 = dt != DType::f32;
      sw.accumulate = acc;
      const ra::cuda::GemmPlan pw(ctx, sw, ws.data(), ra::cuda::kGemmWorkspaceBytes);
      pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr), dw_d.data(), stream);
      const auto dy_ni = [&](index_t n, index_t i) { return dy64[sz(i * Nl + n)]; };
      const auto x_ij = [&](index_t i, index_t j) { return x64[sz(i * Kl + j)]; };
      const auto dw0_64 = acc ? as_double(dw0) : std::vector<double>{};
      RA_CHECK_PRECISION(judge_output(
          family("dW"), "dW", ra::test::to_host(dw_d.data(), Nl * Kl),
          ra::test::product_reference<float, float>(Nl, Kl, M, dy_ni, x_ij, {}, dw0_64, acc_unit),
          ra::test::product_reference<double, float>(Nl, Kl, M, dy_ni, x_ij, {}, dw0_64, acc_unit),
          Kl));
      if (dt != DType::f32) {  // a y_f32 plan takes an fp32 Y only
        ra::cuda::DeviceBuffer<T> wrong(Nl * Kl);
        CHECK_THROWS_WITH(
            pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr), wrong.data(), stream),
            Catch::Contains("output element type"));
      }
      RA_CUDA_CHECK(cudaStreamSynchronize(stream));  // ws outlives the plans' work
    }
}

// The MLP's GELU in the GEMM epilogues (what the GPT-2 MLP uses): Y = gelu(X·Wᵀ + b) with the
// pre-activation in aux, then dX = (dY·W) ⊙ gelu'(aux), against the tanh-form GELU of the CPU
// model; cuBLASLt's epilogues for bf16, ra's GELU pass after the product for fp32. Compact and
// row-strided Y and aux (ldy, aux_ld > N): the padding between rows stays poisoned.
TEMPLATE_TEST_CASE("training GemmPlan GELU epilogues against the tanh-form GELU",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t M = 130, N = 256, K = 64;  // y (M,N) = x (M,K) · W (N,K)ᵀ + b
  auto g = ra::test::rng(0x6e1);
  const auto x = ra::test::random_vector<T>(M * K, g);
  const auto w = ra::test::random_vector<T>(N * K, g, 1.f / std::sqrt(float(K)));
  const auto b = ra::test::random_vector<T>(N, g, 0.5f);
  const auto dy = ra::test::random_vector<T>(M * K, g);
  const index_t pad = 16 / static_cast<index_t>(sizeof(T));  // keeps rows 16-byte aligned
  for (const auto& [ldy, aux_ld] : {std::pair<index_t, index_t>{N, N}, {N + pad, N + 8}}) {
    INFO("ldy=" << ldy << " aux_ld=" << aux_ld << " seed=" << ra::test::seed());
    ra::cuda::GemmShape f = ra::cuda::GemmShape::compact(M, N, K, dt, true);
    f.ldy = ldy;
    f.epilogue = ra::cuda::GemmEpilogue::gelu_aux;
    f.aux_ld = aux_ld;
    ra::cuda::GemmShape d{M, N, K, /*lda=*/K, /*ldw=*/N, ldy, dt, false};
    d.w_kn = true;  // dX (M,N) = dY (M,K) · W2 (K,N)
    d.epilogue = ra::cuda::GemmEpilogue::dgelu;
    d.aux_ld = aux_ld;
    // The epilogue's flags are validated before cuBLASLt is asked for an algorithm.
    auto bad = f;
    bad.aux_ld = N + 4;
    CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, bad, nullptr, 0), Catch::Contains("aux_ld"));
    bad = f;
    bad.accumulate = true;
    bad.bias = false;
    CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, bad, nullptr, 0), Catch::Contains("epilogue"));
    bad = d;
    bad.bias = true;
    CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, bad, nullptr, 0), Catch::Contains("bias"));
    ra::cuda::GemmPlan pf, pd;
    try {
      pf = ra::cuda::GemmPlan(ctx, f, ws.data(), ra::cuda::kGemmWorkspaceBytes);
      pd = ra::cuda::GemmPlan(ctx, d, ws.data(), ra::cuda::kGemmWorkspaceBytes);
    } catch (const ra::error& e) {
      REQUIRE(dt != DType::f32);  // fp32 plans need only cuBLASLt's plain and bias epilogues
      WARN("cuBLASLt has no GELU epilogue algorithm here (the model uses separate kernels): "
           << e.what());
      return;
    }
    auto x_d = ra::test::to_device(x);
    auto w_d = ra::test::to_device(w);
    auto b_d = ra::test::to_device(b);
    auto dy_d = ra::test::to_device(dy);
    ra::cuda::DeviceBuffer<T> y_d(M * ldy), aux_d(M * aux_ld), dx_d(M * ldy);
    ra::test::poison(y_d.data(), y_d.size());
    ra::test::poison(aux_d.data(), aux_d.size());
    ra::test::poison(dx_d.data(), dx_d.size());
    CHECK_THROWS_WITH(pf.run(x_d.data(), w_d.data(), b_d.data(), y_d.data(), stream),
                      Catch::Contains("run_with_aux"));
    pf.run_with_aux(x_d.data(), w_d.data(), b_d.data(), y_d.data(), aux_d.data(), stream);
    // The (M,N) part of a matrix with row stride ld; the padding must still be poison.
    const auto rows_of = [&](const T* p, index_t ld) {
      const auto all = ra::test::to_host(p, M * ld);
      std::vector<T> out;
      index_t touched = 0;
      for (index_t i = 0; i < M; ++i) {
        out.insert(out.end(), all.begin() + i * ld, all.begin() + i * ld + N);
        for (index_t j = N; j < ld; ++j) touched += !ra::test::is_poison(all[sz(i * ld + j)]);
      }
      CHECK(touched == 0);
      return out;
    };
    const auto family = [&](const char* what) {
      return ra::test::training_family(std::string("gemm ") + what, dt);
    };
    const auto x64 = as_double(x), w64 = as_double(w), b64 = as_double(b);
    const auto exact = ra::test::gelu_epilogue_reference<double, T>(x64, w64, b64, M, N, K);
    const auto naive = ra::test::gelu_epilogue_reference<float, T>(x64, w64, b64, M, N, K);
    const auto aux = rows_of(aux_d.data(), aux_ld);
    RA_CHECK_PRECISION(
        judge_output(family("gelu aux"), "aux (pre-activation)", aux, naive.aux, exact.aux, N));
    RA_CHECK_PRECISION(
        judge_output(family("gelu y"), "gelu(y)", rows_of(y_d.data(), ldy), naive.y, exact.y, N));
    // dX = (dY · W2) ⊙ gelu'(aux), W2 (K,N) = the first K·N values of w read as (K,N), aux as
    // the forward stored it.
    pd.run_with_aux(dy_d.data(), w_d.data(), nullptr, dx_d.data(), aux_d.data(), stream);
    const auto dy64 = as_double(dy), aux64 = as_double(aux);
    RA_CHECK_PRECISION(
        judge_output(family("dgelu dx"), "dgelu(dx)", rows_of(dx_d.data(), ldy),
                     ra::test::dgelu_epilogue_reference<float, T>(dy64, w64, aux64, M, N, K),
                     ra::test::dgelu_epilogue_reference<double, T>(dy64, w64, aux64, M, N, K), N));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

// The bias gradient in the epilogue of the weight-gradient product (what GPT-2's backward
// uses): dW (Nl,Kl) = dYᵀ·X and db (Nl) = column sums of dY from one GEMM.
TEMPLATE_TEST_CASE("training GemmPlan bias_grad epilogue gives dW and db in one GEMM",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  const DType dt = ra::dtype_v<T>;
  auto& ctx = ra::cuda::default_context();
  ra::test::Stream stream;
  ra::cuda::DeviceBuffer<std::byte> ws(static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes));
  const index_t M = 130, Nl = 96, Kl = 64;
  const double acc_unit = ra::test::accumulation_unit<T>();  // fp32 accumulation's unit error
  auto g = ra::test::rng(0x6e2);
  const auto dy = ra::test::random_vector<T>(M * Nl, g);
  const auto x = ra::test::random_vector<T>(M * Kl, g);
  ra::cuda::GemmShape sw{Nl, Kl, M, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
  sw.a_km = true;
  sw.w_kn = true;
  sw.y_f32 = dt != DType::f32;
  sw.epilogue = ra::cuda::GemmEpilogue::bias_grad;
  // The epilogue's flags are validated before cuBLASLt is asked for an algorithm.
  auto bad = sw;
  bad.a_km = false;
  bad.lda = M;  // A (M,K) row-major: lda >= K = M
  CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, bad, nullptr, 0), Catch::Contains("bias_grad"));
  bad = sw;
  bad.accumulate = true;
  CHECK_THROWS_WITH(ra::cuda::GemmPlan(ctx, bad, nullptr, 0), Catch::Contains("bias_grad"));
  ra::cuda::GemmPlan pw;
  try {
    pw = ra::cuda::GemmPlan(ctx, sw, ws.data(), ra::cuda::kGemmWorkspaceBytes);
  } catch (const ra::error& e) {
    WARN("cuBLASLt has no BGRADB algorithm here (the model uses column_sums): " << e.what());
    return;
  }
  auto dy_d = ra::test::to_device(dy);
  auto x_d = ra::test::to_device(x);
  ra::cuda::DeviceBuffer<float> dw_d(Nl * Kl), db_d(Nl);
  ra::test::poison(dw_d.data(), dw_d.size());
  ra::test::poison(db_d.data(), db_d.size());
  pw.run_with_aux(dy_d.data(), x_d.data(), nullptr, dw_d.data(), db_d.data(), stream);
  const auto family = [&](const char* what) {
    return ra::test::training_family(std::string("gemm ") + what, dt);
  };
  const auto dy64 = as_double(dy), x64 = as_double(x);
  const auto dy_ni = [&](index_t n, index_t i) { return dy64[sz(i * Nl + n)]; };
  const auto x_ij = [&](index_t i, index_t j) { return x64[sz(i * Kl + j)]; };
  const auto one = [](index_t, index_t) { return 1.0; };  // db (Nl,1) = dYᵀ · 1
  RA_CHECK_PRECISION(judge_output(
      family("bias_grad dW"), "dW", ra::test::to_host(dw_d.data(), Nl * Kl),
      ra::test::product_reference<float, float>(Nl, Kl, M, dy_ni, x_ij, {}, {}, acc_unit),
      ra::test::product_reference<double, float>(Nl, Kl, M, dy_ni, x_ij, {}, {}, acc_unit), Kl));
  RA_CHECK_PRECISION(judge_output(
      family("bias_grad db"), "db", ra::test::to_host(db_d.data(), Nl),
      ra::test::product_reference<float, float>(Nl, 1, M, dy_ni, one, {}, {}, acc_unit),
      ra::test::product_reference<double, float>(Nl, 1, M, dy_ni, one, {}, {}, acc_unit), Nl));
  CHECK_THROWS_WITH(pw.run(dy_d.data(), x_d.data(), nullptr, dw_d.data(), stream),
                    Catch::Contains("run_with_aux"));
  RA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

TEST_CASE("training GemmPlan rejects bad training flags", "[cuda][training][gemm][errors]") {
  const auto& ctx = ra::cuda::default_context();
  using ra::cuda::GemmPlan;
  using ra::cuda::GemmShape;
  // ldw >= K would do for W (N,K); W stored (K,N) needs ldw >= N.
  auto s = GemmShape::compact(16, 128, 64, DType::bf16, false);
  s.w_kn = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0),
                    Catch::Contains("ldw") && Catch::Contains("N = 128"));
  // A stored (K,M) needs lda >= M.
  s = GemmShape::compact(128, 32, 64, DType::bf16, false);
  s.a_km = true;
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0),
                    Catch::Contains("lda") && Catch::Contains("M = 128"));
  // y_f32 is for 16-bit inputs.
  s = GemmShape::compact(16, 32, 64, DType::f32, false);
  s.y_f32 = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("y_f32"));
  // The bias epilogue is for forward products: neither with y_f32 nor with accumulate.
  s = GemmShape::compact(16, 32, 64, DType::bf16, true);
  s.y_f32 = true;
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("bias"));
  s.y_f32 = false;
  s.accumulate = true;
  CHECK_THROWS_AS(GemmPlan(ctx, s, nullptr, 0), ra::error);
  CHECK_THROWS_WITH(GemmPlan(ctx, s, nullptr, 0), Catch::Contains("bias"));
}
