// tests/cpu/test_sentencepiece.cpp — sub-word tokens (ra/nn/sentencepiece.hpp; built only where
// libsentencepiece exists, otherwise CTest reports cpu/sentencepiece_not_built as skipped): a
// tiny BPE model trained on the embedded sample round-trips text, is named by the SHA-256 of
// its model file, and token files of another model (or of bytes) are refused by name.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/core/file.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/sentencepiece.hpp>
#include <ra/nn/tokenizer.hpp>

#include "sample.hpp"

namespace {

using namespace ra;

using test::sample_texts;

// Chunks of about 1 KB of whole lines, as prepare_data feeds the trainer.
std::vector<std::string> chunks(const std::vector<std::string>& texts, std::size_t skip = 0) {
  std::vector<std::string> out;
  for (std::size_t i = skip; i < texts.size(); ++i) {
    std::string chunk;
    std::size_t start = 0;
    while (start < texts[i].size()) {
      std::size_t end = texts[i].find('\n', start);
      end = end == std::string::npos ? texts[i].size() : end + 1;
      chunk.append(texts[i], start, end - start);
      if (chunk.size() >= 1024) out.push_back(std::move(chunk)), chunk.clear();
      start = end;
    }
    if (!chunk.empty()) out.push_back(chunk);
  }
  return out;
}

std::vector<std::int32_t> as_int(const std::vector<std::uint16_t>& t) {
  return {t.begin(), t.end()};
}

struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("ra_test_spm_" + std::to_string(std::random_device{}()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
};

// One model for the whole binary: trained once (about half a second).
const nn::SentencePieceTokenizer& sample_model() {
  static const nn::SentencePieceTokenizer tok = [] {
    nn::SentencePieceTraining t;
    t.vocab = 400;
    return nn::SentencePieceTokenizer(nn::train_sentencepiece(chunks(sample_texts()), t));
  }();
  return tok;
}

}  // namespace

TEST_CASE(
    "SentencePiece: a BPE model trained on the sample round-trips text and is named by "
    "its SHA-256",
    "[tokenizer][sentencepiece]") {
  const auto& tok = sample_model();
  CHECK(tok.vocab() <= 400);
  CHECK(tok.vocab() > 256);  // the byte pieces and some merges
  CHECK(tok.eot() == 1);
  CHECK(tok.name() == "sentencepiece:" + sha256_hex(tok.model_bytes()));
  CHECK(nn::is_sentencepiece_name(tok.name()));
  std::size_t bytes = 0, tokens = 0;
  for (const auto& text : sample_texts()) {
    const auto t = tok.encode(text);
    for (auto id : t) REQUIRE(id < tok.vocab());
    CHECK(tok.decode(as_int(t)) == text);
    bytes += text.size();
    tokens += t.size();
  }
  INFO(bytes << " bytes, " << tokens << " tokens");
  CHECK(tokens < bytes * 3 / 4);  // sub-words: fewer tokens than bytes
  // What the sample lacks still round-trips: indentation, blank lines, tabs, other scripts
  // and emoji (byte fallback), the EOT piece's text taken literally.
  for (const std::string s : {"", "  \tindent\n\n\n    x = y;\t// c\n", "ünïcødé — 数字 😀",
                              "</s> <unk> literal", "trailing spaces   "}) {
    INFO("text '" << s << "'");
    CHECK(tok.decode(as_int(tok.encode(s))) == s);
  }
  // The one exception, documented in the header: SentencePiece's own whitespace mark U+2581
  // in the text comes back as a space.
  CHECK(tok.decode(as_int(tok.encode("a\u2581b"))) == "a b");
  // EOT decodes to the same marker as the byte tokenizer's; documents on each side intact.
  auto a = as_int(tok.encode("first")), b = as_int(tok.encode("second"));
  a.push_back(tok.eot());
  a.insert(a.end(), b.begin(), b.end());
  CHECK(tok.decode(a) == "first<|endoftext|>second");
  const std::vector<std::int32_t> bad{5, static_cast<std::int32_t>(tok.vocab())};
  CHECK_THROWS_WITH(tok.decode(bad), Catch::Contains("token 1 is " + std::to_string(tok.vocab())) &&
                                         Catch::Contains("vocabulary"));
}

TEST_CASE("SentencePiece: training is deterministic and another model has another name",
          "[tokenizer][sentencepiece]") {
  nn::SentencePieceTraining t;
  t.vocab = 400;
  const auto again = nn::SentencePieceTokenizer(nn::train_sentencepiece(chunks(sample_texts()), t));
  CHECK(again.name() == sample_model().name());
  t.vocab = 360;
  const auto other =
      nn::SentencePieceTokenizer(nn::train_sentencepiece(chunks(sample_texts(), 3), t));
  CHECK(other.name() != sample_model().name());
}

TEST_CASE(
    "SentencePiece: token files record the model, and files of another tokenizer are "
    "refused by name",
    "[tokenizer][sentencepiece][data]") {
  TempDir dir;
  const auto& tok = sample_model();
  const auto texts = sample_texts();
  std::vector<std::uint16_t> tokens;
  for (const auto& text : texts) {
    const auto t = tok.encode(text);
    tokens.insert(tokens.end(), t.begin(), t.end());
    tokens.push_back(static_cast<std::uint16_t>(tok.eot()));
  }
  nn::write_tokens(dir.file("train.bin"), tokens, tok.vocab(), tok.name());
  const auto file = nn::read_tokens(dir.file("train.bin"));
  CHECK(file.tokenizer == tok.name());
  CHECK(file.vocab == tok.vocab());
  CHECK(file.tokens == tokens);
  CHECK(nn::read_token_header(dir.file("train.bin")).tokenizer == tok.name());
  CHECK_NOTHROW(nn::require_tokenizer(file, tok.name(), tok.vocab(), "trainer"));
  // The byte tokenizer, and a model trained on other text, refuse these tokens.
  const auto bytes = nn::make_byte_tokenizer();
  CHECK_THROWS_WITH(nn::require_tokenizer(file, bytes->name(), bytes->vocab(), "trainer"),
                    Catch::Contains("holds tokens of tokenizer '" + tok.name()) &&
                        Catch::Contains("expected tokenizer 'byte' with vocab 257"));
  nn::SentencePieceTraining t;
  t.vocab = 380;
  const nn::SentencePieceTokenizer other(nn::train_sentencepiece(chunks(texts, 5), t));
  CHECK_THROWS_WITH(nn::require_tokenizer(file, other.name(), other.vocab(), "trainer"),
                    Catch::Contains("expected tokenizer '" + other.name()));
  // The same model from its file: the same name, the same tokens.
  write_file_atomic(dir.file("tokenizer.model"), tok.model_bytes(), "test");
  const auto loaded = nn::SentencePieceTokenizer::load(dir.file("tokenizer.model"));
  CHECK(loaded.name() == tok.name());
  CHECK(loaded.encode(texts[0]) == tok.encode(texts[0]));
}

TEST_CASE("SentencePiece: bad models and settings name the problem",
          "[tokenizer][sentencepiece][errors]") {
  TempDir dir;
  write_file_atomic(dir.file("junk.model"), "not a model", "test");
  CHECK_THROWS_WITH(nn::SentencePieceTokenizer::load(dir.file("junk.model")),
                    Catch::Contains("junk.model") && Catch::Contains("SentencePiece says"));
  CHECK_THROWS_WITH(nn::SentencePieceTokenizer::load(dir.file("missing.model")),
                    Catch::Contains("missing.model"));
  nn::SentencePieceTraining t;
  t.vocab = 70000;
  CHECK_THROWS_WITH(nn::train_sentencepiece({"text"}, t), Catch::Contains("vocab") &&
                                                              Catch::Contains("70000") &&
                                                              Catch::Contains("uint16"));
  t.vocab = 400;
  t.model_type = "wordpiece";
  CHECK_THROWS_WITH(nn::train_sentencepiece({"text"}, t), Catch::Contains("'wordpiece'"));
  t.model_type = "bpe";
  CHECK_THROWS_WITH(nn::train_sentencepiece({}, t), Catch::Contains("no sentences"));
}
