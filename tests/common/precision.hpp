// tests/common/precision.hpp — the precision rule of every numerical test, in one place.
//
// An output is compared with a double reference computed from the same (rounded) inputs, and
// with a naive implementation in the output's own precision (fp32 sums, the intermediates a
// straightforward implementation stores rounded to the storage type; see
// same_precision_attention.hpp and the naive references beside each test). With e = out − ref, n =
// naive − ref:
//
//   element  |e_i|   <= 2 · max_{j in row(i)} |n_j| + floor_i
//   row      ‖e_r‖₂  <= 2 · ‖n_r‖₂ + ‖floor_r‖₂               for every row r
//   total    ‖e‖₂    <= 2 · ‖n‖₂ + ‖floor‖₂                   (the relative-L2 check: both
//                                                             sides divided by ‖ref‖₂)
//
// Each check catches a fault the others miss: a wrong element (element), a wrong or dropped
// row whose share of the whole is small — the ragged last tile, the last key (row), a bias
// spread thinly over everything (total). floor_i = u · ‖terms_i‖₂, where u is the unit
// roundoff of the storage type and terms_i are the elementary products summed into element i
// (the naive implementations compute them): the rounding no same-precision sum avoids, and the
// scale below which the naive's own error can vanish by chance (an output the naive happens to
// get exact). A non-finite output fails every check. A row is `row_len` consecutive elements
// (a head's D values of one token; 1 for scalars such as gate gradients).
//
// Every judgement is also recorded per family ("forward O bf16", ...), so a test binary can
// print, at its end, the largest error/allowed ratio and the largest error/naive-error ratio
// each family reached (print_precision_summary()).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace ra::test {

/// How an output fares against the rule above. A ratio is error / allowed: <= 1 passes.
struct PrecisionReport {
  std::string what;
  std::size_t count = 0, rows = 0, non_finite = 0;
  double rel_l2 = 0.0, naive_rel_l2 = 0.0;  // ‖e‖/‖ref‖ and ‖n‖/‖ref‖
  double element_ratio = 0.0, row_ratio = 0.0, total_ratio = 0.0;
  double vs_naive = 0.0;  // ‖e‖₂ / ‖n‖₂ (0 when both are 0)
  std::size_t worst_element = 0, worst_row = 0;
  double worst_out = 0.0, worst_ref = 0.0, worst_naive = 0.0, worst_allowed = 0.0;

  bool pass() const {
    return non_finite == 0 && element_ratio <= 1.0 && row_ratio <= 1.0 && total_ratio <= 1.0;
  }
};

inline std::ostream& operator<<(std::ostream& os, const PrecisionReport& r) {
  os << r.what << ": " << r.non_finite << " non-finite of " << r.count << "; element ratio "
     << r.element_ratio << " (worst at flat index " << r.worst_element << ": out " << r.worst_out
     << ", ref " << r.worst_ref << ", naive " << r.worst_naive << ", allowed |error| "
     << r.worst_allowed << "), row ratio " << r.row_ratio << " (row " << r.worst_row << " of "
     << r.rows << "), total ratio " << r.total_ratio << "; rel L2 " << r.rel_l2 << " vs naive "
     << r.naive_rel_l2 << " (" << r.vs_naive << "x)";
  return os;
}

/// The largest ratios each family of outputs reached in this process.
struct FamilyRecord {
  std::size_t judged = 0, failed = 0;
  double element_ratio = 0.0, row_ratio = 0.0, total_ratio = 0.0, vs_naive = 0.0;
};

inline std::map<std::string, FamilyRecord>& precision_families() {
  static std::map<std::string, FamilyRecord> families;
  return families;
}

inline std::mutex& precision_families_mutex() {
  static std::mutex m;
  return m;
}

/// Judges out against ref and the naive same-precision naive (all the same length, row-major
/// rows of row_len elements); floor holds floor_i per element. `family` groups the report in
/// the summary.
inline PrecisionReport judge(const std::string& family, const std::string& what,
                             const std::vector<double>& out, const std::vector<double>& naive,
                             const std::vector<double>& ref, const std::vector<double>& floor,
                             std::size_t row_len) {
  PrecisionReport r;
  r.what = what;
  r.count = out.size();
  const bool shapes_ok = naive.size() == out.size() && ref.size() == out.size() &&
                         floor.size() == out.size() && row_len > 0 && out.size() % row_len == 0;
  if (!shapes_ok) {
    r.non_finite = out.size() + 1;  // cannot pass
    r.what += " (mismatched sizes: out " + std::to_string(out.size()) + ", naive " +
              std::to_string(naive.size()) + ", ref " + std::to_string(ref.size()) + ", floor " +
              std::to_string(floor.size()) + ", row " + std::to_string(row_len) + ")";
    return r;
  }
  r.rows = out.size() / row_len;
  const double inf = std::numeric_limits<double>::infinity();
  double e2 = 0.0, n2 = 0.0, f2 = 0.0, ref2 = 0.0;
  for (std::size_t row = 0; row < r.rows; ++row) {
    const std::size_t begin = row * row_len, end = begin + row_len;
    double row_n_max = 0.0, row_e2 = 0.0, row_n2 = 0.0, row_f2 = 0.0;
    bool row_finite = true;
    for (std::size_t i = begin; i < end; ++i) {
      const double n = std::abs(naive[i] - ref[i]);
      row_n_max = std::max(row_n_max, n);
      row_n2 += n * n;
      row_f2 += floor[i] * floor[i];
      ref2 += ref[i] * ref[i];
      if (!std::isfinite(out[i])) {
        if (r.non_finite++ == 0) {
          r.worst_element = i;
          r.worst_out = out[i];
          r.worst_ref = ref[i];
          r.worst_naive = naive[i];
          r.element_ratio = inf;
        }
        row_finite = false;
        continue;
      }
      const double e = std::abs(out[i] - ref[i]);
      row_e2 += e * e;
    }
    for (std::size_t i = begin; i < end && r.non_finite == 0; ++i) {
      const double e = std::abs(out[i] - ref[i]);
      const double allowed = 2.0 * row_n_max + floor[i];
      const double ratio = e == 0.0 ? 0.0 : (allowed > 0.0 ? e / allowed : inf);
      if (ratio > r.element_ratio || (i == 0 && row == 0)) {
        r.element_ratio = ratio;
        r.worst_element = i;
        r.worst_out = out[i];
        r.worst_ref = ref[i];
        r.worst_naive = naive[i];
        r.worst_allowed = allowed;
      }
    }
    const double row_allowed = 2.0 * std::sqrt(row_n2) + std::sqrt(row_f2);
    const double row_ratio =
        !row_finite
            ? inf
            : (row_e2 == 0.0 ? 0.0 : (row_allowed > 0.0 ? std::sqrt(row_e2) / row_allowed : inf));
    if (row_ratio > r.row_ratio) {
      r.row_ratio = row_ratio;
      r.worst_row = row;
    }
    e2 += row_e2;
    n2 += row_n2;
    f2 += row_f2;
  }
  const double total_allowed = 2.0 * std::sqrt(n2) + std::sqrt(f2);
  r.total_ratio =
      r.non_finite > 0
          ? inf
          : (e2 == 0.0 ? 0.0 : (total_allowed > 0.0 ? std::sqrt(e2) / total_allowed : inf));
  const double ref_norm = std::max(std::sqrt(ref2), 1e-300);
  r.rel_l2 = r.non_finite > 0 ? inf : std::sqrt(e2) / ref_norm;
  r.naive_rel_l2 = std::sqrt(n2) / ref_norm;
  r.vs_naive = r.non_finite > 0 ? inf : (e2 == 0.0 ? 0.0 : (n2 > 0.0 ? std::sqrt(e2 / n2) : inf));

  std::lock_guard<std::mutex> lock(precision_families_mutex());
  FamilyRecord& f = precision_families()[family];
  ++f.judged;
  f.failed += r.pass() ? 0 : 1;
  f.element_ratio = std::max(f.element_ratio, r.element_ratio);
  f.row_ratio = std::max(f.row_ratio, r.row_ratio);
  f.total_ratio = std::max(f.total_ratio, r.total_ratio);
  if (n2 > 0.0) f.vs_naive = std::max(f.vs_naive, r.vs_naive);
  return r;
}

/// One scalar output (a parameter gradient, a loss): the rule with a row of one element.
inline PrecisionReport judge_scalar(const std::string& family, const std::string& what, double out,
                                    double naive, double ref, double floor) {
  return judge(family, what, {out}, {naive}, {ref}, {floor}, 1);
}

/// Prints one line per family: cases judged and failed, the largest element / row / total
/// ratios (error / allowed), and the largest ‖e‖₂/‖n‖₂ (where the naive error is not 0).
inline void print_precision_summary(std::ostream& os) {
  std::lock_guard<std::mutex> lock(precision_families_mutex());
  if (precision_families().empty()) return;
  os << "precision summary (ratio = error / allowed; <= 1 passes; e/n = error / naive error)\n";
  os << std::left << std::setw(40) << "family" << std::right << std::setw(8) << "judged"
     << std::setw(8) << "failed" << std::setw(11) << "element" << std::setw(11) << "row"
     << std::setw(11) << "total" << std::setw(11) << "e/n"
     << "\n";
  for (const auto& [name, f] : precision_families()) {
    os << std::left << std::setw(40) << name << std::right << std::setw(8) << f.judged
       << std::setw(8) << f.failed << std::setprecision(3) << std::setw(11) << f.element_ratio
       << std::setw(11) << f.row_ratio << std::setw(11) << f.total_ratio << std::setw(11)
       << f.vs_naive << "\n";
  }
}

}  // namespace ra::test

/// Checks a PrecisionReport, printing it on failure.
#define RA_CHECK_PRECISION(report)   \
  do {                               \
    const auto& ra_report_ = report; \
    INFO(ra_report_);                \
    CHECK(ra_report_.pass());        \
  } while (false)
