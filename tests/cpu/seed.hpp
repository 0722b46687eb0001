// tests/cpu/seed.hpp — the base seed of one run of the CPU tests.
//
// Drawn fresh once per process (std::random_device), unless $RA_TEST_SEED gives it (decimal,
// or hexadecimal with 0x). tests/cpu/main.cpp prints it before any test runs, and again under
// a failure, as the RA_TEST_SEED=... that reproduces the run. Under CTest each test case runs
// as its own process, so each case draws its own seed and prints it in its own output.
#pragma once

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

namespace ra::test {

/// Parses a seed given as decimal or 0x-hexadecimal digits; throws std::invalid_argument,
/// naming the text, on anything else (a sign, trailing characters, overflow, nothing).
inline std::uint64_t parse_seed(const char* text) {
  const std::string s = text;
  const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  const std::string digits = hex ? s.substr(2) : s;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(digits.c_str(), &end, hex ? 16 : 10);
  // strtoull itself accepts leading blanks and a sign: require a digit first.
  const bool digit_first = !digits.empty() && std::isxdigit(static_cast<unsigned char>(digits[0]));
  if (!digit_first || *end != '\0' || errno == ERANGE)
    throw std::invalid_argument("RA_TEST_SEED is '" + s +
                                "', expected a decimal or 0x-hexadecimal unsigned 64-bit number");
  return static_cast<std::uint64_t>(v);
}

/// Whether the run's seed came from $RA_TEST_SEED (else it was drawn fresh).
inline bool seed_from_environment() {
  return std::getenv("RA_TEST_SEED") != nullptr;
}

/// The run's base seed: $RA_TEST_SEED, else 64 fresh bits; the same value for the whole
/// process.
inline std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    if (const char* s = std::getenv("RA_TEST_SEED")) return parse_seed(s);
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }();
  return seed;
}

}  // namespace ra::test
