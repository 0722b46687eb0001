// examples/train_gpt2.cpp — trains GPT-2 (baseline or reciprocal attention) on token files,
// with periodic validation, checkpoints that resume bit-exactly, and text generation.
//
//   train_gpt2 --data build/data --arm ra --R 4 --gates per_layer --steps 200 --out runs/ra
//   train_gpt2 --data build/data --resume runs/ra/ckpt.bin --steps 400 --out runs/ra
//   train_gpt2 --data build/data --resume runs/ra/ckpt.bin --steps 0 --generate 200 --top-k 20
//
// Budget: --steps N, or --token-budget N (steps = ⌈N / (batch·seq)⌉), either optionally capped
// by --time-budget-s S; the learning rate warms up for --warmup steps, then follows a cosine to
// --min-lr over the step budget. With --time-budget-s alone, training stops when S seconds of
// training (evaluation excluded) have passed and the cosine follows the elapsed share of S
// (so such a run is not bit-reproducible; step budgets are). --stop-at N ends a run after step
// N with the schedule unchanged: resuming its checkpoint continues exactly as one long run.
//
// Each step prints: step, loss, learning rate, gradient norm, tokens/s, and per layer the
// effective gates g_std and g_rec (mean [min, max] over heads) and the restart mix α.
// With --out DIR: DIR/metrics.tsv (one row per step and per evaluation; a resumed run cuts it
// back to the checkpoint's step, so no step appears twice), DIR/gates.tsv (final per-layer
// gate statistics), DIR/summary.tsv and DIR/summary.json (with a CRC-32C of the final
// parameters: equal for bit-identical runs), and DIR/ckpt.bin (every --ckpt-every steps and
// at the end; the one before it is kept as DIR/ckpt.bin.prev). A fresh run refuses a DIR that
// holds a run unless --overwrite. Every write is checked: a full disk or any other failure
// ends the program with status 1, naming the file and the system's reason, and `wrote ...` is
// printed only when everything was written (examples/train/run_folder.hpp).
//
// Tokens: --data DIR holds train.bin and val.bin of one tokenizer, named in their headers —
// "byte", or "sentencepiece:<SHA-256>" of DIR/tokenizer.model (examples/prepare_data
// --tokenizer sentencepiece writes all three). The model file must be there with that checksum;
// a build without libsentencepiece trains on such tokens but refuses --generate (it could not
// encode the prompt nor decode the tokens). Files of another tokenizer or vocabulary, or a
// resume on tokens of another tokenizer, are refused by name.
//
// The device is chosen in ONE place, run_on_device() at the bottom: --device cpu runs the GPT-2
// model (ra/nn/gpt2_model.hpp) on the CPU backend, ra::nn::GPT2<T> (fp32 or bf16 compute),
// --device cuda on the CUDA backend, ra::nn::CudaGPT2<T> (bf16 or fp32 compute), in builds with
// CUDA (examples/train/cuda.cu). Both go through the one trainer in examples/train_gpt2.hpp.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>

#include <ra/core/file.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2.hpp>
#include <ra/nn/tokenizer.hpp>
#ifdef RA_HAVE_SENTENCEPIECE
#include <ra/nn/sentencepiece.hpp>
#endif

#include "train_gpt2.hpp"

namespace {

using namespace train_gpt2;

// A SentencePiece model's tokens in a build without libsentencepiece: its name and vocabulary
// (so the files are still checked against each other and the checkpoint), no text.
class UndecodableTokenizer final : public ra::nn::Tokenizer {
 public:
  UndecodableTokenizer(std::string name, std::uint32_t vocab)
      : name_(std::move(name)), vocab_(vocab) {}
  std::string name() const override { return name_; }
  std::uint32_t vocab() const override { return vocab_; }
  std::int32_t eot() const override { return 1; }
  std::vector<std::uint16_t> encode(std::string_view) const override { throw unavailable(); }
  std::string decode(std::span<const std::int32_t>) const override { throw unavailable(); }

 private:
  ra::error unavailable() const {
    return ra::error(
        "train_gpt2: this train_gpt2 was built without SentencePiece "
        "(libsentencepiece-dev): it cannot encode or decode text of '" +
        name_ + "'");
  }
  std::string name_;
  std::uint32_t vocab_;
};

// The tokenizer the training tokens name (see the top of this file).
std::unique_ptr<ra::nn::Tokenizer> data_tokenizer(const Options& o) {
  namespace fs = std::filesystem;
  const auto train_path = (fs::path(o.data) / "train.bin").string();
  const ra::nn::TokenFile head = ra::nn::read_token_header(train_path);
  if (head.tokenizer == ra::nn::ByteTokenizer::kName) return ra::nn::make_byte_tokenizer();
  ra::require(ra::nn::is_sentencepiece_name(head.tokenizer), "train_gpt2: '", train_path,
              "' holds tokens of tokenizer '", head.tokenizer,
              "', expected 'byte' or a SentencePiece model's 'sentencepiece:<SHA-256>'");
  const auto model_path = (fs::path(o.data) / "tokenizer.model").string();
  std::string model;
  try {
    model = ra::read_file(model_path, "train_gpt2");
  } catch (const ra::error& e) {
    throw ra::error(ra::detail::concat(
        e.what(), " (expected the SentencePiece model of '", train_path,
        "' beside it: examples/prepare_data --tokenizer sentencepiece writes it)"));
  }
  const std::string name = ra::nn::sentencepiece_name(model);
  ra::require(name == head.tokenizer, "train_gpt2: '", model_path, "' is model '", name, "', but '",
              train_path, "' holds tokens of '", head.tokenizer,
              "', expected the model that made the tokens");
#ifdef RA_HAVE_SENTENCEPIECE
  return std::make_unique<ra::nn::SentencePieceTokenizer>(std::move(model), model_path);
#else
  ra::require(o.generate == 0, "train_gpt2: --generate ", o.generate,
              ": this train_gpt2 was built without SentencePiece (libsentencepiece-dev), so it "
              "cannot encode the prompt nor decode tokens of '",
              head.tokenizer, "', expected --generate 0 or a build with SentencePiece");
  return std::make_unique<UndecodableTokenizer>(head.tokenizer, head.vocab);
#endif
}

// ---- the device choice: the one place a backend is picked ----------------------------------
int run_on_device(const Options& o) {
  const auto tok = data_tokenizer(o);
  if (o.device == "cpu") {
    if (o.precision == "fp32") return train<ra::nn::GPT2<float>>(o, *tok);
    if (o.precision == "bf16") return train<ra::nn::GPT2<ra::bf16>>(o, *tok);
    throw ra::error("train_gpt2: --precision '" + o.precision + "', expected fp32 or bf16");
  }
#ifdef RA_TRAIN_GPT2_CUDA
  if (o.device == "cuda") return train_on_cuda(o, *tok);
  throw ra::error("train_gpt2: --device '" + o.device + "', expected cpu or cuda");
#else
  throw ra::error("train_gpt2: --device '" + o.device +
                  "' is not built into this program (built without CUDA), expected cpu");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int rc = run_on_device(parse(argc, argv));
    ra::flush_stdout("train_gpt2");
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
