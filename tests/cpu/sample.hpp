// tests/cpu/sample.hpp — the embedded text sample (data/sample/*.rst) that the CPU tests train
// tokenizers and models on: its files' contents, sorted by name.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <ra/core/file.hpp>

namespace ra::test {

inline std::filesystem::path sample_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "data" /
         "sample";
}

/// The text of every .rst file of the sample, sorted by name (at least two files).
inline std::vector<std::string> sample_texts() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(sample_dir()))
    if (e.path().extension() == ".rst") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> texts;
  for (const auto& f : files) texts.push_back(read_file(f.string(), "test"));
  return texts;
}

}  // namespace ra::test
