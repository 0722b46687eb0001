// tests/cuda/test_reduce.cu — the deterministic reductions of training (ra/cuda/reduce.cuh):
// column_sums with 1 and 2 outputs over (x, x²) (rows 1, 63, 64, 65, 1000: at, around and far
// past the 64-row chunk; 300 columns: two column blocks, the second partial), and sum / sum of
// squares of a vector in double (n 1, 257, 100003).
//
// Precision (tests/common/precision.hpp): error against the exact reference at most 2x the
// naive one's plus the floor, per element, per row and in relative L2.
//   column sums  exact: double; naive: fp32 sums down each column in row order
//                (training_reference.hpp's column_sums_reference). Floors u32·‖x_c‖₂ and
//                u32·‖x_c²‖₂. One row: the 300 sums of a call (one scale).
//   sum          exact: Neumaier's compensated sum in double; naive: the sequential double sum
//                (what a CPU loop computes). Floor u64·Σ|terms| (terms x_i or x_i²): one
//                rounding of the largest partial sum any order can form. Not u64·‖terms‖₂:
//                a double sum of fp32 values is mostly exact sequentially (the naive error is
//                0) while a tree order rounds a few partials at the final magnitude; and for
//                the squares, all of one sign, ‖terms‖₂ is below one rounding of the result.
//                One row: the sums of 16 independent vectors of one length.
// Exact checks stay exact: one output and two give the same bits, a repeated call the same
// bits, and a call that wants only the second output the same bits for it.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <ra/cuda/reduce.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::index_t;
using ra::test::judge_output;
using ra::test::sz;

// Σ_r op(r, c) for the reduction tests: (x, x²).
struct SquareOp {
  const float* x;
  index_t cols;
  __device__ float2 operator()(index_t r, index_t c) const {
    const float v = x[r * cols + c];
    return make_float2(v, v * v);
  }
};

}  // namespace

TEST_CASE("training column_sums and sum keep the precision rule and are deterministic",
          "[sanitize][cuda][training][reduce]") {
  ra::test::TrainingCase<float> tc("", 400);
  const index_t cols = 300;  // two column blocks, the second partial
  const std::string family = tc.family("column sums");
  for (index_t rows : {1, 63, 64, 65, 1000}) {
    INFO("rows=" << rows << " cols=" << cols << " seed=" << ra::test::seed());
    auto g = tc.next_rng();
    const auto x = ra::test::random_vector<float>(rows * cols, g);
    auto x_d = ra::test::to_device(x);
    const auto xd = ra::test::as_double(x);
    ra::test::Computed s_exact, q_exact, s_naive, q_naive;
    ra::test::column_sums_reference<double>(xd, rows, cols, s_exact, q_exact);
    ra::test::column_sums_reference<float>(xd, rows, cols, s_naive, q_naive);
    const SquareOp op{x_d.data(), cols};
    ra::cuda::DeviceBuffer<float> scratch(ra::cuda::column_sums_scratch(rows, cols, 2));
    ra::cuda::DeviceBuffer<float> one(cols), s_d(cols), q_d(cols), q2_d(cols);
    for (auto* b : {&one, &s_d, &q_d, &q2_d}) ra::test::poison(b->data(), cols);
    ra::cuda::column_sums<1>(op, rows, cols, one.data(), nullptr, scratch.data(), tc.stream);
    ra::cuda::column_sums<2>(op, rows, cols, s_d.data(), q_d.data(), scratch.data(), tc.stream);
    const auto h_one = ra::test::to_host(one.data(), cols);
    const auto h_s = ra::test::to_host(s_d.data(), cols);
    const auto h_q = ra::test::to_host(q_d.data(), cols);
    RA_CHECK_PRECISION(
        judge_output(family, "column sums (1 output)", h_one, s_naive, s_exact, cols));
    RA_CHECK_PRECISION(judge_output(family, "column sums", h_s, s_naive, s_exact, cols));
    RA_CHECK_PRECISION(judge_output(family + " of squares", "column sums of squares", h_q, q_naive,
                                    q_exact, cols));
    CHECK(ra::test::bitwise_equal(h_one, h_s));  // the same order of additions
    // Again, and with only the second output wanted: the same bits.
    ra::cuda::column_sums<2>(op, rows, cols, s_d.data(), q_d.data(), scratch.data(), tc.stream);
    ra::cuda::column_sums<2>(op, rows, cols, nullptr, q2_d.data(), scratch.data(), tc.stream);
    CHECK(ra::test::bitwise_equal(ra::test::to_host(s_d.data(), cols), h_s));
    CHECK(ra::test::bitwise_equal(ra::test::to_host(q_d.data(), cols), h_q));
    CHECK(ra::test::bitwise_equal(ra::test::to_host(q2_d.data(), cols), h_q));
  }

  constexpr int kVectors = 16;  // independent vectors of each length: one row of the rule
  constexpr double u64 = 0x1p-53;
  for (index_t n : {1, 257, 100003}) {
    INFO("sum n=" << n << " seed=" << ra::test::seed());
    auto g = tc.next_rng();
    ra::cuda::DeviceBuffer<double> out(4), scratch(ra::cuda::kSumScratch);
    std::vector<double> sums, sums_sq;
    ra::test::Computed s_exact, s_naive, q_exact, q_naive;
    for (auto* c : {&s_exact, &s_naive, &q_exact, &q_naive}) c->assign(kVectors);
    for (int v = 0; v < kVectors; ++v) {
      const auto x = ra::test::random_vector<float>(n, g, 3.f);
      auto x_d = ra::test::to_device(x);
      ra::cuda::sum(x_d.data(), n, false, out.data(), scratch.data(), tc.stream);
      ra::cuda::sum(x_d.data(), n, true, out.data() + 1, scratch.data(), tc.stream);
      ra::cuda::sum(x_d.data(), n, false, out.data() + 2, scratch.data(), tc.stream);
      ra::cuda::sum(x_d.data(), n, true, out.data() + 3, scratch.data(), tc.stream);
      const auto h = ra::test::to_host(out.data(), 4);
      CHECK(std::memcmp(&h[0], &h[2], sizeof(double)) == 0);
      CHECK(std::memcmp(&h[1], &h[3], sizeof(double)) == 0);
      sums.push_back(h[0]);
      sums_sq.push_back(h[1]);
      std::vector<double> terms(sz(n)), squares(sz(n)), magnitudes(sz(n));
      for (std::size_t i = 0; i < terms.size(); ++i) {
        terms[i] = x[i];
        magnitudes[i] = std::abs(terms[i]);
        squares[i] = static_cast<double>(x[i]) * x[i];  // exact: 48 significant bits at most
      }
      const auto at = static_cast<std::size_t>(v);
      s_exact.v[at] = ra::test::compensated_sum(terms);
      s_naive.v[at] = ra::test::sequential_sum(terms);
      s_naive.floor[at] = u64 * ra::test::compensated_sum(magnitudes);
      q_exact.v[at] = ra::test::compensated_sum(squares);
      q_naive.v[at] = ra::test::sequential_sum(squares);
      q_naive.floor[at] = u64 * q_exact.v[at];
    }
    RA_CHECK_PRECISION(judge_output("training sum fp64", "sums", sums, s_naive, s_exact, kVectors));
    RA_CHECK_PRECISION(judge_output("training sum of squares fp64", "sums of squares", sums_sq,
                                    q_naive, q_exact, kVectors));
  }
}
