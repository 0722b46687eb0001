// tests/cpu/test_dispatch.cpp — the ONE list of supported values and the runtime-to-compile-
// time dispatch over it.
//
// Dispatch visits exactly the supported values (each with the matching compile-time
// constant), every (D, R) pair with R < D, and every dtype; anything else throws
// ra::unsupported whose message lists what is supported; R >= D throws naming R and D.
#include <catch2/catch.hpp>

#include <ra/core.hpp>
#include <ra/expr.hpp>

#include <array>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using ra::index_t;

template <int... V>
std::vector<int> values(ra::IntList<V...>) {
  return {V...};
}

const std::vector<int> kHeadDims = values(ra::SupportedHeadDims{});
const std::vector<int> kRanks = values(ra::SupportedRanks{});

// The lists of the design (design.md §4); a configure with RA_HEAD_DIMS / RA_RANKS may
// narrow them, never widen them.
const std::vector<int> kDesignHeadDims{32, 64, 80, 96, 128};
const std::vector<int> kDesignRanks{0, 1, 2, 4, 8, 16};

bool contains(const std::vector<int>& v, int x) {
  for (int y : v)
    if (y == x) return true;
  return false;
}

}  // namespace

TEST_CASE("dispatch: the supported lists", "[dispatch]") {
  REQUIRE_FALSE(kHeadDims.empty());
  REQUIRE_FALSE(kRanks.empty());
  for (int d : kHeadDims) CHECK(contains(kDesignHeadDims, d));
  for (int r : kRanks) CHECK(contains(kDesignRanks, r));
#ifdef RA_TEST_FULL_LISTS
  // Set by tests/CMakeLists.txt when the package is not narrowed: the CPU tests must cover
  // the full (D, R) matrix.
  CHECK(kHeadDims == kDesignHeadDims);
  CHECK(kRanks == kDesignRanks);
#endif
  CHECK(ra::SupportedHeadDims::size == static_cast<int>(kHeadDims.size()));
  CHECK(ra::SupportedHeadDims::to_string().front() == '{');
  for (int d : kHeadDims) CHECK(ra::SupportedHeadDims::contains(d));
  CHECK_FALSE(ra::SupportedHeadDims::contains(48));
  CHECK_FALSE(ra::SupportedRanks::contains(3));
}

TEST_CASE("dispatch: head dims visit exactly the supported values", "[dispatch]") {
  std::vector<int> visited;
  for (int x = -2; x <= 260; ++x) {
    int calls = 0;
    try {
      const int got = ra::dispatch_head_dim(x, [&](auto d) {
        constexpr index_t kD = decltype(d)::value;
        static_assert(std::is_same_v<decltype(d), ra::Int<kD>>);
        std::array<char, kD> compile_time{};  // kD is a constant expression
        ++calls;
        return static_cast<int>(compile_time.size());
      });
      INFO("D = " << x);
      CHECK(got == x);
      CHECK(calls == 1);
      visited.push_back(x);
    } catch (const ra::unsupported& e) {
      INFO("D = " << x << ": " << e.what());
      CHECK(calls == 0);
      CHECK_FALSE(contains(kHeadDims, x));
    }
  }
  CHECK(visited == kHeadDims);
}

TEST_CASE("dispatch: ranks visit exactly the supported values", "[dispatch]") {
  std::vector<int> visited;
  for (int x = -2; x <= 40; ++x) {
    int calls = 0;
    try {
      ra::dispatch_rank(x, [&](auto r) {  // a void callable
        static_assert(std::is_same_v<decltype(r), ra::Int<decltype(r)::value>>);
        CHECK(decltype(r)::value == x);
        ++calls;
      });
      CHECK(calls == 1);
      visited.push_back(x);
    } catch (const ra::unsupported&) {
      CHECK(calls == 0);
      CHECK_FALSE(contains(kRanks, x));
    }
  }
  CHECK(visited == kRanks);
}

TEST_CASE("dispatch: every (D, R) pair with R < D, and only those", "[dispatch]") {
  std::set<std::pair<int, int>> visited;
  for (int D : kHeadDims)
    for (int R : kRanks) {
      INFO("D = " << D << ", R = " << R);
      if (R < D) {
        const auto got = ra::dispatch_attention(D, R, [&](auto d, auto r) {
          static_assert(decltype(r)::value < decltype(d)::value, "only R < D is instantiated");
          return std::pair<int, int>(decltype(d)::value, decltype(r)::value);
        });
        CHECK(got == std::pair<int, int>(D, R));
        visited.insert(got);
      } else {
        CHECK_THROWS_WITH(
            ra::dispatch_attention(D, R, [](auto, auto) {}),
            Contains("'R' is " + std::to_string(R)) && Contains("D = " + std::to_string(D)));
      }
    }
  std::size_t expected = 0;
  for (int D : kHeadDims)
    for (int R : kRanks) expected += R < D;
  CHECK(visited.size() == expected);
}

TEST_CASE("dispatch: dtypes map to their element types", "[dispatch]") {
  auto name_of = [](ra::DType t) {
    return ra::dispatch_dtype(t, [&](auto tag) {
      using T = typename decltype(tag)::type;
      STATIC_REQUIRE(ra::Element<T>);
      CHECK(ra::dtype_v<T> == t);
      return ra::name(ra::dtype_v<T>);
    });
  };
  CHECK(name_of(ra::DType::f32) == "fp32");
  CHECK(name_of(ra::DType::f16) == "fp16");
  CHECK(name_of(ra::DType::bf16) == "bf16");
  const auto bad = static_cast<ra::DType>(7);
  CHECK_THROWS_AS(name_of(bad), ra::unsupported);
  CHECK_THROWS_WITH(name_of(bad), Contains("dtype code 7") && Contains("fp32, fp16, bf16"));
}

TEST_CASE("dispatch: unsupported values throw ra::unsupported listing the supported ones",
          "[dispatch][errors]") {
  const std::string dims = ra::SupportedHeadDims::to_string();
  const std::string ranks = ra::SupportedRanks::to_string();
  auto noop = [](auto...) {};
  for (int D : {0, 16, 48, 65, 256, -64}) {
    INFO("D = " << D);
    CHECK_THROWS_AS(ra::dispatch_head_dim(D, noop), ra::unsupported);
    CHECK_THROWS_WITH(ra::dispatch_head_dim(D, noop),
                      Contains("head dim D " + std::to_string(D)) && Contains(dims));
    CHECK_THROWS_AS(ra::dispatch_attention(D, 0, noop), ra::unsupported);
    CHECK_THROWS_WITH(ra::dispatch_attention(D, 0, noop),
                      Contains("D = " + std::to_string(D)) && Contains(dims));
  }
  for (int R : {-1, 3, 5, 32, 64}) {
    INFO("R = " << R);
    CHECK_THROWS_AS(ra::dispatch_rank(R, noop), ra::unsupported);
    CHECK_THROWS_WITH(ra::dispatch_rank(R, noop),
                      Contains("reciprocal rank R " + std::to_string(R)) && Contains(ranks));
    CHECK_THROWS_WITH(ra::dispatch_attention(kHeadDims.back(), R, noop),
                      Contains("R = " + std::to_string(R)) && Contains(ranks));
  }
  // The supported list as printed holds every supported value.
  for (int d : kHeadDims) CHECK_THAT(dims, Contains(std::to_string(d)));
  for (int r : kRanks) CHECK_THAT(ranks, Contains(std::to_string(r)));
  // ra::unsupported is an ra::error is a std::runtime_error: one catch clause serves all.
  CHECK_THROWS_AS(ra::dispatch_head_dim(48, noop), ra::error);
  CHECK_THROWS_AS(ra::dispatch_head_dim(48, noop), std::runtime_error);
}

TEST_CASE("dispatch: R >= D throws naming R and D", "[dispatch][errors]") {
  // With the supported lists R < D always holds, so R >= D is reached through the nodes that
  // take D from a view's shape.
  SECTION("check_head_dim_and_rank accepts every supported pair with R < D") {
    for (int D : kHeadDims) {
      for (int R : kRanks) {
        if (R < D) CHECK_NOTHROW(ra::check_head_dim_and_rank("here", D, R));
      }
    }
  }
  SECTION("folded_attention, runtime and compile-time rank") {
    std::vector<float> buf(2 * 3 * 8);
    auto t = ra::make_view(buf.data(), ra::shape(1, 2, 3, 8));  // (B,H,T,D) = (1,2,3,8)
    for (int R : {8, 9, 100}) {
      INFO("R = " << R);
      CHECK_THROWS_AS(ra::folded_attention(t, t, t, R), ra::error);
      CHECK_THROWS_WITH(ra::folded_attention(t, t, t, R),
                        Contains("'R' is " + std::to_string(R)) && Contains("R < D = 8"));
    }
    CHECK_THROWS_WITH(ra::folded_attention<ra::Rank<8>>(t, t, t),
                      Contains("'R' is 8") && Contains("R < D = 8"));
    CHECK_THROWS_WITH(ra::folded_attention<ra::Rank<16>>(t, t, t),
                      Contains("'R' is 16") && Contains("R < D = 8"));
    CHECK_NOTHROW(ra::folded_attention<ra::Rank<4>>(t, t, t));
    CHECK_NOTHROW(ra::folded_attention(t, t, t, 7));
  }
}
