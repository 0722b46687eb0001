// tests/cpu/test_data.cpp — the byte tokenizer (round trip), token files (round trip and
// every error: missing, bad magic, bad version, truncated, trailing bytes, a checksum
// mismatch, token out of range, another tokenizer or vocabulary) and the batch loader
// (windows, seeded order per epoch, inputs/targets shift, cursor, data checksum).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/tokenizer.hpp>

namespace {

using namespace ra;

// A fresh temporary directory per test case, removed afterwards.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("ra_test_data_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Recomputes a token file's checksum (bytes 24..27) after an edit, so that the check behind
// the checksum is what the edit meets.
std::string resealed(std::string b) {
  ra::Crc32c c;
  c.update(std::string_view(b).substr(0, 24));
  c.update(std::string_view(b).substr(28));
  const std::uint32_t crc = c.value();
  for (int i = 0; i < 4; ++i)
    b[24 + static_cast<std::size_t>(i)] = static_cast<char>(crc >> (8 * i));
  return b;
}

std::shared_ptr<nn::TokenFile> counting(std::size_t n, std::uint32_t vocab = 65536) {
  auto t = std::make_shared<nn::TokenFile>();
  t->path = "counting";
  t->vocab = vocab;
  for (std::size_t i = 0; i < n; ++i) t->tokens.push_back(static_cast<std::uint16_t>(i));
  return t;
}

}  // namespace

TEST_CASE("byte tokenizer: every byte string round-trips and EOT decodes to its marker",
          "[data][tokenizer]") {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::string text = "Reciprocal attention — ü, \xff\xfe not UTF-8\n" + all;
  const auto t = nn::ByteTokenizer::encode(text);
  REQUIRE(t.size() == text.size());
  CHECK(t[0] == 'R');
  CHECK(*std::max_element(t.begin(), t.end()) == 255);
  CHECK(nn::ByteTokenizer::decode(t) == text);
  const std::vector<int> with_eot{'h', 'i', nn::ByteTokenizer::kEot, 'x'};
  CHECK(nn::ByteTokenizer::decode(with_eot) == "hi<|endoftext|>x");
  CHECK(nn::ByteTokenizer::kVocab == 257);
  const std::vector<int> bad{'a', 300};
  CHECK_THROWS_WITH(nn::ByteTokenizer::decode(bad),
                    Catch::Contains("token 1 is 300") && Catch::Contains("EOT"));
}

TEST_CASE("token files round-trip and every corruption gives an error naming it", "[data][file]") {
  TempDir dir;
  const auto path = dir.file("ok.bin");
  const std::vector<std::uint16_t> tokens{0, 1, 256, 255, 7, 256};
  nn::write_tokens(path, tokens, 257, nn::ByteTokenizer::kName);
  const auto bytes = read_bytes(path);
  CHECK(bytes.size() == nn::kTokenHeaderBytes + 2 * tokens.size());
  CHECK(nn::kTokenHeaderBytes == 128);
  CHECK(bytes.substr(0, 8) == "RATOKENS");
  CHECK(bytes.substr(32, 5) == std::string("byte\0", 5));
  const auto t = nn::read_tokens(path);
  CHECK(t.vocab == 257);
  CHECK(t.tokenizer == "byte");
  CHECK(t.tokens == tokens);
  CHECK(t.path == path);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  SECTION("missing") {
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("nope.bin")),
                      Catch::Contains("cannot open") && Catch::Contains("nope.bin") &&
                          Catch::Contains("No such file") && Catch::Contains("prepare_data"));
  }
  SECTION("bad magic") {
    auto b = bytes;
    b[0] = 'X';
    write_bytes(dir.file("magic.bin"), b);
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("magic.bin")),
                      Catch::Contains("bad magic 'XATOKENS'") && Catch::Contains("magic.bin"));
  }
  SECTION("unknown version") {
    auto b = bytes;
    b[8] = 9;
    write_bytes(dir.file("version.bin"), b);
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("version.bin")),
                      Catch::Contains("version 9") && Catch::Contains("expected version 3"));
  }
  SECTION("version 1: no tokenizer recorded") {
    auto b = bytes;
    b[8] = 1;
    write_bytes(dir.file("v1.bin"), b);
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("v1.bin")),
                      Catch::Contains("version 1") && Catch::Contains("tokenizer") &&
                          Catch::Contains("prepare_data again"));
  }
  SECTION("version 2: no room for a model's checksum") {
    auto b = bytes;
    b[8] = 2;
    write_bytes(dir.file("v2.bin"), b);
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("v2.bin")),
                      Catch::Contains("version 2") && Catch::Contains("checksum") &&
                          Catch::Contains("prepare_data again"));
  }
  SECTION("truncated header") {
    write_bytes(dir.file("short.bin"), bytes.substr(0, 20));
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("short.bin")),
                      Catch::Contains("20 bytes") && Catch::Contains("truncated"));
  }
  SECTION("truncated tokens") {
    write_bytes(dir.file("cut.bin"), bytes.substr(0, bytes.size() - 3));
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("cut.bin")),
                      Catch::Contains("promises 6 tokens") && Catch::Contains("truncated"));
  }
  SECTION("trailing bytes") {
    write_bytes(dir.file("long.bin"), bytes + "zz");
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("long.bin")), Catch::Contains("trailing bytes"));
  }
  SECTION("a flipped bit anywhere fails the checksum") {
    for (std::size_t i :
         {std::size_t{12}, std::size_t{33}, std::size_t{100}, std::size_t{128}, bytes.size() - 1}) {
      INFO("byte " << i);
      auto b = bytes;
      b[i] = static_cast<char>(b[i] ^ 0x10);
      write_bytes(dir.file("flip.bin"), b);
      CHECK_THROWS_WITH(nn::read_tokens(dir.file("flip.bin")),
                        Catch::Contains("fails its checksum") && Catch::Contains("flip.bin"));
    }
  }
  SECTION("the header alone (read_token_header): the same checks but the checksum's") {
    const auto h = nn::read_token_header(path);
    CHECK(h.tokenizer == "byte");
    CHECK(h.vocab == 257);
    CHECK(h.tokens.empty());
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("absent.bin")),
                      Catch::Contains("cannot open") && Catch::Contains("absent.bin"));
    write_bytes(dir.file("short.bin"), bytes.substr(0, 20));
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("short.bin")),
                      Catch::Contains("20 bytes") && Catch::Contains("truncated"));
    write_bytes(dir.file("cut.bin"), bytes.substr(0, bytes.size() - 2));
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("cut.bin")),
                      Catch::Contains("promises 6 tokens") && Catch::Contains("truncated"));
    auto b = bytes;
    b[0] = 'X';
    write_bytes(dir.file("magic.bin"), b);
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("magic.bin")), Catch::Contains("bad magic"));
    b = bytes;
    b[8] = 2;
    write_bytes(dir.file("v2.bin"), b);
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("v2.bin")),
                      Catch::Contains("version 2") && Catch::Contains("expected version 3"));
    b = bytes;
    b[34] = '\x01';  // a control character in the tokenizer's name
    write_bytes(dir.file("name.bin"), b);
    CHECK_THROWS_WITH(nn::read_token_header(dir.file("name.bin")),
                      Catch::Contains("names its tokenizer"));
    b = bytes;
    b[33] = 'X';  // "bXte": a valid name, so only read_tokens' checksum finds it
    write_bytes(dir.file("renamed.bin"), b);
    CHECK(nn::read_token_header(dir.file("renamed.bin")).tokenizer == "bXte");
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("renamed.bin")), Catch::Contains("checksum"));
  }
  SECTION("token out of range (behind a valid checksum)") {
    auto b = bytes;
    b[128 + 2 * 4] = 1;  // token 4 becomes 257 (0x0101)
    b[128 + 2 * 4 + 1] = 1;
    write_bytes(dir.file("range.bin"), resealed(b));
    CHECK_THROWS_WITH(nn::read_tokens(dir.file("range.bin")),
                      Catch::Contains("token 257 at index 4") && Catch::Contains("vocab = 257"));
  }
  SECTION("writing refuses a token >= vocab and a bad tokenizer name") {
    CHECK_THROWS_WITH(nn::write_tokens(dir.file("w.bin"), tokens, 256, "byte"),
                      Catch::Contains("token 2 is 256"));
    CHECK_THROWS_WITH(nn::write_tokens(dir.file("w.bin"), tokens, 257, "two words"),
                      Catch::Contains("tokenizer") && Catch::Contains("'two words'"));
    CHECK_THROWS_WITH(nn::write_tokens(dir.file("w.bin"), tokens, 257, ""),
                      Catch::Contains("tokenizer"));
    CHECK_THROWS_WITH(nn::write_tokens(dir.file("w.bin"), tokens, 257, std::string(97, 'x')),
                      Catch::Contains("1..96 printable"));
    CHECK_THROWS_WITH(
        nn::write_tokens(dir.file("w.bin"), tokens, 65537, "byte"),
        Catch::Contains("vocab") && Catch::Contains("65537") && Catch::Contains("uint16"));
    CHECK_FALSE(std::filesystem::exists(dir.file("w.bin")));
  }
}

TEST_CASE("SHA-256 and SentencePiece names need no SentencePiece library", "[data][tokenizer]") {
  // FIPS 180-4's examples.
  CHECK(ra::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(ra::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(ra::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(ra::sha256_hex(million) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  ra::Sha256 pieces;  // fed in odd pieces across block boundaries
  for (std::size_t i = 0; i < million.size(); i += 997)
    pieces.update(std::string_view(million).substr(i, 997));
  CHECK(pieces.hex() == ra::sha256_hex(million));
  const auto name = nn::sentencepiece_name("model bytes");
  CHECK(name == "sentencepiece:" + ra::sha256_hex("model bytes"));
  CHECK(nn::is_sentencepiece_name(name));
  CHECK_FALSE(nn::is_sentencepiece_name("sentencepiece:abc"));
  CHECK_FALSE(nn::is_sentencepiece_name("byte"));
  CHECK_FALSE(nn::is_sentencepiece_name("sentencepiece:" + std::string(64, 'G')));
  // The byte tokenizer behind the run-time interface.
  const auto byte = nn::make_byte_tokenizer();
  CHECK(byte->name() == "byte");
  CHECK(byte->vocab() == 257);
  CHECK(byte->eot() == 256);
  const std::vector<std::int32_t> t{'o', 'k', 256};
  CHECK(byte->decode(t) == "ok<|endoftext|>");
  CHECK(byte->encode("ok") == std::vector<std::uint16_t>{'o', 'k'});
}

TEST_CASE("token files of another tokenizer or vocabulary are refused by name", "[data][file]") {
  TempDir dir;
  const std::vector<std::uint16_t> tokens{1, 2, 3};
  nn::write_tokens(dir.file("byte.bin"), tokens, 257, "byte");
  nn::write_tokens(dir.file("v300.bin"), tokens, 300, "byte");
  nn::write_tokens(dir.file("bpe.bin"), tokens, 257, "gpt2");
  // A SentencePiece model's name: the prefix and a SHA-256 in hex (78 characters).
  const std::string spm = "sentencepiece:" + std::string(64, 'a');
  nn::write_tokens(dir.file("spm.bin"), tokens, 16384, spm);
  CHECK(nn::read_tokens(dir.file("spm.bin")).tokenizer == spm);
  CHECK_THROWS_WITH(
      nn::require_tokenizer(nn::read_tokens(dir.file("spm.bin")),
                            "sentencepiece:" + std::string(64, 'b'), 16384, "trainer"),
      Catch::Contains("expected tokenizer 'sentencepiece:bbbb"));
  using Tok = nn::ByteTokenizer;
  CHECK_NOTHROW(nn::require_tokenizer(nn::read_tokens(dir.file("byte.bin")), Tok::kName,
                                      Tok::kVocab, "trainer"));
  CHECK_THROWS_WITH(nn::require_tokenizer(nn::read_tokens(dir.file("v300.bin")), Tok::kName,
                                          Tok::kVocab, "trainer"),
                    Catch::Contains("trainer: '") && Catch::Contains("v300.bin") &&
                        Catch::Contains("tokenizer 'byte' with vocab 300") &&
                        Catch::Contains("expected tokenizer 'byte' with vocab 257"));
  CHECK_THROWS_WITH(nn::require_tokenizer(nn::read_tokens(dir.file("bpe.bin")), Tok::kName,
                                          Tok::kVocab, "trainer"),
                    Catch::Contains("tokenizer 'gpt2' with vocab 257"));
}

TEST_CASE("token files are written atomically: a failed write leaves no file and says why",
          "[data][file]") {
  TempDir dir;
  const std::vector<std::uint16_t> tokens{1, 2, 3};
  const auto path = dir.file("t.bin");
  nn::write_tokens(path, tokens, 257, "byte");
  std::filesystem::create_symlink("/dev/full", path + ".tmp");
  CHECK_THROWS_WITH(nn::write_tokens(path, std::vector<std::uint16_t>{4, 5}, 257, "byte"),
                    Catch::Contains("t.bin.tmp") && Catch::Contains("No space left on device"));
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path + ".tmp")));
  CHECK(nn::read_tokens(path).tokens == tokens);  // the old file, whole
}

TEST_CASE("batch loader: windows, seeded order per epoch, inputs/targets shift, cursor",
          "[data][loader]") {
  const auto data = counting(101);  // tokens 0..100
  nn::BatchLoader a(data, 3, 10, 5), b(data, 3, 10, 5), c(data, 3, 10, 6);
  CHECK(a.windows() == 10);  // (101 - 1) / 10
  std::vector<std::int32_t> x, y, z;
  std::map<std::int32_t, int> seen;  // window start -> times seen
  std::vector<std::int32_t> order_a, order_c;
  for (int i = 0; i < 10; ++i) {  // 30 windows: three epochs
    a.next(x);
    b.next(y);
    c.next(z);
    CHECK(x == y);  // same seed, same batches
    REQUIRE(x.size() == 3 * 11);
    for (int r = 0; r < 3; ++r) {
      const std::int32_t start = x[r * 11];
      CHECK(start % 10 == 0);
      for (int t = 0; t <= 10; ++t) CHECK(x[r * 11 + t] == start + t);  // contiguous window
      // targets are the inputs shifted by one token
      CHECK(a.targets(x)(r, 0) == a.inputs(x)(r, 1));
      ++seen[start];
      order_a.push_back(start);
      order_c.push_back(z[r * 11]);
    }
  }
  CHECK(seen.size() == 10);
  for (const auto& [start, n] : seen) CHECK(n == 3);  // every window once per epoch
  CHECK(order_a != order_c);                          // another seed, another order
  // Epochs differ in order (with 10! orders, equal ones would be a broken shuffle).
  CHECK(!std::equal(order_a.begin(), order_a.begin() + 10, order_a.begin() + 10));
  CHECK(a.cursor() == nn::BatchLoader::Cursor{3, 0});

  // A saved cursor reproduces the rest of the stream.
  nn::BatchLoader d(data, 3, 10, 5);
  d.next(x);
  const auto cur = d.cursor();
  CHECK(cur == nn::BatchLoader::Cursor{0, 3});
  d.next(x);
  d.next(y);
  nn::BatchLoader e(data, 3, 10, 5);
  e.seek(cur);
  e.next(z);
  CHECK(z == x);
  e.next(z);
  CHECK(z == y);

  // Evaluation order: the file's order, restarted by reset().
  nn::BatchLoader v(data, 4, 10, 5, false);
  v.next(x);
  CHECK(x[0] == 0);
  CHECK(x[11] == 10);
  v.reset();
  v.next(y);
  CHECK(x == y);

  CHECK_THROWS_WITH(nn::BatchLoader(counting(10), 2, 10, 1),
                    Catch::Contains("10 tokens") && Catch::Contains("T + 1 = 11"));
  CHECK_THROWS_WITH(e.seek({0, 10}), Catch::Contains("position 10"));
  CHECK_THROWS_WITH(nn::BatchLoader(data, 0, 10, 1), Catch::Contains("'B'"));

  // The data checksum a checkpoint records: the CRC-32C of the tokens as a token file stores
  // them; one changed token changes it.
  std::string le;
  for (auto t : data->tokens) le += {static_cast<char>(t & 0xff), static_cast<char>(t >> 8)};
  CHECK(a.data_checksum() == ra::crc32c(le));
  auto other = counting(101);
  other->tokens[50] = 7;
  CHECK(nn::BatchLoader(other, 3, 10, 5).data_checksum() != a.data_checksum());
}
