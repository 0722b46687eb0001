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
//
// AdamW with SPAM (second case): seven steps with a reset every 3 steps, a warm-up of 2, a
// clip delay of 1 and a low threshold, with planted spikes of both signs. Each step is judged
// from the GPU's state before it: exact, nn::AdamW's update in double before its final
// rounding (training_reference.hpp; the CPU optimizer, restored to that state, must give it
// rounded to nearest, and its spike count); naive, the same update in fp32. The exact
// reference is NOT the CPU optimizer's fp32 output: that is rounded too, and against a
// rounded reference the naive error (same formula, mostly the same rounding) vanishes while a
// correctly rounded GPU value a fraction of an ulp away from it shows as a whole ulp (the
// first H200 run: p and v 1.3-1.8x "allowed", 38-51x the naive's rel L2, every error one
// ulp). Gradients whose clip decision lies within 0.1% of the threshold are moved away from
// it first, so fp32 and double decide alike; then the number of clipped elements is exact.
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

TEST_CASE("training cuda::AdamW with SPAM keeps the precision rule against nn::AdamW",
          "[sanitize][cuda][training][adamw][spam]") {
  const std::vector<TableEntry> table = {
      {0, 300, true}, {300, 37, false}, {337, 500, true}, {837, 163, false}};
  const index_t n = 1010;
  ra::nn::AdamWConfig cfg;
  cfg.kind = ra::nn::OptimizerKind::adamw_spam;
  cfg.spam.threshold = 50.0;  // |g| > 7·√v is a spike
  cfg.spam.reset_interval = 3;
  cfg.spam.warmup = 2;
  cfg.spam.clip_delay = 1;
  ra::cuda::AdamW gpu(n, table, cfg);
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  ra::test::Stream stream;
  auto g = ra::test::rng(801);
  auto p_d = ra::test::to_device(ra::test::random_vector<float>(n, g));
  ra::cuda::DeviceBuffer<ra::bf16> work_d(n);
  ra::test::poison(work_d.data(), n);
  const auto decay = ra::nn::decay_mask(sz(n), table, "test_adamw");
  std::vector<std::pair<index_t, index_t>> tensors;  // (offset, size): a row of the rule each
  for (const auto& t : table) tensors.emplace_back(t.offset, t.n);
  tensors.emplace_back(1000, 10);

  std::uint64_t spikes = 0;
  for (int step = 0; step < 7; ++step) {
    const std::uint64_t t = gpu.steps() + 1;
    const auto phase = cfg.phase(t);
    INFO("step " << t << " (reset " << phase.reset << ", clip " << phase.clip << ", warm-up "
                 << phase.warmup_scale << ") seed=" << ra::test::seed());
    // The GPU's state before the step.
    const auto p0 = ra::test::to_host(p_d.data(), n);
    const auto m0 = gpu.first_moment(), v0 = gpu.second_moment();
    auto grads = ra::test::random_vector<float>(n, g, step % 2 ? 0.01f : 0.5f);
    for (index_t i = 5 + step; i < n; i += 97)  // spikes, of both signs
      grads[sz(i)] = (i % 2 ? 1.f : -1.f) * (step % 2 ? 0.5f : 20.f);
    // Keep every clip decision at least 0.1% away from the threshold.
    for (int round = 0; round < 8; ++round) {
      double sq = 0.0;
      for (float x : grads) sq += static_cast<double>(x) * x;
      const double scale = std::min(1.0, cfg.grad_clip / (std::sqrt(sq) + 1e-6));
      bool moved = false;
      for (index_t i = 0; i < n && phase.clip && !phase.reset; ++i) {
        const double gi = grads[sz(i)] * scale, lim = cfg.spam.threshold * v0[sz(i)];
        if (lim > 0.0 && std::abs(gi * gi / lim - 1.0) < 1e-3) {
          grads[sz(i)] *= 0.9f;
          moved = true;
        }
      }
      if (!moved) break;
    }
    auto g_d = ra::test::to_device(grads);
    // The CPU optimizer from the same state: the exact reference.
    ra::nn::AdamW cpu(sz(n), table, cfg);
    cpu.restore(m0, v0, t - 1, spikes);
    std::vector<float> p_cpu = p0;
    const auto rc = cpu.step(p_cpu, grads, 1e-2);
    const auto rg = gpu.step(p_d.data(), g_d.data(), work_d.data(), 1e-2, stream);
    CHECK(rg.spam.reset == phase.reset);
    CHECK(rg.spam.clip == phase.clip);
    CHECK(rg.spikes == rc.spikes);  // every decision is away from the threshold
    // Only an element whose second moment is positive can be clipped (ra/nn/adamw.hpp): none
    // at the first step, where every v is still 0, nor right after a reset; the planted spikes
    // are clipped at every other step with clipping on.
    const bool primed = std::any_of(v0.begin(), v0.end(), [](float x) { return x > 0.f; });
    if (phase.clip && !phase.reset && primed) CHECK(rg.spikes > 0);
    if (!primed) CHECK(rg.spikes == 0);
    spikes += rg.spikes;
    CHECK(gpu.spikes() == spikes);
    CHECK(gpu.steps() == t);
    const auto p0d = as_double(p0), gd = as_double(grads), m0d = as_double(m0), v0d = as_double(v0);
    const auto naive =
        ra::test::adamw_reference<float>(p0d, gd, m0d, v0d, decay, rc.clip_scale, cfg, 1e-2, t);
    const auto exact =
        ra::test::adamw_reference<double>(p0d, gd, m0d, v0d, decay, rc.clip_scale, cfg, 1e-2, t);
    CHECK(naive.spikes == rc.spikes);
    CHECK(exact.spikes == rc.spikes);
    const auto p = ra::test::to_host(p_d.data(), n);
    const auto m = gpu.first_moment(), v = gpu.second_moment();
    // The exact reference is nn::AdamW's update before its final rounding to fp32: the CPU
    // optimizer's state is it, rounded to nearest (|fl(x) − x| <= u32·|x|, plus slack for the
    // double arithmetic's own rounding).
    const auto cpu_m = cpu.first_moment(), cpu_v = cpu.second_moment();
    index_t not_rounded = 0;
    for (index_t i = 0; i < n; ++i) {
      const auto rounded_from = [](double x, double e) {
        return std::abs(x - e) <= 0x1p-24 * std::abs(e) * (1.0 + 1e-9) + 1e-300;
      };
      not_rounded += !rounded_from(p_cpu[sz(i)], exact.p.v[sz(i)]) ||
                     !rounded_from(cpu_m[sz(i)], exact.m.v[sz(i)]) ||
                     !rounded_from(cpu_v[sz(i)], exact.v.v[sz(i)]);
    }
    CHECK(not_rounded == 0);
    for (auto [offset, size] : tensors) {
      INFO("the tensor at " << offset << " (" << size << " values)");
      const auto part = [&](const auto& x) {
        return std::vector<double>(x.begin() + offset, x.begin() + offset + size);
      };
      RA_CHECK_PRECISION(ra::test::judge("training adamw_spam p fp32", "p", part(as_double(p)),
                                         part(naive.p.v), part(exact.p.v), part(naive.p.floor),
                                         sz(size)));
      RA_CHECK_PRECISION(ra::test::judge("training adamw_spam m fp32", "m", part(as_double(m)),
                                         part(naive.m.v), part(exact.m.v), part(naive.m.floor),
                                         sz(size)));
      RA_CHECK_PRECISION(ra::test::judge("training adamw_spam v fp32", "v", part(as_double(v)),
                                         part(naive.v.v), part(exact.v.v), part(naive.v.floor),
                                         sz(size)));
    }
    if (phase.reset) {  // the moments restarted from zero: m = (1 − β1)·ĝ exactly as computed
      CHECK(rg.spikes == 0);
    }
  }
  CHECK(spikes > 0);
  // restore() carries the spike count, and the next step is the same on both.
  ra::cuda::AdamW copy(n, table, cfg);
  copy.restore(gpu.first_moment(), gpu.second_moment(), gpu.steps(), gpu.spikes());
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(copy.spikes() == gpu.spikes());
  auto p2_d = ra::test::to_device(ra::test::to_host(p_d.data(), n));
  auto g_d = ra::test::to_device(ra::test::random_vector<float>(n, g));
  const auto a = gpu.step(p_d.data(), g_d.data(), work_d.data(), 1e-2, stream);
  const auto b = copy.step(p2_d.data(), g_d.data(), static_cast<float*>(nullptr), 1e-2, stream);
  CHECK(a.spikes == b.spikes);
  CHECK(
      ra::test::bitwise_equal(ra::test::to_host(p_d.data(), n), ra::test::to_host(p2_d.data(), n)));
  CHECK(ra::test::bitwise_equal(copy.second_moment(), gpu.second_moment()));
}
