// examples/prepare_data.cpp — turns a directory of text files into train.bin and val.bin.
//
// Walks --input recursively for files with the given extensions (default .rst and .txt),
// sorts them by path, and splits them BY FILE: a file goes to val when the FNV-1a hash of
// its path relative to --input, mod 100, is below --val-percent (default 10), so the split
// is deterministic and stable as files are added; each split gets at least one file. Each
// file is byte-tokenized (ra/nn/tokenizer.hpp) and followed by EOT. Writes --out/train.bin,
// --out/val.bin (format: ra/nn/data.hpp; they record the tokenizer and its vocabulary) and
// --out/manifest.tsv (split, bytes, path), each atomically (ra/core/file.hpp): a failure
// (a full disk) ends the program with status 1 naming the file and the system's reason, and
// leaves no partial file.
//
//   prepare_data --input data/sample --out build/data
//   prepare_data --input /tmp/linux-doc/Documentation --out build/data --ext .rst
//
// scripts/prepare_data.sh runs it on the decompressed linux-doc-6.1 sources, or on
// data/sample when that package cannot be installed.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/tokenizer.hpp>

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string input, out = "build/data";
  std::vector<std::string> ext{".rst", ".txt"};
  int val_percent = 10;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item[0] == '.' ? item : "." + item);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  const char* usage =
      "usage: prepare_data --input DIR [--out DIR (build/data)] [--ext .rst,.txt] "
      "[--val-percent 10]";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool v = i + 1 < argc;
    if (a == "--input" && v) {
      o.input = argv[++i];
    } else if (a == "--out" && v) {
      o.out = argv[++i];
    } else if (a == "--ext" && v) {
      o.ext = split_list(argv[++i]);
    } else if (a == "--val-percent" && v) {
      o.val_percent = ra::parse_integer<int>("prepare_data: --val-percent", argv[++i], 1, 50);
    } else if (a == "--help" || a == "-h") {
      std::puts(usage);
      std::exit(0);
    } else {
      throw ra::error(std::string(usage) + "; unknown or incomplete argument '" + a + "'");
    }
  }
  ra::require(!o.input.empty(), usage, "; --input is required");
  ra::require(!o.ext.empty(), "prepare_data: --ext is empty, expected e.g. .rst,.txt");
  return o;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

struct File {
  std::string rel;  // path relative to --input, '/' separated
  fs::path path;
  int bucket = 0;  // fnv1a(rel) % 100
  bool val = false;
  std::uintmax_t bytes = 0;
};

int run(const Options& o) {
  const fs::path root(o.input);
  ra::require(fs::is_directory(root), "prepare_data: --input '", o.input,
              "' is not a directory, expected a directory of text files");
  std::vector<File> files;
  std::size_t gz = 0;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    const auto ext = e.path().extension().string();
    if (ext == ".gz") ++gz;
    if (std::find(o.ext.begin(), o.ext.end(), ext) == o.ext.end()) continue;
    File f;
    f.path = e.path();
    f.rel = fs::relative(e.path(), root).generic_string();
    f.bucket = static_cast<int>(fnv1a(f.rel) % 100);
    f.val = f.bucket < o.val_percent;
    f.bytes = e.file_size();
    files.push_back(std::move(f));
  }
  if (files.empty()) {
    std::string ext;
    for (const auto& x : o.ext) ext += (ext.empty() ? "" : ",") + x;
    throw ra::error(
        ra::detail::concat("prepare_data: no files with extensions ", ext, " under '", o.input, "'",
                           gz ? ra::detail::concat(" (", gz,
                                                   " .gz files found: decompress them first, as "
                                                   "scripts/prepare_data.sh does)")
                              : std::string(),
                           ", expected text files"));
  }
  ra::require(files.size() >= 2, "prepare_data: only one file under '", o.input,
              "', expected at least two (train and val are split by file)");
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.rel < b.rel; });
  // At least one file per split: move the file nearest the threshold.
  auto nearest = [&](bool to_val) {
    auto best = files.end();
    for (auto it = files.begin(); it != files.end(); ++it)
      if (it->val != to_val &&
          (best == files.end() || (to_val ? it->bucket < best->bucket : it->bucket > best->bucket)))
        best = it;
    return best;
  };
  if (std::none_of(files.begin(), files.end(), [](const File& f) { return f.val; }))
    nearest(true)->val = true;
  if (std::all_of(files.begin(), files.end(), [](const File& f) { return f.val; }))
    nearest(false)->val = false;

  std::vector<std::uint16_t> train, val;
  std::error_code ec;
  fs::create_directories(o.out, ec);
  ra::require(!ec, "prepare_data: cannot create --out folder '", o.out, "': ", ec.message());
  std::ostringstream manifest;
  manifest << "split\tbytes\tpath\n";
  std::size_t n_val = 0;
  for (const auto& f : files) {
    auto& dst = f.val ? val : train;
    const auto t = ra::nn::ByteTokenizer::encode(ra::read_file(f.path.string(), "prepare_data"));
    dst.insert(dst.end(), t.begin(), t.end());
    dst.push_back(static_cast<std::uint16_t>(ra::nn::ByteTokenizer::kEot));
    n_val += f.val;
    manifest << (f.val ? "val" : "train") << '\t' << f.bytes << '\t' << f.rel << '\n';
  }
  const auto train_path = (fs::path(o.out) / "train.bin").string();
  const auto val_path = (fs::path(o.out) / "val.bin").string();
  const auto manifest_path = (fs::path(o.out) / "manifest.tsv").string();
  using Tok = ra::nn::ByteTokenizer;
  ra::nn::write_tokens(train_path, train, Tok::kVocab, Tok::kName);
  ra::nn::write_tokens(val_path, val, Tok::kVocab, Tok::kName);
  ra::write_file_atomic(manifest_path, manifest.str(), "prepare_data");
  std::printf("prepare_data: %zu files under %s (%zu train, %zu val by file hash)\n", files.size(),
              o.input.c_str(), files.size() - n_val, n_val);
  std::printf("prepare_data: %s  %zu tokens\n", train_path.c_str(), train.size());
  std::printf(
      "prepare_data: %s  %zu tokens (%.1f%%)\n", val_path.c_str(), val.size(),
      100.0 * static_cast<double>(val.size()) / static_cast<double>(train.size() + val.size()));
  std::printf("prepare_data: byte tokenizer, vocab %d (bytes + EOT), manifest %s\n", Tok::kVocab,
              manifest_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int rc = run(parse(argc, argv));
    ra::flush_stdout("prepare_data");
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
