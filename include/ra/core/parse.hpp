// ra/core/parse.hpp — strict numbers from text: the one parser of every numeric flag.
//
// The whole text must be the number (no leading space or '+', no trailing characters: "10abc"
// is an error, not 10), it must fit the type without wrapping ("4294967300" is not an int)
// and lie in the range the caller gives for its meaning; real numbers must be finite ("inf"
// and "nan" are errors). Each error names the flag, the text given and what was expected:
//   "train_gpt2: --R '4294967300' is out of range, expected an integer in [0, 2147483647]"
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <ra/core/error.hpp>

namespace ra {

/// The range of a real-valued flag; each bound is inclusive unless marked open.
struct RealRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;
  bool max_open = false;

  bool contains(double x) const {
    return (min_open ? x > min : x >= min) && (max_open ? x < max : x <= max);
  }
};

namespace detail {

template <std::integral Int>
std::string integer_range_text(Int min, Int max) {
  if (max == std::numeric_limits<Int>::max())
    return concat("an integer >= ", +min, " (at most ", +max, ")");
  return concat("an integer in [", +min, ", ", +max, "]");
}

inline std::string real_range_text(const RealRange& r) {
  const bool low = std::isfinite(r.min), high = std::isfinite(r.max);
  if (low && high)
    return concat("a number in ", r.min_open ? "(" : "[", r.min, ", ", r.max,
                  r.max_open ? ")" : "]");
  if (low) return concat("a finite number ", r.min_open ? "> " : ">= ", r.min);
  if (high) return concat("a finite number ", r.max_open ? "< " : "<= ", r.max);
  return "a finite number";
}

}  // namespace detail

/// `text` as an integer of type Int in [min, max]. `flag` names it in errors, e.g.
/// "train_gpt2: --R". Throws ra::error when the text is not a whole decimal integer, does
/// not fit Int, or lies outside [min, max].
template <std::integral Int>
Int parse_integer(std::string_view flag, std::string_view text,
                  Int min = std::numeric_limits<Int>::min(),
                  Int max = std::numeric_limits<Int>::max()) {
  Int v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool whole = ec == std::errc{} && end == text.data() + text.size();
  if (ec == std::errc::result_out_of_range || (whole && (v < min || v > max)))
    throw error(detail::concat(flag, " '", text, "' is out of range, expected ",
                               detail::integer_range_text(min, max)));
  if (!whole)
    throw error(detail::concat(flag, " '", text, "' is not an integer, expected ",
                               detail::integer_range_text(min, max)));
  return v;
}

/// `text` as a finite double in `range`. Throws ra::error when the text is not a whole
/// decimal number, is infinite or NaN (or overflows a double), or lies outside `range`.
inline double parse_real(std::string_view flag, std::string_view text, RealRange range = {}) {
  double v = 0.0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool whole = ec == std::errc{} && end == text.data() + text.size();
  if (ec == std::errc::result_out_of_range || (whole && !std::isfinite(v)))
    throw error(detail::concat(flag, " '", text, "' is not finite, expected ",
                               detail::real_range_text(range)));
  if (!whole)
    throw error(detail::concat(flag, " '", text, "' is not a number, expected ",
                               detail::real_range_text(range)));
  if (!range.contains(v))
    throw error(detail::concat(flag, " '", text, "' is out of range, expected ",
                               detail::real_range_text(range)));
  return v;
}

/// A comma-separated list of integers in [min, max] ("1,2,3"), each parsed as
/// parse_integer() does. With `distinct`, a value given twice is an error. Throws ra::error
/// naming the flag, the text and the offending item (an empty list or item included).
template <std::integral Int>
std::vector<Int> parse_integer_list(std::string_view flag, std::string_view text, bool distinct,
                                    Int min = std::numeric_limits<Int>::min(),
                                    Int max = std::numeric_limits<Int>::max()) {
  std::vector<Int> out;
  std::set<Int> seen;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    require(!item.empty(), flag, " '", text, "' has an empty item, expected ",
            "comma-separated integers such as 1,2,3");
    const Int v = parse_integer<Int>(detail::concat(flag, " item"), item, min, max);
    require(!distinct || seen.insert(v).second, flag, " '", text, "' repeats ", +v,
            ", expected distinct values");
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace ra
