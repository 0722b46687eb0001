// tests/cuda/test_adamw.cu — AdamW on the GPU (ra/cuda/adamw.cuh) over a flat fp32 buffer of
// 1010 parameters (decayed and undecayed tensors, 10 trailing elements in no tensor), four
// steps: clipped, unclipped, one with a NaN gradient that must change nothing on either side,
// clipped again; the bf16 working copy; restore() from first_moment() / second_moment().
//
// Precision (tests/common/precision.hpp): every step is judged from the GPU's own state before
// it (p, m, v read back), so each step's error is its own. Exact: the update of nn::AdamW in
// double with the exactly computed clip factor; naive: the same formula in fp32 with fp32
// constants (as the kernel rounds them) and nn::AdamW's clip factor, m, v, p stored in fp32
// (training_reference.hpp's adamw_reference). Floors u32·‖terms‖₂ of m' = β1·m + (1 − β1)·ĝ,
// v' = β2·v + (1 − β2)·ĝ² and p' = p − lr·m̂/(√v̂ + ε) − lr·λ·p; a row of the rule is one
// tensor. Exact checks: the reported gradient norm is the square root of ra::cuda::sum's sum
// of squares (judged in test_reduce.cu) and the clip factor follows from it bit for bit; the
// NaN step leaves parameters, working copy and moments bit for bit; the working copy is the
// rounded parameters; restore() gives the same state and the same next step.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ra/cuda/adamw.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/nn/adamw.hpp>

#include "training_test_utils.cuh"

namespace {

using ra::index_t;
using ra::test::as_double;
using ra::test::sz;

// A parameter table entry as cuda::AdamW and nn::AdamW read it.
struct TableEntry {
  index_t offset, n;
  bool decay;
  index_t size() const { return n; }
};

}  // namespace

TEST_CASE("training cuda::AdamW keeps the precision rule against the update of nn::AdamW",
          "[sanitize][cuda][training][adamw]") {
  // Decayed and undecayed tensors, and 10 trailing elements in no tensor (no decay).
  const std::vector<TableEntry> table = {
      {0, 300, true}, {300, 37, false}, {337, 500, true}, {837, 163, false}};
  const index_t n = 1010;
  ra::nn::AdamWConfig cfg;  // weight_decay 0.1, grad_clip 1
  ra::nn::AdamW cpu(sz(n), table, cfg);
  ra::cuda::AdamW gpu(n, table, cfg);
  // The constructor and restore() fill device memory with cudaMemset / pageable cudaMemcpy on
  // the legacy stream, which `stream` (non-blocking) does not wait for.
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  ra::test::Stream stream;
  auto g = ra::test::rng(800);
  std::vector<float> params = ra::test::random_vector<float>(n, g);
  auto p_d = ra::test::to_device(params);
  ra::cuda::DeviceBuffer<ra::bf16> work_d(n);
  ra::test::poison(work_d.data(), n);
  const auto decay = ra::nn::decay_mask(sz(n), table, "test_adamw");

  // p, m and v judged tensor by tensor (the table's, then the trailing elements): a row of
  // the rule is one tensor.
  std::vector<std::pair<index_t, index_t>> tensors;  // (offset, size)
  for (const auto& t : table) tensors.emplace_back(t.offset, t.n);
  tensors.emplace_back(tensors.back().first + tensors.back().second,
                       n - tensors.back().first - tensors.back().second);
  const auto judge_per_tensor = [&](const char* what, const std::vector<float>& out,
                                    const ra::test::Computed& naive,
                                    const ra::test::Computed& exact) {
    for (auto [offset, size] : tensors) {
      INFO(what << " of the tensor at " << offset << " (" << size << " values)");
      const auto part = [&](const std::vector<double>& v) {
        return std::vector<double>(v.begin() + offset, v.begin() + offset + size);
      };
      const std::vector<float> o(out.begin() + offset, out.begin() + offset + size);
      RA_CHECK_PRECISION(ra::test::judge(std::string("training adamw ") + what + " fp32", what,
                                         as_double(o), part(naive.v), part(exact.v),
                                         part(naive.floor), sz(size)));
    }
  };

  // Gradient scales: clipped (norm ~32), unclipped (norm ~0.3), a NaN step, clipped again.
  const float sigmas[] = {1.f, 0.01f, 1.f, 3.f};
  const double lrs[] = {1e-2, 2e-2, 1e-2, 5e-3};
  for (int step = 0; step < 4; ++step) {
    INFO("step " << step << " seed=" << ra::test::seed());
    auto grads = ra::test::random_vector<float>(n, g, sigmas[step]);
    if (step == 2) {  // nothing may change, on either side
      grads[17] = std::numeric_limits<float>::quiet_NaN();
      auto g_d = ra::test::to_device(grads);
      const auto p_before = ra::test::to_host(p_d.data(), n);
      const auto w_before = ra::test::to_host(work_d.data(), n);
      const auto m_before = gpu.first_moment(), v_before = gpu.second_moment();
      CHECK_THROWS_AS(cpu.step(params, grads, lrs[step]), ra::error);
      CHECK_THROWS_AS(gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream),
                      ra::error);
      CHECK_THROWS_WITH(gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream),
                        Catch::Contains("finite"));
      CHECK(gpu.steps() == 2);
      CHECK(ra::test::bitwise_equal(ra::test::to_host(p_d.data(), n), p_before));
      CHECK(ra::test::bitwise_equal(ra::test::to_host(work_d.data(), n), w_before));
      CHECK(ra::test::bitwise_equal(gpu.first_moment(), m_before));
      CHECK(ra::test::bitwise_equal(gpu.second_moment(), v_before));
      continue;
    }
    auto g_d = ra::test::to_device(grads);
    // The GPU's state before the step: both references start from it.
    const auto p0 = as_double(ra::test::to_host(p_d.data(), n));
    const auto m0 = as_double(gpu.first_moment()), v0 = as_double(gpu.second_moment());
    const auto rc = cpu.step(params, grads, lrs[step]);
    const auto rg = gpu.step(p_d.data(), g_d.data(), work_d.data(), lrs[step], stream);
    if (sigmas[step] >= 1.f) CHECK(rc.clip_scale < 0.1);  // clipping is exercised
    CHECK(gpu.steps() == cpu.steps());

    // The norm AdamW reports is ra::cuda::sum's of the squared gradients (test_reduce.cu
    // judges that sum) through the square root, and the clip factor follows from it: both
    // exact. The exact reference takes the clip factor of the exact norm (a compensated sum).
    ra::cuda::DeviceBuffer<double> sq_d(1), sum_scratch(ra::cuda::kSumScratch);
    ra::cuda::sum(g_d.data(), n, true, sq_d.data(), sum_scratch.data(), stream);
    CHECK(rg.grad_norm == std::sqrt(ra::test::to_host(sq_d.data(), 1)[0]));
    CHECK(rg.clip_scale == std::min(1.0, cfg.grad_clip / (rg.grad_norm + 1e-6)));
    std::vector<double> squares(grads.size());
    for (std::size_t i = 0; i < grads.size(); ++i)
      squares[i] = static_cast<double>(grads[i]) * grads[i];  // exact in double
    const double norm = std::sqrt(ra::test::compensated_sum(squares));
    const double scale = std::min(1.0, cfg.grad_clip / (norm + 1e-6));

    // The element update from that state: exact in double with the exact clip factor, naive
    // in fp32 with nn::AdamW's.
    const auto gd = as_double(grads);
    const auto exact = ra::test::adamw_reference<double>(p0, gd, m0, v0, decay, scale, cfg,
                                                         lrs[step], gpu.steps());
    const auto naive = ra::test::adamw_reference<float>(p0, gd, m0, v0, decay, rc.clip_scale, cfg,
                                                        lrs[step], gpu.steps());
    const auto p = ra::test::to_host(p_d.data(), n);
    judge_per_tensor("p", p, naive.p, exact.p);
    judge_per_tensor("m", gpu.first_moment(), naive.m, exact.m);
    judge_per_tensor("v", gpu.second_moment(), naive.v, exact.v);
    const auto work = ra::test::to_host(work_d.data(), n);
    index_t stale = 0;  // the working copy is the rounded master parameters
    for (index_t i = 0; i < n; ++i) stale += work[sz(i)].bits != ra::bf16(p[sz(i)]).bits;
    CHECK(stale == 0);
  }

  // restore() from first_moment() / second_moment() / steps(): the same state, the same step.
  ra::cuda::AdamW copy(n, table, cfg);
  copy.restore(gpu.first_moment(), gpu.second_moment(), gpu.steps());
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(copy.steps() == gpu.steps());
  CHECK(ra::test::bitwise_equal(copy.first_moment(), gpu.first_moment()));
  CHECK(ra::test::bitwise_equal(copy.second_moment(), gpu.second_moment()));
  auto p2_d = ra::test::to_device(ra::test::to_host(p_d.data(), n));
  auto g_d = ra::test::to_device(ra::test::random_vector<float>(n, g));
  gpu.step(p_d.data(), g_d.data(), work_d.data(), 1e-2, stream);
  copy.step(p2_d.data(), g_d.data(), static_cast<float*>(nullptr), 1e-2, stream);
  CHECK(
      ra::test::bitwise_equal(ra::test::to_host(p_d.data(), n), ra::test::to_host(p2_d.data(), n)));
  CHECK(ra::test::bitwise_equal(copy.first_moment(), gpu.first_moment()));

  const std::vector<float> short_m(sz(n - 1)), full(sz(n));
  CHECK_THROWS_AS(copy.restore(short_m, full, 1), ra::error);
  CHECK_THROWS_WITH(copy.restore(full, short_m, 1), Catch::Contains("restore"));
}
