// examples/train/options.hpp — train_gpt2's options: one table of flags (each with its kind,
// its strict parser and its range), --help generated from it, and the comparison of a
// resumed run's flags with its checkpoint.
//
// Kinds: model, data and optimizer flags describe what a checkpoint holds (the model's config,
// the loader's seed, B and T, the training tokens, the optimizer kind and SPAM's settings); on
// --resume the ones the command leaves out are taken from the checkpoint and the ones it gives
// must agree with it. Run and text flags (budget, schedule, AdamW's weight decay and clipping,
// logging, output, device, generation) may change on resume.
// Every number goes through ra::parse_integer / ra::parse_real (ra/core/parse.hpp): the whole
// text, within the type, within the flag's meaning, finite.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>

namespace train_gpt2 {

using ra::index_t;

struct Options {
  // model
  std::string arm = "baseline";
  int R = 4;
  std::string gates = "per_layer", gate_param = "clamp";
  bool restart = false, bias = true;
  index_t layers = 4, heads = 2, C = 128;  // D = 64: in every build's kernel list
  float dropout = 0.f;
  // optimizer (ra/nn/adamw.hpp)
  std::string optimizer = "adamw";
  ra::nn::SpamConfig spam;
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
  bool overwrite = false;
  // generation
  index_t generate = 0, top_k = 0;
  double temperature = 1.0;
  std::string prompt = "The ";
  std::string command;          // the command line, stored in checkpoints and summaries
  std::set<std::string> given;  // the flags the command line gave
};

enum class FlagKind { model, data, optimizer, run, text };

struct Flag {
  std::string name;
  FlagKind kind;
  std::string help;  // "--R 4": the flag with its default, as --help shows it
  // Sets the option from the flag's value (an empty view for switches). Throws ra::error
  // naming the flag and the value.
  std::function<void(Options&, std::string_view)> set;
  bool takes_value = true;
};

// The bounds of the size flags keep every product of them (B·T, the parameter count, the
// tokens of a budget) far inside 64 bits, so a huge value is refused by name instead of
// wrapping or ending in std::bad_alloc.
inline constexpr index_t kMaxSize = index_t{1} << 24;
inline constexpr index_t kMaxSteps = index_t{1} << 40;

inline const std::vector<Flag>& flags() {
  using ra::RealRange;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  auto name = [](std::string_view flag) { return "train_gpt2: " + std::string(flag); };
  auto integer = [name](std::string flag, index_t min, index_t max) {
    return [=](std::string_view v) { return ra::parse_integer<index_t>(name(flag), v, min, max); };
  };
  auto real = [name](std::string flag, RealRange r) {
    return [=](std::string_view v) { return ra::parse_real(name(flag), v, r); };
  };
  // A string flag whose value is checked by `check` (which throws naming the value).
  auto word = [name](std::string flag, auto check) {
    return [=](std::string_view v) {
      try {
        check(v);
      } catch (const ra::error& e) {
        throw ra::error(name(flag) + " '" + std::string(v) + "': " + e.what());
      }
      return std::string(v);
    };
  };
  using K = FlagKind;
  static const std::vector<Flag> table{
      {"--arm", K::model, "--arm baseline|ra",
       [=](Options& o, auto v) { o.arm = word("--arm", ra::nn::parse_arm)(v); }},
      {"--R", K::model, "--R 4",
       [=](Options& o, auto v) {
         o.R = ra::parse_integer<int>(name("--R"), v, 0, 65535);  // R < D <= C
       }},
      {"--gates", K::model, "--gates none|per_layer|per_head",
       [=](Options& o, auto v) { o.gates = word("--gates", ra::nn::parse_gate_mode)(v); }},
      {"--gate-param", K::model, "--gate-param clamp|softplus",
       [=](Options& o, auto v) {
         o.gate_param = word("--gate-param", ra::nn::parse_gate_param)(v);
       }},
      {"--restart", K::model, "--restart", [](Options& o, auto) { o.restart = true; }, false},
      {"--layers", K::model, "--layers 4",
       [=](Options& o, auto v) { o.layers = integer("--layers", 1, 4096)(v); }},
      {"--heads", K::model, "--heads 2",
       [=](Options& o, auto v) { o.heads = integer("--heads", 1, 4096)(v); }},
      {"--C", K::model, "--C 128", [=](Options& o, auto v) { o.C = integer("--C", 1, 65536)(v); }},
      {"--dropout", K::model, "--dropout 0",
       [=](Options& o, auto v) {
         o.dropout = static_cast<float>(real("--dropout", {0.0, 1.0, false, true})(v));
       }},
      {"--no-bias", K::model, "--no-bias", [](Options& o, auto) { o.bias = false; }, false},
      {"--optimizer", K::optimizer, "--optimizer adamw|adamw_spam",
       [=](Options& o, auto v) {
         o.optimizer = word("--optimizer", ra::nn::parse_optimizer_kind)(v);
       }},
      {"--spam-threshold", K::optimizer, "--spam-threshold 5000 (θ; 0: no spike clipping)",
       [=](Options& o, auto v) {
         o.spam.threshold = real("--spam-threshold", {0.0, kInf})(v);
       }},
      {"--spam-interval", K::optimizer, "--spam-interval 500 (ΔT; 0: no reset)",
       [=](Options& o, auto v) {
         o.spam.reset_interval =
             static_cast<std::uint64_t>(integer("--spam-interval", 0, kMaxSteps)(v));
       }},
      {"--spam-warmup", K::optimizer, "--spam-warmup 150",
       [=](Options& o, auto v) {
         o.spam.warmup = static_cast<std::uint64_t>(integer("--spam-warmup", 0, kMaxSteps)(v));
       }},
      {"--spam-clip-delay", K::optimizer, "--spam-clip-delay 20",
       [=](Options& o, auto v) {
         o.spam.clip_delay =
             static_cast<std::uint64_t>(integer("--spam-clip-delay", 0, kMaxSteps)(v));
       }},
      {"--data", K::data, "--data DIR (train.bin, val.bin)",
       [](Options& o, auto v) { o.data = std::string(v); }},
      {"--seq", K::data, "--seq 64",
       [=](Options& o, auto v) { o.seq = integer("--seq", 1, kMaxSize)(v); }},
      {"--batch", K::data, "--batch 8",
       [=](Options& o, auto v) { o.batch = integer("--batch", 1, kMaxSize)(v); }},
      {"--seed", K::data, "--seed 1",
       [=](Options& o, auto v) { o.seed = ra::parse_integer<std::uint64_t>(name("--seed"), v); }},
      {"--steps", K::run, "--steps N",
       [=](Options& o, auto v) { o.steps = integer("--steps", 0, kMaxSteps)(v); }},
      {"--token-budget", K::run, "--token-budget N",
       [=](Options& o, auto v) { o.token_budget = integer("--token-budget", 1, kMaxSteps)(v); }},
      {"--time-budget-s", K::run, "--time-budget-s S",
       [=](Options& o, auto v) {
         o.time_budget_s = real("--time-budget-s", {0.0, kInf})(v);
       }},
      {"--stop-at", K::run, "--stop-at N",
       [=](Options& o, auto v) { o.stop_at = integer("--stop-at", 0, kMaxSteps)(v); }},
      {"--lr", K::run, "--lr 1e-3",
       [=](Options& o, auto v) {
         o.lr = real("--lr", {0.0, kInf, true})(v);
       }},
      {"--min-lr", K::run, "--min-lr lr/10",
       [=](Options& o, auto v) {
         o.min_lr = real("--min-lr", {0.0, kInf})(v);
       }},
      {"--warmup", K::run, "--warmup 20",
       [=](Options& o, auto v) { o.warmup = integer("--warmup", 0, kMaxSteps)(v); }},
      {"--weight-decay", K::run, "--weight-decay 0.1",
       [=](Options& o, auto v) {
         o.weight_decay = real("--weight-decay", {0.0, kInf})(v);
       }},
      {"--grad-clip", K::run, "--grad-clip 1.0 (0: off)",
       [=](Options& o, auto v) {
         o.grad_clip = real("--grad-clip", {0.0, kInf})(v);
       }},
      {"--eval-every", K::run, "--eval-every 50 (0: at the end only)",
       [=](Options& o, auto v) { o.eval_every = integer("--eval-every", 0, kMaxSteps)(v); }},
      {"--eval-batches", K::run, "--eval-batches 8",
       [=](Options& o, auto v) { o.eval_batches = integer("--eval-batches", 1, kMaxSize)(v); }},
      {"--log-every", K::run, "--log-every 1",
       [=](Options& o, auto v) { o.log_every = integer("--log-every", 1, kMaxSteps)(v); }},
      {"--ckpt-every", K::run, "--ckpt-every 0 (0: at the end only)",
       [=](Options& o, auto v) { o.ckpt_every = integer("--ckpt-every", 0, kMaxSteps)(v); }},
      {"--out", K::run, "--out DIR", [](Options& o, auto v) { o.out = std::string(v); }},
      {"--overwrite", K::run, "--overwrite (replace the run already in --out)",
       [](Options& o, auto) { o.overwrite = true; }, false},
      {"--resume", K::run, "--resume CKPT", [](Options& o, auto v) { o.resume = std::string(v); }},
      {"--device", K::run, "--device cpu|cuda", [](Options& o, auto v) { o.device = v; }},
      {"--precision", K::run, "--precision fp32|bf16", [](Options& o, auto v) { o.precision = v; }},
      {"--generate", K::text, "--generate N",
       [=](Options& o, auto v) { o.generate = integer("--generate", 0, kMaxSize)(v); }},
      {"--prompt", K::text, "--prompt TEXT", [](Options& o, auto v) { o.prompt = v; }},
      {"--top-k", K::text, "--top-k 0 (greedy)",
       [=](Options& o, auto v) { o.top_k = integer("--top-k", 0, kMaxSize)(v); }},
      {"--temperature", K::text, "--temperature 1.0",
       [=](Options& o, auto v) {
         o.temperature = real("--temperature", {0.0, kInf, true})(v);
       }},
  };
  return table;
}

// The help lines of one kind of flag, wrapped at 96 columns.
inline std::string flag_help(FlagKind kind, const char* label) {
  std::string out = label, line;
  for (const auto& f : flags()) {
    if (f.kind != kind) continue;
    if (line.size() + f.help.size() + 2 > 88) {
      out += line + "\n        ";
      line.clear();
    }
    line += (line.empty() ? "" : "  ") + f.help;
  }
  return out + line + "\n";
}

inline std::string usage() {
  return "usage: train_gpt2 [options]\n" + flag_help(FlagKind::model, "model:  ") +
         flag_help(FlagKind::data, "data:   ") + flag_help(FlagKind::optimizer, "optim.: ") +
         flag_help(FlagKind::run, "run:    ") + flag_help(FlagKind::text, "text:   ") +
         R"(budget: --steps N | --token-budget N, optionally capped by --time-budget-s S (or S alone);
        --stop-at N stops after step N with the schedule unchanged (chunked runs)
--out:  a fresh run refuses a folder that holds a run (ckpt.bin, metrics.tsv, summaries)
        unless --overwrite; a resumed run cuts metrics.tsv back to the checkpoint's step
optim.: AdamW (β 0.9/0.95, ε 1e-8, --weight-decay, --grad-clip), or with --optimizer adamw_spam
        AdamW with SPAM (Huang et al., ICLR 2025): spike clipping at θ·v, moments reset every ΔT
        steps, cosine warm-up of N steps after each reset (include/ra/nn/adamw.hpp)
tokens: --data DIR holds train.bin and val.bin of one tokenizer: bytes, or a SentencePiece model
        (DIR/tokenizer.model, whose SHA-256 the token files name); --generate decodes with it
resume: --resume CKPT continues a run (from CKPT.prev, saying so, when CKPT fails its check).
        The model, data and optimizer flags come from the checkpoint; given again, they must
        equal its values (--data may name another folder holding the same tokens). The run
        and text flags above may change on resume.)";
}

/// Parses the command line. Throws ra::error naming a bad flag or value (with the usage for
/// an unknown flag); prints the usage and exits for --help.
inline Options parse(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::puts(usage().c_str());
      std::exit(0);
    }
    const Flag* flag = nullptr;
    for (const auto& f : flags())
      if (f.name == a) flag = &f;
    if (flag == nullptr) throw ra::error("train_gpt2: unknown argument '" + a + "'\n" + usage());
    std::string_view value;
    if (flag->takes_value) {
      ra::require(i + 1 < argc, "train_gpt2: ", a, " needs a value\n", usage());
      value = argv[++i];
    }
    flag->set(o, value);
    o.given.insert(a);
  }
  ra::require(!(o.steps && o.token_budget), "train_gpt2: give --steps or --token-budget, not both");
  ra::require(o.steps || o.token_budget || o.time_budget_s > 0.0 || o.generate > 0,
              "train_gpt2: no budget: expected --steps, --token-budget or --time-budget-s");
  if (o.min_lr < 0.0) o.min_lr = o.lr / 10.0;
  ra::require(o.min_lr <= o.lr, "train_gpt2: --min-lr ", o.min_lr, " is above --lr ", o.lr,
              ", expected --min-lr <= --lr");
  ra::require(o.device == "cpu" || o.device == "cuda", "train_gpt2: --device '", o.device,
              "', expected cpu or cuda");
  ra::require(o.precision == "fp32" || o.precision == "bf16", "train_gpt2: --precision '",
              o.precision, "', expected fp32 or bf16");
  return o;
}

/// The model config the flags describe, for the training data's vocabulary.
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

/// On --resume: refuses the model and data flags the command gives with values other than
/// the checkpoint's — naming every such flag with both values — and a training file other
/// than the one the checkpoint was trained on; takes the flags it leaves out from the
/// checkpoint. Throws ra::error.
inline void adopt_checkpoint(Options& o, const ra::nn::Checkpoint& c,
                             const ra::nn::TokenFile& train) {
  const auto& k = c.config;
  const std::string arm(ra::nn::name(k.arm));
  auto text = [](const auto& v) {
    std::ostringstream os;
    os << v;
    return os.str();
  };
  std::vector<std::string> differ;
  auto compare = [&](const char* flag, const auto& mine, const auto& theirs) {
    if (o.given.count(flag) && !(mine == theirs))
      differ.push_back(std::string(flag) + " " + text(mine) + " (the checkpoint: " + text(theirs) +
                       ")");
  };
  compare("--arm", o.arm, arm);
  compare("--R", o.R, k.R);
  compare("--gates", o.gates, text(k.gates));
  compare("--gate-param", o.gate_param, text(k.gate_param));
  compare("--restart", std::string(o.restart ? "on" : "off"),
          std::string(k.restart ? "on" : "off"));
  compare("--no-bias", std::string(o.bias ? "off" : "on"), std::string(k.bias ? "off" : "on"));
  compare("--layers", o.layers, k.n_layer);
  compare("--heads", o.heads, k.n_head);
  compare("--C", o.C, k.C);
  compare("--dropout", o.dropout, k.dropout);
  compare("--seq", o.seq, c.data.seq);
  compare("--batch", o.batch, c.data.batch);
  compare("--seed", o.seed, c.data.seed);
  const std::string optimizer(ra::nn::name(c.optimizer));
  compare("--optimizer", o.optimizer, optimizer);
  if (c.optimizer == ra::nn::OptimizerKind::adamw_spam) {
    compare("--spam-threshold", o.spam.threshold, c.spam.threshold);
    compare("--spam-interval", o.spam.reset_interval, c.spam.reset_interval);
    compare("--spam-warmup", o.spam.warmup, c.spam.warmup);
    compare("--spam-clip-delay", o.spam.clip_delay, c.spam.clip_delay);
  }
  const auto have = ra::nn::BatchLoader::token_checksum(train.tokens);
  if (train.tokens.size() != c.data.tokens || have != c.data.checksum)
    differ.push_back(ra::detail::concat(
        "--data ", o.data, " (train.bin: ", train.tokens.size(), " tokens, CRC-32C ", have,
        "; the checkpoint: ", c.data.tokens, " tokens, CRC-32C ", c.data.checksum, ")"));
  if (differ.empty()) {
    // Every flag given agrees: the checkpoint's values are the run's.
    o.arm = arm;
    o.R = k.R;
    o.gates = text(k.gates);
    o.gate_param = text(k.gate_param);
    o.restart = k.restart;
    o.bias = k.bias;
    o.layers = k.n_layer;
    o.heads = k.n_head;
    o.C = k.C;
    o.dropout = k.dropout;
    o.seq = c.data.seq;
    o.batch = c.data.batch;
    o.seed = c.data.seed;
    o.optimizer = optimizer;
    if (c.optimizer == ra::nn::OptimizerKind::adamw_spam) o.spam = c.spam;
    return;
  }
  std::string list, may_change;
  for (const auto& d : differ) list += "\n  " + d;
  for (const auto& f : flags())
    if ((f.kind == FlagKind::run || f.kind == FlagKind::text) && f.name != "--resume")
      may_change += " " + f.name;
  throw ra::error("train_gpt2: this command differs from checkpoint '" + c.path +
                  "' in its model, data or optimizer:" + list +
                  "\nexpected the checkpoint's values (leave these flags out to take them from "
                  "the checkpoint); the flags that may change on resume are:" +
                  may_change);
}

/// The optimizer the flags describe (after adopt_checkpoint() on --resume). Throws ra::error
/// naming a SPAM flag given with --optimizer adamw, or a SPAM setting out of range.
inline ra::nn::AdamWConfig optimizer_config(const Options& o) {
  ra::nn::AdamWConfig c;
  c.weight_decay = o.weight_decay;
  c.grad_clip = o.grad_clip;
  c.kind = ra::nn::parse_optimizer_kind(o.optimizer);
  c.spam = o.spam;
  if (c.kind == ra::nn::OptimizerKind::adamw)
    for (const auto& f : flags())
      ra::require(
          f.kind != FlagKind::optimizer || f.name == "--optimizer" || !o.given.count(f.name),
          "train_gpt2: ", f.name, " is a setting of SPAM, expected --optimizer adamw_spam",
          o.resume.empty() ? "" : " (the checkpoint's optimizer is adamw)");
  c.validate("train_gpt2");
  return c;
}

}  // namespace train_gpt2
