// ra/core/config.hpp — portability macros shared by every layer.
//
// The core headers compile with a plain C++20 compiler and also inside nvcc translation
// units; RA_HOST_DEVICE marks the small functions a kernel may call.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RA_HOST_DEVICE __host__ __device__
#else
#define RA_HOST_DEVICE
#endif

#define RA_VERSION_MAJOR 0
#define RA_VERSION_MINOR 1
#define RA_VERSION_PATCH 0

namespace ra {

/// Signed 64-bit index used for every extent, stride and offset.
using index_t = std::int64_t;

}  // namespace ra
