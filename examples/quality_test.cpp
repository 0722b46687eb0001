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
// difference to the baseline) with the 1% verdict thresholds, the RA arm's per-layer gate
// statistics, writes OUT/quality.json (everything, with the loss curves) and, when python3
// with matplotlib is there, OUT/quality.png (scripts/plot_quality.py).
//
// Verdict per phase, with rel = (val_RA − val_baseline) / val_baseline per seed:
//   "RA better" if rel < −1% for every seed, "RA worse" if rel > +1% for every seed,
//   "no difference beyond 1%" if |rel| <= 1% for every seed, else "mixed across seeds".
//
//   quality_test --data build/data --seeds 1,2 --token-budget 20480     (CPU smoke size)
//   quality_test --data build/data --layers 12 --heads 12 --C 768 --seq 1024 --batch 16
//                --token-budget 100000000 --trainer PATH   (one line; the GPU run)
#include <algorithm>
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
RA arm:   --R 4  --gates none|per_layer|per_head (per_layer)  --gate-param clamp|softplus
          --restart
both arms (defaults: a CPU smoke size): --layers 2 --heads 1 --C 64 --seq 32 --batch 8
          --lr 2e-3 --warmup 5 --eval-every 10 --eval-batches 4 --log-every 10, and any other
          train_gpt2 option (--dropout, --no-bias, --precision, --device, --weight-decay, ...))";

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
  ra::require(o.seeds.size() >= 2, "quality_test: --seeds has ", o.seeds.size(),
              " seed(s), expected at least 2 (the verdict needs agreement across seeds)");
  ra::require(o.mode == "both" || o.mode == "tokens" || o.mode == "time", "quality_test: --mode '",
              o.mode, "', expected both, tokens or time");
  ra::require(o.mode != "time" || o.time_budget_s > 0.0,
              "quality_test: --mode time needs --time-budget-s");
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
  std::vector<std::vector<double>> val_curve, train_curve;  // (step, tokens, train_s, loss)
  std::vector<std::vector<double>> gates;  // per layer: g_std m/min/max, g_rec ..., alpha ...
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

Run run_trainer(const Options& o, const std::string& phase, std::uint64_t seed,
                const std::string& arm, const std::vector<std::string>& budget) {
  Run r;
  r.phase = phase;
  r.arm = arm;
  r.seed = seed;
  r.dir = (fs::path(o.out) / phase / ("seed" + std::to_string(seed) + "_" + arm)).string();
  fs::remove_all(r.dir);  // a fresh run: the trainer refuses a folder that holds one
  fs::create_directories(r.dir);
  std::vector<std::string> args{
      o.trainer, "--data", o.data, "--out", r.dir, "--arm", arm, "--seed", std::to_string(seed)};
  args.insert(args.end(), o.common.begin(), o.common.end());
  args.insert(args.end(), o.ra.begin(), o.ra.end());
  args.insert(args.end(), budget.begin(), budget.end());
  std::string cmd;
  for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + quote(a);
  const auto log = (fs::path(r.dir) / "train.log").string();
  std::printf("  %-6s seed %llu %-8s ... ", phase.c_str(), static_cast<unsigned long long>(seed),
              arm.c_str());
  ra::flush_stdout("quality_test");
  const int rc = std::system((cmd + " > " + quote(log) + " 2>&1").c_str());
  ra::require(rc == 0, "quality_test: the trainer failed (status ", rc, "): ", cmd, "\nsee ", log);
  std::map<std::string, std::string> s;
  {
    std::ifstream f(fs::path(r.dir) / "summary.tsv");
    for (std::string k, v; f >> k >> v;) s[k] = v;
  }
  ra::require(s.count("val_loss") == 1, "quality_test: no summary in ", r.dir);
  r.steps = std::stoll(s["steps"]);
  r.tokens = std::stoll(s["tokens"]);
  r.train_s = std::stod(s["train_s"]);
  r.tok_s = std::stod(s["tok_s"]);
  r.val_loss = std::stod(s["val_loss"]);
  r.train_loss = std::stod(s["train_loss"]);
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
  std::printf("%lld steps, %.1f s, val loss %.4f\n", r.steps, r.train_s, r.val_loss);
  return r;
}

struct Phase {
  std::string name, budget;
  std::vector<Run> runs;  // per seed: baseline, ra
  std::vector<double> rel;
  std::string verdict;
};

std::string verdict(const std::vector<double>& rel) {
  auto all = [&](auto pred) { return std::all_of(rel.begin(), rel.end(), pred); };
  if (all([](double r) { return r < -0.01; })) return "RA better (beyond 1% in every seed)";
  if (all([](double r) { return r > 0.01; })) return "RA worse (beyond 1% in every seed)";
  if (all([](double r) { return std::abs(r) <= 0.01; }))
    return "no difference beyond 1% (every seed within ±1%)";
  return "mixed across seeds (no consistent difference beyond 1%)";
}

void print_phase(const Phase& p) {
  std::printf("\n%s — %s\n", p.name == "tokens" ? "matched tokens" : "matched wall-clock",
              p.budget.c_str());
  std::printf("  %-5s %-9s %8s %9s %10s %9s %10s %18s\n", "seed", "arm", "iters", "train s",
              "tok/s", "val loss", "Δ vs base", "1% thresholds");
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
  std::printf("  mean Δ %+.2f%% (RA − baseline) / baseline; verdict: %s\n", 100.0 * mean,
              p.verdict.c_str());
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
    << ",\n  \"ra_flags\": " << json_string(ra_flags) << ",\n  \"seeds\": [";
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
    j << "],\n     \"runs\": [";
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
        << ",\n       \"gates\": " << json_rows(r.gates) << "}";
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
  if (o.mode != "time") {
    Phase p{"tokens", std::to_string(o.token_budget) + " tokens per run", {}, {}, {}};
    for (auto seed : o.seeds) {
      const std::vector<std::string> budget{"--token-budget", std::to_string(o.token_budget)};
      p.runs.push_back(run_trainer(o, "tokens", seed, "baseline", budget));
      p.runs.push_back(run_trainer(o, "tokens", seed, "ra", budget));
      mean_time[seed] = 0.5 * (p.runs[p.runs.size() - 2].train_s + p.runs.back().train_s);
    }
    phases.push_back(p);
  }
  if (o.mode != "tokens") {
    Phase p{"time", "", {}, {}, {}};
    std::string budgets;
    for (auto seed : o.seeds) {
      const double w = o.time_budget_s > 0.0 ? o.time_budget_s : mean_time[seed];
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", w);
      budgets += (budgets.empty() ? "" : ", ") + std::string(buf) + " s (seed " +
                 std::to_string(seed) + ")";
      const std::vector<std::string> budget{"--time-budget-s", buf};
      p.runs.push_back(run_trainer(o, "time", seed, "baseline", budget));
      p.runs.push_back(run_trainer(o, "time", seed, "ra", budget));
    }
    p.budget = "training time per run: " + budgets;
    phases.push_back(p);
  }
  for (auto& p : phases) {
    for (std::size_t i = 0; i + 1 < p.runs.size(); i += 2)
      p.rel.push_back((p.runs[i + 1].val_loss - p.runs[i].val_loss) / p.runs[i].val_loss);
    p.verdict = verdict(p.rel);
    print_phase(p);
  }
  std::printf("\n");
  for (const auto& p : phases) print_gates(p);

  const auto json = fs::path(o.out) / "quality.json";
  write_json(o, phases, json);
  std::printf("\nwrote %s\n", json.string().c_str());
  if (o.plot) {
    const auto png = fs::path(o.out) / "quality.png";
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
