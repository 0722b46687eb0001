// tests/cpu/test_files.cpp — the helpers that keep programs from losing or corrupting work:
// CRC-32C (ra/core/checksum.hpp), checked and atomic file writes (ra/core/file.hpp: a full
// disk is simulated by a symbolic link to /dev/full, where every write fails with ENOSPC) and
// the strict number parser of every flag (ra/core/parse.hpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>

namespace {

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

struct TempDir {
  fs::path path =
      fs::temp_directory_path() / ("ra_test_files_" + std::to_string(std::random_device{}()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool exists_or_dangles(const std::string& path) {
  return fs::exists(fs::symlink_status(path));
}

}  // namespace

TEST_CASE("crc32c: the standard check value, pieces equal the whole, every bit flip detected",
          "[files][checksum]") {
  CHECK(ra::crc32c("123456789") == 0xE3069283u);
  CHECK(ra::crc32c("") == 0u);
  std::string data(1000, '\0');
  std::mt19937 rng(7);
  for (char& c : data) c = static_cast<char>(rng());
  ra::Crc32c pieces;
  for (std::size_t at = 0; at < data.size(); at += 37)
    pieces.update(std::string_view(data).substr(at, 37));
  CHECK(pieces.value() == ra::crc32c(data));
  // The bitwise definition (reflected Castagnoli polynomial) as the reference.
  std::uint32_t ref = ~0u;
  for (unsigned char c : data) {
    ref ^= c;
    for (int k = 0; k < 8; ++k) ref = (ref >> 1) ^ (0x82F63B78u & (0u - (ref & 1u)));
  }
  CHECK(ra::crc32c(data) == ~ref);
  const std::uint32_t good = ra::crc32c(data.data(), 64);
  int missed = 0;
  for (int bit = 0; bit < 64 * 8; ++bit) {
    std::string d = data.substr(0, 64);
    d[bit / 8] = static_cast<char>(d[bit / 8] ^ (1 << (bit % 8)));
    missed += ra::crc32c(d) == good;
  }
  CHECK(missed == 0);
}

TEST_CASE("write_file_atomic: replaces whole, keeps the previous, never leaves a partial file",
          "[files]") {
  TempDir dir;
  const auto path = dir.file("a.txt"), prev = dir.file("a.txt.prev");
  ra::write_file_atomic(path, "one", "test");
  CHECK(slurp(path) == "one");
  CHECK_FALSE(exists_or_dangles(path + ".tmp"));
  ra::write_file_atomic(path, "two", "test", prev);
  CHECK(slurp(path) == "two");
  CHECK(slurp(prev) == "one");
  ra::write_file_atomic(path, "three", "test", prev);
  CHECK(slurp(path) == "three");
  CHECK(slurp(prev) == "two");
  CHECK_FALSE(exists_or_dangles(prev + ".tmp"));

  SECTION("a full disk: the error names the file and the reason; the old file stays whole") {
    fs::create_symlink("/dev/full", path + ".tmp");
    CHECK_THROWS_WITH(ra::write_file_atomic(path, "four", "test", prev),
                      Contains("test: cannot write '" + path + ".tmp'") &&
                          Contains("No space left on device") && Contains("removed the partial"));
    CHECK_FALSE(exists_or_dangles(path + ".tmp"));
    CHECK(slurp(path) == "three");
    CHECK(slurp(prev) == "two");
  }
  SECTION("a folder that does not exist") {
    CHECK_THROWS_WITH(ra::write_file_atomic(dir.file("no/such/x"), "x", "test"),
                      Contains("cannot open") && Contains("no/such/x.tmp") &&
                          Contains("No such file or directory"));
  }
}

TEST_CASE("OutputFile: each write, sync and close is checked", "[files]") {
  TempDir dir;
  const auto path = dir.file("log.tsv");
  {
    ra::OutputFile f(path, ra::OutputFile::Mode::truncate, "test");
    f.write("a\n");
    f.sync();
    f.close();
  }
  {
    ra::OutputFile f(path, ra::OutputFile::Mode::append, "test");
    f.write("b\n");
    f.close();
  }
  CHECK(slurp(path) == "a\nb\n");
  {
    ra::OutputFile f(path, ra::OutputFile::Mode::truncate, "test");
    f.close();
    CHECK_THROWS_WITH(f.write("x"), Contains("after it was closed"));
  }
  CHECK(slurp(path).empty());

  fs::create_symlink("/dev/full", dir.file("full.tsv"));
  ra::OutputFile full(dir.file("full.tsv"), ra::OutputFile::Mode::truncate, "logger");
  CHECK_THROWS_WITH(full.write("row\n"), Contains("logger: cannot write '" + dir.file("full.tsv") +
                                                  "': No space left on device"));
  CHECK_THROWS_WITH(ra::OutputFile(dir.file("none/x"), ra::OutputFile::Mode::append, "logger"),
                    Contains("cannot open '" + dir.file("none/x") + "' for writing") &&
                        Contains("No such file or directory"));
}

TEST_CASE("read_file: the contents, or the path and the system's reason", "[files]") {
  TempDir dir;
  ra::write_file_atomic(dir.file("r"), std::string("x\0y", 3), "test");
  CHECK(ra::read_file(dir.file("r"), "test") == std::string("x\0y", 3));
  CHECK_THROWS_WITH(
      ra::read_file(dir.file("missing"), "reader"),
      Contains("reader: cannot open '" + dir.file("missing") + "': No such file or directory"));
  CHECK_THROWS_WITH(ra::read_file(dir.path.string(), "reader"), Contains("Is a directory"));
}

TEST_CASE("parse_integer: the whole text, within the type and the range, or an error naming it",
          "[files][parse]") {
  CHECK(ra::parse_integer<int>("p: --R", "4", 0, 100) == 4);
  CHECK(ra::parse_integer<std::int64_t>("p: --n", "-7") == -7);
  CHECK(ra::parse_integer<std::uint64_t>("p: --seed", "18446744073709551615") ==
        std::numeric_limits<std::uint64_t>::max());
  // The cases of the issue: a value that wraps, half-parsed text, no number at all.
  CHECK_THROWS_WITH(ra::parse_integer<int>("p: --R", "4294967300", 0),
                    Contains("p: --R '4294967300' is out of range, expected an integer >= 0"));
  CHECK_THROWS_WITH(ra::parse_integer<int>("p: --val-percent", "10abc", 1, 50),
                    Contains("p: --val-percent '10abc' is not an integer, expected an integer "
                             "in [1, 50]"));
  CHECK_THROWS_WITH(ra::parse_integer<std::int64_t>("p: --T", "abc", 1, 100),
                    Contains("'abc' is not an integer"));
  CHECK_THROWS_WITH(ra::parse_integer<std::int64_t>("p: --batch", "-1", 1, 100),
                    Contains("p: --batch '-1' is out of range, expected an integer in [1, 100]"));
  CHECK_THROWS_WITH(ra::parse_integer<std::int64_t>("p: --seq", "4294967296", 1, 1 << 24),
                    Contains("'4294967296' is out of range"));
  for (const char* bad : {"", " 5", "5 ", "+5", "0x10", "1e3", "5.0"}) {
    INFO("'" << bad << "'");
    CHECK_THROWS_WITH(ra::parse_integer<int>("p: --k", bad), Contains("is not an integer"));
  }
  CHECK_THROWS_WITH(ra::parse_integer<std::uint64_t>("p: --seed", "-1"),
                    Contains("'-1' is not an integer"));
}

TEST_CASE("parse_real: finite numbers in range only", "[files][parse]") {
  const ra::RealRange positive{0.0, std::numeric_limits<double>::infinity(), true};
  CHECK(ra::parse_real("p: --lr", "1e-3", positive) == 1e-3);
  CHECK(ra::parse_real("p: --lr", ".5", positive) == 0.5);
  for (const char* bad : {"inf", "-inf", "nan", "1e999"}) {
    INFO(bad);
    CHECK_THROWS_WITH(ra::parse_real("p: --lr", bad, positive),
                      Contains("p: --lr '" + std::string(bad) + "' is not finite"));
  }
  CHECK_THROWS_WITH(ra::parse_real("p: --lr", "0", positive),
                    Contains("'0' is out of range, expected a finite number > 0"));
  CHECK_THROWS_WITH(ra::parse_real("p: --lr", "1e-3x", positive), Contains("is not a number"));
  CHECK_THROWS_WITH(ra::parse_real("p: --dropout", "1", {0.0, 1.0, false, true}),
                    Contains("expected a number in [0, 1)"));
  CHECK(ra::parse_real("p: --dropout", "0", {0.0, 1.0, false, true}) == 0.0);
}

TEST_CASE("parse_integer_list: comma-separated, each strict, duplicates refused on request",
          "[files][parse]") {
  using V = std::vector<std::uint64_t>;
  CHECK(ra::parse_integer_list<std::uint64_t>("q: --seeds", "3,1,2", true) == V{3, 1, 2});
  CHECK(ra::parse_integer_list<std::uint64_t>("q: --seeds", "1,1", false) == V{1, 1});
  CHECK_THROWS_WITH(ra::parse_integer_list<std::uint64_t>("q: --seeds", "1,1", true),
                    Contains("q: --seeds '1,1' repeats 1, expected distinct values"));
  CHECK_THROWS_WITH(ra::parse_integer_list<std::uint64_t>("q: --seeds", "1,,2", true),
                    Contains("empty item"));
  CHECK_THROWS_WITH(ra::parse_integer_list<std::uint64_t>("q: --seeds", "1,x", true),
                    Contains("'x' is not an integer"));
}
