// tests/cpu/test_dtype.cpp — the host fp16 and bf16 element types, exhaustively.
//
// Decoding is checked for all 65536 bit patterns of each type against an independent
// reference (sign · 2^e · significand built with std::ldexp in double); encoding round-trips
// every non-NaN pattern, rounds to nearest even on every tie between adjacent values (normal
// and subnormal, both signs), handles overflow, underflow, inf and NaN, and keeps the
// relative error of a conversion within the type's unit roundoff.
#include <catch2/catch.hpp>

#include <ra/core.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

namespace {

using std::uint16_t;
using std::uint32_t;

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Format of a 16-bit float: exponent bits, mantissa bits, bias.
struct Format {
  int exp_bits, mant_bits, bias;
};
constexpr Format kHalf{5, 10, 15};
constexpr Format kBf16{8, 7, 127};

// The value of a bit pattern, computed from the definition of IEEE binary formats.
double reference_value(uint16_t bits, Format f) {
  const int sign = bits >> 15;
  const int exp = (bits >> f.mant_bits) & ((1 << f.exp_bits) - 1);
  const int mant = bits & ((1 << f.mant_bits) - 1);
  const int max_exp = (1 << f.exp_bits) - 1;
  double v;
  if (exp == max_exp) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - f.bias - f.mant_bits);  // subnormal
  } else {
    v = std::ldexp(static_cast<double>(mant + (1 << f.mant_bits)), exp - f.bias - f.mant_bits);
  }
  return sign ? -v : v;
}

bool is_nan_pattern(uint16_t bits, Format f) {
  const int max_exp = (1 << f.exp_bits) - 1;
  return ((bits >> f.mant_bits) & max_exp) == max_exp && (bits & ((1 << f.mant_bits) - 1)) != 0;
}

template <class H>
constexpr Format format_of() {
  return std::is_same_v<H, ra::fp16> ? kHalf : kBf16;
}

template <class H>
uint16_t encode(float x) {
  return H(x).bits;
}

template <class H>
float decode(uint16_t bits) {
  return static_cast<float>(H::from_bits(bits));
}

std::string hex(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

}  // namespace

TEMPLATE_TEST_CASE("dtype: decoding all 65536 patterns matches the IEEE definition", "[dtype]",
                   ra::fp16, ra::bf16) {
  constexpr Format f = format_of<TestType>();
  int wrong = 0;
  std::string first;
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const float got = decode<TestType>(bits);
    const double want = reference_value(bits, f);
    const bool ok = std::isnan(want) ? std::isnan(got) && std::signbit(got) == std::signbit(want)
                                     : static_cast<double>(got) == want &&
                                           std::signbit(got) == std::signbit(want);
    if (!ok && wrong++ == 0) first = hex(b);
  }
  INFO("first wrong pattern: " << first);
  REQUIRE(wrong == 0);
}

TEMPLATE_TEST_CASE("dtype: every non-NaN pattern round-trips through float", "[dtype]", ra::fp16,
                   ra::bf16) {
  constexpr Format f = format_of<TestType>();
  int wrong = 0, nans = 0;
  std::string first;
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const float x = decode<TestType>(bits);
    const uint16_t back = encode<TestType>(x);
    bool ok;
    if (is_nan_pattern(bits, f)) {
      ++nans;  // NaN payloads need not survive, but NaN-ness and the sign must
      ok = is_nan_pattern(back, f) && (back >> 15) == (bits >> 15);
    } else {
      ok = back == bits;
    }
    if (!ok && wrong++ == 0) first = hex(b) + " -> " + hex(back);
  }
  INFO("first wrong pattern: " << first);
  REQUIRE(wrong == 0);
  const int mant_patterns = (1 << f.mant_bits) - 1;
  REQUIRE(nans == 2 * mant_patterns);
}

TEMPLATE_TEST_CASE("dtype: ties between adjacent values round to even", "[dtype]", ra::fp16,
                   ra::bf16) {
  constexpr Format f = format_of<TestType>();
  const uint32_t max_finite = ((((1u << f.exp_bits) - 1u) << f.mant_bits)) - 1u;
  int ties = 0, wrong = 0;
  std::string first;
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t a = 0; a < max_finite; ++a) {
      // Adjacent values lo < hi in magnitude; their midpoint has one bit more than the
      // format, so it is exact in float, and so are the floats just below and above it.
      const auto lo = static_cast<uint16_t>(sign | a), hi = static_cast<uint16_t>(sign | (a + 1));
      const double mid_d = (reference_value(lo, f) + reference_value(hi, f)) / 2;
      const float mid = static_cast<float>(mid_d);
      if (static_cast<double>(mid) != mid_d) {
        if (wrong++ == 0) first = "midpoint not exact in float at " + hex(lo);
        continue;
      }
      const uint16_t even = (lo & 1u) == 0 ? lo : hi;
      const float toward_lo = std::nextafter(mid, sign ? std::numeric_limits<float>::infinity()
                                                       : -std::numeric_limits<float>::infinity());
      const float toward_hi = std::nextafter(mid, sign ? -std::numeric_limits<float>::infinity()
                                                       : std::numeric_limits<float>::infinity());
      ++ties;
      const bool ok = encode<TestType>(mid) == even && encode<TestType>(toward_lo) == lo &&
                      encode<TestType>(toward_hi) == hi;
      if (!ok && wrong++ == 0) first = hex(lo) + " / " + hex(hi);
    }
  }
  INFO("first wrong pair: " << first);
  REQUIRE(wrong == 0);
  REQUIRE(ties == 2 * static_cast<int>(max_finite));
}

TEST_CASE("dtype: fp16 overflow, underflow, inf and NaN", "[dtype][fp16]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 65504 is the largest half; 65520 lies halfway to 2^16 and rounds to even, i.e. to inf.
  CHECK(encode<ra::fp16>(65504.0f) == 0x7bff);
  CHECK(encode<ra::fp16>(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(encode<ra::fp16>(65520.0f) == 0x7c00);
  CHECK(encode<ra::fp16>(-65520.0f) == 0xfc00);
  CHECK(encode<ra::fp16>(1e6f) == 0x7c00);
  CHECK(encode<ra::fp16>(std::numeric_limits<float>::max()) == 0x7c00);
  CHECK(encode<ra::fp16>(-std::numeric_limits<float>::max()) == 0xfc00);
  CHECK(encode<ra::fp16>(inf) == 0x7c00);
  CHECK(encode<ra::fp16>(-inf) == 0xfc00);
  // 2^-24 is the smallest subnormal half; 2^-25 is the tie with 0 and rounds to even (0).
  CHECK(encode<ra::fp16>(0x1p-24f) == 0x0001);
  CHECK(encode<ra::fp16>(0x1p-25f) == 0x0000);
  CHECK(encode<ra::fp16>(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
  CHECK(encode<ra::fp16>(-0x1p-25f) == 0x8000);
  CHECK(encode<ra::fp16>(1e-30f) == 0x0000);
  CHECK(encode<ra::fp16>(-1e-30f) == 0x8000);  // the sign of an underflow is kept
  CHECK(encode<ra::fp16>(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(encode<ra::fp16>(-0.0f) == 0x8000);
  // 2^-14 (smallest normal) and the largest subnormal just below it.
  CHECK(encode<ra::fp16>(0x1p-14f) == 0x0400);
  CHECK(encode<ra::fp16>(0x1p-14f - 0x1p-24f) == 0x03ff);
  // NaN stays NaN with its sign, also for payloads that live only in the low float bits.
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0x7f801fffu, 0xffc00000u, 0xff800001u}) {
    INFO("float NaN " << hex(nan_bits));
    const uint16_t h = encode<ra::fp16>(bits_to_float(nan_bits));
    CHECK(is_nan_pattern(h, kHalf));
    CHECK((h >> 15) == (nan_bits >> 31));
  }
  CHECK(std::isnan(decode<ra::fp16>(0x7e00)));
  CHECK(std::isinf(decode<ra::fp16>(0x7c00)));
  CHECK(std::isnan(static_cast<float>(ra::fp16(nan))));
}

TEST_CASE("dtype: bf16 overflow, underflow, inf and NaN", "[dtype][bf16]") {
  const float inf = std::numeric_limits<float>::infinity();
  // 0x7f7f is the largest bf16; float 0x7f7f8000 lies halfway to 2^128 and rounds to inf.
  CHECK(encode<ra::bf16>(bits_to_float(0x7f7f7fffu)) == 0x7f7f);
  CHECK(encode<ra::bf16>(bits_to_float(0x7f7f8000u)) == 0x7f80);
  CHECK(encode<ra::bf16>(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(encode<ra::bf16>(-std::numeric_limits<float>::max()) == 0xff80);
  CHECK(encode<ra::bf16>(inf) == 0x7f80);
  CHECK(encode<ra::bf16>(-inf) == 0xff80);
  // bf16 has float's exponent range: float subnormals map onto bf16 subnormals.
  CHECK(encode<ra::bf16>(bits_to_float(0x00010000u)) == 0x0001);
  CHECK(encode<ra::bf16>(bits_to_float(0x00008000u)) == 0x0000);  // tie with 0 -> even
  CHECK(encode<ra::bf16>(bits_to_float(0x00018000u)) == 0x0002);  // tie 1|2 -> even
  CHECK(encode<ra::bf16>(bits_to_float(0x00008001u)) == 0x0001);
  CHECK(encode<ra::bf16>(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(encode<ra::bf16>(-std::numeric_limits<float>::denorm_min()) == 0x8000);
  CHECK(encode<ra::bf16>(-0.0f) == 0x8000);
  // A NaN whose payload sits in the low 16 bits must not truncate to inf.
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0x7f80ffffu, 0xffc00000u, 0xff800001u}) {
    INFO("float NaN " << hex(nan_bits));
    const uint16_t b = encode<ra::bf16>(bits_to_float(nan_bits));
    CHECK(is_nan_pattern(b, kBf16));
    CHECK((b >> 15) == (nan_bits >> 31));
  }
  CHECK(float_to_bits(decode<ra::bf16>(0x3f80)) == 0x3f800000u);
}

TEMPLATE_TEST_CASE("dtype: a conversion's relative error is within the unit roundoff", "[dtype]",
                   ra::fp16, ra::bf16, float) {
  constexpr ra::DType t = ra::dtype_v<TestType>;
  const double u = ra::unit_roundoff(t);
  // The normal range of the type: [2^-14, 65504] for fp16, float's range otherwise.
  const double lo = t == ra::DType::f16 ? 0x1p-14 : 0x1p-126;
  const double hi = t == ra::DType::f16 ? 65504.0 : 0x1p127;
  double worst = 0.0, worst_x = 0.0;
  // A geometric sweep with an irrational-ish ratio visits many mantissas and every binade.
  for (double x = lo; x < hi; x *= 1.0009765625 + 1e-7) {
    for (double s : {1.0, -1.0}) {
      // fp16 and bf16 convert from float, so their inputs are floats (a double input would
      // be rounded twice); float's own inputs are doubles.
      const double in =
          std::is_same_v<TestType, float> ? s * x : static_cast<double>(static_cast<float>(s * x));
      const double back = ra::convert<double>(ra::convert<TestType>(in));
      const double rel = std::fabs(back - in) / std::fabs(in);
      if (rel > worst) {
        worst = rel;
        worst_x = in;
      }
    }
  }
  INFO("worst relative error " << worst << " at " << worst_x << ", unit roundoff " << u);
  REQUIRE(worst <= u);
  REQUIRE(worst > u / 2);  // the sweep did reach near-ties: the bound is tight, not vacuous
}

TEST_CASE("dtype: tags, sizes and names", "[dtype]") {
  STATIC_REQUIRE(sizeof(ra::fp16) == 2 && alignof(ra::fp16) == 2);
  STATIC_REQUIRE(sizeof(ra::bf16) == 2 && alignof(ra::bf16) == 2);
  STATIC_REQUIRE(ra::dtype_v<float> == ra::DType::f32);
  STATIC_REQUIRE(ra::dtype_v<const ra::fp16> == ra::DType::f16);
  STATIC_REQUIRE(ra::dtype_v<ra::bf16> == ra::DType::bf16);
  STATIC_REQUIRE(ra::Element<float> && ra::Element<ra::fp16> && ra::Element<const ra::bf16>);
  STATIC_REQUIRE_FALSE(ra::Element<double>);
  STATIC_REQUIRE_FALSE(ra::Element<std::uint16_t>);
  CHECK(ra::size_of(ra::DType::f32) == 4);
  CHECK(ra::size_of(ra::DType::f16) == 2);
  CHECK(ra::size_of(ra::DType::bf16) == 2);
  CHECK(ra::name(ra::DType::f32) == "fp32");
  CHECK(ra::name(ra::DType::f16) == "fp16");
  CHECK(ra::name(ra::DType::bf16) == "bf16");
  std::ostringstream os;
  os << ra::DType::bf16;
  CHECK(os.str() == "bf16");
  CHECK(ra::unit_roundoff(ra::DType::f32) == 0x1p-24);
  CHECK(ra::unit_roundoff(ra::DType::f16) == 0x1p-11);
  CHECK(ra::unit_roundoff(ra::DType::bf16) == 0x1p-8);
  CHECK(ra::convert<ra::fp16>(1.0).bits == 0x3c00);
  CHECK(ra::convert<ra::bf16>(-2.0f).bits == 0xc000);
  CHECK(ra::convert<double>(ra::fp16::from_bits(0x3555)) == reference_value(0x3555, kHalf));
  CHECK(ra::convert<float>(ra::bf16::from_bits(0x4049)) == 3.140625f);
}
