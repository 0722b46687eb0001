// ra/model/cached_rows.hpp — what one forward over the KV cache appends (nn::GPT2Model's
// prefill and decode), as the model hands it to its backend: S new tokens for each of n
// sequences [first, first + n) of a cache of `cache_batch` sequences × `max_seq` positions.
// The spans are host memory owned by the caller for the duration of the call; a GPU backend
// copies them to device memory, where its kernels (and a replayed CUDA graph) read them.
#pragma once

#include <cstdint>
#include <span>

#include <ra/core/config.hpp>

namespace ra::model {

struct CachedRows {
  index_t first = 0, n = 0, S = 0;
  index_t cache_batch = 0, max_seq = 0;
  std::span<const std::int32_t> tokens;  // (n, S) row-major
  std::span<const index_t> positions;    // (n, S): the cache position of each new token
  std::span<const index_t> lengths;      // (n): keys of each sequence after the append
};

}  // namespace ra::model
