// bench/decode_bench.cu — generation speed of the GPT-2 model on the GPU (ra::nn::CudaGPT2<bf16>
// with its KV cache: prefill, then one decode step per new token), for the baseline and RA
// arms, batch sizes, and decode steps replayed as CUDA graphs or run eagerly
// (set_decode_graphs); the Hugging Face peer is bench/hf_generate.py, run in the same command
// by bench/decode_run.sh.
//
//   decode_bench [--batch 1,16] [--prompt 128] [--new-tokens 256] [--arms baseline,ra]
//                [--graphs on,off] [--R 4] [--gates per_layer] [--n-layer 12] [--n-head 12]
//                [--n-embd 768] [--vocab 50257] [--seed 1] [--checkpoint PATH]
//                [--warmup 1] [--repeats 3] [--json PATH]
//
// Weights: init_gpt2(--seed) per arm, or one checkpoint's (its config and arm; --arms is then
// ignored). Prompts: --prompt random token ids per sequence, drawn once per batch size (the
// same for every arm). Decoding is greedy (argmax of the logits on the host), --new-tokens per
// sequence, no stop token, so every run makes the same number of tokens.
//
// Timed on the host (steady_clock), as examples/generate does: prefill = prefill() of every
// prompt until its logits are on the host; each decode step = argmax + decode() until the next
// logits are on the host (which waits for the GPU). The first new token comes from the
// prefill's logits, so a run has new_tokens − 1 decode steps. Per row: prefill ms, mean, median
// and p90 step latency (µs) over the steps of all --repeats runs (after --warmup runs, which also
// capture the graph), and tokens/s = batch · new_tokens / (prefill + decode steps), median
// over the runs.
//
// The weight-read floor: a decode step reads every weight at least once, so it cannot take
// less than parameter bytes / memory bandwidth. The bandwidth is measured here: a
// cudaMemcpyAsync device-to-device of 1 GiB timed with CUDA events (median of 10), counted as
// 2 × bytes / time (a copy reads and writes each byte). Parameter bytes: the bf16 working copy
// the model reads, num_parameters() × 2 (wte with its padded rows, also the LM head). Each row
// reports latency / floor; the issue's target is ≤ 2× at batch 1.
#include <cuda_runtime.h>

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
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/gpt2_cuda.cuh>

namespace {

using ra::index_t;
constexpr const char* kProgram = "decode_bench";

struct Options {
  std::vector<index_t> batches = {1, 16};
  index_t prompt = 128, new_tokens = 256, layers = 12, heads = 12, C = 768, vocab = 50257;
  int R = 4, warmup = 1, repeats = 3;
  std::uint64_t seed = 1;
  std::string gates = "per_layer", arms = "baseline,ra", graphs = "on,off", checkpoint, json;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');) out.push_back(x);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string flag = std::string(kProgram) + ": " + a;
    auto value = [&]() -> std::string {
      ra::require(i + 1 < argc, flag, " needs a value (see the top of bench/decode_bench.cu)");
      return argv[++i];
    };
    auto size = [&](index_t max) { return ra::parse_integer<index_t>(flag, value(), 1, max); };
    auto count = [&](int min) { return ra::parse_integer<int>(flag, value(), min, 1 << 20); };
    if (a == "--batch") {
      o.batches.clear();
      for (const auto& b : split_list(value()))
        o.batches.push_back(ra::parse_integer<index_t>(flag, b, 1, 1 << 16));
      ra::require(!o.batches.empty(), flag, ": expected a list like 1,16");
    } else if (a == "--prompt") {
      o.prompt = size(65535);
    } else if (a == "--new-tokens") {
      o.new_tokens = size(65535);
    } else if (a == "--layers" || a == "--n-layer") {
      o.layers = size(4096);
    } else if (a == "--heads" || a == "--n-head") {
      o.heads = size(4096);
    } else if (a == "--C" || a == "--n-embd") {
      o.C = size(65536);
    } else if (a == "--vocab") {
      o.vocab = size(1 << 20);
    } else if (a == "--R") {
      o.R = count(0);
    } else if (a == "--gates") {
      o.gates = value();
    } else if (a == "--arms") {
      o.arms = value();
    } else if (a == "--graphs") {
      o.graphs = value();
      for (const auto& g : split_list(o.graphs))
        ra::require(g == "on" || g == "off", flag, " '", o.graphs,
                    "': expected a list of on and off, e.g. on,off");
    } else if (a == "--seed") {
      o.seed = ra::parse_integer<std::uint64_t>(flag, value());
    } else if (a == "--checkpoint") {
      o.checkpoint = value();
    } else if (a == "--warmup") {
      o.warmup = count(0);
    } else if (a == "--repeats") {
      o.repeats = count(1);
    } else if (a == "--json") {
      o.json = value();
    } else {
      throw ra::error(ra::detail::concat(kProgram, ": unknown argument '", a,
                                         "' (see the top of bench/decode_bench.cu)"));
    }
  }
  return o;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Device-to-device copy bandwidth in bytes/s, counting the read and the write of each byte.
double copy_bandwidth(double& copy_ms) {
  constexpr index_t kBytes = index_t{1} << 30;
  ra::cuda::DeviceBuffer<std::byte> src(kBytes), dst(kBytes);
  RA_CUDA_CHECK(cudaMemset(src.data(), 1, kBytes));
  cudaEvent_t e0, e1;
  RA_CUDA_CHECK(cudaEventCreate(&e0));
  RA_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> ms;
  for (int i = 0; i < 12; ++i) {
    RA_CUDA_CHECK(cudaEventRecord(e0, nullptr));
    RA_CUDA_CHECK(
        cudaMemcpyAsync(dst.data(), src.data(), kBytes, cudaMemcpyDeviceToDevice, nullptr));
    RA_CUDA_CHECK(cudaEventRecord(e1, nullptr));
    RA_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    RA_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 2) ms.push_back(t);
  }
  RA_CUDA_CHECK(cudaEventDestroy(e0));
  RA_CUDA_CHECK(cudaEventDestroy(e1));
  copy_ms = quantile(ms, 0.5);
  return 2.0 * static_cast<double>(kBytes) / (copy_ms * 1e-3);
}

std::int32_t argmax_row(const std::vector<double>& z, index_t row, index_t vocab) {
  const auto first = z.begin() + row * vocab;
  return static_cast<std::int32_t>(std::max_element(first, first + vocab) - first);
}

struct Result {
  std::string arm;
  index_t batch = 0;
  bool graphs = false;
  double prefill_ms = 0, step_us_mean = 0, step_us_median = 0, step_us_p90 = 0, tokens_per_s = 0;
  std::int64_t allocs_in_decode = 0;       // device allocations during the timed decode steps
  std::vector<std::int32_t> first_tokens;  // sequence 0's first new tokens (a cross-check)
};

// Greedy generation from `prompts`, --warmup + --repeats times; the timed runs' figures.
template <class Model>
Result bench(Model& model, const Options& o, const std::vector<std::vector<std::int32_t>>& prompts,
             bool graphs) {
  const index_t B = static_cast<index_t>(prompts.size()), V = model.config().vocab;
  model.backend().set_decode_graphs(graphs);
  Result r;
  r.batch = B;
  r.graphs = graphs;
  std::vector<double> prefill, steps, tok_s;
  std::vector<std::int32_t> next(static_cast<std::size_t>(B));
  for (int run = 0; run < o.warmup + o.repeats; ++run) {
    const bool timed = run >= o.warmup;
    model.reset_cache(B, o.prompt + o.new_tokens);
    auto t0 = std::chrono::steady_clock::now();
    auto logits = model.prefill(prompts);
    const double p_ms = ms_since(t0);
    double total_ms = p_ms;
    std::vector<std::int32_t> seq0;
    const std::int64_t allocs = ra::cuda::allocation_count();
    for (index_t n = 0; n < o.new_tokens; ++n) {
      t0 = std::chrono::steady_clock::now();
      for (index_t b = 0; b < B; ++b) next[static_cast<std::size_t>(b)] = argmax_row(logits, b, V);
      seq0.push_back(next[0]);
      if (n + 1 == o.new_tokens) break;  // the last token needs no step after it
      logits = model.decode(next);
      const double ms = ms_since(t0);
      total_ms += ms;
      if (timed) steps.push_back(1e3 * ms);
    }
    if (!timed) continue;
    r.allocs_in_decode += ra::cuda::allocation_count() - allocs;
    prefill.push_back(p_ms);
    tok_s.push_back(static_cast<double>(B * o.new_tokens) / (total_ms * 1e-3));
    seq0.resize(std::min<std::size_t>(seq0.size(), 16));
    r.first_tokens = seq0;
  }
  r.prefill_ms = quantile(prefill, 0.5);
  double sum = 0;
  for (double s : steps) sum += s;
  r.step_us_mean = steps.empty() ? 0.0 : sum / static_cast<double>(steps.size());
  r.step_us_median = quantile(steps, 0.5);
  r.step_us_p90 = quantile(steps, 0.9);
  r.tokens_per_s = quantile(tok_s, 0.5);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    cudaDeviceProp prop{};
    RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    double copy_ms = 0;
    const double bandwidth = copy_bandwidth(copy_ms);

    // The models: one per arm, from init_gpt2(seed) or the checkpoint.
    struct Arm {
      ra::nn::GPT2Config cfg;
      std::vector<float> params;  // empty: init_gpt2(seed)
    };
    std::vector<Arm> arms;
    if (!o.checkpoint.empty()) {
      auto ck = ra::nn::read_checkpoint(o.checkpoint);
      arms.push_back({ck.config, std::move(ck.parameters)});
    } else {
      for (const auto& a : split_list(o.arms)) {
        ra::nn::GPT2Config cfg;
        cfg.vocab = o.vocab;
        cfg.n_layer = o.layers;
        cfg.n_head = o.heads;
        cfg.C = o.C;
        cfg.arm = ra::nn::parse_arm(a);
        cfg.R = o.R;
        cfg.gates = ra::nn::parse_gate_mode(o.gates);
        arms.push_back({cfg, {}});
      }
    }
    const index_t max_seq = arms.front().cfg.max_seq;
    ra::require_arg(o.prompt + o.new_tokens <= max_seq, kProgram, "--prompt + --new-tokens",
                    o.prompt + o.new_tokens,
                    ra::detail::concat("at most the model's max_seq = ", max_seq));

    std::printf(
        "decode_bench: %s, prompt %lld, %lld new tokens (greedy), bf16, copy bandwidth "
        "%.0f GB/s (1 GiB D2D copy in %.3f ms, read + write)\n",
        prop.name, static_cast<long long>(o.prompt), static_cast<long long>(o.new_tokens),
        bandwidth * 1e-9, copy_ms);
    std::printf("%-8s %5s %6s %10s %12s %12s %12s %11s %10s %9s\n", "arm", "batch", "graph",
                "prefill_ms", "step_us_mean", "step_us_med", "step_us_p90", "tokens/s", "floor_us",
                "vs_floor");
    std::vector<Result> results;
    std::vector<double> floors;
    std::size_t params = 0;
    for (const auto& arm : arms) {
      ra::nn::CudaGPT2<ra::bf16> model(arm.cfg);
      if (arm.params.empty()) {
        model.init_gpt2(o.seed);
      } else {
        model.set_parameters(arm.params);
      }
      model.set_training(false);
      params = model.num_parameters();
      const double floor_us = 1e6 * static_cast<double>(params * sizeof(ra::bf16)) / bandwidth;
      for (const index_t B : o.batches) {
        std::mt19937_64 rng(o.seed * 1000003 + static_cast<std::uint64_t>(B));
        std::uniform_int_distribution<std::int32_t> tok(
            0, static_cast<std::int32_t>(arm.cfg.vocab - 1));
        std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(B));
        for (auto& p : prompts) {
          p.resize(static_cast<std::size_t>(o.prompt));
          for (auto& t : p) t = tok(rng);
        }
        for (const auto& g : split_list(o.graphs)) {
          Result r = bench(model, o, prompts, g == "on");
          r.arm = std::string(ra::nn::name(arm.cfg.arm));
          std::printf("%-8s %5lld %6s %10.2f %12.1f %12.1f %12.1f %11.0f %10.1f %8.2fx\n",
                      r.arm.c_str(), static_cast<long long>(B), g.c_str(), r.prefill_ms,
                      r.step_us_mean, r.step_us_median, r.step_us_p90, r.tokens_per_s, floor_us,
                      r.step_us_median / floor_us);
          std::fflush(stdout);
          results.push_back(r);
          floors.push_back(floor_us);
        }
      }
    }
    if (!o.json.empty()) {
      std::ostringstream j;
      const std::time_t now = std::time(nullptr);
      char date[32];
      std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
      const char* commit = std::getenv("RA_COMMIT");
      const auto& c = arms.front().cfg;
      j << "{\n  \"device\": \"" << prop.name << "\",\n  \"date\": \"" << date
        << "\",\n  \"commit\": \"" << (commit ? commit : "unknown") << "\",\n  \"config\": {"
        << "\"prompt\": " << o.prompt << ", \"new_tokens\": " << o.new_tokens
        << ", \"n_layer\": " << c.n_layer << ", \"n_head\": " << c.n_head << ", \"n_embd\": " << c.C
        << ", \"vocab\": " << c.vocab << ", \"padded_vocab\": " << c.padded_vocab()
        << ", \"R\": " << (o.checkpoint.empty() ? o.R : c.R) << ", \"gates\": \"";
      if (o.checkpoint.empty()) {
        j << o.gates;
      } else {
        j << c.gates;
      }
      j << "\", \"restart\": " << (c.restart ? "true" : "false")
        << ", \"dtype\": \"bf16\", \"decoding\": \"greedy\", \"weights\": \""
        << (o.checkpoint.empty() ? "init_gpt2(seed " + std::to_string(o.seed) + ")"
                                 : "checkpoint " + o.checkpoint)
        << "\", \"warmup\": " << o.warmup << ", \"repeats\": " << o.repeats
        << ", \"params\": " << params << ", \"param_bytes\": " << params * sizeof(ra::bf16)
        << ", \"copy_ms_1gib\": " << copy_ms << ", \"bandwidth_bytes_per_s\": " << bandwidth
        << "},\n  \"results\": [\n";
      for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        j << "    {\"impl\": \"ra\", \"arm\": \"" << r.arm << "\", \"variant\": \""
          << (r.graphs ? "graph" : "eager") << "\", \"batch\": " << r.batch
          << ", \"prefill_ms\": " << r.prefill_ms << ", \"step_us_mean\": " << r.step_us_mean
          << ", \"step_us_median\": " << r.step_us_median << ", \"step_us_p90\": " << r.step_us_p90
          << ", \"tokens_per_s\": " << r.tokens_per_s << ", \"floor_us\": " << floors[i]
          << ", \"vs_floor\": " << r.step_us_median / floors[i]
          << ", \"allocs_in_decode\": " << r.allocs_in_decode << ", \"first_tokens\": [";
        for (std::size_t k = 0; k < r.first_tokens.size(); ++k)
          j << (k ? ", " : "") << r.first_tokens[k];
        j << "]}" << (i + 1 < results.size() ? "," : "") << "\n";
      }
      j << "  ]\n}\n";
      ra::write_file_atomic(o.json, j.str(), kProgram);
      std::printf("wrote %s\n", o.json.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
