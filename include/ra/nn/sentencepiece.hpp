// ra/nn/sentencepiece.hpp — sub-word tokens from a SentencePiece model: training a BPE (or
// unigram) model on text, and a model as an nn::Tokenizer. Needs libsentencepiece (Debian:
// libsentencepiece-dev; CMake: link ra::sentencepiece, which exists where it was found).
//
// The training settings are chosen so that tokens round-trip and nothing of the text is lost:
// no normalization (the identity rule, no removal of repeated spaces, no dummy prefix),
// byte fallback (a character outside the pieces becomes its UTF-8 bytes, so no text maps to
// <unk>), whitespace-only pieces allowed (code indentation), digits split. Hence
// decode(encode(s)) == s for any valid UTF-8 text s, with two exceptions of SentencePiece's:
// invalid UTF-8 becomes U+FFFD (the corpus script keeps only UTF-8 files), and U+2581, the
// character it marks spaces with, comes back as a space. Token 0 is <unk> (unused with byte
// fallback), token 1 is EOT ("</s>"), which the data preparation puts after each document; no
// BOS or padding token. The vocabulary is the model's piece count, at most 65536 (token files
// store uint16); the model pads it to a multiple of 64 rows of wte (GPT2Config::padded_vocab()).
// The name token files record is sentencepiece_name() of the model file (ra/nn/tokenizer.hpp).
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <ra/core/error.hpp>
#include <ra/core/file.hpp>
#include <ra/nn/tokenizer.hpp>

namespace ra::nn {

/// How train_sentencepiece() trains a model.
struct SentencePieceTraining {
  std::uint32_t vocab = 16384;     // pieces: <unk>, EOT and the 256 byte pieces included
  std::string model_type = "bpe";  // or "unigram"
  int threads = 1;
  double character_coverage = 0.9995;  // the rest falls back to bytes

  /// Throws ra::error naming a value outside its range.
  void validate(const char* where = "nn::SentencePieceTraining") const {
    require_arg(vocab >= 320 && vocab <= 65536, where, "vocab", vocab,
                "320..65536 (the 256 byte pieces, the special tokens and some merges; token "
                "files store uint16)");
    require_arg(model_type == "bpe" || model_type == "unigram", where, "model_type",
                ra::detail::concat("'", model_type, "'"), "'bpe' or 'unigram'");
    require_arg(threads >= 1, where, "threads", threads, "a positive thread count");
    require_arg(character_coverage > 0.0 && character_coverage <= 1.0, where, "character_coverage",
                character_coverage, "a value in (0, 1]");
  }
};

namespace detail {

class SentenceList final : public sentencepiece::SentenceIterator {
 public:
  explicit SentenceList(const std::vector<std::string>& s) : s_(s) {}
  bool done() const override { return i_ >= s_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return s_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& s_;
  std::size_t i_ = 0;
};

inline void check_status(const sentencepiece::util::Status& s, std::string_view what) {
  require(s.ok(), what, ": SentencePiece says: ", s.ToString());
}

}  // namespace detail

/// Trains a model on `sentences` (lines, or chunks of lines, of the training text; the caller
/// samples them). Returns the model file's bytes. Throws ra::error with SentencePiece's message
/// (for example when the text has too few distinct pieces for the vocabulary).
inline std::string train_sentencepiece(const std::vector<std::string>& sentences,
                                       const SentencePieceTraining& o) {
  o.validate("train_sentencepiece");
  require(!sentences.empty(), "train_sentencepiece: no sentences, expected training text");
  const std::unordered_map<std::string, std::string> args{
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab)},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"unk_id", "0"},
      {"eos_id", "1"},
      {"bos_id", "-1"},
      {"pad_id", "-1"},
      {"hard_vocab_limit", "false"},
      {"max_sentence_length", "16384"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(o.threads)},
      {"minloglevel", "1"},
  };
  detail::SentenceList it(sentences);
  std::string model;
  detail::check_status(sentencepiece::SentencePieceTrainer::Train(args, &it, &model),
                       "train_sentencepiece");
  return model;
}

/// A SentencePiece model as a Tokenizer (see the top of this header).
class SentencePieceTokenizer final : public Tokenizer {
 public:
  /// From the bytes of a model file; `origin` names it in errors. Throws ra::error when the
  /// bytes are not a model, or its vocabulary exceeds 65536 or has no EOT.
  explicit SentencePieceTokenizer(std::string model_bytes, std::string origin = "model")
      : bytes_(std::move(model_bytes)),
        sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
    detail::check_status(sp_->LoadFromSerializedProto(bytes_),
                         ra::detail::concat("SentencePieceTokenizer: '", origin, "'"));
    const int n = sp_->GetPieceSize();
    require(n >= 1 && n <= 65536, "SentencePieceTokenizer: '", origin, "' has ", n,
            " pieces, expected 1..65536 (token files store uint16)");
    require(sp_->eos_id() >= 0, "SentencePieceTokenizer: '", origin,
            "' has no end-of-sentence piece, expected one as EOT (train_sentencepiece makes "
            "token 1 EOT)");
    name_ = sentencepiece_name(bytes_);
  }

  /// Reads a model file. Throws ra::error naming it when it cannot be read or is no model.
  static SentencePieceTokenizer load(const std::string& path) {
    return SentencePieceTokenizer(read_file(path, "SentencePieceTokenizer"), path);
  }

  /// The model file's bytes.
  const std::string& model_bytes() const { return bytes_; }

  std::string name() const override { return name_; }
  std::uint32_t vocab() const override { return static_cast<std::uint32_t>(sp_->GetPieceSize()); }
  std::int32_t eot() const override { return sp_->eos_id(); }

  /// Thread-safe (SentencePiece's encoding is const).
  std::vector<std::uint16_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    detail::check_status(sp_->Encode(text, &ids), "SentencePieceTokenizer::encode");
    return {ids.begin(), ids.end()};  // every id < vocab() <= 65536
  }

  std::string decode(std::span<const std::int32_t> tokens) const override {
    const auto n = static_cast<std::int64_t>(vocab());
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      std::string piece;
      detail::check_status(sp_->Decode(run, &piece), "SentencePieceTokenizer::decode");
      out += piece;
      run.clear();
    };
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const auto v = static_cast<std::int64_t>(tokens[i]);
      require(v >= 0 && v < n, "SentencePieceTokenizer::decode: token ", i, " is ", v,
              ", expected a token of the vocabulary (0..", n - 1, ")");
      if (v == eot()) {
        flush();
        out += ByteTokenizer::kEotText;
      } else {
        run.push_back(static_cast<int>(v));
      }
    }
    flush();
    return out;
  }

 private:
  std::string bytes_, name_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace ra::nn
