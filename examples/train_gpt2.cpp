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
// The device is chosen in ONE place, run_on_device() at the bottom: --device cpu runs
// ra::nn::GPT2<T> on the CPU backend (fp32 or bf16 compute), --device cuda runs
// ra::cuda::GPT2<T> (bf16 or fp32 compute) in builds with CUDA (examples/train/cuda.cu). Both
// go through the one trainer in examples/train_gpt2.hpp.
#include <cstdio>
#include <exception>

#include <ra/core/file.hpp>
#include <ra/nn/gpt2.hpp>

#include "train_gpt2.hpp"

namespace {

using namespace train_gpt2;

// ---- the device choice: the one place a backend is picked ----------------------------------
int run_on_device(const Options& o) {
  if (o.device == "cpu") {
    if (o.precision == "fp32") return train<ra::nn::GPT2<float>, ra::nn::AdamW>(o);
    if (o.precision == "bf16") return train<ra::nn::GPT2<ra::bf16>, ra::nn::AdamW>(o);
    throw ra::error("train_gpt2: --precision '" + o.precision + "', expected fp32 or bf16");
  }
#ifdef RA_TRAIN_GPT2_CUDA
  if (o.device == "cuda") return train_on_cuda(o);
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
