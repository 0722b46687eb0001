// examples/quality_test.cpp — the fair quality comparison of RA against the baseline: both
// arms with the same seed, data order, initialisation stream and budget, several seeds.
//
// It runs the trainer (train_gpt2 next to this program, or --trainer PATH: a GPU trainer with
// the same flags and output files slots in) once per (phase, seed, arm), one run at a time:
//   tokens phase: every run gets the same --token-budget (same steps, same schedule): the
//                 comparison at matched tokens;
//   time phase:   every run gets the same --time-budget-s W (W given, or the mean training time
//                 of the two arms in the tokens phase of that seed), with the schedule following
//                 elapsed time: the comparison at matched wall-clock, where a faster arm gets
//                 more iterations.
// Then it prints the seeds' table (iterations, training time, throughput, validation loss,
// difference to the baseline), the paired statistic and the verdict, the RA arm's per-layer
// gate statistics, writes OUT/quality.json (everything, with the loss curves and the gates of
// every evaluation) and, when python3 with matplotlib is there, OUT/quality.png and the gate
// heatmap OUT/quality_gates.png (scripts/plot_quality.py).
//
// Verdict per phase — the rule of docs/quality/VERDICT_RULE.md, stated before the runs: with
// d_i = val_RA,i − val_baseline,i, the paired difference of final validation loss of seed i
// (n seeds), its mean d̄, standard deviation s and the 95% t-interval
//   d̄ ± t(0.975, n − 1) · s / √n,
// "RA better" only if the whole interval is below zero, "RA worse" only if it is above zero,
// otherwise "no difference detected at this budget", always with the interval quoted.
//
// Long runs in short device calls: --resume-runs reuses the runs in OUT that reached the token
// budget, continues the others from their ckpt.bin, and starts the rest; --chunk-steps N stops
// each trainer call N steps further (its checkpoint continues it exactly); --deadline-s S
// starts no trainer call after S seconds and then exits with status 3, "incomplete", without
// a verdict. Repeating the same command with --resume-runs until it exits 0 gives, bit for
// bit, the runs of one uninterrupted call (matched-tokens phase; the matched wall-clock phase
// is not resumable and needs whole calls). --runs-only (with --resume-runs) runs the given
// seeds and stops without a verdict, so that one process per GPU can run one seed
// (CUDA_VISIBLE_DEVICES); a last call with every seed and --resume-runs reuses the finished
// runs and gives the verdict (scripts/verdict_runs.sh).
//
//   quality_test --data build/data --seeds 1,2 --token-budget 20480     (CPU smoke size)
//   quality_test --data build/data --layers 12 --heads 12 --C 768 --seq 1024 --batch 16
//                --token-budget 100000000 --trainer PATH   (one line; the GPU run)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string trainer, data = "build/data", out = "build/quality", plot_script;
  std::vector<std::uint64_t> seeds{1, 2};
  std::string mode = "both";
  long long token_budget = 8 * 32 * 40;
  double time_budget_s = 0.0;  // 0: the mean tokens-phase time of the seed's two arms
  bool plot = true;
  bool resume_runs = false;
  bool runs_only = false;  // run (or continue) the runs, no verdict: one process per GPU
  long long chunk_steps = 0;  // 0: each run in one trainer call
  double deadline_s = 0.0;    // 0: none
  // Passed to both arms unchanged.
  std::vector<std::string> common{
      "--layers",       "2", "--heads",     "1",    "--C",      "64", "--seq",        "32",
      "--batch",        "8", "--lr",        "2e-3", "--warmup", "5",  "--eval-every", "10",
      "--eval-batches", "4", "--log-every", "10"};
  std::vector<std::string> ra{"--R", "4", "--gates", "per_layer"};
  std::string command;
};

constexpr const char* kUsage = R"(usage: quality_test [options] [trainer options for both arms]
  --data DIR (build/data)  --out DIR (build/quality)  --seeds 1,2  --mode both|tokens|time
  --token-budget N (10240)  --time-budget-s S (default: mean tokens-phase time per seed)
  --trainer PATH (train_gpt2 beside this program)  --no-plot
  --resume-runs  --chunk-steps N  --deadline-s S  --runs-only   (long runs over several
                 calls or GPUs; see the top of examples/quality_test.cpp)
RA arm:   --R 4  --gates none|per_layer|per_head (per_layer)  --gate-param clamp|softplus
          --restart
both arms (defaults: a CPU smoke size): --layers 2 --heads 1 --C 64 --seq 32 --batch 8
          --lr 2e-3 --warmup 5 --eval-every 10 --eval-batches 4 --log-every 10, and any other
          train_gpt2 option (--dropout, --no-bias, --precision, --device, --weight-decay,
          --optimizer adamw|adamw_spam, --spam-*, ...))";

// Sets (or adds) option `key` in a flag list.
void set_flag(std::vector<std::string>& v, const std::string& key, const std::string& value,
              bool has_value = true) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] == key) {
      if (has_value) v[i + 1] = value;
      return;
    }
  v.push_back(key);
  if (has_value) v.push_back(value);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  o.trainer = (fs::path(argv[0]).parent_path() / "train_gpt2").string();
  o.plot_script =
      (fs::path(__FILE__).parent_path().parent_path() / "scripts" / "plot_quality.py").string();
  // Options the trainer takes without a value.
  const std::vector<std::string> switches{"--no-bias"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      ra::require(i + 1 < argc, "quality_test: ", a, " needs a value\n", kUsage);
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::puts(kUsage);
      std::exit(0);
    } else if (a == "--trainer") {
      o.trainer = value();
    } else if (a == "--data") {
      o.data = value();
    } else if (a == "--out") {
      o.out = value();
    } else if (a == "--mode") {
      o.mode = value();
    } else if (a == "--token-budget") {
      o.token_budget =
          ra::parse_integer<long long>("quality_test: --token-budget", value(), 1, 1LL << 50);
    } else if (a == "--time-budget-s") {
      o.time_budget_s = ra::parse_real("quality_test: --time-budget-s", value(),
                                       {0.0, std::numeric_limits<double>::infinity(), true});
    } else if (a == "--no-plot") {
      o.plot = false;
    } else if (a == "--resume-runs") {
      o.resume_runs = true;
    } else if (a == "--runs-only") {
      o.runs_only = true;
    } else if (a == "--chunk-steps") {
      o.chunk_steps =
          ra::parse_integer<long long>("quality_test: --chunk-steps", value(), 1, 1LL << 40);
    } else if (a == "--deadline-s") {
      o.deadline_s = ra::parse_real("quality_test: --deadline-s", value(),
                                    {0.0, std::numeric_limits<double>::infinity(), true});
    } else if (a == "--seeds") {
      // Distinct: a seed given twice would count one run as two in the verdict.
      o.seeds = ra::parse_integer_list<std::uint64_t>("quality_test: --seeds", value(), true);
    } else if (a == "--R" || a == "--gates" || a == "--gate-param") {
      set_flag(o.ra, a, value());
    } else if (a == "--restart") {
      set_flag(o.ra, a, "", false);
    } else if (a == "--arm" || a == "--seed" || a == "--steps" || a == "--resume" ||
               a == "--generate" || a == "--stop-at") {
      throw ra::error("quality_test: " + a + " is chosen per run by the quality test");
    } else if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
      set_flag(o.common, a, "", false);
    } else if (a.rfind("--", 0) == 0) {
      set_flag(o.common, a, value());
    } else {
      throw ra::error("quality_test: unexpected argument '" + a + "'\n" + kUsage);
    }
  }
  ra::require(o.seeds.size() >= 2 || o.runs_only, "quality_test: --seeds has ", o.seeds.size(),
              " seed(s), expected at least 2 (the verdict's interval needs two; --runs-only "
              "runs fewer without a verdict)");
  ra::require(!o.runs_only || (o.mode == "tokens" && o.resume_runs),
              "quality_test: --runs-only needs --mode tokens and --resume-runs (its runs are "
              "picked up by a later call with every seed and --resume-runs)");
  ra::require(o.mode == "both" || o.mode == "tokens" || o.mode == "time", "quality_test: --mode '",
              o.mode, "', expected both, tokens or time");
  ra::require(o.mode != "time" || o.time_budget_s > 0.0,
              "quality_test: --mode time needs --time-budget-s");
  ra::require(!(o.chunk_steps > 0 || o.deadline_s > 0.0) || o.mode == "tokens",
              "quality_test: --chunk-steps and --deadline-s need --mode tokens (the matched "
              "wall-clock phase is not resumable)");
  return o;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// One trainer run and what it wrote.
struct Run {
  std::string phase, arm, dir;
  std::uint64_t seed = 0;
  long long steps = 0, tokens = 0;
  double train_s = 0.0, tok_s = 0.0, val_loss = 0.0, train_loss = 0.0;
  std::string tokenizer, optimizer;
  bool finished = true;
  std::vector<std::vector<double>> val_curve, train_curve;  // (step, tokens, train_s, loss)
  std::vector<std::vector<double>> gates;       // per layer: g_std m/min/max, g_rec ..., alpha ...
  std::vector<std::vector<double>> gate_curve;  // (step, layer, gate, g_std, g_rec)
};

// The calls of this process: when it started, whether a deadline stopped it.
struct Progress {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  bool stopped = false;
  int calls = 0;
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

std::vector<std::vector<std::string>> read_tsv(const fs::path& p) {
  std::ifstream f(p);
  ra::require(static_cast<bool>(f), "quality_test: the trainer wrote no '", p.string(), "'");
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
    rows.push_back(cols);
  }
  return rows;
}

std::map<std::string, std::string> read_summary(const std::string& dir) {
  std::map<std::string, std::string> s;
  std::ifstream f(fs::path(dir) / "summary.tsv");
  for (std::string k, v; f >> k >> v;) s[k] = v;
  return s;
}

// Runs (or, with --resume-runs, reuses or continues) one trainer run and reads what it wrote.
// A run the deadline kept from finishing comes back with finished = false.
Run run_trainer(const Options& o, Progress& progress, const std::string& phase, std::uint64_t seed,
                const std::string& arm, const std::vector<std::string>& budget) {
  Run r;
  r.phase = phase;
  r.arm = arm;
  r.seed = seed;
  r.dir = (fs::path(o.out) / phase / ("seed" + std::to_string(seed) + "_" + arm)).string();
  const auto ckpt = (fs::path(r.dir) / "ckpt.bin").string();
  // Where a run stands: the steps and tokens its last summary recorded.
  auto done_tokens = [&](long long& steps) {
    const auto s = read_summary(r.dir);
    steps = s.count("steps") ? std::stoll(s.at("steps")) : 0;
    return s.count("tokens") ? std::stoll(s.at("tokens")) : 0LL;
  };
  long long steps = 0;
  const bool reuse = o.resume_runs && phase == "tokens" && fs::exists(ckpt);
  if (!reuse) {
    fs::remove_all(r.dir);  // a fresh run: the trainer refuses a folder that holds one
    fs::create_directories(r.dir);
  }
  std::printf("  %-6s seed %llu %-8s ... ", phase.c_str(), static_cast<unsigned long long>(seed),
              arm.c_str());
  ra::flush_stdout("quality_test");
  for (;;) {
    const bool started = fs::exists(ckpt);
    if (started && done_tokens(steps) >= o.token_budget) break;
    if (progress.stopped || (o.deadline_s > 0.0 && progress.elapsed() >= o.deadline_s)) {
      progress.stopped = true;
      r.finished = false;
      std::printf("not finished (%lld steps so far): the deadline of %.0f s passed\n", steps,
                  o.deadline_s);
      return r;
    }
    std::vector<std::string> args{
        o.trainer, "--data", o.data, "--out", r.dir, "--arm", arm, "--seed", std::to_string(seed)};
    args.insert(args.end(), o.common.begin(), o.common.end());
    args.insert(args.end(), o.ra.begin(), o.ra.end());
    args.insert(args.end(), budget.begin(), budget.end());
    if (started) args.insert(args.end(), {"--resume", ckpt});
    if (o.chunk_steps > 0)
      args.insert(args.end(), {"--stop-at", std::to_string(steps + o.chunk_steps)});
    std::string cmd;
    for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + quote(a);
    const auto log = (fs::path(r.dir) / "train.log").string();
    // Each call appends to the log, so a run spread over calls keeps all of its output.
    const int rc = std::system((cmd + " >> " + quote(log) + " 2>&1").c_str());
    ++progress.calls;
    ra::require(rc == 0, "quality_test: the trainer failed (status ", rc, "): ", cmd, "\nsee ",
                log);
    if (o.chunk_steps == 0) break;  // one call runs the whole budget
    long long now = 0;
    done_tokens(now);
    ra::require(now > steps, "quality_test: the trainer made no progress from step ", steps, " in ",
                r.dir, ", see ", log);
    steps = now;
  }
  const auto s = read_summary(r.dir);
  ra::require(s.count("val_loss") == 1, "quality_test: no summary in ", r.dir);
  r.steps = std::stoll(s.at("steps"));
  r.tokens = std::stoll(s.at("tokens"));
  r.train_s = std::stod(s.at("train_s"));
  r.tok_s = std::stod(s.at("tok_s"));
  r.val_loss = std::stod(s.at("val_loss"));
  r.train_loss = std::stod(s.at("train_loss"));
  if (s.count("tokenizer")) r.tokenizer = s.at("tokenizer");
  if (s.count("optimizer")) r.optimizer = s.at("optimizer");
  for (const auto& row : read_tsv(fs::path(r.dir) / "metrics.tsv")) {
    std::vector<double> point{std::stod(row[1]), std::stod(row[2]), std::stod(row[3]),
                              std::stod(row[4])};
    (row[0] == "val" ? r.val_curve : r.train_curve).push_back(point);
  }
  for (const auto& row : read_tsv(fs::path(r.dir) / "gates.tsv")) {
    std::vector<double> g;
    for (std::size_t i = 1; i < row.size(); ++i) g.push_back(std::stod(row[i]));
    r.gates.push_back(g);
  }
  if (fs::exists(fs::path(r.dir) / "gates_curve.tsv"))
    for (const auto& row : read_tsv(fs::path(r.dir) / "gates_curve.tsv")) {
      std::vector<double> g;
      for (std::size_t i = 1; i < row.size(); ++i) g.push_back(std::stod(row[i]));
      r.gate_curve.push_back(g);
    }
  std::printf("%lld steps, %.1f s, val loss %.4f\n", r.steps, r.train_s, r.val_loss);
  return r;
}

// The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
// Lentz), accurate to about 1e-14 where the t quantiles below need it.
double incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  auto fraction = [](double a, double b, double x) {
    constexpr double tiny = 1e-300;
    auto clamp = [](double v) { return std::abs(v) < tiny ? tiny : v; };
    double c = 1.0, d = 1.0 / clamp(1.0 - (a + b) * x / (a + 1.0)), h = d;
    for (int m = 1; m <= 500; ++m) {
      const double m2 = 2.0 * m;
      double aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
      d = 1.0 / clamp(1.0 + aa * d);
      c = clamp(1.0 + aa / c);
      h *= d * c;
      aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
      d = 1.0 / clamp(1.0 + aa * d);
      c = clamp(1.0 + aa / c);
      const double delta = d * c;
      h *= delta;
      if (std::abs(delta - 1.0) < 1e-15) break;
    }
    return h;
  };
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                                a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1.0) / (a + b + 2.0)) return front * fraction(a, b, x) / a;
  return 1.0 - front * fraction(b, a, 1.0 - x) / b;
}

// The p-quantile (p > 0.5) of Student's t with df degrees of freedom, by bisection on its CDF
// F(t) = 1 − ½ I_{df/(df+t²)}(df/2, ½). t(0.975, 3) = 3.18245.
double student_t_quantile(double p, double df) {
  double lo = 0.0, hi = 1e6;
  for (int i = 0; i < 200; ++i) {
    const double t = 0.5 * (lo + hi);
    const double cdf = 1.0 - 0.5 * incomplete_beta(0.5 * df, 0.5, df / (df + t * t));
    (cdf < p ? lo : hi) = t;
  }
  return 0.5 * (lo + hi);
}

// The paired statistic of docs/quality/VERDICT_RULE.md and its verdict.
struct Paired {
  std::vector<double> d;  // val_RA − val_baseline per seed, in nats
  double mean = 0.0, sd = 0.0, t = 0.0, lo = 0.0, hi = 0.0;
  std::string verdict;
};

Paired paired(const std::vector<double>& d) {
  Paired p;
  p.d = d;
  const double n = static_cast<double>(d.size());
  for (double x : d) p.mean += x / n;
  for (double x : d) p.sd += (x - p.mean) * (x - p.mean) / (n - 1.0);
  p.sd = std::sqrt(p.sd);
  p.t = student_t_quantile(0.975, n - 1.0);
  const double half = p.t * p.sd / std::sqrt(n);
  p.lo = p.mean - half;
  p.hi = p.mean + half;
  char ci[96];
  std::snprintf(ci, sizeof ci, "95%% CI of the paired difference [%+.4f, %+.4f] nats, %zu seeds",
                p.lo, p.hi, d.size());
  if (p.hi < 0.0) {
    p.verdict = std::string("RA better (") + ci + ", wholly below zero)";
  } else if (p.lo > 0.0) {
    p.verdict = std::string("RA worse (") + ci + ", wholly above zero)";
  } else {
    p.verdict = std::string("no difference detected at this budget (") + ci + ")";
  }
  return p;
}

struct Phase {
  std::string name, budget;
  std::vector<Run> runs;  // per seed: baseline, ra
  std::vector<double> rel;
  Paired stats;
  std::string verdict;
};

void print_phase(const Phase& p) {
  std::printf("\n%s — %s\n", p.name == "tokens" ? "matched tokens" : "matched wall-clock",
              p.budget.c_str());
  std::printf("  %-5s %-9s %8s %9s %10s %9s %10s %18s\n", "seed", "arm", "iters", "train s",
              "tok/s", "val loss", "Δ vs base", "±1% of baseline");
  for (std::size_t i = 0; i + 1 < p.runs.size(); i += 2) {
    const Run& b = p.runs[i];
    const Run& r = p.runs[i + 1];
    std::printf("  %-5llu %-9s %8lld %9.2f %10.0f %9.4f %10s %8.4f..%-8.4f\n",
                static_cast<unsigned long long>(b.seed), "baseline", b.steps, b.train_s, b.tok_s,
                b.val_loss, "", b.val_loss * 0.99, b.val_loss * 1.01);
    std::printf("  %-5llu %-9s %8lld %9.2f %10.0f %9.4f %+9.2f%% %18s\n",
                static_cast<unsigned long long>(r.seed), "ra", r.steps, r.train_s, r.tok_s,
                r.val_loss, 100.0 * p.rel[i / 2], "");
  }
  double mean = 0.0;
  for (double x : p.rel) mean += x / static_cast<double>(p.rel.size());
  std::printf("  mean Δ %+.2f%% (RA − baseline) / baseline\n", 100.0 * mean);
  std::printf(
      "  paired difference d = val_RA − val_baseline: mean %+.4f, sd %.4f, t(0.975, %zu) "
      "%.4f, 95%% CI [%+.4f, %+.4f] nats\n",
      p.stats.mean, p.stats.sd, p.stats.d.size() - 1, p.stats.t, p.stats.lo, p.stats.hi);
  std::printf("  verdict (docs/quality/VERDICT_RULE.md): %s\n", p.verdict.c_str());
}

void print_gates(const Phase& p) {
  for (const Run& r : p.runs) {
    if (r.arm != "ra" || r.gates.empty() ||
        (std::isnan(r.gates[0][0]) && std::isnan(r.gates[0][6])))
      continue;
    std::printf("  RA gates after the %s phase, seed %llu (effective g: mean [min, max]):\n",
                p.name.c_str(), static_cast<unsigned long long>(r.seed));
    for (std::size_t l = 0; l < r.gates.size(); ++l) {
      const auto& g = r.gates[l];
      std::printf("    layer %2zu  g_std %.4f [%.4f, %.4f]  g_rec %.4f [%.4f, %.4f]", l, g[0], g[1],
                  g[2], g[3], g[4], g[5]);
      if (!std::isnan(g[6])) std::printf("  alpha %.4f [%.4f, %.4f]", g[6], g[7], g[8]);
      std::printf("\n");
    }
  }
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string j = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') j += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) j += c;
  }
  return j + "\"";
}

std::string json_rows(const std::vector<std::vector<double>>& rows) {
  std::string j = "[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    j += i ? ", [" : "[";
    for (std::size_t k = 0; k < rows[i].size(); ++k) j += (k ? ", " : "") + json_number(rows[i][k]);
    j += "]";
  }
  return j + "]";
}

void write_json(const Options& o, const std::vector<Phase>& phases, const fs::path& path) {
  std::ostringstream j;
  std::string flags;
  for (const auto& f : o.common) flags += (flags.empty() ? "" : " ") + f;
  std::string ra_flags;
  for (const auto& f : o.ra) ra_flags += (ra_flags.empty() ? "" : " ") + f;
  j << "{\n  \"command\": " << json_string(o.command)
    << ",\n  \"trainer\": " << json_string(o.trainer) << ",\n  \"data\": " << json_string(o.data)
    << ",\n  \"common_flags\": " << json_string(flags)
    << ",\n  \"ra_flags\": " << json_string(ra_flags)
    << ",\n  \"tokenizer\": " << json_string(phases.empty() ? "" : phases[0].runs[0].tokenizer)
    << ",\n  \"optimizer\": " << json_string(phases.empty() ? "" : phases[0].runs[0].optimizer)
    << ",\n  \"gate_curve_columns\": [\"step\", \"layer\", \"gate\", \"g_std\", \"g_rec\"]"
    << ",\n  \"seeds\": [";
  for (std::size_t i = 0; i < o.seeds.size(); ++i) j << (i ? ", " : "") << o.seeds[i];
  j << "],\n  \"curve_columns\": [\"step\", \"tokens\", \"train_s\", \"loss\"],\n"
    << "  \"gate_columns\": [\"g_std_mean\", \"g_std_min\", \"g_std_max\", \"g_rec_mean\", "
       "\"g_rec_min\", \"g_rec_max\", \"alpha_mean\", \"alpha_min\", \"alpha_max\"],\n"
    << "  \"phases\": [";
  for (std::size_t p = 0; p < phases.size(); ++p) {
    const Phase& ph = phases[p];
    j << (p ? "," : "") << "\n    {\"name\": " << json_string(ph.name)
      << ", \"budget\": " << json_string(ph.budget) << ", \"verdict\": " << json_string(ph.verdict)
      << ",\n     \"relative_difference\": [";
    for (std::size_t i = 0; i < ph.rel.size(); ++i) j << (i ? ", " : "") << json_number(ph.rel[i]);
    j << "],\n     \"paired_difference\": {\"rule\": \"docs/quality/VERDICT_RULE.md\", \"d\": [";
    for (std::size_t i = 0; i < ph.stats.d.size(); ++i)
      j << (i ? ", " : "") << json_number(ph.stats.d[i]);
    j << "], \"mean\": " << json_number(ph.stats.mean) << ", \"sd\": " << json_number(ph.stats.sd)
      << ", \"t_975\": " << json_number(ph.stats.t) << ", \"ci95\": [" << json_number(ph.stats.lo)
      << ", " << json_number(ph.stats.hi) << "]}";
    j << ",\n     \"runs\": [";
    for (std::size_t i = 0; i < ph.runs.size(); ++i) {
      const Run& r = ph.runs[i];
      j << (i ? "," : "") << "\n      {\"seed\": " << r.seed << ", \"arm\": " << json_string(r.arm)
        << ", \"steps\": " << r.steps << ", \"tokens\": " << r.tokens
        << ", \"train_seconds\": " << json_number(r.train_s)
        << ", \"tokens_per_second\": " << json_number(r.tok_s)
        << ", \"val_loss\": " << json_number(r.val_loss)
        << ", \"train_loss\": " << json_number(r.train_loss)
        << ",\n       \"val_curve\": " << json_rows(r.val_curve)
        << ",\n       \"train_curve\": " << json_rows(r.train_curve)
        << ",\n       \"gates\": " << json_rows(r.gates)
        << ",\n       \"gate_curve\": " << json_rows(r.gate_curve) << "}";
    }
    j << "]}";
  }
  j << "\n  ]\n}\n";
  ra::write_file_atomic(path.string(), j.str(), "quality_test");
}

int run(const Options& o) {
  ra::require(fs::exists(o.trainer), "quality_test: no trainer at '", o.trainer,
              "', expected train_gpt2 (build it, or pass --trainer PATH)");
  for (const char* f : {"train.bin", "val.bin"})
    ra::require(fs::exists(fs::path(o.data) / f), "quality_test: no '",
                (fs::path(o.data) / f).string(),
                "', expected token files (run scripts/prepare_data.sh first)");
  fs::create_directories(o.out);
  std::printf("quality_test: %zu seeds, arms baseline and ra (", o.seeds.size());
  for (const auto& f : o.ra) std::printf("%s ", f.c_str());
  std::printf("), identical otherwise:");
  for (const auto& f : o.common) std::printf(" %s", f.c_str());
  std::printf("\n");

  std::vector<Phase> phases;
  std::map<std::uint64_t, double> mean_time;
  Progress progress;
  if (o.mode != "time") {
    Phase p{"tokens", std::to_string(o.token_budget) + " tokens per run", {}, {}, {}, {}};
    for (auto seed : o.seeds) {
      const std::vector<std::string> budget{"--token-budget", std::to_string(o.token_budget)};
      p.runs.push_back(run_trainer(o, progress, "tokens", seed, "baseline", budget));
      p.runs.push_back(run_trainer(o, progress, "tokens", seed, "ra", budget));
      mean_time[seed] = 0.5 * (p.runs[p.runs.size() - 2].train_s + p.runs.back().train_s);
    }
    if (progress.stopped) {
      std::size_t done = 0;
      for (const auto& r : p.runs) done += r.finished;
      std::printf(
          "\nquality_test: INCOMPLETE after %.0f s and %d trainer calls: %zu of %zu runs "
          "finished; run the same command again with --resume-runs to continue (no "
          "verdict yet)\n",
          progress.elapsed(), progress.calls, done, p.runs.size());
      return 3;
    }
    if (o.runs_only) {
      std::printf(
          "\nquality_test: %zu runs finished (--runs-only: no verdict; the same command with "
          "every seed and without --runs-only gives it, reusing these runs)\n",
          p.runs.size());
      return 0;
    }
    phases.push_back(p);
  }
  if (o.mode != "tokens") {
    Phase p{"time", "", {}, {}, {}, {}};
    std::string budgets;
    for (auto seed : o.seeds) {
      const double w = o.time_budget_s > 0.0 ? o.time_budget_s : mean_time[seed];
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", w);
      budgets += (budgets.empty() ? "" : ", ") + std::string(buf) + " s (seed " +
                 std::to_string(seed) + ")";
      const std::vector<std::string> budget{"--time-budget-s", buf};
      p.runs.push_back(run_trainer(o, progress, "time", seed, "baseline", budget));
      p.runs.push_back(run_trainer(o, progress, "time", seed, "ra", budget));
    }
    p.budget = "training time per run: " + budgets;
    phases.push_back(p);
  }
  for (auto& p : phases) {
    std::vector<double> d;
    for (std::size_t i = 0; i + 1 < p.runs.size(); i += 2) {
      p.rel.push_back((p.runs[i + 1].val_loss - p.runs[i].val_loss) / p.runs[i].val_loss);
      d.push_back(p.runs[i + 1].val_loss - p.runs[i].val_loss);
    }
    p.stats = paired(d);
    p.verdict = p.stats.verdict;
    print_phase(p);
  }
  std::printf("\n");
  for (const auto& p : phases) print_gates(p);

  const auto json = fs::path(o.out) / "quality.json";
  write_json(o, phases, json);
  std::printf("\nwrote %s\n", json.string().c_str());
  if (o.plot) {
    const auto png = fs::path(o.out) / "quality.png";
    fs::remove(fs::path(o.out) / "quality_gates.png");  // drawn anew, or not at all
    // The first python3 on PATH may be a private one without matplotlib (pyenv, venv): the
    // system interpreter is tried next.
    bool drawn = false;
    for (const char* python : {"python3", "/usr/bin/python3"}) {
      const std::string cmd = std::string(python) + " " + quote(o.plot_script) + " " +
                              quote(json.string()) + " " + quote(png.string()) + " 2>/dev/null";
      std::fflush(stdout);
      if (std::system(cmd.c_str()) == 0) {
        drawn = true;
        break;
      }
    }
    if (drawn) {
      std::printf("wrote %s\n", png.string().c_str());
      const auto gates = fs::path(o.out) / "quality_gates.png";
      if (fs::exists(gates)) std::printf("wrote %s\n", gates.string().c_str());
    } else {
      std::printf("no PNG: %s failed (needs python3 with matplotlib; the JSON has the curves)\n",
                  o.plot_script.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int rc = run(parse(argc, argv));
    ra::flush_stdout("quality_test");
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
