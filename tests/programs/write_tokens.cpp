// tests/programs/write_tokens.cpp — writes a token file of any tokenizer and vocabulary, for
// the tests that check that train_gpt2 refuses one it cannot decode.
//
//   write_tokens OUT VOCAB TOKENIZER COUNT     tokens i % min(VOCAB, 256), i < COUNT
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include <ra/core/parse.hpp>
#include <ra/nn/data.hpp>

int main(int argc, char** argv) {
  try {
    ra::require(argc == 5, "usage: write_tokens OUT VOCAB TOKENIZER COUNT");
    const auto vocab = ra::parse_integer<std::uint32_t>("write_tokens: VOCAB", argv[2], 1, 65536);
    const auto count = ra::parse_integer<std::size_t>("write_tokens: COUNT", argv[4], 0, 1 << 24);
    std::vector<std::uint16_t> tokens(count);
    for (std::size_t i = 0; i < count; ++i)
      tokens[i] = static_cast<std::uint16_t>(i % std::min<std::uint32_t>(vocab, 256));
    ra::nn::write_tokens(argv[1], tokens, vocab, argv[3]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
