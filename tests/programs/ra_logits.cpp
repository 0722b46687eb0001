// tests/programs/ra_logits.cpp — the logits of a checkpoint's model (nn::GPT2<float> on the
// CPU, the reference) at every position of one token sequence, for the test of
// bench/hf_generate.py's mapping into transformers (tests/programs/hf_mapping.py).
//
//   ra_logits CHECKPOINT TOKEN...     prints T lines of vocab values (%.9g, space-separated)
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include <ra/core/parse.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/gpt2.hpp>

int main(int argc, char** argv) {
  try {
    ra::require(argc >= 3, "usage: ra_logits CHECKPOINT TOKEN...");
    const ra::nn::Checkpoint ck = ra::nn::read_checkpoint(argv[1]);
    std::vector<std::int32_t> tokens;
    for (int i = 2; i < argc; ++i)
      tokens.push_back(ra::parse_integer<std::int32_t>(
          "ra_logits: TOKEN", argv[i], 0, static_cast<std::int32_t>(ck.config.vocab - 1)));
    ra::nn::GPT2<float> model(ck.config);
    model.set_parameters(ck.parameters);
    model.set_training(false);
    const auto T = static_cast<ra::index_t>(tokens.size());
    model.forward(ra::make_view(static_cast<const std::int32_t*>(tokens.data()), ra::shape(1, T)));
    for (ra::index_t t = 0; t < T; ++t) {
      const auto z = model.logits(0, t);
      for (std::size_t v = 0; v < z.size(); ++v) std::printf(v ? " %.9g" : "%.9g", z[v]);
      std::printf("\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
