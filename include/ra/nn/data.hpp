// ra/nn/data.hpp — token files and the batch loader.
//
// Token file (what examples/prepare_data writes; all integers little-endian):
//   bytes  0..7   magic "RATOKENS"
//          8..11  version (3)
//         12..15  vocab: every token is < vocab (257 for the byte tokenizer; at most 65536)
//         16..23  token count n
//         24..27  CRC-32C of the whole file, these four bytes left out
//         28..31  reserved (0)
//         32..127 the tokenizer's name (ASCII, NUL-padded): "byte" for ByteTokenizer,
//                 "sentencepiece:<SHA-256 of the model file>" for ra/nn/sentencepiece.hpp
//         128..   n tokens, uint16 (so a vocabulary above 65536 is refused, not widened)
// write_tokens() writes it atomically (ra/core/file.hpp). read_tokens() checks all of it and
// throws ra::error naming the file and the problem: missing or unreadable, shorter than the
// header, bad magic, unknown version (1: written before files recorded their tokenizer, 2:
// before the name had room for a model's checksum),
// truncated (or trailing bytes), a checksum mismatch, a token >= vocab. require_tokenizer()
// refuses a file of another tokenizer or vocabulary than the one a program uses.
//
// BatchLoader cuts the tokens into W = ⌊(n − 1) / T⌋ windows of T + 1 tokens (window w starts
// at w·T; consecutive windows share one token, the last target of one is the first input of
// the next) and yields batches of B windows, (B, T+1) int32: inputs are columns [0, T),
// targets columns [1, T+1). Training order: each epoch visits every window once, in a
// permutation drawn from (seed, epoch) alone — so both arms of a comparison, and a run
// resumed from a checkpoint, see the same batches. The position is a Cursor (epoch, index
// into the epoch's permutation) that a checkpoint stores. Evaluation uses shuffle = false:
// windows in file order, from the start each time (reset()).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/core/error.hpp>
#include <ra/core/file.hpp>
#include <ra/core/tensor.hpp>
#include <ra/nn/dropout.hpp>

namespace ra::nn {

inline constexpr std::array<char, 8> kTokenMagic = {'R', 'A', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr std::uint32_t kTokenVersion = 3;
inline constexpr std::size_t kTokenHeaderBytes = 128;
inline constexpr std::size_t kTokenizerNameBytes = 96;

/// The tokens of one file, with the tokenizer and vocabulary its header declares.
struct TokenFile {
  std::string path;
  std::string tokenizer;  // e.g. "byte"
  std::uint32_t vocab = 0;
  std::vector<std::uint16_t> tokens;
};

namespace detail {

inline void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

inline std::uint64_t get_le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

inline std::string printable(const unsigned char* p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i)
    s += (p[i] >= 32 && p[i] < 127) ? static_cast<char>(p[i]) : '?';
  return s;
}

// The CRC of a whole token file with its checksum field (bytes 24..27) left out.
inline std::uint32_t token_file_checksum(std::string_view file) {
  Crc32c c;
  c.update(file.substr(0, 24));
  c.update(file.substr(28));
  return c.value();
}

inline bool is_tokenizer_name(std::string_view name) {
  if (name.empty() || name.size() > kTokenizerNameBytes) return false;
  for (char ch : name)
    if (ch <= 32 || ch >= 127) return false;
  return true;
}

}  // namespace detail

/// Writes tokens (each < vocab) of tokenizer `tokenizer` (1..96 printable ASCII characters
/// without spaces, e.g. ByteTokenizer::kName) to `path` in the token-file format, atomically.
/// Throws ra::error naming the path and the system's reason when it cannot be written, a bad
/// vocab or tokenizer name, or the first token >= vocab.
inline void write_tokens(const std::string& path, std::span<const std::uint16_t> tokens,
                         std::uint32_t vocab, std::string_view tokenizer) {
  require_arg(vocab >= 1 && vocab <= 65536, "write_tokens", "vocab", vocab,
              "a vocabulary of 1..65536 tokens (uint16 storage)");
  require_arg(detail::is_tokenizer_name(tokenizer), "write_tokens", "tokenizer",
              ra::detail::concat("'", tokenizer, "'"),
              "a name of 1..96 printable ASCII characters without spaces");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    require(tokens[i] < vocab, "write_tokens: token ", i, " is ", tokens[i],
            ", expected a token < vocab = ", vocab);
  std::string file(kTokenMagic.begin(), kTokenMagic.end());
  file.reserve(kTokenHeaderBytes + 2 * tokens.size());
  detail::put_le(file, kTokenVersion, 4);
  detail::put_le(file, vocab, 4);
  detail::put_le(file, tokens.size(), 8);
  detail::put_le(file, 0, 4);  // the checksum, filled in below
  detail::put_le(file, 0, 4);
  file += tokenizer;
  file.append(kTokenizerNameBytes - tokenizer.size(), '\0');
  for (std::uint16_t t : tokens) detail::put_le(file, t, 2);
  const std::uint32_t crc = detail::token_file_checksum(file);
  for (int i = 0; i < 4; ++i)
    file[24 + static_cast<std::size_t>(i)] = static_cast<char>(crc >> (8 * i));
  write_file_atomic(path, file, "write_tokens");
}

namespace detail {

// The checks of a token file's header that need no checksum: magic, version, the header's
// length and that the file's size matches the token count. `head` is at least the header's
// bytes where the file has them, `size` the file's size. Returns the token count.
inline std::uint64_t check_token_layout(const std::string& path, std::string_view head,
                                        std::uint64_t size) {
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  require(head.size() >= 12 && std::memcmp(p, kTokenMagic.data(), kTokenMagic.size()) == 0,
          "data: '", path, "' has bad magic '", printable(p, std::min<std::size_t>(8, head.size())),
          "', expected 'RATOKENS' (not a token file)");
  const auto version = static_cast<std::uint32_t>(get_le(p + 8, 4));
  require(version == kTokenVersion, "data: '", path, "' has version ", version,
          ", expected version ", kTokenVersion,
          version == 1 ? " (written before token files recorded their tokenizer and checksum: run "
                         "examples/prepare_data again)"
          : version == 2
              ? " (written before token files had room for a tokenizer model's checksum: run "
                "examples/prepare_data again)"
              : "");
  require(head.size() >= kTokenHeaderBytes, "data: '", path, "' is ", size,
          " bytes, shorter than the ", kTokenHeaderBytes,
          "-byte header: truncated, expected a token file");
  const std::uint64_t n = get_le(p + 16, 8);
  const std::uint64_t want = kTokenHeaderBytes + 2 * n;
  require(n <= (size - kTokenHeaderBytes) / 2 && size == want, "data: '", path, "' is ", size,
          " bytes but its header promises ", n, " tokens (", want,
          " bytes): ", size < want ? "truncated" : "trailing bytes",
          ", expected a complete token file");
  return n;
}

// The vocabulary and the tokenizer's name of a header that passed check_token_layout().
inline TokenFile token_header_fields(const std::string& path, std::string_view head) {
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  TokenFile t;
  t.path = path;
  t.vocab = static_cast<std::uint32_t>(get_le(p + 12, 4));
  require(t.vocab >= 1 && t.vocab <= 65536, "data: '", path, "' declares vocab ", t.vocab,
          ", expected 1..65536");
  const std::string_view name = head.substr(32, kTokenizerNameBytes);
  t.tokenizer = std::string(name.substr(0, name.find('\0')));
  require(is_tokenizer_name(t.tokenizer), "data: '", path, "' names its tokenizer '",
          printable(p + 32, kTokenizerNameBytes), "', expected 1..96 printable ASCII characters");
  return t;
}

}  // namespace detail

/// Reads and checks a token file (see the top of this header for each error).
inline TokenFile read_tokens(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path, "data");
  } catch (const error& e) {
    throw error(ra::detail::concat(e.what(),
                                   " (expected a token file; scripts/prepare_data.sh "
                                   "writes train.bin and val.bin)"));
  }
  const std::uint64_t n = detail::check_token_layout(path, bytes, bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto stored = static_cast<std::uint32_t>(detail::get_le(p + 24, 4));
  const std::uint32_t computed = detail::token_file_checksum(bytes);
  require(stored == computed, "data: '", path, "' fails its checksum (stored CRC-32C ", stored,
          ", computed ", computed, "): the file is corrupt, expected the bytes write_tokens wrote");
  TokenFile t = detail::token_header_fields(path, bytes);
  t.tokens.resize(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto v = static_cast<std::uint16_t>(detail::get_le(p + kTokenHeaderBytes + 2 * i, 2));
    require(v < t.vocab, "data: '", path, "' has token ", v, " at index ", i,
            ", expected tokens < vocab = ", t.vocab, " (corrupt file)");
    t.tokens[i] = v;
  }
  return t;
}

/// The header of a token file alone — path, tokenizer and vocab, no tokens — for a program
/// that must know the tokenizer before it reads the tokens. Checks what read_tokens() checks
/// but the checksum and the tokens (read_tokens() checks those). Throws ra::error naming the
/// file and the problem.
inline TokenFile read_token_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  require(static_cast<bool>(f), "data: cannot open '", path,
          "', expected a token file (scripts/prepare_data.sh writes train.bin and val.bin)");
  std::string head(kTokenHeaderBytes, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(f.gcount()));
  f.clear();
  f.seekg(0, std::ios::end);
  detail::check_token_layout(path, head, static_cast<std::uint64_t>(f.tellg()));
  return detail::token_header_fields(path, head);
}

/// Throws ra::error, prefixed by `where`, unless `t` was written by the tokenizer called
/// `name` with vocabulary `vocab` (a model trained on it could not decode its tokens).
inline void require_tokenizer(const TokenFile& t, std::string_view name, std::uint32_t vocab,
                              std::string_view where) {
  require(t.tokenizer == name && t.vocab == vocab, where, ": '", t.path,
          "' holds tokens of tokenizer '", t.tokenizer, "' with vocab ", t.vocab,
          ", expected tokenizer '", name, "' with vocab ", vocab,
          " (the one this program encodes and decodes with)");
}

/// Batches of (B, T+1) windows in a seeded order (see the top of this header).
class BatchLoader {
 public:
  /// Where the loader is: the epoch and the index into that epoch's window order.
  struct Cursor {
    std::uint64_t epoch = 0;
    std::uint64_t position = 0;
    bool operator==(const Cursor&) const = default;
  };

  /// Batches of B windows of T + 1 tokens from `data` (shared, so copies of a loader stay
  /// valid). Throws ra::error when B or T is not positive or the file holds no window.
  BatchLoader(std::shared_ptr<const TokenFile> data, index_t B, index_t T, std::uint64_t seed,
              bool shuffle = true)
      : data_(std::move(data)), B_(B), T_(T), seed_(seed), shuffle_(shuffle) {
    constexpr const char* where = "nn::BatchLoader";
    require(data_ != nullptr, where, ": no token file given, expected a loaded TokenFile");
    require_arg(B >= 1, where, "B", B, "a positive batch size");
    require_arg(T >= 1, where, "T", T, "a positive sequence length");
    const auto n = static_cast<index_t>(data_->tokens.size());
    windows_ = n >= 1 ? (n - 1) / T : 0;
    require(windows_ >= 1, where, ": '", data_->path, "' has ", n,
            " tokens, expected at least T + 1 = ", T + 1, " for one window");
    checksum_ = token_checksum(data_->tokens);
    seek({});
  }

  /// CRC-32C of tokens as little-endian uint16 (the bytes a token file stores): what a
  /// checkpoint records to recognise the training data.
  static std::uint32_t token_checksum(std::span<const std::uint16_t> tokens) {
    if constexpr (std::endian::native == std::endian::little) {
      return crc32c(tokens.data(), tokens.size() * sizeof(std::uint16_t));
    } else {
      std::string le;
      le.reserve(2 * tokens.size());
      for (std::uint16_t t : tokens) detail::put_le(le, t, 2);
      return crc32c(le);
    }
  }

  index_t batch() const { return B_; }
  index_t seq() const { return T_; }
  std::uint64_t seed() const { return seed_; }
  /// Number of (T+1)-token windows per epoch.
  index_t windows() const { return windows_; }
  const TokenFile& data() const { return *data_; }
  /// token_checksum() of the data's tokens (computed once, at construction).
  std::uint32_t data_checksum() const { return checksum_; }

  Cursor cursor() const { return cursor_; }
  /// Moves to a cursor saved by cursor(). Throws ra::error when its position is past the
  /// epoch's windows.
  void seek(Cursor c) {
    require(c.position < static_cast<std::uint64_t>(windows_), "nn::BatchLoader::seek: position ",
            c.position, " is past the ", windows_,
            " windows of an epoch, expected a cursor of "
            "this data with this T");
    cursor_ = c;
    make_order(c.epoch);
  }
  /// Back to the first batch (epoch 0, position 0).
  void reset() { seek({}); }

  /// Writes the next batch into `out` (resized to B·(T+1), row-major (B, T+1)).
  void next(std::vector<std::int32_t>& out) {
    out.resize(static_cast<std::size_t>(B_ * (T_ + 1)));
    for (index_t b = 0; b < B_; ++b) {
      const index_t start = order_[static_cast<std::size_t>(cursor_.position)] * T_;
      for (index_t t = 0; t <= T_; ++t)
        out[static_cast<std::size_t>(b * (T_ + 1) + t)] =
            data_->tokens[static_cast<std::size_t>(start + t)];
      if (++cursor_.position == static_cast<std::uint64_t>(windows_)) {
        cursor_.position = 0;
        make_order(++cursor_.epoch);
      }
    }
  }

  /// The inputs (B,T) of a batch from next(): strides (T+1, 1), no copy.
  StridedView<const std::int32_t, 2> inputs(const std::vector<std::int32_t>& batch) const {
    return make_view(batch.data(), shape(B_, T_), {T_ + 1, 1});  // (B,T) strides (T+1,1)
  }
  /// The targets (B,T) of a batch: the inputs shifted by one token.
  StridedView<const std::int32_t, 2> targets(const std::vector<std::int32_t>& batch) const {
    return make_view(batch.data() + 1, shape(B_, T_), {T_ + 1, 1});  // (B,T) strides (T+1,1)
  }

 private:
  // The window order of an epoch: Fisher-Yates from (seed, epoch) with an explicit index
  // draw (std::shuffle and std::uniform_int_distribution differ between standard libraries).
  void make_order(std::uint64_t epoch) {
    order_.resize(static_cast<std::size_t>(windows_));
    for (index_t i = 0; i < windows_; ++i) order_[static_cast<std::size_t>(i)] = i;
    if (!shuffle_) return;
    std::mt19937_64 rng(mix64(seed_ ^ mix64(epoch)));
    for (std::uint64_t i = order_.size(); i > 1; --i) {
      // Uniform in [0, i) by rejection: no modulo bias.
      const std::uint64_t limit = ~std::uint64_t{0} - ~std::uint64_t{0} % i;
      std::uint64_t r = rng();
      while (r >= limit) r = rng();
      std::swap(order_[i - 1], order_[r % i]);
    }
  }

  std::shared_ptr<const TokenFile> data_;
  index_t B_, T_;
  std::uint64_t seed_;
  bool shuffle_;
  index_t windows_ = 0;
  std::uint32_t checksum_ = 0;
  Cursor cursor_{};
  std::vector<index_t> order_;
};

}  // namespace ra::nn
