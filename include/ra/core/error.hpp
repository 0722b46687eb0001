// ra/core/error.hpp — the exception types of the host API and the helpers that build their
// messages. Every message names the argument, the value received and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ra {

/// Base of every error ra throws from host code.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// A value that is valid in principle but not instantiated (head dim, rank, dtype, ...).
class unsupported : public error {
 public:
  explicit unsupported(const std::string& what) : error(what) {}
};

namespace detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace detail

/// Throws ra::error "<where>: argument '<arg>' is <value>, expected <expected>" unless ok.
template <class V>
void require_arg(bool ok, std::string_view where, std::string_view arg, const V& value,
             std::string_view expected) {
  if (!ok) {
    throw error(detail::concat(where, ": argument '", arg, "' is ", value, ", expected ",
                               expected));
  }
}

/// Throws ra::error with a free-form message unless ok.
template <class... Args>
void require(bool ok, const Args&... message) {
  if (!ok) throw error(detail::concat(message...));
}

}  // namespace ra
