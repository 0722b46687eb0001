// tests/cpu/test_dr_test_case.cpp — RA_DR_TEST_CASE (tests/common/dr_test_case.hpp), which the
// GPU tests use for their (D, R) matrix: one Catch test case per supported pair that the
// filter keeps, named ", D=<D> R=<R>" and tagged [dr][d<D>][r<R>] (the specs that
// tests/CMakeLists.txt gives each pair's CTest entry), each run with its own pair.
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ra/core/dispatch.hpp>

#include "../common/dr_test_case.hpp"

namespace {

constexpr const char* kName = "dr_test_case: a case registered per pair";

// A filter that drops some pairs of the full lists: head dims up to 64, ranks below 8.
constexpr bool small_pairs(int D, int R) {
  return D <= 64 && R < 8;
}

}  // namespace

RA_DR_TEST_CASE(small_pairs, kName, "[dr_test_case]") {
  // The body runs with the pair its name and tags give.
  CHECK(small_pairs(D, R));
  CHECK(ra::SupportedHeadDims::contains(D));
  CHECK(ra::SupportedRanks::contains(R));
  CHECK(R < D);
  const std::string suffix = ", D=" + std::to_string(D) + " R=" + std::to_string(R);
  const std::string name = Catch::getResultCapture().getCurrentTestName();
  REQUIRE(name.size() >= suffix.size());
  CHECK(name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
}

TEST_CASE("dr_test_case registers one case per kept (D, R) pair, named and tagged by it",
          "[dr_test_case]") {
  using Case = std::pair<std::string, std::set<std::string>>;  // name, tags
  std::set<Case> want;
  for (int D : ra::SupportedHeadDims::values)
    for (int R : ra::SupportedRanks::values)
      if (R < D && small_pairs(D, R))
        want.insert({std::string(kName) + ", D=" + std::to_string(D) + " R=" + std::to_string(R),
                     {"dr_test_case", "dr", "d" + std::to_string(D), "r" + std::to_string(R)}});
  std::set<Case> got;
  for (const Catch::TestCase& c : Catch::getRegistryHub().getTestCaseRegistry().getAllTests())
    if (c.name.rfind(kName, 0) == 0) got.insert({c.name, {c.tags.begin(), c.tags.end()}});
  CHECK(got == want);
  // The full lists (an unnarrowed build) keep 2 head dims x 4 ranks.
  if (ra::SupportedHeadDims::size == 5 && ra::SupportedRanks::size == 6) CHECK(got.size() == 8);
}

TEST_CASE("dr_test_case salts differ per pair and variant", "[dr_test_case]") {
  std::set<std::uint64_t> salts;
  int n = 0;
  for (int variant : {0, 1, 2})
    for (int D : ra::SupportedHeadDims::values)
      for (int R : ra::SupportedRanks::values) {
        salts.insert(ra::test::dr_salt(0xf0, variant, D, R));
        ++n;
      }
  CHECK(salts.size() == static_cast<std::size_t>(n));
  CHECK(ra::SupportedRanks::contains(ra::test::reference_rank()));
}
