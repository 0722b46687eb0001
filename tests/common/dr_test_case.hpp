// tests/common/dr_test_case.hpp — RA_DR_TEST_CASE: a test case over the (D, R) matrix,
// registered as one Catch test case per (D, R) pair, so a failure names its pair and one pair
// runs alone (`ra_cuda_tests "[d64][r4]"`; CTest: `ctest -R cuda/d64_r4`).
//
//   RA_DR_TEST_CASE(ra::test::every_pair, "flash forward keeps the precision rule",
//                   "[flash][cuda]") {
//     // D and R are ints here
//   }
//
// registers "flash forward keeps the precision rule, D=64 R=4" tagged
// [flash][cuda][dr][d64][r4], and likewise for every pair of ra::SupportedHeadDims x
// ra::SupportedRanks with R < D that the first argument (a bool(int D, int R) function) keeps.
// The GPU tests (tests/cuda) compile with the CUDA lists (RA_CUDA_HEAD_DIMS / RA_CUDA_RANKS
// narrow them), so a narrowed build registers only the pairs whose kernels it instantiates;
// tests/CMakeLists.txt adds one CTest entry per pair of the same lists (running "[d<D>][r<R>]")
// and one for every GPU case outside the matrix ("~[dr]"). tests/cpu/test_dr_test_case.cpp
// checks the registration. Plain C++ (no CUDA): the CPU tests use it too.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include <ra/core/dispatch.hpp>

namespace ra::test {

/// Every pair (the filter of a case that covers the whole matrix).
constexpr bool every_pair(int, int) {
  return true;
}

/// The rank of the cases that run one rank per head dim (the long-T backward, the
/// compute-sanitizer set, the cases outside the matrix): 4 where built, else the first built.
constexpr int reference_rank() {
  return SupportedRanks::contains(4) ? 4 : SupportedRanks::values[0];
}

/// The salt of ra::test::rng for a pair's case: base (the case's own) mixed with a variant (e.g.
/// the dtype of a GENERATE) and the pair, so every pair draws its own data.
constexpr std::uint64_t dr_salt(std::uint64_t base, int variant, int D, int R) {
  return ((base * 16 + static_cast<std::uint64_t>(variant)) * 256 + static_cast<std::uint64_t>(D)) *
             64 +
         static_cast<std::uint64_t>(R);
}

/// One test case's body run for one (D, R) pair.
class DrInvoker final : public Catch::ITestInvoker {
 public:
  DrInvoker(void (*body)(int, int), int D, int R) : body_(body), D_(D), R_(R) {}
  void invoke() const override { body_(D_, R_); }

 private:
  void (*body_)(int, int);
  int D_, R_;
};

/// Registers body as "<name>, D=<D> R=<R>" tagged "<tags>[dr][d<D>][r<R>]" for every supported
/// pair with R < D that keep(D, R) accepts; returns how many it registered.
inline int register_dr_cases(void (*body)(int, int), bool (*keep)(int, int), const char* name,
                             const char* tags, const Catch::SourceLineInfo& line) {
  int registered = 0;
  for (int D : SupportedHeadDims::values)
    for (int R : SupportedRanks::values) {
      if (R >= D || !keep(D, R)) continue;
      const std::string pair_name =
          std::string(name) + ", D=" + std::to_string(D) + " R=" + std::to_string(R);
      const std::string pair_tags =
          std::string(tags) + "[dr][d" + std::to_string(D) + "][r" + std::to_string(R) + "]";
      // Catch copies the name and tags and owns the invoker.
      const Catch::AutoReg reg(new DrInvoker(body, D, R), line, Catch::StringRef(),
                               Catch::NameAndTags{pair_name, pair_tags});
      ++registered;
    }
  return registered;
}

}  // namespace ra::test

/// A test case over the supported (D, R) pairs that keep(D, R) accepts: its body sees `int D`
/// and `int R`. See the top of this file.
#define RA_DR_TEST_CASE(keep, name, tags) \
  RA_DR_TEST_CASE_IMPL_(INTERNAL_CATCH_UNIQUE_NAME(ra_dr_case_), keep, name, tags)
#define RA_DR_TEST_CASE_IMPL_(body, keep, name, tags)                                        \
  static void body(int D, int R);                                                            \
  namespace {                                                                                \
  const int INTERNAL_CATCH_UNIQUE_NAME(ra_dr_registered_) =                                  \
      ::ra::test::register_dr_cases(&body, (keep), (name), (tags), CATCH_INTERNAL_LINEINFO); \
  }                                                                                          \
  static void body(int D, int R)
