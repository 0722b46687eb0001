// examples/generate.cpp — text from a train_gpt2 checkpoint, with a KV cache
// (nn::GPT2Model::reset_cache / prefill / decode) and the samplers of ra/nn/sampling.hpp.
//
//   generate --checkpoint runs/ra/ckpt.bin --prompt "Once upon" --max-new-tokens 100 --top-k 40
//   generate --checkpoint runs/ra/ckpt.bin --prompts-file prompts.txt --greedy --stop eot
//   generate --checkpoint runs/ra/ckpt.bin --prompt "Once" --device cpu --precision bf16
//
// The device: --device cuda runs nn::CudaGPT2<T> (decode steps replayed as CUDA graphs;
// examples/generation/cuda.cu, in builds with CUDA), --device cpu nn::GPT2<T>; without the
// flag, cuda when this program was built with CUDA and a GPU is visible, else cpu. Both run
// the one loop of examples/generation/run.hpp; the backend is picked in ONE place,
// run_on_device().
//
// The tokenizer is the one the checkpoint's training tokens name: the byte tokenizer, or a
// SentencePiece model given by --tokenizer-model (its SHA-256 must match the name; builds
// without libsentencepiece refuse such checkpoints). Prompts: --prompt (repeatable) and the
// lines of --prompts-file, one sequence each, prompts of different lengths in one batch; an
// empty prompt is refused. The cache holds the longest prompt plus --max-new-tokens, at most
// the model's max_seq. Sampling: --greedy, or --temperature, --top-k (0: off), --top-p, with
// --seed; --stop ID (or "eot") ends a sequence. One prompt streams its text as the tokens come;
// several print one line per new token ("[b] text"), then every sequence whole. At the end:
// prefill and decoding speed in tokens/s, and the per-token latency (median, p90). Flags are strict
// (ra/core/parse.hpp): a bad value ends the program with status 1 and a message naming the flag and
// the value.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/gpt2.hpp>
#include <ra/nn/sampling.hpp>
#include <ra/nn/tokenizer.hpp>
#ifdef RA_HAVE_SENTENCEPIECE
#include <ra/nn/sentencepiece.hpp>
#endif

#include "generation/run.hpp"

namespace {

using generation::index_t;
using generation::kProgram;
using generation::Options;

constexpr const char* kUsage =
    "usage: generate --checkpoint PATH (--prompt TEXT ... | --prompts-file PATH)\n"
    "                [--tokenizer-model PATH] [--max-new-tokens N] [--greedy]\n"
    "                [--temperature X] [--top-k N] [--top-p X] [--seed N] [--stop ID|eot]\n"
    "                [--precision fp32|bf16] [--device cpu|cuda]\n";

Options parse(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, std::string_view flag) -> std::string_view {
    ra::require(i + 1 < argc, kProgram, ": ", flag, " needs a value\n", kUsage);
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view f = argv[i];
    const std::string flag = std::string(kProgram) + ": " + std::string(f);
    if (f == "--checkpoint") {
      o.checkpoint = value(i, f);
    } else if (f == "--tokenizer-model") {
      o.tokenizer_model = value(i, f);
    } else if (f == "--prompt") {
      o.prompts.emplace_back(value(i, f));
    } else if (f == "--prompts-file") {
      o.prompts_file = value(i, f);
    } else if (f == "--max-new-tokens") {
      o.max_new_tokens = ra::parse_integer<index_t>(flag, value(i, f), 1, 1 << 20);
    } else if (f == "--greedy") {
      o.sampling.greedy = true;
    } else if (f == "--temperature") {
      o.sampling.temperature = ra::parse_real(flag, value(i, f), {.min = 0.0, .min_open = true});
    } else if (f == "--top-k") {
      o.sampling.top_k = ra::parse_integer<index_t>(flag, value(i, f), 0, 1 << 20);
    } else if (f == "--top-p") {
      o.sampling.top_p =
          ra::parse_real(flag, value(i, f), {.min = 0.0, .max = 1.0, .min_open = true});
    } else if (f == "--seed") {
      o.sampling.seed = ra::parse_integer<std::uint64_t>(flag, value(i, f));
    } else if (f == "--stop") {
      o.stop = value(i, f);
    } else if (f == "--precision") {
      o.precision = value(i, f);
      ra::require(o.precision == "fp32" || o.precision == "bf16", flag, " '", o.precision,
                  "' is not a precision, expected fp32 or bf16");
    } else if (f == "--device") {
      o.device = value(i, f);
      ra::require(o.device == "cpu" || o.device == "cuda", flag, " '", o.device,
                  "' is not a device, expected cpu or cuda");
    } else if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      throw ra::error(ra::detail::concat(kProgram, ": unknown flag '", f, "'\n", kUsage));
    }
  }
  ra::require(!o.checkpoint.empty(), kProgram, ": --checkpoint is required\n", kUsage);
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    ra::require(in.good(), kProgram, ": --prompts-file '", o.prompts_file,
                "' cannot be read, expected a text file with one prompt per line");
    for (std::string line; std::getline(in, line);) o.prompts.push_back(line);
  }
  ra::require(!o.prompts.empty(), kProgram, ": no prompt, expected --prompt TEXT or --prompts-file",
              o.prompts_file.empty() ? "" : " with at least one line");
  return o;
}

// The tokenizer of the checkpoint's training tokens.
std::unique_ptr<ra::nn::Tokenizer> tokenizer_for(const ra::nn::Checkpoint& ck, const Options& o) {
  const std::string& name = ck.data.tokenizer;
  if (name == ra::nn::ByteTokenizer::kName) return ra::nn::make_byte_tokenizer();
  ra::require(ra::nn::is_sentencepiece_name(name), kProgram, ": checkpoint '", ck.path,
              "' was trained on tokens of '", name, "', expected 'byte' or 'sentencepiece:...'");
  ra::require(!o.tokenizer_model.empty(), kProgram, ": checkpoint '", ck.path,
              "' was trained on SentencePiece tokens '", name,
              "', expected --tokenizer-model PATH (the tokenizer.model beside its token files)");
  std::string model = ra::read_file(o.tokenizer_model, kProgram);
  ra::require(ra::nn::sentencepiece_name(model) == name, kProgram, ": --tokenizer-model '",
              o.tokenizer_model, "' is '", ra::nn::sentencepiece_name(model),
              "', expected the model of the checkpoint's tokens, '", name, "'");
#ifdef RA_HAVE_SENTENCEPIECE
  return std::make_unique<ra::nn::SentencePieceTokenizer>(std::move(model), o.tokenizer_model);
#else
  throw ra::error(ra::detail::concat(kProgram,
                                     ": this generate was built without SentencePiece "
                                     "(libsentencepiece-dev), expected a build with it "
                                     "for tokens of '",
                                     name, "'"));
#endif
}

// ---- the device choice: the one place a backend is picked ----------------------------------
// An explicit --device cuda needs a build with CUDA and a visible GPU; without --device, cuda
// is taken when both are there.
std::string resolve_device(const std::string& asked) {
#ifdef RA_GENERATE_CUDA
  std::string why;
  const bool gpu = generation::cuda_device_count(why) > 0;
  if (asked.empty()) return gpu ? "cuda" : "cpu";
  ra::require(asked != "cuda" || gpu, kProgram, ": --device cuda: no usable CUDA device (", why,
              "), expected --device cpu");
  return asked;
#else
  ra::require(asked != "cuda", kProgram,
              ": --device cuda is not built into this program (built without CUDA), expected "
              "--device cpu");
  return "cpu";
#endif
}

int run_on_device(const ra::nn::Checkpoint& ck, const ra::nn::Tokenizer& tok, const Options& o) {
  if (o.device == "cpu")
    return o.precision == "bf16" ? generation::run<ra::nn::GPT2<ra::bf16>>(ck, tok, o)
                                 : generation::run<ra::nn::GPT2<float>>(ck, tok, o);
#ifdef RA_GENERATE_CUDA
  return generation::generate_on_cuda(ck, tok, o);
#else
  throw ra::error(ra::detail::concat(kProgram, ": --device '", o.device, "', expected cpu"));
#endif
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    o.device = resolve_device(o.device);
    const ra::nn::Checkpoint ck = ra::nn::read_checkpoint(o.checkpoint);
    const auto tok = tokenizer_for(ck, o);
    ra::require(tok->vocab() == static_cast<std::uint32_t>(ck.config.vocab), kProgram,
                ": the tokenizer has ", tok->vocab(), " tokens but checkpoint '", ck.path,
                "' has vocab ", ck.config.vocab, ", expected the same");
    o.sampling.validate(ck.config.vocab, kProgram);
    const int rc = run_on_device(ck, *tok, o);
    ra::flush_stdout(kProgram);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
