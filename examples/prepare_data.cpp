// examples/prepare_data.cpp — turns text into train.bin and val.bin, in byte tokens or in
// sub-word tokens of a SentencePiece model it trains on the training split.
//
// Input, one of:
//   --input DIR   walks DIR recursively for files with the given extensions (default .rst and
//                 .txt), sorts them by path, and splits them BY FILE: a file goes to val when
//                 the FNV-1a hash of its path relative to DIR, mod 100, is below --val-percent
//                 (default 10), so the split is deterministic and stable as files are added;
//                 each split gets at least one file;
//   --corpus DIR  a corpus already split and deduplicated by scripts/build_corpus.sh:
//                 DIR/train.docs and DIR/val.docs, each document ended by a NUL byte.
// Tokenizer (--tokenizer):
//   byte           (default) ra/nn/tokenizer.hpp: one token per byte, vocabulary 257;
//   sentencepiece  ra/nn/sentencepiece.hpp: a BPE model (--spm-type unigram for unigram) of
//                  --vocab pieces (default 16384, at most 65536: token files store uint16) trained
//                  on the training split only — chunks of whole lines, at most --spm-train-bytes
//                  of them (a deterministic sample) — or the model given by --spm-model; written
//                  to OUT/tokenizer.model, whose SHA-256 names the tokens
//                  ("sentencepiece:<sha256>"): train_gpt2 decodes with it and refuses tokens of
//                  another model. Needs a build with libsentencepiece.
// Each document is tokenized (--threads at once, in order) and followed by EOT. Writes
// OUT/train.bin, OUT/val.bin (format: ra/nn/data.hpp; they record the tokenizer and its
// vocabulary) and OUT/manifest.tsv (per file: split, bytes, path; per split with --corpus),
// each atomically (ra/core/file.hpp): a failure (a full disk) ends the program with status 1
// naming the file and the system's reason, and leaves no partial file.
//
//   prepare_data --input data/sample --out build/data
//   prepare_data --input /tmp/linux-doc/Documentation --out build/data --ext .rst
//   prepare_data --corpus build/corpus --out build/data-bpe --tokenizer sentencepiece
//
// scripts/prepare_data.sh runs it on the decompressed linux-doc-6.1 sources, or on
// data/sample when that package cannot be installed; scripts/build_corpus.sh makes --corpus.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/dropout.hpp>
#include <ra/nn/tokenizer.hpp>
#ifdef RA_HAVE_SENTENCEPIECE
#include <ra/nn/sentencepiece.hpp>
#endif

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string input, corpus, out = "build/data";
  std::vector<std::string> ext{".rst", ".txt"};
  int val_percent = 10;
  std::string tokenizer = "byte", spm_model, spm_type = "bpe";
  std::uint32_t vocab = 16384;
  long long spm_train_bytes = 100LL << 20;
  int threads = std::max(1u, std::thread::hardware_concurrency());
};

constexpr const char* kUsage =
    "usage: prepare_data (--input DIR [--ext .rst,.txt] [--val-percent 10] | --corpus DIR)\n"
    "                    [--out DIR (build/data)] [--tokenizer byte|sentencepiece]\n"
    "                    [--vocab 16384] [--spm-model FILE] [--spm-type bpe|unigram]\n"
    "                    [--spm-train-bytes 104857600] [--threads N (all cores)]";

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item[0] == '.' ? item : "." + item);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool v = i + 1 < argc;
    if (a == "--input" && v) {
      o.input = argv[++i];
    } else if (a == "--corpus" && v) {
      o.corpus = argv[++i];
    } else if (a == "--out" && v) {
      o.out = argv[++i];
    } else if (a == "--ext" && v) {
      o.ext = split_list(argv[++i]);
    } else if (a == "--val-percent" && v) {
      o.val_percent = ra::parse_integer<int>("prepare_data: --val-percent", argv[++i], 1, 50);
    } else if (a == "--tokenizer" && v) {
      o.tokenizer = argv[++i];
    } else if (a == "--vocab" && v) {
      const auto n = ra::parse_integer<long long>("prepare_data: --vocab", argv[++i], 320);
      ra::require(n <= 65536, "prepare_data: --vocab '", n,
                  "' is too large: token files store uint16 tokens, expected at most 65536");
      o.vocab = static_cast<std::uint32_t>(n);
    } else if (a == "--spm-model" && v) {
      o.spm_model = argv[++i];
    } else if (a == "--spm-type" && v) {
      o.spm_type = argv[++i];
    } else if (a == "--spm-train-bytes" && v) {
      o.spm_train_bytes =
          ra::parse_integer<long long>("prepare_data: --spm-train-bytes", argv[++i], 1);
    } else if (a == "--threads" && v) {
      o.threads = ra::parse_integer<int>("prepare_data: --threads", argv[++i], 1, 1024);
    } else if (a == "--help" || a == "-h") {
      std::puts(kUsage);
      std::exit(0);
    } else {
      throw ra::error(std::string(kUsage) + "\nprepare_data: unknown or incomplete argument '" + a +
                      "'");
    }
  }
  ra::require(o.input.empty() != o.corpus.empty(), kUsage,
              "\nprepare_data: expected exactly one of --input and --corpus");
  ra::require(!o.ext.empty(), "prepare_data: --ext is empty, expected e.g. .rst,.txt");
  ra::require(o.tokenizer == "byte" || o.tokenizer == "sentencepiece",
              "prepare_data: --tokenizer '", o.tokenizer, "', expected byte or sentencepiece");
  ra::require(o.spm_type == "bpe" || o.spm_type == "unigram", "prepare_data: --spm-type '",
              o.spm_type, "', expected bpe or unigram");
  ra::require(o.spm_model.empty() || o.tokenizer == "sentencepiece",
              "prepare_data: --spm-model needs --tokenizer sentencepiece");
#ifndef RA_HAVE_SENTENCEPIECE
  ra::require(o.tokenizer != "sentencepiece",
              "prepare_data: --tokenizer sentencepiece: this prepare_data was built without "
              "SentencePiece (install libsentencepiece-dev and configure again), expected "
              "--tokenizer byte");
#endif
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

// One document: a file of --input, or one NUL-ended record of --corpus.
struct Doc {
  std::string rel;  // the file's path relative to --input ("" for --corpus)
  bool val = false;
  std::string text;
};

struct File {
  std::string rel;  // path relative to --input, '/' separated
  fs::path path;
  int bucket = 0;  // fnv1a(rel) % 100
  bool val = false;
};

std::vector<Doc> documents_of_directory(const Options& o) {
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
  std::vector<Doc> docs;
  for (const auto& f : files)
    docs.push_back({f.rel, f.val, ra::read_file(f.path.string(), "prepare_data")});
  return docs;
}

std::vector<Doc> documents_of_corpus(const Options& o) {
  std::vector<Doc> docs;
  for (const bool val : {false, true}) {
    const auto path = (fs::path(o.corpus) / (val ? "val.docs" : "train.docs")).string();
    const std::string all = ra::read_file(path, "prepare_data");
    ra::require(!all.empty() && all.back() == '\0', "prepare_data: '", path,
                "' does not end with a NUL byte, expected documents each ended by NUL "
                "(scripts/build_corpus.sh writes them)");
    std::size_t start = 0, n = 0;
    while (start < all.size()) {
      const std::size_t end = all.find('\0', start);
      docs.push_back({"", val, all.substr(start, end - start)});
      start = end + 1;
      ++n;
    }
    ra::require(n >= 1, "prepare_data: '", path, "' holds no document");
  }
  return docs;
}

// Chunks of whole lines (about 2 KB, so newlines and indentation are part of what BPE sees)
// from the training documents, a deterministic sample of at most `budget` bytes.
std::vector<std::string> training_sentences(const std::vector<Doc>& docs, long long budget) {
  constexpr std::size_t kChunk = 2048, kMaxLine = 8192;
  long long total = 0;
  for (const auto& d : docs)
    if (!d.val) total += static_cast<long long>(d.text.size());
  const double keep =
      total > budget ? static_cast<double>(budget) / static_cast<double>(total) : 1.0;
  std::vector<std::string> out;
  std::uint64_t index = 0;
  auto offer = [&](std::string& chunk) {
    if (chunk.empty()) return;
    const double u = static_cast<double>(ra::nn::mix64(index++) >> 11) * 0x1.0p-53;
    if (u < keep) out.push_back(std::move(chunk));
    chunk.clear();
  };
  for (const auto& d : docs) {
    if (d.val) continue;
    std::string chunk;
    std::size_t start = 0;
    while (start < d.text.size()) {
      std::size_t end = d.text.find('\n', start);
      end = end == std::string::npos ? d.text.size() : end + 1;
      if (end - start <= kMaxLine) {  // a longer line is data, not text worth a piece
        chunk.append(d.text, start, end - start);
        if (chunk.size() >= kChunk) offer(chunk);
      }
      start = end;
    }
    offer(chunk);
  }
  return out;
}

std::unique_ptr<ra::nn::Tokenizer> make_tokenizer(const Options& o, const std::vector<Doc>& docs) {
  const auto model_path = (fs::path(o.out) / "tokenizer.model").string();
  if (o.tokenizer == "byte") {
    std::error_code ec;
    fs::remove(model_path, ec);  // a model left by an earlier run would describe other tokens
    return ra::nn::make_byte_tokenizer();
  }
#ifdef RA_HAVE_SENTENCEPIECE
  std::string model;
  if (!o.spm_model.empty()) {
    model = ra::read_file(o.spm_model, "prepare_data: --spm-model");
    std::printf("prepare_data: SentencePiece model %s\n", o.spm_model.c_str());
  } else {
    const auto sentences = training_sentences(docs, o.spm_train_bytes);
    std::size_t bytes = 0;
    for (const auto& s : sentences) bytes += s.size();
    std::printf(
        "prepare_data: training a SentencePiece %s model of %u pieces on %zu chunks (%zu bytes) "
        "of the training split, %d threads\n",
        o.spm_type.c_str(), o.vocab, sentences.size(), bytes, o.threads);
    ra::flush_stdout("prepare_data");
    ra::nn::SentencePieceTraining t;
    t.vocab = o.vocab;
    t.model_type = o.spm_type;
    t.threads = o.threads;
    model = ra::nn::train_sentencepiece(sentences, t);
  }
  auto tok = std::make_unique<ra::nn::SentencePieceTokenizer>(
      model, o.spm_model.empty() ? "the trained model" : o.spm_model);
  ra::write_file_atomic(model_path, model, "prepare_data");
  return tok;
#else
  (void)docs;
  throw ra::error("prepare_data: built without SentencePiece, expected --tokenizer byte");
#endif
}

// Every document's tokens followed by EOT, in document order, encoded by `threads` threads.
void encode(const ra::nn::Tokenizer& tok, const std::vector<Doc>& docs, int threads,
            std::vector<std::uint16_t>& train, std::vector<std::uint16_t>& val) {
  std::vector<std::vector<std::uint16_t>> out(docs.size());
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      try {
        for (std::size_t i = static_cast<std::size_t>(w); i < docs.size();
             i += static_cast<std::size_t>(threads))
          out[i] = tok.encode(docs[i].text);
      } catch (...) {
        errors[static_cast<std::size_t>(w)] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  const auto eot = static_cast<std::uint16_t>(tok.eot());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    auto& dst = docs[i].val ? val : train;
    dst.insert(dst.end(), out[i].begin(), out[i].end());
    dst.push_back(eot);
    std::vector<std::uint16_t>().swap(out[i]);
  }
}

int run(const Options& o) {
  std::error_code ec;
  fs::create_directories(o.out, ec);
  ra::require(!ec, "prepare_data: cannot create --out folder '", o.out, "': ", ec.message());
  const std::vector<Doc> docs =
      o.corpus.empty() ? documents_of_directory(o) : documents_of_corpus(o);
  const auto tok = make_tokenizer(o, docs);
  std::vector<std::uint16_t> train, val;
  encode(*tok, docs, o.threads, train, val);

  std::ostringstream manifest;
  std::size_t n_val = 0, bytes_train = 0, bytes_val = 0;
  for (const auto& d : docs) {
    n_val += d.val;
    (d.val ? bytes_val : bytes_train) += d.text.size();
  }
  if (o.corpus.empty()) {
    manifest << "split\tbytes\tpath\n";
    for (const auto& d : docs)
      manifest << (d.val ? "val" : "train") << '\t' << d.text.size() << '\t' << d.rel << '\n';
  } else {
    manifest << "split\tdocuments\tbytes\ttokens\tsource\n"
             << "train\t" << docs.size() - n_val << '\t' << bytes_train << '\t' << train.size()
             << '\t' << (fs::path(o.corpus) / "train.docs").string() << '\n'
             << "val\t" << n_val << '\t' << bytes_val << '\t' << val.size() << '\t'
             << (fs::path(o.corpus) / "val.docs").string() << '\n';
  }
  manifest << "# tokenizer\t" << tok->name() << "\tvocab\t" << tok->vocab() << '\n';
  const auto train_path = (fs::path(o.out) / "train.bin").string();
  const auto val_path = (fs::path(o.out) / "val.bin").string();
  const auto manifest_path = (fs::path(o.out) / "manifest.tsv").string();
  ra::nn::write_tokens(train_path, train, tok->vocab(), tok->name());
  ra::nn::write_tokens(val_path, val, tok->vocab(), tok->name());
  ra::write_file_atomic(manifest_path, manifest.str(), "prepare_data");
  std::printf("prepare_data: %zu documents from %s (%zu train, %zu val%s)\n", docs.size(),
              (o.corpus.empty() ? o.input : o.corpus).c_str(), docs.size() - n_val, n_val,
              o.corpus.empty() ? " by file hash" : ", split by build_corpus.sh");
  std::printf("prepare_data: %s  %zu tokens (%.2f bytes/token)\n", train_path.c_str(), train.size(),
              static_cast<double>(bytes_train) /
                  static_cast<double>(std::max<std::size_t>(1, train.size())));
  std::printf(
      "prepare_data: %s  %zu tokens (%.1f%%)\n", val_path.c_str(), val.size(),
      100.0 * static_cast<double>(val.size()) / static_cast<double>(train.size() + val.size()));
  std::printf("prepare_data: tokenizer %s, vocab %u%s, manifest %s\n", tok->name().c_str(),
              tok->vocab(), o.tokenizer == "byte" ? " (bytes + EOT)" : " (model: tokenizer.model)",
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
