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
// u_out·‖terms‖₂ (terms the products, the bias, the previous output); gelu(y)
// u_T·(|gelu'(s)|·‖terms of s‖₂ + ½|s|·‖(1, t)‖₂), gelu applied to the unrounded fp32 sum s;
// dgelu u_T·(|gelu'(aux)|·‖terms of the product‖₂ + |product|·‖terms of gelu'(aux)‖₂), aux as
// the forward stored it.
//
// Unsure on the device: bf16 products accumulate on tensor cores, whose fp32 accumulation may
// truncate rather than round; the fp32 dW and db of bf16 inputs (no final rounding to bf16 to
// hide it) show that against the naive's round-to-nearest fp32 sums. cuBLASLt's GELU epilogue
// may use an approximate tanh; in fp32 that would show against the naive's std::tanh.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <ra/cuda.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::DType;
using ra::index_t;
using ra::test::as_double;
using ra::test::judge_output;
using ra::test::sz;

// What every GemmPlan case here sets up: TrainingCase's (family "training gemm <what>"), the
// process-wide cuBLAS context and one GEMM workspace, which outlives the plans' work (each
// case synchronises its stream last).
template <class T>
struct GemmCase : ra::test::TrainingCase<T> {
  explicit GemmCase(std::uint64_t salt_base) : ra::test::TrainingCase<T>("gemm", salt_base) {}

  const ra::cuda::Context& ctx = ra::cuda::default_context();
  ra::cuda::DeviceBuffer<std::byte> ws{static_cast<index_t>(ra::cuda::kGemmWorkspaceBytes)};

  /// A plan for s over this case's workspace.
  ra::cuda::GemmPlan plan(const ra::cuda::GemmShape& s) const {
    return ra::cuda::GemmPlan(ctx, s, ws.data(), ra::cuda::kGemmWorkspaceBytes);
  }
};

}  // namespace

TEMPLATE_TEST_CASE("training GemmPlan dX = dY·W and dW = dYᵀ·X, overwriting and accumulating",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  GemmCase<T> tc(700);
  const DType dt = tc.dtype;
  const index_t Nl = 96, Kl = 64;  // the layer: y (M,Nl) = x (M,Kl) · W (Nl,Kl)ᵀ
  for (index_t M : {37, 130})
    for (bool acc : {false, true}) {
      INFO(ra::test::describe(dt, M, Kl) << " N=" << Nl << (acc ? " accumulate" : ""));
      auto g = tc.next_rng();
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
      const auto px = tc.plan(sx);
      px.run(dy_d.data(), w_d.data(), static_cast<const T*>(nullptr), dx_d.data(), tc.stream);
      const auto dy64 = as_double(dy), w64 = as_double(w), x64 = as_double(x);
      const auto dy_ik = [&](index_t i, index_t k) { return dy64[sz(i * Nl + k)]; };
      const auto w_kj = [&](index_t k, index_t j) { return w64[sz(k * Kl + j)]; };
      const auto dx0_64 = acc ? as_double(dx0) : std::vector<double>{};
      RA_CHECK_PRECISION(tc.judge(
          "dX", dx_d, ra::test::product_reference<float, T>(M, Kl, Nl, dy_ik, w_kj, {}, dx0_64),
          ra::test::product_reference<double, T>(M, Kl, Nl, dy_ik, w_kj, {}, dx0_64), Kl));

      // dW (Nl,Kl) = dYᵀ · X: dY stored (k,m) = (M,Nl), X stored (k,n) = (M,Kl); fp32 out.
      const auto dw0 = ra::test::random_vector<float>(Nl * Kl, g);
      auto dw_d = ra::test::to_device(dw0);
      if (!acc) ra::test::poison(dw_d.data(), dw_d.size());
      ra::cuda::GemmShape sw{Nl, Kl, M, /*lda=*/Nl, /*ldw=*/Kl, /*ldy=*/Kl, dt, false};
      sw.a_km = true;
      sw.w_kn = true;
      sw.y_f32 = dt != DType::f32;
      sw.accumulate = acc;
      const auto pw = tc.plan(sw);
      pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr), dw_d.data(), tc.stream);
      const auto dy_ni = [&](index_t n, index_t i) { return dy64[sz(i * Nl + n)]; };
      const auto x_ij = [&](index_t i, index_t j) { return x64[sz(i * Kl + j)]; };
      const auto dw0_64 = acc ? as_double(dw0) : std::vector<double>{};
      RA_CHECK_PRECISION(tc.judge(
          "dW", dw_d, ra::test::product_reference<float, float>(Nl, Kl, M, dy_ni, x_ij, {}, dw0_64),
          ra::test::product_reference<double, float>(Nl, Kl, M, dy_ni, x_ij, {}, dw0_64), Kl));
      if (dt != DType::f32) {  // a y_f32 plan takes an fp32 Y only
        ra::cuda::DeviceBuffer<T> wrong(Nl * Kl);
        CHECK_THROWS_WITH(pw.run(dy_d.data(), x_d.data(), static_cast<const T*>(nullptr),
                                 wrong.data(), tc.stream),
                          Catch::Contains("output element type"));
      }
      RA_CUDA_CHECK(cudaStreamSynchronize(tc.stream));  // ws outlives the plans' work
    }
}

// The MLP's GELU in cuBLASLt's epilogues (what the bf16 GPT-2 uses): Y = gelu(X·Wᵀ + b) with
// the pre-activation in aux, then dX = (dY·W) ⊙ gelu'(aux), against the tanh-form GELU of
// the CPU model.
TEMPLATE_TEST_CASE("training GemmPlan GELU epilogues against the tanh-form GELU",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  GemmCase<T> tc(0x6e0);
  const DType dt = tc.dtype;
  const auto& ctx = tc.ctx;
  const index_t M = 130, N = 256, K = 64;  // y (M,N) = x (M,K) · W (N,K)ᵀ + b
  auto g = tc.next_rng();
  const auto x = ra::test::random_vector<T>(M * K, g);
  const auto w = ra::test::random_vector<T>(N * K, g, 1.f / std::sqrt(float(K)));
  const auto b = ra::test::random_vector<T>(N, g, 0.5f);
  const auto dy = ra::test::random_vector<T>(M * K, g);
  ra::cuda::GemmShape f = ra::cuda::GemmShape::compact(M, N, K, dt, true);
  f.epilogue = ra::cuda::GemmEpilogue::gelu_aux;
  f.aux_ld = N;
  ra::cuda::GemmShape d{M, N, K, /*lda=*/K, /*ldw=*/N, /*ldy=*/N, dt, false};
  d.w_kn = true;  // dX (M,N) = dY (M,K) · W2 (K,N)
  d.epilogue = ra::cuda::GemmEpilogue::dgelu;
  d.aux_ld = N;
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
    pf = tc.plan(f);
    pd = tc.plan(d);
  } catch (const ra::error& e) {
    WARN("cuBLASLt has no GELU epilogue algorithm here (the model uses separate kernels): "
         << e.what());
    return;
  }
  auto x_d = ra::test::to_device(x);
  auto w_d = ra::test::to_device(w);
  auto b_d = ra::test::to_device(b);
  auto dy_d = ra::test::to_device(dy);
  auto y_d = ra::test::poisoned<T>(M * N), aux_d = ra::test::poisoned<T>(M * N),
       dx_d = ra::test::poisoned<T>(M * N);
  CHECK_THROWS_WITH(pf.run(x_d.data(), w_d.data(), b_d.data(), y_d.data(), tc.stream),
                    Catch::Contains("run_with_aux"));
  pf.run_with_aux(x_d.data(), w_d.data(), b_d.data(), y_d.data(), aux_d.data(), tc.stream);
  const auto x64 = as_double(x), w64 = as_double(w), b64 = as_double(b);
  const auto exact = ra::test::gelu_epilogue_reference<double, T>(x64, w64, b64, M, N, K);
  const auto naive = ra::test::gelu_epilogue_reference<float, T>(x64, w64, b64, M, N, K);
  const auto aux = ra::test::to_host(aux_d.data(), M * N);
  RA_CHECK_PRECISION(
      judge_output(tc.family("gelu aux"), "aux (pre-activation)", aux, naive.aux, exact.aux, N));
  RA_CHECK_PRECISION(judge_output(tc.family("gelu y"), "gelu(y)",
                                  ra::test::to_host(y_d.data(), M * N), naive.y, exact.y, N));
  // dX = (dY · W2) ⊙ gelu'(aux), W2 (K,N) = the first K·N values of w read as (K,N), aux as
  // the forward stored it.
  pd.run_with_aux(dy_d.data(), w_d.data(), nullptr, dx_d.data(), aux_d.data(), tc.stream);
  const auto dy64 = as_double(dy), aux64 = as_double(aux);
  RA_CHECK_PRECISION(
      judge_output(tc.family("dgelu dx"), "dgelu(dx)", ra::test::to_host(dx_d.data(), M * N),
                   ra::test::dgelu_epilogue_reference<float, T>(dy64, w64, aux64, M, N, K),
                   ra::test::dgelu_epilogue_reference<double, T>(dy64, w64, aux64, M, N, K), N));
  RA_CUDA_CHECK(cudaStreamSynchronize(tc.stream));
}

// The bias gradient in the epilogue of the weight-gradient product (what GPT-2's backward
// uses): dW (Nl,Kl) = dYᵀ·X and db (Nl) = column sums of dY from one GEMM.
TEMPLATE_TEST_CASE("training GemmPlan bias_grad epilogue gives dW and db in one GEMM",
                   "[cuda][training][gemm]", float, ra::bf16) {
  using T = TestType;
  GemmCase<T> tc(0x6e1);
  const DType dt = tc.dtype;
  const auto& ctx = tc.ctx;
  const index_t M = 130, Nl = 96, Kl = 64;
  auto g = tc.next_rng();
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
    pw = tc.plan(sw);
  } catch (const ra::error& e) {
    WARN("cuBLASLt has no BGRADB algorithm here (the model uses column_sums): " << e.what());
    return;
  }
  auto dy_d = ra::test::to_device(dy);
  auto x_d = ra::test::to_device(x);
  auto dw_d = ra::test::poisoned<float>(Nl * Kl), db_d = ra::test::poisoned<float>(Nl);
  pw.run_with_aux(dy_d.data(), x_d.data(), nullptr, dw_d.data(), db_d.data(), tc.stream);
  const auto dy64 = as_double(dy), x64 = as_double(x);
  const auto dy_ni = [&](index_t n, index_t i) { return dy64[sz(i * Nl + n)]; };
  const auto x_ij = [&](index_t i, index_t j) { return x64[sz(i * Kl + j)]; };
  const auto one = [](index_t, index_t) { return 1.0; };  // db (Nl,1) = dYᵀ · 1
  RA_CHECK_PRECISION(
      judge_output(tc.family("bias_grad dW"), "dW", ra::test::to_host(dw_d.data(), Nl * Kl),
                   ra::test::product_reference<float, float>(Nl, Kl, M, dy_ni, x_ij, {}, {}),
                   ra::test::product_reference<double, float>(Nl, Kl, M, dy_ni, x_ij, {}, {}), Kl));
  RA_CHECK_PRECISION(
      judge_output(tc.family("bias_grad db"), "db", ra::test::to_host(db_d.data(), Nl),
                   ra::test::product_reference<float, float>(Nl, 1, M, dy_ni, one, {}, {}),
                   ra::test::product_reference<double, float>(Nl, 1, M, dy_ni, one, {}, {}), Nl));
  CHECK_THROWS_WITH(pw.run(dy_d.data(), x_d.data(), nullptr, dw_d.data(), tc.stream),
                    Catch::Contains("run_with_aux"));
  RA_CUDA_CHECK(cudaStreamSynchronize(tc.stream));
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
