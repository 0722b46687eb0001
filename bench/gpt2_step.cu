// bench/gpt2_step.cu — tokens/s of one GPT-2 training step on the GPU (ra::nn::CudaGPT2<bf16>:
// forward with the loss, backward, AdamW with clipping), for the baseline and RA arms; the
// PyTorch peer is bench/torch_gpt2.py, run in the same command by bench/train_run.sh.
//
//   gpt2_step [--batch 16] [--seq 1024] [--n-layer 12] [--n-head 12] [--n-embd 768] [--vocab 50257]
//             [--R 4] [--gates per_layer] [--arms baseline,ra] [--warmup 5] [--steps 20]
//             [--json PATH]
//
// Each step is timed on the host (steady_clock) from the start of forward() to the return of
// the optimizer step, which waits for the GPU — what a training loop sees, as the PyTorch
// peer times its steps (synchronize at the end of each). Tokens are random ids, drawn once.
// Also reported: the forward / backward / optimizer split (CUDA events, median), the device
// memory ra holds (parameters, gradients, moments, activations, workspace) and the last loss.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/gpt2_cuda.cuh>

namespace {

using ra::index_t;

struct Options {
  index_t batch = 16, seq = 1024, layers = 12, heads = 12, C = 768, vocab = 50257;
  int R = 4;
  std::string gates = "per_layer", arms = "baseline,ra", json;
  int warmup = 5, steps = 20;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw ra::error("gpt2_step: " + a + " needs a value");
      return argv[++i];
    };
    // Strict numbers (ra/core/parse.hpp): the whole text, in range, or an error naming both.
    auto size = [&](index_t max) {
      return ra::parse_integer<index_t>("gpt2_step: " + a, value(), 1, max);
    };
    auto count = [&](int min) {
      return ra::parse_integer<int>("gpt2_step: " + a, value(), min, 1 << 20);
    };
    if (a == "--batch")
      o.batch = size(1 << 20);
    else if (a == "--seq")
      o.seq = size(1 << 20);
    else if (a == "--layers" || a == "--n-layer")
      o.layers = size(4096);
    else if (a == "--heads" || a == "--n-head")
      o.heads = size(4096);
    else if (a == "--C" || a == "--n-embd")
      o.C = size(65536);
    else if (a == "--vocab")
      o.vocab = size(65536);
    else if (a == "--R")
      o.R = count(0);
    else if (a == "--gates")
      o.gates = value();
    else if (a == "--arms")
      o.arms = value();
    else if (a == "--warmup")
      o.warmup = count(0);
    else if (a == "--steps")
      o.steps = count(1);
    else if (a == "--json")
      o.json = value();
    else
      throw ra::error("gpt2_step: unknown argument '" + a +
                      "' (see the top of bench/gpt2_step.cu)");
  }
  ra::require_arg(o.steps >= 1, "gpt2_step", "--steps", o.steps, "at least 1");
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Result {
  std::string arm;
  double step_ms = 0, step_mean_ms = 0, fwd_ms = 0, bwd_ms = 0, opt_ms = 0, tok_s = 0, loss = 0;
  std::int64_t bytes = 0;
  std::size_t params = 0;
  bool fused_gelu = false, fused_bias_grad = false;
};

Result bench_arm(const Options& o, ra::nn::Arm arm) {
  ra::nn::GPT2Config cfg;
  cfg.vocab = o.vocab;
  cfg.max_seq = o.seq;
  cfg.n_layer = o.layers;
  cfg.n_head = o.heads;
  cfg.C = o.C;
  cfg.arm = arm;
  cfg.R = o.R;
  cfg.gates = ra::nn::parse_gate_mode(o.gates);
  const std::int64_t before = ra::cuda::allocated_bytes();
  ra::nn::CudaGPT2<ra::bf16> model(cfg);
  model.init_gpt2(1);

  ra::cuda::AdamW opt(model.num_parameters(), model.parameter_table());
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(o.vocab - 1));
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(o.batch * o.seq)),
      targets(tokens.size());
  for (auto& t : tokens) t = tok(rng);
  for (auto& t : targets) t = tok(rng);
  const auto in =
      ra::make_view(static_cast<const std::int32_t*>(tokens.data()), ra::shape(o.batch, o.seq));
  const auto out =
      ra::make_view(static_cast<const std::int32_t*>(targets.data()), ra::shape(o.batch, o.seq));
  cudaEvent_t ev[4];
  for (auto& e : ev) RA_CUDA_CHECK(cudaEventCreate(&e));
  Result r;
  r.arm = std::string(ra::nn::name(arm));
  r.params = model.num_parameters();
  std::vector<double> step_ms, fwd, bwd, upd;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    RA_CUDA_CHECK(cudaEventRecord(ev[0], model.backend().stream()));
    r.loss = model.forward(in, out);
    RA_CUDA_CHECK(cudaEventRecord(ev[1], model.backend().stream()));
    model.backward();
    RA_CUDA_CHECK(cudaEventRecord(ev[2], model.backend().stream()));
    model.step(opt, 6e-4);
    RA_CUDA_CHECK(cudaEventRecord(ev[3], model.backend().stream()));
    RA_CUDA_CHECK(cudaEventSynchronize(ev[3]));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i < o.warmup) continue;
    float a = 0, b = 0, c = 0;
    RA_CUDA_CHECK(cudaEventElapsedTime(&a, ev[0], ev[1]));
    RA_CUDA_CHECK(cudaEventElapsedTime(&b, ev[1], ev[2]));
    RA_CUDA_CHECK(cudaEventElapsedTime(&c, ev[2], ev[3]));
    step_ms.push_back(ms);
    fwd.push_back(a);
    bwd.push_back(b);
    upd.push_back(c);
  }
  for (auto& e : ev) RA_CUDA_CHECK(cudaEventDestroy(e));
  r.step_ms = median(step_ms);
  double sum = 0;
  for (double v : step_ms) sum += v;
  r.step_mean_ms = sum / static_cast<double>(step_ms.size());
  r.fwd_ms = median(fwd);
  r.bwd_ms = median(bwd);
  r.opt_ms = median(upd);
  r.tok_s = static_cast<double>(o.batch * o.seq) / (r.step_ms * 1e-3);
  r.bytes = ra::cuda::allocated_bytes() - before;
  r.fused_gelu = model.backend().fused_gelu();
  r.fused_bias_grad = model.backend().fused_bias_grad();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    cudaDeviceProp prop{};
    RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("gpt2_step: %s, B=%lld T=%lld, %lld layers, %lld heads, C=%lld, vocab %lld, bf16\n",
                prop.name, static_cast<long long>(o.batch), static_cast<long long>(o.seq),
                static_cast<long long>(o.layers), static_cast<long long>(o.heads),
                static_cast<long long>(o.C), static_cast<long long>(o.vocab));
    std::vector<Result> results;
    std::stringstream arms(o.arms);
    for (std::string a; std::getline(arms, a, ',');) {
      results.push_back(bench_arm(o, ra::nn::parse_arm(a)));
      const auto& r = results.back();
      std::printf(
          "%-8s step %.2f ms (fwd %.2f, bwd %.2f, adamw %.2f) | %.0f tok/s | %.2f GiB | loss %.4f"
          " | GELU %s, bias gradients %s\n",
          r.arm.c_str(), r.step_ms, r.fwd_ms, r.bwd_ms, r.opt_ms, r.tok_s,
          static_cast<double>(r.bytes) / (1 << 30), r.loss,
          r.fused_gelu ? "in the GEMM epilogues" : "separate kernels",
          r.fused_bias_grad ? "in the GEMM epilogues" : "column sums");
      std::fflush(stdout);
    }
    if (!o.json.empty()) {
      std::ostringstream j;
      const std::time_t now = std::time(nullptr);
      char date[32];
      std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
      const char* commit = std::getenv("RA_COMMIT");
      j << "{\n  \"device\": \"" << prop.name << "\",\n  \"date\": \"" << date
        << "\",\n  \"commit\": \"" << (commit ? commit : "unknown")
        << "\",\n  \"config\": {\"batch\": " << o.batch << ", \"seq\": " << o.seq
        << ", \"n_layer\": " << o.layers << ", \"n_head\": " << o.heads << ", \"n_embd\": " << o.C
        << ", \"vocab\": " << o.vocab << ", \"R\": " << o.R << ", \"gates\": \"" << o.gates
        << "\", \"dtype\": \"bf16 compute, fp32 master\", \"warmup\": " << o.warmup
        << ", \"steps\": " << o.steps << "},\n  \"results\": [\n";
      for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        j << "    {\"arm\": \"" << r.arm
          << "\", \"variant\": \"ra\", \"step_ms_median\": " << r.step_ms
          << ", \"step_ms_mean\": " << r.step_mean_ms << ", \"forward_ms\": " << r.fwd_ms
          << ", \"backward_ms\": " << r.bwd_ms << ", \"optimizer_ms\": " << r.opt_ms
          << ", \"tokens_per_s\": " << r.tok_s << ", \"device_bytes\": " << r.bytes
          << ", \"loss\": " << r.loss << ", \"params\": " << r.params
          << ", \"fused_gelu\": " << (r.fused_gelu ? "true" : "false")
          << ", \"fused_bias_grad\": " << (r.fused_bias_grad ? "true" : "false") << "}"
          << (i + 1 < results.size() ? "," : "") << "\n";
      }
      j << "  ]\n}\n";
      ra::write_file_atomic(o.json, j.str(), "gpt2_step");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
