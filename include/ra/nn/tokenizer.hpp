// ra/nn/tokenizer.hpp — the byte-level tokenizer.
//
// Token v < 256 is the byte v; token 256 is EOT (end of text), which the data preparation
// puts after each document. So the vocabulary is 257 tokens. The model pads it to 320 rows
// of wte (the next multiple of 64: aligned GEMM tiles on the GPU, and the head's (N,V)
// product splits evenly); padded rows are never a token and never a target.
// Any byte string round-trips exactly (UTF-8 or not): decode(encode(s)) == s.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra::nn {

/// Bytes as tokens, plus an end-of-text token.
struct ByteTokenizer {
  /// The name token files record (ra/nn/data.hpp), so data of another tokenizer is refused.
  static constexpr std::string_view kName = "byte";
  static constexpr std::int32_t kEot = 256;
  static constexpr std::int32_t kVocab = 257;
  /// What decode() writes for EOT.
  static constexpr std::string_view kEotText = "<|endoftext|>";

  /// One token per byte of `text`.
  static std::vector<std::uint16_t> encode(std::string_view text) {
    std::vector<std::uint16_t> t(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) t[i] = static_cast<unsigned char>(text[i]);
    return t;
  }

  /// The text of `tokens` (any integer type); EOT becomes kEotText. Throws ra::error naming
  /// the first token outside [0, 257).
  template <class Int>
  static std::string decode(std::span<const Int> tokens) {
    std::string s;
    s.reserve(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const auto v = static_cast<std::int64_t>(tokens[i]);
      if (v == kEot) {
        s += kEotText;
      } else {
        require(v >= 0 && v < 256, "ByteTokenizer::decode: token ", i, " is ", v,
                ", expected a byte (0..255) or EOT (256)");
        s += static_cast<char>(static_cast<unsigned char>(v));
      }
    }
    return s;
  }
  template <class Int>
  static std::string decode(const std::vector<Int>& tokens) {
    return decode(std::span<const Int>(tokens));
  }
};

}  // namespace ra::nn
