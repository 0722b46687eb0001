// ra/cuda/check.cuh — checking macros for CUDA runtime, cuBLAS and kernel launches.
//
// Each failure throws ra::cuda_error naming the call, file, line and the library's error
// string. Library code never exits.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <ra/core/error.hpp>

namespace ra {

/// A failed CUDA runtime, cuBLAS or launch call.
class cuda_error : public error {
 public:
  explicit cuda_error(const std::string& what) : error(what) {}
};

namespace cuda::detail {

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    throw cuda_error(ra::detail::concat(file, ":", line, ": ", call, " failed: ",
                                        cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  }
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw cuda_error(ra::detail::concat(file, ":", line, ": ", call, " failed: ",
                                        cublasGetStatusName(s), " (", cublasGetStatusString(s),
                                        ")"));
  }
}

}  // namespace cuda::detail
}  // namespace ra

/// Checks a cudaError_t-returning call.
#define RA_CUDA_CHECK(call) ::ra::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
/// Checks a cublasStatus_t-returning call (cuBLAS and cuBLASLt).
#define RA_CUBLAS_CHECK(call) ::ra::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
/// Checks the launch just made (configuration errors surface here, not at the next sync).
#define RA_CUDA_CHECK_LAUNCH() \
  ::ra::cuda::detail::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
