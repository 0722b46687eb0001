// ra/core/dtype.hpp — element types usable on the host: fp32 (float), fp16 and bf16.
//
// fp16 and bf16 are 2-byte storage types with round-to-nearest-even conversion from float.
// They have the same size and bit layout as CUDA's __half and __nv_bfloat16, so the CUDA
// backend reinterprets their pointers without copying.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string_view>
#include <type_traits>

#include <ra/core/config.hpp>

namespace ra {

namespace detail {

RA_HOST_DEVICE inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

RA_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE binary16 from binary32, round to nearest even, with subnormals, inf and NaN.
RA_HOST_DEVICE inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow
  if (abs < 0x38800000u) {  // subnormal half (or zero)
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 113 - static_cast<int>(abs >> 23) + 13;  // 126 - exp + 14 - 1
    const std::uint32_t half_mant = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    std::uint32_t r = half_mant;
    if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = ((abs - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<std::uint16_t>(sign | r);
}

RA_HOST_DEVICE inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    int e = -1;
    do {  // normalise the subnormal
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    return bits_float(sign | static_cast<std::uint32_t>(112 - e) << 23 | (mant & 0x3ffu) << 13);
  }
  return bits_float(sign | (exp + 112u) << 23 | mant << 13);
}

RA_HOST_DEVICE inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

RA_HOST_DEVICE inline float bf16_bits_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace detail

/// IEEE half precision storage type (same bits as CUDA's __half).
struct alignas(2) fp16 {
  std::uint16_t bits = 0;
  fp16() = default;
  RA_HOST_DEVICE explicit fp16(float f) : bits(detail::float_to_half_bits(f)) {}
  RA_HOST_DEVICE explicit fp16(double f) : fp16(static_cast<float>(f)) {}
  RA_HOST_DEVICE operator float() const { return detail::half_bits_to_float(bits); }
  RA_HOST_DEVICE static fp16 from_bits(std::uint16_t b) {
    fp16 h;
    h.bits = b;
    return h;
  }
};

/// bfloat16 storage type (same bits as CUDA's __nv_bfloat16).
struct alignas(2) bf16 {
  std::uint16_t bits = 0;
  bf16() = default;
  RA_HOST_DEVICE explicit bf16(float f) : bits(detail::float_to_bf16_bits(f)) {}
  RA_HOST_DEVICE explicit bf16(double f) : bf16(static_cast<float>(f)) {}
  RA_HOST_DEVICE operator float() const { return detail::bf16_bits_to_float(bits); }
  RA_HOST_DEVICE static bf16 from_bits(std::uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }
};

using fp32 = float;

static_assert(sizeof(fp16) == 2 && sizeof(bf16) == 2);

/// Runtime element-type tag.
enum class DType : std::uint8_t { f32, f16, bf16 };

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> : std::integral_constant<DType, DType::f32> {};
template <>
struct dtype_of<fp16> : std::integral_constant<DType, DType::f16> {};
template <>
struct dtype_of<bf16> : std::integral_constant<DType, DType::bf16> {};

template <class T>
inline constexpr DType dtype_v = dtype_of<std::remove_cv_t<T>>::value;

/// True for the element types ra stores tensors in.
template <class T>
concept Element = std::same_as<std::remove_cv_t<T>, float> ||
                  std::same_as<std::remove_cv_t<T>, fp16> || std::same_as<std::remove_cv_t<T>, bf16>;

constexpr std::string_view name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << name(t); }

constexpr std::size_t size_of(DType t) { return t == DType::f32 ? 4 : 2; }

/// Unit roundoff of an element type (2^-p): used by tests to state tolerances.
constexpr double unit_roundoff(DType t) {
  switch (t) {
    case DType::f32: return 0x1p-24;
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
  }
  return 1.0;
}

/// Converts between element types and double through float (the host reference path).
template <class To, class From>
RA_HOST_DEVICE To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, double>) {
    return static_cast<double>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<From, double>) {
    return To(static_cast<float>(v));
  } else {
    return To(static_cast<float>(v));
  }
}

}  // namespace ra
