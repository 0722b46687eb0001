// tests/cuda/test_cross_entropy.cu — the fused softmax cross-entropy of the LM head
// (ra/cuda/cross_entropy.cuh): per-row loss, with and without the in-place gradient; padded
// columns (NaN on input) are ignored and read 0 after the gradient, ignored rows (target -1)
// give loss 0 and a zero gradient row, grad = false leaves the logits bit for bit, a bad vocab
// throws. float and bf16, rows 37 and 130, vocab 257 padded to 320, logits normal(0, 3).
//
// Precision (tests/common/precision.hpp): error against the exact reference at most 2x the
// naive one's plus the floor, per element, per row and in relative L2. Both from
// training_reference.hpp's cross_entropy_reference: exact in double; naive in fp32 —
// lse = m + log Σ e^(z − m) summed in column order with std::exp, loss = lse − z_t stored in
// fp32, gradient (e^(z − lse) − [j = t])·inv_n rounded to T. Floors: loss
// F = 16·u32·(1 + max_j |z_ij|), the error budget of the kernel's __expf and logf (as the
// attention lse's); gradient inv_n·(u_T·‖(p, [j = t])‖₂ + p·(F + (4 + 2.35·|z − lse|)·u32)),
// the rounding to T plus lse's budget and __expf's documented error carried by p. Rows: a loss
// is its own row; a gradient row is the V real columns of a logits row.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include <ra/cuda/cross_entropy.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::index_t;
using ra::test::as_double;
using ra::test::sz;

}  // namespace

TEMPLATE_TEST_CASE("training cross_entropy: the loss and in-place gradient keep the precision rule",
                   "[sanitize][cuda][training][cross_entropy]", float, ra::bf16) {
  using T = TestType;
  const index_t V = 257, Vp = 320;
  ra::test::TrainingCase<T> tc("cross_entropy", 600);
  for (index_t N : {37, 130}) {
    INFO(ra::test::describe(tc.dtype, N, Vp) << " vocab=" << V);
    auto g = tc.next_rng();
    auto logits = ra::test::random_vector<T>(N * Vp, g, 3.f);
    for (index_t i = 0; i < N; ++i)  // padded columns hold NaN: they must be ignored
      for (index_t j = V; j < Vp; ++j) logits[sz(i * Vp + j)] = ra::test::poison_value<T>();
    auto targets = ra::test::random_tokens(N, V, g);
    targets[1] = static_cast<std::int32_t>(V - 1);
    targets[2] = 0;
    targets[5] = targets[sz(N - 1)] = -1;
    index_t valid = 0;
    for (auto t : targets) valid += t >= 0;
    // The kernel takes 1/n as a float: the references take that input.
    const double inv_n = static_cast<float>(1.0 / static_cast<double>(valid));

    const auto z64 = as_double(logits);  // padded columns NaN: the references skip them
    const auto exact = ra::test::cross_entropy_reference<double, T>(z64, targets, V, Vp, inv_n);
    const auto naive = ra::test::cross_entropy_reference<float, T>(z64, targets, V, Vp, inv_n);

    auto z_d = ra::test::to_device(logits);
    auto t_d = ra::test::to_device(targets);
    ra::cuda::DeviceBuffer<float> loss_d(N);
    for (bool grad : {false, true}) {
      INFO((grad ? "grad" : "no grad"));
      ra::test::poison(loss_d.data(), N);
      ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, V, Vp,
                              static_cast<float>(inv_n), grad, tc.stream);
      const auto loss = ra::test::to_host(loss_d.data(), N);
      RA_CHECK_PRECISION(tc.judge("loss", loss, naive.loss, exact.loss, 1));
      CHECK(loss[5] == 0.f);
      CHECK(loss[sz(N - 1)] == 0.f);
      const auto z = ra::test::to_host(z_d.data(), N * Vp);
      if (!grad) {
        CHECK(ra::test::bitwise_equal(z, logits));
        continue;
      }
      std::vector<T> real;
      index_t nonzero = 0;  // padded columns and ignored rows must read exactly 0
      for (index_t i = 0; i < N; ++i)
        for (index_t j = 0; j < Vp; ++j) {
          const T v = z[sz(i * Vp + j)];
          if (j < V) real.push_back(v);
          if (j >= V || targets[sz(i)] < 0) nonzero += ra::convert<double>(v) != 0.0;
        }
      CHECK(nonzero == 0);
      RA_CHECK_PRECISION(tc.judge("dlogits", real, naive.grad, exact.grad, V));
    }
    CHECK_THROWS_AS(ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, 0, Vp, 1.f,
                                            true, tc.stream),
                    ra::error);
    CHECK_THROWS_WITH(ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, 0, Vp, 1.f,
                                              true, tc.stream),
                      Catch::Contains("vocab"));
    CHECK_THROWS_WITH(ra::cuda::cross_entropy(z_d.data(), t_d.data(), loss_d.data(), N, Vp + 1, Vp,
                                              1.f, true, tc.stream),
                      Catch::Contains("vocab") && Catch::Contains("321"));
  }
}
