// examples/train_gpt2.hpp — the trainer of examples/train_gpt2.cpp, for any model with the
// GPT-2 interface (ra::nn::GPT2<T> on the CPU, ra::cuda::GPT2<T> on the GPU) and its
// optimizer: options, the training loop, evaluation, metrics files, checkpoints and
// generation. Device-free: it includes no backend, so the GPU half (examples/train/cuda.cu)
// compiles it with nvcc without the CPU backend, and the CPU half without CUDA.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/nn/adamw.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/schedule.hpp>
#include <ra/nn/tokenizer.hpp>

namespace train_gpt2 {

namespace fs = std::filesystem;
using ra::index_t;
using Clock = std::chrono::steady_clock;

struct Options {
  // model
  std::string arm = "baseline";
  int R = 4;
  std::string gates = "per_layer", gate_param = "clamp";
  bool restart = false, bias = true;
  index_t layers = 4, heads = 2, C = 128;  // D = 64: in every build's kernel list
  float dropout = 0.f;
  // run
  index_t seq = 64, batch = 8;
  std::optional<index_t> steps, token_budget;
  index_t stop_at = -1;  // stop after this step without changing the schedule (-1: never)
  double time_budget_s = 0.0;
  double lr = 1e-3, min_lr = -1.0, weight_decay = 0.1, grad_clip = 1.0;
  index_t warmup = 20;
  std::uint64_t seed = 1;
  index_t eval_every = 50, eval_batches = 8, ckpt_every = 0, log_every = 1;
  std::string data = "build/data", out, resume, device = "cpu", precision = "fp32";
  // generation
  index_t generate = 0, top_k = 0;
  double temperature = 1.0;
  std::string prompt = "The ";
  std::string command;  // the command line, stored in checkpoints and summaries
};

inline constexpr const char* kUsage = R"(usage: train_gpt2 [options]
model:  --arm baseline|ra  --R 4  --gates none|per_layer|per_head  --gate-param clamp|softplus
        --restart  --layers 4  --heads 2  --C 128  --dropout 0  --no-bias
run:    --data DIR (train.bin, val.bin)  --seq 64  --batch 8
        --steps N | --token-budget N   [--time-budget-s S]   (or --time-budget-s S alone)
        --stop-at N (stop after step N; the schedule still spans the budget, for chunked runs)
        --lr 1e-3  --min-lr lr/10  --warmup 20  --weight-decay 0.1  --grad-clip 1.0  --seed 1
        --eval-every 50  --eval-batches 8  --log-every 1
        --out DIR  --ckpt-every 0  --resume CKPT  --device cpu|cuda  --precision fp32|bf16
text:   --generate N  --prompt TEXT  --top-k 0 (greedy)  --temperature 1.0)";

inline Options parse(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      ra::require(i + 1 < argc, "train_gpt2: ", a, " needs a value\n", kUsage);
      return argv[++i];
    };
    // std::stoll / std::stod say only "stoll": name the flag and the text instead.
    auto number = [&](auto convert) {
      const std::string v = value();
      try {
        std::size_t used = 0;
        const auto x = convert(v, &used);
        if (used == v.size()) return x;
      } catch (const std::exception&) {
      }
      throw ra::error("train_gpt2: " + a + " '" + v + "' is not a number");
    };
    auto integer = [&] {
      return number([](const std::string& v, std::size_t* n) { return std::stoll(v, n); });
    };
    auto real = [&] {
      return number([](const std::string& v, std::size_t* n) { return std::stod(v, n); });
    };
    const std::map<std::string, std::function<void()>> handlers{
        {"--arm", [&] { o.arm = value(); }},
        {"--R", [&] { o.R = static_cast<int>(integer()); }},
        {"--gates", [&] { o.gates = value(); }},
        {"--gate-param", [&] { o.gate_param = value(); }},
        {"--restart", [&] { o.restart = true; }},
        {"--no-bias", [&] { o.bias = false; }},
        {"--layers", [&] { o.layers = integer(); }},
        {"--heads", [&] { o.heads = integer(); }},
        {"--C", [&] { o.C = integer(); }},
        {"--dropout", [&] { o.dropout = static_cast<float>(real()); }},
        {"--seq", [&] { o.seq = integer(); }},
        {"--batch", [&] { o.batch = integer(); }},
        {"--steps", [&] { o.steps = integer(); }},
        {"--token-budget", [&] { o.token_budget = integer(); }},
        {"--stop-at", [&] { o.stop_at = integer(); }},
        {"--time-budget-s", [&] { o.time_budget_s = real(); }},
        {"--lr", [&] { o.lr = real(); }},
        {"--min-lr", [&] { o.min_lr = real(); }},
        {"--warmup", [&] { o.warmup = integer(); }},
        {"--weight-decay", [&] { o.weight_decay = real(); }},
        {"--grad-clip", [&] { o.grad_clip = real(); }},
        {"--seed", [&] { o.seed = static_cast<std::uint64_t>(integer()); }},
        {"--eval-every", [&] { o.eval_every = integer(); }},
        {"--eval-batches", [&] { o.eval_batches = integer(); }},
        {"--ckpt-every", [&] { o.ckpt_every = integer(); }},
        {"--log-every", [&] { o.log_every = integer(); }},
        {"--data", [&] { o.data = value(); }},
        {"--out", [&] { o.out = value(); }},
        {"--resume", [&] { o.resume = value(); }},
        {"--device", [&] { o.device = value(); }},
        {"--precision", [&] { o.precision = value(); }},
        {"--generate", [&] { o.generate = integer(); }},
        {"--prompt", [&] { o.prompt = value(); }},
        {"--top-k", [&] { o.top_k = integer(); }},
        {"--temperature", [&] { o.temperature = real(); }},
    };
    if (a == "--help" || a == "-h") {
      std::puts(kUsage);
      std::exit(0);
    }
    const auto h = handlers.find(a);
    if (h == handlers.end())
      throw ra::error(std::string("train_gpt2: unknown argument '") + a + "'\n" + kUsage);
    h->second();
  }
  constexpr const char* w = "train_gpt2";
  ra::require(!(o.steps && o.token_budget), "train_gpt2: give --steps or --token-budget, not both");
  ra::require(o.steps || o.token_budget || o.time_budget_s > 0.0 || o.generate > 0,
              "train_gpt2: no budget: expected --steps, --token-budget or --time-budget-s");
  ra::require_arg(o.seq >= 1 && o.batch >= 1, w, "--seq/--batch", o.seq * o.batch,
                  "positive values");
  ra::require_arg(!o.steps || *o.steps >= 0, w, "--steps", o.steps.value_or(0), "a value >= 0");
  ra::require_arg(!o.token_budget || *o.token_budget >= 1, w, "--token-budget",
                  o.token_budget.value_or(0), "a positive token count");
  ra::require_arg(o.time_budget_s >= 0.0, w, "--time-budget-s", o.time_budget_s, "a value >= 0");
  ra::require_arg(o.eval_every >= 0 && o.eval_batches >= 1, w, "--eval-every/--eval-batches",
                  o.eval_batches, "eval-every >= 0 and eval-batches >= 1");
  ra::require_arg(o.log_every >= 1, w, "--log-every", o.log_every, "a positive step count");
  ra::require_arg(o.top_k >= 0 && o.temperature > 0.0, w, "--top-k/--temperature", o.temperature,
                  "top-k >= 0 and a positive temperature");
  if (o.min_lr < 0.0) o.min_lr = o.lr / 10.0;
  return o;
}

inline ra::nn::GPT2Config model_config(const Options& o, index_t vocab) {
  ra::nn::GPT2Config c;
  c.vocab = vocab;
  c.max_seq = o.seq;
  c.n_layer = o.layers;
  c.n_head = o.heads;
  c.C = o.C;
  c.arm = ra::nn::parse_arm(o.arm);
  c.R = o.R;
  c.gates = ra::nn::parse_gate_mode(o.gates);
  c.gate_param = ra::nn::parse_gate_param(o.gate_param);
  c.restart = o.restart;
  c.dropout = o.dropout;
  c.bias = o.bias;
  c.validate("train_gpt2");
  return c;
}

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

// Appends rows to DIR/metrics.tsv (header once).
class Metrics {
 public:
  explicit Metrics(const std::string& out) {
    if (out.empty()) return;
    const auto path = fs::path(out) / "metrics.tsv";
    const bool fresh = !fs::exists(path);
    f_.open(path, std::ios::app);
    ra::require(static_cast<bool>(f_), "train_gpt2: cannot write '", path.string(), "'");
    if (fresh) f_ << "kind\tstep\ttokens\ttrain_s\tloss\tlr\tgrad_norm\ttok_s\n";
  }
  void row(const char* kind, std::uint64_t step, std::uint64_t tokens, double t, double loss,
           double lr, double norm, double tok_s) {
    if (!f_.is_open()) return;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\t%llu\t%llu\t%.4f\t%.6f\t%.6g\t%.5g\t%.1f\n", kind,
                  static_cast<unsigned long long>(step), static_cast<unsigned long long>(tokens), t,
                  loss, lr, norm, tok_s);
    f_ << buf;
    f_.flush();
  }

 private:
  std::ofstream f_;
};

inline void write_gates(const std::string& out, const std::vector<ra::nn::LayerGateStats>& stats) {
  std::ofstream f(fs::path(out) / "gates.tsv", std::ios::trunc);
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
}

struct Summary {
  std::uint64_t steps = 0, tokens = 0;
  double train_s = 0.0, val_loss = 0.0, last_loss = 0.0;
};

inline void write_summary(const Options& o, const ra::nn::GPT2Config& c, std::size_t params,
                          const Summary& s) {
  const double tok_s = s.train_s > 0.0 ? static_cast<double>(s.tokens) / s.train_s : 0.0;
  std::ofstream t(fs::path(o.out) / "summary.tsv", std::ios::trunc);
  t << "arm\t" << ra::nn::name(c.arm) << "\nseed\t" << o.seed << "\nsteps\t" << s.steps
    << "\ntokens\t" << s.tokens << "\ntrain_s\t" << s.train_s << "\ntok_s\t" << tok_s
    << "\nval_loss\t" << s.val_loss << "\ntrain_loss\t" << s.last_loss << "\nparams\t" << params
    << "\n";
  std::ofstream j(fs::path(o.out) / "summary.json", std::ios::trunc);
  j << "{\n  \"arm\": \"" << ra::nn::name(c.arm) << "\",\n  \"config\": \"" << describe(c)
    << "\",\n  \"device\": \"" << o.device << "\",\n  \"precision\": \"" << o.precision
    << "\",\n  \"seed\": " << o.seed << ",\n  \"batch\": " << o.batch << ",\n  \"seq\": " << o.seq
    << ",\n  \"steps\": " << s.steps << ",\n  \"tokens\": " << s.tokens
    << ",\n  \"train_seconds\": " << s.train_s << ",\n  \"tokens_per_second\": " << tok_s
    << ",\n  \"val_loss\": " << s.val_loss << ",\n  \"train_loss\": " << s.last_loss
    << ",\n  \"parameters\": " << params << "\n}\n";
}

// Greedy (top_k = 0) or seeded top-k sampling from the model, --generate tokens long.
template <class Model>
std::string generate(Model& model, const Options& o) {
  using Tok = ra::nn::ByteTokenizer;
  const index_t max_seq = model.config().max_seq;
  std::vector<std::int32_t> tokens;
  for (auto t : Tok::encode(o.prompt)) tokens.push_back(t);
  if (tokens.empty()) tokens.push_back(Tok::kEot);
  std::mt19937_64 rng(o.seed);
  model.set_training(false);
  for (index_t n = 0; n < o.generate; ++n) {
    const index_t len = std::min<index_t>(static_cast<index_t>(tokens.size()), max_seq);
    const auto* window = tokens.data() + tokens.size() - static_cast<std::size_t>(len);
    model.forward(ra::make_view(window, ra::shape(index_t{1}, len)));  // (1,len)
    const auto z = model.logits(0, len - 1);
    std::int32_t next = 0;
    if (o.top_k == 0) {
      next = static_cast<std::int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
    } else {
      std::vector<std::int32_t> idx(z.size());
      for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int32_t>(i);
      const auto k = std::min<std::size_t>(static_cast<std::size_t>(o.top_k), idx.size());
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                        [&](auto a, auto b) { return z[a] > z[b]; });
      std::vector<double> p(k);
      for (std::size_t i = 0; i < k; ++i) p[i] = std::exp((z[idx[i]] - z[idx[0]]) / o.temperature);
      double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      double total = 0.0;
      for (double x : p) total += x;
      next = idx[k - 1];
      for (std::size_t i = 0; i < k; ++i) {
        u -= p[i] / total;
        if (u <= 0.0) {
          next = idx[i];
          break;
        }
      }
    }
    tokens.push_back(next);
  }
  return Tok::decode(tokens);
}

template <class Model, class Optimizer>
int train(const Options& o) {
  using namespace ra::nn;
  const auto train_data = load((fs::path(o.data) / "train.bin").string());
  const auto val_data = load((fs::path(o.data) / "val.bin").string());
  ra::require(train_data->vocab == val_data->vocab, "train_gpt2: train.bin has vocab ",
              train_data->vocab, " but val.bin has vocab ", val_data->vocab,
              ", expected files of one tokenizer");
  const GPT2Config cfg =
      o.resume.empty() ? model_config(o, train_data->vocab) : read_checkpoint_config(o.resume);
  if (!o.resume.empty())
    ra::require(cfg.vocab == train_data->vocab && cfg.max_seq >= o.seq, "train_gpt2: checkpoint '",
                o.resume, "' has vocab ", cfg.vocab, " and max_seq ", cfg.max_seq,
                "; the data has vocab ", train_data->vocab, " and --seq is ", o.seq,
                ", expected the same vocab and --seq <= max_seq");
  Model model(cfg);
  model.init_gpt2(o.seed);
  AdamWConfig acfg;
  acfg.weight_decay = o.weight_decay;
  acfg.grad_clip = o.grad_clip;
  Optimizer opt(model.num_parameters(), model.parameter_table(), acfg);
  BatchLoader loader(train_data, o.batch, o.seq, o.seed);
  BatchLoader val(val_data, o.batch, o.seq, o.seed, false);
  TrainingState state(o.seed);
  if (!o.resume.empty()) {
    load_checkpoint(o.resume, model, opt, state, loader);
    std::printf("resumed %s at step %llu (%llu tokens); it was written by: %s\n", o.resume.c_str(),
                static_cast<unsigned long long>(state.step),
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
  CosineSchedule schedule{o.lr, o.min_lr, o.warmup, by_time ? 1 : std::max<index_t>(total, 1)};
  schedule.validate("train_gpt2");

  std::printf("model: %s, %zu parameters, %s compute on %s\n", describe(cfg).c_str(),
              model.num_parameters(), o.precision.c_str(), o.device.c_str());
  std::printf("data: %s: %zu train tokens (%lld windows of %lld), %zu val tokens; batch %lld\n",
              o.data.c_str(), train_data->tokens.size(), static_cast<long long>(loader.windows()),
              static_cast<long long>(o.seq + 1), val_data->tokens.size(),
              static_cast<long long>(o.batch));
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
  if (!o.out.empty()) fs::create_directories(o.out);
  Metrics metrics(o.out);
  const std::string ckpt = o.out.empty() ? "" : (fs::path(o.out) / "ckpt.bin").string();
  auto evaluate_now = [&] {
    const double v = evaluate(model, val, o.eval_batches);
    std::printf("val   step %6llu | tokens %llu | train %.1f s | val loss %.4f\n",
                static_cast<unsigned long long>(state.step),
                static_cast<unsigned long long>(state.tokens), state.train_seconds, v);
    std::fflush(stdout);
    metrics.row("val", state.step, state.tokens, state.train_seconds, v, 0.0, 0.0, 0.0);
    return v;
  };

  Summary sum;
  std::vector<std::int32_t> batch;
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
    if (state.step % static_cast<std::uint64_t>(o.log_every) == 0 || state.step == 1) {
      std::printf("step %6llu%s | loss %.4f | lr %.3e | norm %.3f | %8.0f tok/s | %s\n",
                  static_cast<unsigned long long>(state.step),
                  by_time ? "" : ("/" + std::to_string(total)).c_str(), r.loss, lr, r.grad_norm,
                  tok_s, gate_line(model.gate_stats()).c_str());
      std::fflush(stdout);
    }
    ra::require(std::isfinite(r.loss), "train_gpt2: the loss is ", r.loss, " at step ", state.step,
                ", expected a finite loss (lower --lr?)");
    if (o.eval_every > 0 && state.step % static_cast<std::uint64_t>(o.eval_every) == 0)
      sum.val_loss = evaluate_now();
    if (!ckpt.empty() && o.ckpt_every > 0 &&
        state.step % static_cast<std::uint64_t>(o.ckpt_every) == 0)
      save_checkpoint(ckpt, model, opt, state, loader);
  }
  const bool trained = budget_left_at_start;
  if (trained && (o.eval_every == 0 || state.step % static_cast<std::uint64_t>(o.eval_every) != 0))
    sum.val_loss = evaluate_now();
  if (!trained) sum.val_loss = evaluate(model, val, o.eval_batches);
  sum.steps = state.step;
  sum.tokens = state.tokens;
  sum.train_s = state.train_seconds;
  std::printf(
      "final: arm %s | steps %llu | tokens %llu | train %.2f s | %.0f tok/s | val loss %.4f\n",
      std::string(name(cfg.arm)).c_str(), static_cast<unsigned long long>(sum.steps),
      static_cast<unsigned long long>(sum.tokens), sum.train_s,
      sum.train_s > 0.0 ? static_cast<double>(sum.tokens) / sum.train_s : 0.0, sum.val_loss);
  std::printf("final: %s\n", gate_line(model.gate_stats()).c_str());
  if (!o.out.empty()) {
    if (trained) save_checkpoint(ckpt, model, opt, state, loader);
    write_gates(o.out, model.gate_stats());
    write_summary(o, cfg, model.num_parameters(), sum);
    std::printf("wrote %s/{metrics.tsv, gates.tsv, summary.tsv, summary.json%s}\n", o.out.c_str(),
                trained ? ", ckpt.bin" : "");
  }
  if (o.generate > 0) {
    std::printf("--- %lld tokens from the prompt (%s, seed %llu) ---\n",
                static_cast<long long>(o.generate),
                o.top_k ? ("top-" + std::to_string(o.top_k) + " sampling").c_str() : "greedy",
                static_cast<unsigned long long>(o.seed));
    std::printf("%s\n---\n", generate(model, o).c_str());
  }
  return 0;
}

/// Trains on the GPU (examples/train/cuda.cu; absent from builds without CUDA).
int train_on_cuda(const Options& o);

}  // namespace train_gpt2
