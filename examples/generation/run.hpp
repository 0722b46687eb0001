// examples/generation/run.hpp — the generation loop of examples/generate, written once over the
// model type: nn::GPT2<T> on the CPU (examples/generate.cpp) or nn::CudaGPT2<T> on the GPU
// (examples/generation/cuda.cu, compiled by nvcc without the CPU backend and linked into the
// same program where CUDA exists). The tokenizer is resolved by the CPU half and handed in.
//
// The loop: reset_cache for the longest prompt plus --max-new-tokens, prefill every prompt,
// then per step sample the next token of each live sequence, print it as it comes, and append
// it (decode). Timed on the host: prefill (its logits on the host), and each decode step from
// the sampler's call to decode()'s return with the next logits on the host, which waits for
// the GPU — what a user of the program sees between two tokens, printing excluded.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/sampling.hpp>
#include <ra/nn/tokenizer.hpp>

namespace generation {

using ra::index_t;
inline constexpr const char* kProgram = "generate";

struct Options {
  std::string checkpoint, tokenizer_model, prompts_file, precision = "fp32", stop;
  std::string device;  // "cpu" or "cuda"; empty until resolved: cuda where a GPU is usable
  std::vector<std::string> prompts;
  ra::nn::SamplingConfig sampling;
  index_t max_new_tokens = 64;
};

/// The GPU half (examples/generation/cuda.cu; absent from builds without CUDA): the number of
/// visible CUDA devices, with why there is none in `why` when 0.
int cuda_device_count(std::string& why);
/// Generates on the GPU with nn::CudaGPT2<T> for --precision fp32 or bf16.
int generate_on_cuda(const ra::nn::Checkpoint& ck, const ra::nn::Tokenizer& tok, const Options& o);

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The q-quantile (0 <= q <= 1) of v by the nearest rank; 0 for an empty v.
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
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
  std::fflush(stdout);
  index_t generated = 0;
  std::vector<double> step_s;  // per decode step: sample + decode, printing excluded
  double decode_s = 0.0;
  for (index_t step = 0; step < o.max_new_tokens && !sampler.all_finished(); ++step) {
    auto t_step = std::chrono::steady_clock::now();
    std::vector<bool> live(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) live[b] = !sampler.finished(b);
    const auto next = sampler.sample(logits);
    double spent = seconds_since(t_step);
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
    if (step + 1 < o.max_new_tokens && !sampler.all_finished()) {
      t_step = std::chrono::steady_clock::now();
      logits = model.decode(next);
      spent += seconds_since(t_step);
      step_s.push_back(spent);
    }
    decode_s += spent;
  }
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
  std::printf("per-token latency: median %.3f ms, p90 %.3f ms over %zu decode steps (%s, %s)\n",
              1e3 * quantile(step_s, 0.5), 1e3 * quantile(step_s, 0.9), step_s.size(),
              o.device.c_str(), o.precision.c_str());
  return 0;
}

}  // namespace generation
