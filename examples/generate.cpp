// examples/generate.cpp — text from a train_gpt2 checkpoint on the CPU, with a KV cache
// (nn::GPT2Model::reset_cache / prefill / decode) and the samplers of ra/nn/sampling.hpp.
//
//   generate --checkpoint runs/ra/ckpt.bin --prompt "Once upon" --max-new-tokens 100 --top-k 40
//   generate --checkpoint runs/ra/ckpt.bin --prompts-file prompts.txt --greedy --stop eot
//
// The tokenizer is the one the checkpoint's training tokens name: the byte tokenizer, or a
// SentencePiece model given by --tokenizer-model (its SHA-256 must match the name; builds
// without libsentencepiece refuse such checkpoints). Prompts: --prompt (repeatable) and the
// lines of --prompts-file, one sequence each, prompts of different lengths in one batch; an
// empty prompt is refused. The cache holds the longest prompt plus --max-new-tokens, at most
// the model's max_seq. Sampling: --greedy, or --temperature, --top-k (0: off), --top-p, with
// --seed; --stop ID (or "eot") ends a sequence. One prompt streams its text as the tokens come;
// several print one line per new token ("[b] text"), then every sequence whole. At the end:
// prefill and decoding speed in tokens/s. Flags are strict (ra/core/parse.hpp): a bad value
// ends the program with status 1 and a message naming the flag and the value.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
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

namespace {

using ra::index_t;
constexpr const char* kProgram = "generate";

struct Options {
  std::string checkpoint, tokenizer_model, prompts_file, precision = "fp32", stop;
  std::vector<std::string> prompts;
  ra::nn::SamplingConfig sampling;
  index_t max_new_tokens = 64;
};

constexpr const char* kUsage =
    "usage: generate --checkpoint PATH (--prompt TEXT ... | --prompts-file PATH)\n"
    "                [--tokenizer-model PATH] [--max-new-tokens N] [--greedy]\n"
    "                [--temperature X] [--top-k N] [--top-p X] [--seed N] [--stop ID|eot]\n"
    "                [--precision fp32|bf16]\n";

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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class Model>
int run(const ra::nn::Checkpoint& ck, const ra::nn::Tokenizer& tok, Options o) {
  Model model(ck.config);
  model.set_parameters(ck.parameters);
  model.set_training(false);
  const index_t vocab = ck.config.vocab;
  if (o.stop == "eot") {
    o.sampling.stop = tok.eot();
  } else if (!o.stop.empty()) {
    o.sampling.stop = ra::parse_integer<std::int32_t>(std::string(kProgram) + ": --stop", o.stop, 0,
                                                      static_cast<std::int32_t>(vocab - 1));
  }
  std::vector<std::vector<std::int32_t>> prompts;
  index_t longest = 0;
  for (std::size_t b = 0; b < o.prompts.size(); ++b) {
    ra::require(!o.prompts[b].empty(), kProgram, ": prompt ", b,
                " is empty, expected at least one character");
    std::vector<std::int32_t> t;
    for (auto x : tok.encode(o.prompts[b])) t.push_back(x);
    ra::require(!t.empty(), kProgram, ": prompt ", b, " '", o.prompts[b],
                "' encodes to no token, expected at least one");
    longest = std::max(longest, static_cast<index_t>(t.size()));
    prompts.push_back(std::move(t));
  }
  const index_t B = static_cast<index_t>(prompts.size());
  ra::require(longest + o.max_new_tokens <= ck.config.max_seq, kProgram, ": the longest prompt (",
              longest, " tokens) plus --max-new-tokens ", o.max_new_tokens, " is ",
              longest + o.max_new_tokens,
              ", expected at most the model's max_seq = ", ck.config.max_seq);
  ra::nn::Sampler sampler(o.sampling, B, vocab);

  model.reset_cache(B, longest + o.max_new_tokens);
  auto t0 = std::chrono::steady_clock::now();
  auto logits = model.prefill(prompts);
  const double prefill_s = seconds_since(t0);
  index_t prompt_tokens = 0;
  for (const auto& p : prompts) prompt_tokens += static_cast<index_t>(p.size());

  std::vector<std::vector<std::int32_t>> made(static_cast<std::size_t>(B));
  std::vector<std::size_t> shown(static_cast<std::size_t>(B), 0);  // text bytes printed
  auto text_of = [&](std::size_t b) {
    std::vector<std::int32_t> all = prompts[b];
    all.insert(all.end(), made[b].begin(), made[b].end());
    return tok.decode(all);
  };
  for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b) {
    const std::string start = text_of(b);
    if (B == 1) std::fputs(start.c_str(), stdout);
    shown[b] = start.size();
  }
  t0 = std::chrono::steady_clock::now();
  index_t generated = 0;
  for (index_t step = 0; step < o.max_new_tokens && !sampler.all_finished(); ++step) {
    std::vector<bool> live(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) live[b] = !sampler.finished(b);
    const auto next = sampler.sample(logits);
    for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b) {
      if (!live[b]) continue;
      made[b].push_back(next[b]);
      ++generated;
      // The text so far, printed from where the last print ended (a piece can change how
      // the text before it decodes, e.g. a SentencePiece word boundary).
      const std::string text = text_of(b);
      const std::string piece = text.size() > shown[b] ? text.substr(shown[b]) : "";
      shown[b] = std::max(shown[b], text.size());
      if (B == 1) {
        std::fputs(piece.c_str(), stdout);
      } else {
        std::printf("[%zu] %s\n", b, piece.c_str());
      }
      std::fflush(stdout);
    }
    if (step + 1 < o.max_new_tokens && !sampler.all_finished()) logits = model.decode(next);
  }
  const double decode_s = seconds_since(t0);
  std::printf("\n");
  if (B > 1)
    for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b)
      std::printf("--- sequence %zu\n%s\n", b, text_of(b).c_str());
  std::printf("---\nprefill: %lld prompt tokens in %.3f s (%.1f tokens/s)\n",
              static_cast<long long>(prompt_tokens), prefill_s,
              prefill_s > 0 ? static_cast<double>(prompt_tokens) / prefill_s : 0.0);
  std::printf("decode: %lld new tokens in %.3f s (%.1f tokens/s), batch %lld\n",
              static_cast<long long>(generated), decode_s,
              decode_s > 0 ? static_cast<double>(generated) / decode_s : 0.0,
              static_cast<long long>(B));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const ra::nn::Checkpoint ck = ra::nn::read_checkpoint(o.checkpoint);
    const auto tok = tokenizer_for(ck, o);
    ra::require(tok->vocab() == static_cast<std::uint32_t>(ck.config.vocab), kProgram,
                ": the tokenizer has ", tok->vocab(), " tokens but checkpoint '", ck.path,
                "' has vocab ", ck.config.vocab, ", expected the same");
    o.sampling.validate(ck.config.vocab, kProgram);
    const int rc = o.precision == "bf16" ? run<ra::nn::GPT2<ra::bf16>>(ck, *tok, o)
                                         : run<ra::nn::GPT2<float>>(ck, *tok, o);
    ra::flush_stdout(kProgram);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
