// tests/cpu/test_any_view.cpp — type-erased views: the element type is checked at run time,
// and a mismatch names the argument, its dtype and the expected one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

TEST_CASE("type-erased views: mismatched dtypes and ranks are named", "[errors][any_view]") {
  std::vector<ra::fp16> a(2 * 3 * 5 * 32), o(a.size());
  std::vector<ra::bf16> b(a.size());
  const auto shape4 = ra::shape(2, 3, 5, 32);
  const ra::AnyView q = ra::erase(ra::make_view(a.data(), shape4));
  const ra::AnyView k_bf16 = ra::erase(ra::make_view(b.data(), shape4));
  const ra::AnyView out = ra::erase(ra::make_view(o.data(), shape4));
  SECTION("a Kf of another dtype") {
    REQUIRE_THROWS_WITH(
        ra::cpu::attention_forward(q, k_bf16, q, out, 4),
        Catch::Contains("'Kf' has dtype bf16") && Catch::Contains("expected fp16 like 'Qf'"));
  }
  SECTION("an O of another dtype") {
    const ra::AnyView out_bf16 = ra::erase(ra::make_view(b.data(), shape4));
    REQUIRE_THROWS_WITH(ra::cpu::attention_forward(q, q, q, out_bf16, 4),
                        Catch::Contains("'O' has dtype bf16"));
  }
  SECTION("a view of the wrong rank") {
    const ra::AnyView flat = ra::erase(ra::make_view(a.data(), ra::shape(2 * 3 * 5 * 32)));
    REQUIRE_THROWS_WITH(ra::cpu::attention_forward(q, flat, q, out, 4),
                        Catch::Contains("'Kf' has rank 1, expected 4"));
  }
  SECTION("as_view names the argument and both types") {
    REQUIRE_THROWS_WITH((ra::as_view<float, 4>(q, "caller", "x")),
                        Catch::Contains("caller: 'x' has dtype fp16, expected fp32"));
  }
  SECTION("matching dtypes give the typed result") {
    RA_TEST_RNG(rng);
    const auto values = ra::test::random_normal<ra::fp16>(rng, a.size());
    std::copy(values.begin(), values.end(), a.begin());  // in place: q, out view a's memory
    std::vector<ra::fp16> typed_out(a.size());
    ra::cpu::attention_forward(q, q, q, out, 4);
    auto v = ra::make_view(static_cast<const ra::fp16*>(a.data()), shape4);
    ra::cpu::attention_forward(ra::folded_attention(v, v, v, 4),
                               ra::make_view(typed_out.data(), shape4));
    for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(o[i].bits == typed_out[i].bits);
  }
}
