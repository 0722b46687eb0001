// examples/train/run_folder.hpp — what a training run keeps in --out, and the rules that keep
// one run's files from being mixed with another's:
//   metrics.tsv   one row per step and per evaluation, written row by row, each row checked
//   gates_curve.tsv  at each evaluation, one row per gate (per layer, or per layer and head) of
//                 the RA arm: its effective g_std and g_rec, written and checked the same way
//   gates.tsv, summary.tsv, summary.json   written at the end, atomically (ra/core/file.hpp)
//   ckpt.bin, ckpt.bin.prev                (ra/nn/checkpoint.hpp)
// A fresh run refuses a folder that holds any of these unless --overwrite (which deletes the
// checkpoints and summaries and starts the logs afresh). A run resumed from a checkpoint in
// the same folder cuts metrics.tsv and gates_curve.tsv back to the checkpoint's step first, so
// rows written after that checkpoint (by a run killed later) do not appear twice. Resuming into
// another folder follows the fresh-run rule.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/checkpoint.hpp>

#include "options.hpp"

namespace train_gpt2 {

namespace fs = std::filesystem;

/// The files of a run in --out; a folder holding any of them holds a run.
inline const std::vector<std::string>& run_files() {
  static const std::vector<std::string> files{"ckpt.bin",        "ckpt.bin.prev", "metrics.tsv",
                                              "gates_curve.tsv", "gates.tsv",     "summary.tsv",
                                              "summary.json"};
  return files;
}

inline constexpr std::string_view kMetricsHeader =
    "kind\tstep\ttokens\ttrain_s\tloss\tlr\tgrad_norm\ttok_s\n";
inline constexpr std::string_view kGatesCurveHeader = "kind\tstep\tlayer\tgate\tg_std\tg_rec\n";

/// A log of the run folder (metrics.tsv, gates_curve.tsv): rows appended one write at a time,
/// every write checked; the second column of every row is its step.
class Metrics {
 public:
  Metrics() = default;  // no --out: rows go nowhere
  /// Opens `path` emptied (fresh) or for appending; writes the header to an empty file.
  Metrics(const std::string& path, bool fresh, std::string_view header = kMetricsHeader)
      : f_(path, fresh ? ra::OutputFile::Mode::truncate : ra::OutputFile::Mode::append,
           "train_gpt2") {
    std::error_code ec;
    if (fresh || fs::file_size(path, ec) == 0 || ec) f_.write(header);
  }
  /// One gate of one layer at a step (gates_curve.tsv).
  void gate_row(std::uint64_t step, std::size_t layer, std::size_t gate, double g_std,
                double g_rec) {
    if (!f_.is_open()) return;
    char buf[160];
    std::snprintf(buf, sizeof buf, "gate\t%llu\t%zu\t%zu\t%.6g\t%.6g\n",
                  static_cast<unsigned long long>(step), layer, gate, g_std, g_rec);
    f_.write(buf);
  }
  void row(const char* kind, std::uint64_t step, std::uint64_t tokens, double t, double loss,
           double lr, double norm, double tok_s) {
    if (!f_.is_open()) return;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\t%llu\t%llu\t%.4f\t%.6f\t%.6g\t%.5g\t%.1f\n", kind,
                  static_cast<unsigned long long>(step), static_cast<unsigned long long>(tokens), t,
                  loss, lr, norm, tok_s);
    f_.write(buf);
  }
  /// Syncs and closes the log (throws ra::error naming it on failure).
  void close() {
    if (!f_.is_open()) return;
    f_.sync();
    f_.close();
  }

 private:
  ra::OutputFile f_;
};

/// Keeps the header and the complete rows of a log (metrics.tsv by default) at steps <= step;
/// returns how many rows it dropped. Rewrites the file atomically; throws ra::error naming it
/// on failure.
inline std::size_t cut_metrics(const std::string& path, std::uint64_t step,
                               std::string_view header = kMetricsHeader) {
  const std::string text = ra::read_file(path, "train_gpt2");
  std::string kept;
  std::size_t dropped = 0, start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {  // a row cut short by a kill or a full disk
      ++dropped;
      break;
    }
    const std::string_view line(text.data() + start, end - start + 1);
    start = end + 1;
    if (line == header) {
      kept += line;
      continue;
    }
    const auto tab1 = line.find('\t'), tab2 = line.find('\t', tab1 + 1);
    bool keep = false;
    if (tab1 != line.npos && tab2 != line.npos) {
      try {
        keep = ra::parse_integer<std::uint64_t>("metrics.tsv step",
                                                line.substr(tab1 + 1, tab2 - tab1 - 1)) <= step;
      } catch (const ra::error&) {
      }
    }
    if (keep) {
      kept += line;
    } else {
      ++dropped;
    }
  }
  if (kept.rfind(header, 0) != 0) kept.insert(0, header);
  // Rewritten even when nothing was cut: that also replaces a metrics.tsv.tmp a run killed
  // in this very function left behind.
  ra::write_file_atomic(path, kept, "train_gpt2");
  return dropped;
}

/// The logs of a run folder.
struct RunLogs {
  Metrics metrics, gates;
  void close() {
    metrics.close();
    gates.close();
  }
};

/// Readies --out for a run (see the top of this header) and opens its logs. `checkpoint` is
/// the file the run resumes from ("" for a fresh run), `step` its step. Throws ra::error
/// naming the folder, the files and what to do about them.
inline RunLogs open_run_folder(const Options& o, const std::string& checkpoint,
                               std::uint64_t step) {
  if (o.out.empty()) return {};
  const fs::path out(o.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  ra::require(!ec, "train_gpt2: cannot create --out folder '", o.out, "': ", ec.message());
  std::vector<std::string> present;
  for (const auto& f : run_files())
    if (fs::exists(out / f, ec)) present.push_back(f);
  const bool own =
      !checkpoint.empty() && fs::equivalent(fs::absolute(checkpoint).parent_path(), out, ec) && !ec;
  const std::string metrics = (out / "metrics.tsv").string();
  const std::string gates = (out / "gates_curve.tsv").string();
  if (own) {
    ra::require(!o.overwrite, "train_gpt2: --overwrite would delete the run in '", o.out,
                "' that --resume '", checkpoint,
                "' continues; expected no --overwrite (resuming cuts metrics.tsv back to the "
                "checkpoint's step)");
    for (const auto& [path, header] :
         {std::pair{metrics, kMetricsHeader}, std::pair{gates, kGatesCurveHeader}}) {
      if (!fs::exists(path, ec)) continue;
      const std::size_t dropped = cut_metrics(path, step, header);
      if (dropped > 0)
        std::printf("%s: dropped %zu rows after step %llu (written after the checkpoint)\n",
                    path.c_str(), dropped, static_cast<unsigned long long>(step));
    }
    return {Metrics(metrics, false), Metrics(gates, false, kGatesCurveHeader)};
  }
  if (!present.empty()) {
    std::string list;
    for (const auto& f : present) list += (list.empty() ? "" : ", ") + f;
    ra::require(o.overwrite, "train_gpt2: --out '", o.out, "' already holds a run (", list,
                "); expected an empty or new folder, --resume ", (out / "ckpt.bin").string(),
                " to continue that run, or --overwrite to replace it");
    for (const auto& f : present) {
      if (f == "metrics.tsv" || f == "gates_curve.tsv") continue;  // started afresh below
      fs::remove(out / f, ec);
      ra::require(!ec, "train_gpt2: --overwrite cannot remove '", (out / f).string(),
                  "': ", ec.message());
    }
  }
  return {Metrics(metrics, true), Metrics(gates, true, kGatesCurveHeader)};
}

}  // namespace train_gpt2
