// ra/nn/tokenizer.hpp — the tokenizer interface the programs use at run time, and the
// byte-level tokenizer (always available; ra/nn/sentencepiece.hpp adds sub-word tokens where
// libsentencepiece exists).
//
// A tokenizer has a name — what token files record (ra/nn/data.hpp), so tokens are never
// decoded by another tokenizer than the one that made them — a vocabulary, an end-of-text
// token (EOT) that separates documents, encode and decode.
//
// Token v < 256 is the byte v; token 256 is EOT (end of text), which the data preparation
// puts after each document. So the vocabulary is 257 tokens. The model pads it to 320 rows
// of wte (the next multiple of 64: aligned GEMM tiles on the GPU, and the head's (N,V)
// product splits evenly); padded rows are never a token and never a target.
// Any byte string round-trips exactly (UTF-8 or not): decode(encode(s)) == s.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/checksum.hpp>
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

/// A tokenizer chosen at run time (the byte tokenizer, or a SentencePiece model).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// What token files of this tokenizer record ("byte", "sentencepiece:<SHA-256>").
  virtual std::string name() const = 0;
  /// Every token is < vocab().
  virtual std::uint32_t vocab() const = 0;
  /// The end-of-text token.
  virtual std::int32_t eot() const = 0;
  /// The tokens of `text`, without EOT. Throws ra::error when the text cannot be encoded.
  virtual std::vector<std::uint16_t> encode(std::string_view text) const = 0;
  /// The text of `tokens`; EOT becomes ByteTokenizer::kEotText. Throws ra::error naming the
  /// first token outside [0, vocab()).
  virtual std::string decode(std::span<const std::int32_t> tokens) const = 0;
};

namespace detail {

class ByteTokenizerObject final : public Tokenizer {
 public:
  std::string name() const override { return std::string(ByteTokenizer::kName); }
  std::uint32_t vocab() const override { return ByteTokenizer::kVocab; }
  std::int32_t eot() const override { return ByteTokenizer::kEot; }
  std::vector<std::uint16_t> encode(std::string_view text) const override {
    return ByteTokenizer::encode(text);
  }
  std::string decode(std::span<const std::int32_t> tokens) const override {
    return ByteTokenizer::decode(tokens);
  }
};

}  // namespace detail

/// ByteTokenizer behind the Tokenizer interface.
inline std::unique_ptr<Tokenizer> make_byte_tokenizer() {
  return std::make_unique<detail::ByteTokenizerObject>();
}

/// How the name of a SentencePiece model's tokens begins (ra/nn/sentencepiece.hpp).
inline constexpr std::string_view kSentencePiecePrefix = "sentencepiece:";

/// The name token files of a SentencePiece model record: "sentencepiece:" and the SHA-256 of
/// the model file's bytes (so two models never share a name). Needs no SentencePiece library:
/// a program built without it still tells which model made a file's tokens.
inline std::string sentencepiece_name(std::string_view model_file_bytes) {
  return std::string(kSentencePiecePrefix) + sha256_hex(model_file_bytes);
}

/// True when `name` is a SentencePiece model's name (the prefix and 64 hex digits).
inline bool is_sentencepiece_name(std::string_view name) {
  if (name.size() != kSentencePiecePrefix.size() + 64 || !name.starts_with(kSentencePiecePrefix))
    return false;
  for (char c : name.substr(kSentencePiecePrefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace ra::nn
