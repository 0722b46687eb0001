// examples/train_gpt2.hpp — the trainer of examples/train_gpt2.cpp, for the GPT-2 model on
// either backend (ra::nn::GPT2<T> on the CPU, ra::nn::CudaGPT2<T> on the GPU) and its
// backend's optimizer (Model::Optimizer): the training loop, evaluation, summaries, checkpoints and
// generation. Its options are examples/train/options.hpp, the files it keeps in --out
// examples/train/run_folder.hpp. Device-free: it includes no backend, so the GPU half
// (examples/train/cuda.cu) compiles it with nvcc without the CPU backend, and the CPU half
// without CUDA. The tokenizer (bytes, or a SentencePiece model, which needs a library that no
// CUDA unit includes) is resolved by the CPU half and handed in as an nn::Tokenizer.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/core/file.hpp>
#include <ra/nn/adamw.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/sampling.hpp>
#include <ra/nn/schedule.hpp>
#include <ra/nn/tokenizer.hpp>

#include "train/options.hpp"
#include "train/run_folder.hpp"

namespace train_gpt2 {

namespace fs = std::filesystem;
using ra::index_t;
using Clock = std::chrono::steady_clock;

inline std::string describe(const ra::nn::GPT2Config& c) {
  std::ostringstream os;
  os << "arm " << ra::nn::name(c.arm) << ", " << c.n_layer << " layers, " << c.n_head
     << " heads, C " << c.C << " (D " << c.head_dim() << "), vocab " << c.vocab << " (padded "
     << c.padded_vocab() << "), max_seq " << c.max_seq;
  if (c.arm == ra::nn::Arm::ra)
    os << ", R " << c.R << ", gates " << c.gates << " (" << c.gate_param << ")"
       << (c.restart ? ", restart" : "");
  os << ", dropout " << c.dropout << (c.bias ? "" : ", no bias");
  return os.str();
}

// "L0 std .900[.899,.901] rec .100[.100,.101] a .050[.050,.050]" for each layer.
inline std::string gate_line(const std::vector<ra::nn::LayerGateStats>& stats) {
  std::string s;
  char buf[160];
  for (std::size_t l = 0; l < stats.size(); ++l) {
    const auto& g = stats[l];
    if (!g.gated && !g.restart) continue;
    std::snprintf(buf, sizeof buf, "%sL%zu", s.empty() ? "" : " ", l);
    s += buf;
    auto add = [&](const char* name, const ra::nn::Summary& x) {
      std::snprintf(buf, sizeof buf, " %s %.3f[%.3f,%.3f]", name, x.mean, x.min, x.max);
      s += buf;
    };
    if (g.gated) {
      add("std", g.g_std);
      add("rec", g.g_rec);
    }
    if (g.restart) add("a", g.alpha);
  }
  return s.empty() ? "gates none" : "gates " + s;
}

inline std::shared_ptr<const ra::nn::TokenFile> load(const std::string& path) {
  return std::make_shared<const ra::nn::TokenFile>(ra::nn::read_tokens(path));
}

inline void write_gates(const std::string& out, const std::vector<ra::nn::LayerGateStats>& stats) {
  std::ostringstream f;
  f << "layer\tg_std_mean\tg_std_min\tg_std_max\tg_rec_mean\tg_rec_min\tg_rec_max\talpha_mean\t"
       "alpha_min\talpha_max\n";
  for (std::size_t l = 0; l < stats.size(); ++l) {
    const auto& g = stats[l];
    auto put = [&](bool on, const ra::nn::Summary& s) {
      if (on) {
        f << '\t' << s.mean << '\t' << s.min << '\t' << s.max;
      } else {
        f << "\tnan\tnan\tnan";
      }
    };
    f << l;
    put(g.gated, g.g_std);
    put(g.gated, g.g_rec);
    put(g.restart, g.alpha);
    f << '\n';
  }
  ra::write_file_atomic((fs::path(out) / "gates.tsv").string(), f.str(), "train_gpt2");
}

struct Summary {
  std::uint64_t steps = 0, tokens = 0;
  double train_s = 0.0, val_loss = 0.0, last_loss = 0.0;
  std::uint32_t params_crc32c = 0;  // of the fp32 parameters: equal for bit-identical runs
  std::string tokenizer;            // the name the token files record
  ra::nn::AdamWConfig optimizer;
  std::uint64_t spikes = 0;  // elements SPAM clipped over the whole run
};

inline void write_summary(const Options& o, const ra::nn::GPT2Config& c, std::size_t params,
                          const Summary& s) {
  const double tok_s = s.train_s > 0.0 ? static_cast<double>(s.tokens) / s.train_s : 0.0;
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", s.params_crc32c);
  std::ostringstream t;
  t << "arm\t" << ra::nn::name(c.arm) << "\nseed\t" << o.seed << "\nsteps\t" << s.steps
    << "\ntokens\t" << s.tokens << "\ntrain_s\t" << s.train_s << "\ntok_s\t" << tok_s
    << "\nval_loss\t" << s.val_loss << "\ntrain_loss\t" << s.last_loss << "\nparams\t" << params
    << "\nparams_crc32c\t" << crc << "\ntokenizer\t" << s.tokenizer << "\nvocab\t" << c.vocab
    << "\noptimizer\t" << ra::nn::name(s.optimizer.kind) << "\nspam_spikes\t" << s.spikes << "\n";
  const auto& sp = s.optimizer.spam;
  std::ostringstream j;
  j << "{\n  \"arm\": \"" << ra::nn::name(c.arm) << "\",\n  \"config\": \"" << describe(c)
    << "\",\n  \"device\": \"" << o.device << "\",\n  \"precision\": \"" << o.precision
    << "\",\n  \"seed\": " << o.seed << ",\n  \"batch\": " << o.batch << ",\n  \"seq\": " << o.seq
    << ",\n  \"steps\": " << s.steps << ",\n  \"tokens\": " << s.tokens
    << ",\n  \"train_seconds\": " << s.train_s << ",\n  \"tokens_per_second\": " << tok_s
    << ",\n  \"val_loss\": " << s.val_loss << ",\n  \"train_loss\": " << s.last_loss
    << ",\n  \"parameters\": " << params << ",\n  \"parameters_crc32c\": \"" << crc
    << "\",\n  \"tokenizer\": \"" << s.tokenizer << "\",\n  \"vocab\": " << c.vocab
    << ",\n  \"optimizer\": \"" << ra::nn::name(s.optimizer.kind)
    << "\",\n  \"weight_decay\": " << s.optimizer.weight_decay
    << ",\n  \"grad_clip\": " << s.optimizer.grad_clip;
  if (s.optimizer.kind == ra::nn::OptimizerKind::adamw_spam)
    j << ",\n  \"spam\": {\"threshold\": " << sp.threshold
      << ", \"reset_interval\": " << sp.reset_interval << ", \"warmup\": " << sp.warmup
      << ", \"clip_delay\": " << sp.clip_delay << ", \"spikes\": " << s.spikes << "}";
  j << "\n}\n";
  ra::write_file_atomic((fs::path(o.out) / "summary.tsv").string(), t.str(), "train_gpt2");
  ra::write_file_atomic((fs::path(o.out) / "summary.json").string(), j.str(), "train_gpt2");
}

// Greedy (top_k = 0) or seeded top-k sampling (ra/nn/sampling.hpp) from the model, --generate
// tokens long, encoded and decoded by the data's tokenizer. Each token recomputes the window
// (a forward of up to max_seq tokens), so it runs on every backend; examples/generate decodes
// with the KV cache instead (CPU).
template <class Model>
std::string generate(Model& model, const Options& o, const ra::nn::Tokenizer& tok) {
  const index_t max_seq = model.config().max_seq, vocab = model.config().vocab;
  std::vector<std::int32_t> tokens;
  for (auto t : tok.encode(o.prompt)) tokens.push_back(t);
  if (tokens.empty()) tokens.push_back(tok.eot());
  ra::nn::SamplingConfig sc;
  sc.greedy = o.top_k == 0;
  sc.temperature = o.temperature;
  sc.top_k = std::min(o.top_k, vocab);
  sc.seed = o.seed;
  ra::nn::Sampler sampler(sc, 1, vocab);
  model.set_training(false);
  for (index_t n = 0; n < o.generate; ++n) {
    const index_t len = std::min<index_t>(static_cast<index_t>(tokens.size()), max_seq);
    const auto* window = tokens.data() + tokens.size() - static_cast<std::size_t>(len);
    model.forward(ra::make_view(window, ra::shape(index_t{1}, len)));  // (1,len)
    tokens.push_back(sampler.sample(model.logits(0, len - 1))[0]);
  }
  return tok.decode(tokens);
}

// The tokens of --data DIR/file, refused unless of the tokenizer `tok` (name and vocabulary).
inline std::shared_ptr<const ra::nn::TokenFile> load_tokens(const Options& o, const char* file,
                                                            const ra::nn::Tokenizer& tok) {
  auto t = load((fs::path(o.data) / file).string());
  ra::nn::require_tokenizer(*t, tok.name(), tok.vocab(), "train_gpt2");
  return t;
}

// Writes the gates of every gated layer at `step` to gates_curve.tsv.
inline void log_gates(Metrics& log, std::uint64_t step,
                      const std::vector<ra::nn::LayerGateStats>& stats) {
  for (std::size_t l = 0; l < stats.size(); ++l)
    for (std::size_t g = 0; g < stats[l].g_rec_values.size(); ++g)
      log.gate_row(step, l, g, stats[l].g_std_values[g], stats[l].g_rec_values[g]);
}

template <class Model>
int train(Options o, const ra::nn::Tokenizer& tok) {
  using Optimizer = typename Model::Optimizer;
  using namespace ra::nn;
  const auto train_data = load_tokens(o, "train.bin", tok);
  const auto val_data = load_tokens(o, "val.bin", tok);
  std::optional<Checkpoint> resumed;
  if (!o.resume.empty()) {
    auto r = read_checkpoint_with_fallback(o.resume);
    if (!r.rejected.empty())
      std::fprintf(stderr,
                   "train_gpt2: warning: %s\ntrain_gpt2: resuming from the previous checkpoint "
                   "'%s' (step %llu) instead\n",
                   r.rejected.c_str(), r.checkpoint.path.c_str(),
                   static_cast<unsigned long long>(r.checkpoint.state.step));
    adopt_checkpoint(o, r.checkpoint, *train_data);
    resumed = std::move(r.checkpoint);
  }
  const GPT2Config cfg = resumed ? resumed->config : model_config(o, train_data->vocab);
  ra::require(cfg.vocab == static_cast<index_t>(train_data->vocab), "train_gpt2: checkpoint '",
              o.resume, "' has vocab ", cfg.vocab, ", the data has vocab ", train_data->vocab,
              ", expected the same");
  for (const auto* t : {train_data.get(), val_data.get()})
    ra::require(static_cast<index_t>(t->tokens.size()) > o.seq, "train_gpt2: '", t->path, "' has ",
                t->tokens.size(), " tokens, expected more than --seq ", o.seq,
                " (one window of --seq + 1 tokens)");
  BatchLoader loader(train_data, o.batch, o.seq, o.seed);
  BatchLoader val(val_data, o.batch, o.seq, o.seed, false);
  std::optional<Model> slot;
  try {
    slot.emplace(cfg);
  } catch (const std::bad_alloc&) {
    throw ra::error("train_gpt2: not enough memory for the model (" + describe(cfg) +
                    "), expected a smaller one (--layers, --C, --seq)");
  }
  Model& model = *slot;
  model.init_gpt2(o.seed);
  const AdamWConfig acfg = optimizer_config(o);
  Optimizer opt(model.num_parameters(), model.parameter_table(), acfg);
  TrainingState state(o.seed);
  std::string resumed_from;
  if (resumed) {
    restore_checkpoint(*resumed, model, opt, state, loader);
    resumed_from = resumed->path;
    resumed.reset();  // its copies of the parameters and moments are no longer needed
    std::printf("resumed %s at step %llu (%llu tokens); it was written by: %s\n",
                resumed_from.c_str(), static_cast<unsigned long long>(state.step),
                static_cast<unsigned long long>(state.tokens), state.meta.c_str());
  }
  state.meta = o.command;

  const index_t per_step = o.batch * o.seq;
  index_t total = 0;  // no budget: only --generate
  if (o.steps) {
    total = *o.steps;
  } else if (o.token_budget) {
    total = (*o.token_budget + per_step - 1) / per_step;
  } else if (o.time_budget_s > 0.0) {
    total = std::numeric_limits<index_t>::max();
  }
  const bool by_time = !o.steps && !o.token_budget && o.time_budget_s > 0.0;
  // A checkpoint past the schedule cannot continue it (--steps 0: evaluate or generate only).
  ra::require(by_time || total == 0 || static_cast<index_t>(state.step) <= total,
              "train_gpt2: checkpoint '", resumed_from, "' is at step ", state.step,
              ", beyond this run's schedule of ", total,
              " steps; expected --steps or --token-budget reaching at least step ", state.step,
              " (or --steps 0 to evaluate or generate only)");
  CosineSchedule schedule{o.lr, o.min_lr, o.warmup, by_time ? 1 : std::max<index_t>(total, 1)};
  schedule.validate("train_gpt2");
  RunLogs logs = open_run_folder(o, resumed_from, state.step);
  Metrics& metrics = logs.metrics;

  std::printf("model: %s, %zu parameters, %s compute on %s\n", describe(cfg).c_str(),
              model.num_parameters(), o.precision.c_str(), o.device.c_str());
  std::printf(
      "data: %s: %zu train tokens (%lld windows of %lld), %zu val tokens; batch %lld; "
      "tokenizer %s\n",
      o.data.c_str(), train_data->tokens.size(), static_cast<long long>(loader.windows()),
      static_cast<long long>(o.seq + 1), val_data->tokens.size(), static_cast<long long>(o.batch),
      tok.name().c_str());
  if (acfg.kind == OptimizerKind::adamw_spam) {
    std::printf(
        "optimizer: adamw_spam (threshold %g, reset every %llu steps, warm-up %llu, clip "
        "delay %llu), weight decay %g, clip %g\n",
        acfg.spam.threshold, static_cast<unsigned long long>(acfg.spam.reset_interval),
        static_cast<unsigned long long>(acfg.spam.warmup),
        static_cast<unsigned long long>(acfg.spam.clip_delay), acfg.weight_decay, acfg.grad_clip);
  } else {
    std::printf("optimizer: adamw, weight decay %g, clip %g\n", acfg.weight_decay, acfg.grad_clip);
  }
  if (by_time) {
    std::printf(
        "budget: %.1f s of training; lr %.3g warmup %lld then cosine to %.3g over the time\n",
        o.time_budget_s, o.lr, static_cast<long long>(o.warmup), o.min_lr);
  } else {
    std::printf("budget: %lld steps (%lld tokens)%s; lr %.3g warmup %lld then cosine to %.3g\n",
                static_cast<long long>(total), static_cast<long long>(total * per_step),
                o.time_budget_s > 0.0 ? ", capped by --time-budget-s" : "", o.lr,
                static_cast<long long>(o.warmup), o.min_lr);
  }
  const std::string ckpt = o.out.empty() ? "" : (fs::path(o.out) / "ckpt.bin").string();
  auto validation_loss = [&] {
    const double v = evaluate(model, val, o.eval_batches);
    ra::require(std::isfinite(v), "train_gpt2: the validation loss is ", v, " at step ", state.step,
                ", expected a finite loss");
    return v;
  };
  auto evaluate_now = [&] {
    const double v = validation_loss();
    std::printf("val   step %6llu | tokens %llu | train %.1f s | val loss %.4f\n",
                static_cast<unsigned long long>(state.step),
                static_cast<unsigned long long>(state.tokens), state.train_seconds, v);
    ra::flush_stdout("train_gpt2");
    metrics.row("val", state.step, state.tokens, state.train_seconds, v, 0.0, 0.0, 0.0);
    log_gates(logs.gates, state.step, model.gate_stats());
    return v;
  };

  Summary sum;
  std::vector<std::int32_t> batch;
  // The step of the last checkpoint this run wrote: the final one is not written twice (which
  // would also turn ckpt.bin.prev into a copy of the newest).
  std::optional<std::uint64_t> saved_step;
  const bool budget_left_at_start =
      static_cast<index_t>(state.step) < (o.stop_at >= 0 ? std::min(total, o.stop_at) : total);
  if (budget_left_at_start && state.step == 0 && o.eval_every > 0) evaluate_now();
  const index_t last = o.stop_at >= 0 ? std::min(total, o.stop_at) : total;
  while (static_cast<index_t>(state.step) < last &&
         !(o.time_budget_s > 0.0 && state.train_seconds >= o.time_budget_s)) {
    const auto s = static_cast<index_t>(state.step);
    const double lr =
        by_time ? schedule.at_progress(s, state.train_seconds / o.time_budget_s) : schedule.at(s);
    const auto t0 = Clock::now();
    const StepResult r = train_step(model, opt, loader, state, lr, batch);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    state.train_seconds += dt;
    const double tok_s = static_cast<double>(per_step) / dt;
    sum.last_loss = r.loss;
    metrics.row("train", state.step, state.tokens, state.train_seconds, r.loss, lr, r.grad_norm,
                tok_s);
    if (state.step % static_cast<std::uint64_t>(o.log_every) == 0 || state.step == 1 ||
        r.optimizer.spam.reset) {
      std::string spam;
      if (acfg.kind == OptimizerKind::adamw_spam)
        spam = ra::detail::concat(" | spam", r.optimizer.spam.reset ? " RESET" : "", " w ",
                                  r.optimizer.spam.warmup_scale, " spikes ", r.optimizer.spikes);
      std::printf("step %6llu%s | loss %.4f | lr %.3e | norm %.3f%s | %8.0f tok/s | %s\n",
                  static_cast<unsigned long long>(state.step),
                  by_time ? "" : ("/" + std::to_string(total)).c_str(), r.loss, lr, r.grad_norm,
                  spam.c_str(), tok_s, gate_line(model.gate_stats()).c_str());
      ra::flush_stdout("train_gpt2");
    }
    ra::require(std::isfinite(r.loss), "train_gpt2: the loss is ", r.loss, " at step ", state.step,
                ", expected a finite loss (lower --lr?)");
    if (o.eval_every > 0 && state.step % static_cast<std::uint64_t>(o.eval_every) == 0)
      sum.val_loss = evaluate_now();
    if (!ckpt.empty() && o.ckpt_every > 0 &&
        state.step % static_cast<std::uint64_t>(o.ckpt_every) == 0) {
      save_checkpoint(ckpt, model, opt, state, loader);
      saved_step = state.step;
    }
  }
  const bool trained = budget_left_at_start;
  if (trained && (o.eval_every == 0 || state.step % static_cast<std::uint64_t>(o.eval_every) != 0))
    sum.val_loss = evaluate_now();
  if (!trained) sum.val_loss = validation_loss();
  sum.steps = state.step;
  sum.tokens = state.tokens;
  sum.train_s = state.train_seconds;
  sum.tokenizer = tok.name();
  sum.optimizer = acfg;
  sum.spikes = opt.spikes();
  {
    const auto p = model.parameters();
    sum.params_crc32c = ra::crc32c(p.data(), p.size() * sizeof(float));
  }
  std::printf(
      "final: arm %s | steps %llu | tokens %llu | train %.2f s | %.0f tok/s | val loss %.4f\n",
      std::string(name(cfg.arm)).c_str(), static_cast<unsigned long long>(sum.steps),
      static_cast<unsigned long long>(sum.tokens), sum.train_s,
      sum.train_s > 0.0 ? static_cast<double>(sum.tokens) / sum.train_s : 0.0, sum.val_loss);
  std::printf("final: %s\n", gate_line(model.gate_stats()).c_str());
  if (!o.out.empty()) {
    if (trained && saved_step != state.step) save_checkpoint(ckpt, model, opt, state, loader);
    logs.close();
    write_gates(o.out, model.gate_stats());
    write_summary(o, cfg, model.num_parameters(), sum);
    std::printf("wrote %s/{metrics.tsv, gates_curve.tsv, gates.tsv, summary.tsv, summary.json%s}\n",
                o.out.c_str(), trained ? ", ckpt.bin" : "");
  }
  if (o.generate > 0) {
    std::printf("--- %lld tokens from the prompt (%s, seed %llu) ---\n",
                static_cast<long long>(o.generate),
                o.top_k ? ("top-" + std::to_string(o.top_k) + " sampling").c_str() : "greedy",
                static_cast<unsigned long long>(o.seed));
    std::printf("%s\n---\n", generate(model, o, tok).c_str());
  }
  return 0;
}

/// Trains on the GPU (examples/train/cuda.cu; absent from builds without CUDA).
int train_on_cuda(const Options& o, const ra::nn::Tokenizer& tok);

}  // namespace train_gpt2
