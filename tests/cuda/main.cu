// tests/cuda/main.cu — the Catch2 runner of the GPU tests.
//
// Exits 77, which tests/CMakeLists.txt declares as the SKIP_RETURN_CODE (CTest then reports
// the GPU tests as skipped, never as passed), only when there is truly no device: the runtime
// says cudaErrorNoDevice or counts 0 devices, or no CUDA driver is installed at all (then the
// runtime says cudaErrorInsufficientDriver, cudaDriverGetVersion gives 0 and no /dev/nvidiaN
// exists: a machine without a GPU, as in CI). Any other CUDA error — a driver older than the
// runtime, a failed initialisation, a GPU whose device node exists but whose driver library
// does not load — fails with exit 1 and a message naming the error.
//
// Every run fails when a test case asserts nothing (Catch's NoAssertions warning) or when the
// test specification matches no test case (NoTests; e.g. a mistyped filter or a renamed tag),
// whatever the command line says: set here because Catch 2.13 takes -w only once per command
// line ("-w NoTests -w NoAssertions" is rejected as an unrecognised token).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "../common/precision.hpp"

namespace {

constexpr int kSkipped = 77;

// A device node of the NVIDIA kernel driver (/dev/nvidia0, ...): a GPU is there, whatever
// the runtime says.
std::string nvidia_device_node() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev", ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 6 && name.rfind("nvidia", 0) == 0 &&
        name.find_first_not_of("0123456789", 6) == std::string::npos)
      return e.path().string();
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && devices == 0)) {
    std::printf("no CUDA device: %s\n",
                e == cudaSuccess ? "cudaGetDeviceCount found 0 devices" : cudaGetErrorString(e));
    return kSkipped;
  }
  if (e != cudaSuccess) {
    int driver = 0;
    const bool no_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0;
    const std::string node = nvidia_device_node();
    if (e == cudaErrorInsufficientDriver && no_driver && node.empty()) {
      std::printf("no CUDA device: no CUDA driver is installed (%s) and no /dev/nvidiaN exists\n",
                  cudaGetErrorName(e));
      return kSkipped;
    }
    std::printf(
        "ra_cuda_tests: cudaGetDeviceCount failed: %s (%s); CUDA driver version %d%s%s. This is "
        "not a machine without a GPU: the GPU tests fail rather than skip\n",
        cudaGetErrorString(e), cudaGetErrorName(e), driver, node.empty() ? "" : ", device node ",
        node.c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("CUDA device 0: %s (sm_%d%d), %d device(s)\n", prop.name, prop.major, prop.minor,
                devices);
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  Catch::ConfigData& cfg = session.configData();
  cfg.warnings = static_cast<Catch::WarnAbout::What>(cfg.warnings | Catch::WarnAbout::NoAssertions |
                                                     Catch::WarnAbout::NoTests);
  const int failed = session.run();
  ra::test::print_precision_summary(std::cout);
  // Catch returns the number of failed cases: 77 of them must not read as "skipped".
  return failed == kSkipped ? kSkipped + 1 : failed;
}
