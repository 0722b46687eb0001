// tests/cpu/main.cpp — the Catch2 runner of the CPU tests (the test cases live in test_*.cpp).
//
// Prints the run's seed (seed.hpp) before any test runs, and again after a failure with the
// command line that reproduces it. Nothing is printed when Catch only lists (CMake's
// catch_discover_tests reads every line of --list-test-names-only as a test name).
//
// Every run fails when a test case asserts nothing (Catch's NoAssertions warning) or when the
// test specification matches no test case (NoTests), whatever the command line says: set here
// because Catch 2.13 takes -w only once per command line ("-w NoTests -w NoAssertions" is
// rejected as an unrecognised token).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "seed.hpp"

int main(int argc, char** argv) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  Catch::ConfigData& cfg = session.configData();
  cfg.warnings = static_cast<Catch::WarnAbout::What>(cfg.warnings | Catch::WarnAbout::NoAssertions |
                                                     Catch::WarnAbout::NoTests);
  const bool runs_tests = !(cfg.listTests || cfg.listTestNamesOnly || cfg.listTags ||
                            cfg.listReporters || cfg.showHelp || cfg.libIdentify);
  unsigned long long seed = 0;
  try {
    seed = ra::test::base_seed();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  if (runs_tests) {
    std::printf("ra_cpu_tests: RA_TEST_SEED=%llu (%s)\n", seed,
                ra::test::seed_from_environment() ? "from the environment"
                                                  : "drawn fresh; set it to reproduce this run");
    std::fflush(stdout);
  }
  const int rc = session.run();
  if (runs_tests && rc != 0) {
    std::string command;
    for (int i = 0; i < argc; ++i)
      command += (i ? " '" : "") + std::string(argv[i]) + (i ? "'" : "");
    std::printf("ra_cpu_tests: failed (exit %d); reproduce with RA_TEST_SEED=%llu %s\n", rc, seed,
                command.c_str());
  }
  return rc;
}
