// ra/cuda/sm90/tma.cuh — what the sm_90a kernels need to move tiles with the Tensor Memory
// Accelerator: a tensor map for one (B, H, rows, D) operand read in place from any strides
// (the fused (B,T,3C) buffer included), and thin device wrappers over CCCL's cuda::ptx for the
// bulk tensor copy and the mbarriers that guard it.
//
// Host: cuTensorMapEncodeTiled, reached through cudaGetDriverEntryPointByVersion (no link
// against libcuda). The map's outer modes are ordered by stride, as TMA expects, and each
// operand records where its row, head and batch coordinates go.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/cuda/check.cuh>

#include <cuda/ptx>

namespace ra::cuda::sm90 {

/// One operand's tensor map and the coordinate slot (1..3) of its row, head and batch modes.
struct OperandMap {
  CUtensorMap map;
  int slot_row = 1, slot_head = 2, slot_batch = 3;
};

namespace detail {

inline PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    RA_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                   cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || f == nullptr)
      throw unsupported("ra::cuda::sm90: the CUDA driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

}  // namespace detail

/// True when a (B, H, rows, D) operand of 2-byte elements at ptr with these element strides
/// can be read by TMA: 16-byte aligned base, byte strides that are multiples of 16 (modes of
/// extent 1 excepted) and below 2^40.
inline bool tma_readable(const void* ptr, index_t batch, index_t heads, index_t rows,
                         index_t batch_stride, index_t head_stride, index_t row_stride) {
  if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) return false;
  const std::array<std::pair<index_t, index_t>, 3> modes{
      {{rows, row_stride}, {heads, head_stride}, {batch, batch_stride}}};
  for (auto [extent, stride] : modes) {
    if (extent <= 1) continue;
    const index_t bytes = stride * 2;
    if (bytes <= 0 || bytes % 16 != 0 || bytes >= (index_t{1} << 40)) return false;
  }
  return true;
}

/// The tensor map of a (B, H, rows, D) 16-bit operand, boxes of box_cols x box_rows (one head,
/// one batch) written to shared memory with the given swizzle; rows past `rows` read as zero.
/// The caller checked tma_readable.
inline OperandMap make_operand_map(DType dtype, const void* ptr, index_t batch, index_t heads,
                                   index_t rows, int head_dim, index_t batch_stride,
                                   index_t head_stride, index_t row_stride, int box_cols,
                                   int box_rows, CUtensorMapSwizzle swizzle) {
  struct Mode {
    index_t extent, stride;
    int which;  // 0 row, 1 head, 2 batch
  };
  // Modes of extent 1 are never stepped: they take a stride (in elements, a multiple of 8)
  // above every other so they sort last and stay valid for TMA.
  const index_t big =
      (std::max({row_stride, head_stride, batch_stride, index_t{head_dim}}) / 8 + 1) * 8;
  std::array<Mode, 3> modes{{{rows, rows > 1 ? row_stride : big, 0},
                             {heads, heads > 1 ? head_stride : big, 1},
                             {batch, batch > 1 ? batch_stride : big, 2}}};
  std::stable_sort(modes.begin(), modes.end(),
                   [](const Mode& a, const Mode& b) { return a.stride < b.stride; });
  OperandMap out{};
  cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), 0, 0, 0};
  cuuint64_t strides[3] = {};
  cuuint32_t box[4] = {static_cast<cuuint32_t>(box_cols), 1, 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  for (int i = 0; i < 3; ++i) {
    dims[i + 1] = static_cast<cuuint64_t>(modes[i].extent);
    strides[i] = static_cast<cuuint64_t>(modes[i].stride) * 2;
    if (modes[i].which == 0) {
      box[i + 1] = static_cast<cuuint32_t>(box_rows);
      out.slot_row = i + 1;
    } else if (modes[i].which == 1) {
      out.slot_head = i + 1;
    } else {
      out.slot_batch = i + 1;
    }
  }
  const CUtensorMapDataType type =
      dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r =
      detail::encode_tiled()(&out.map, type, 4, const_cast<void*>(ptr), dims, strides, box,
                             elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw unsupported(ra::detail::concat("ra::cuda::sm90: cuTensorMapEncodeTiled failed (CUresult ",
                                         static_cast<int>(r), ") for an operand of ", batch, "x",
                                         heads, "x", rows, "x", head_dim, " with strides (",
                                         batch_stride, ", ", head_stride, ", ", row_stride, ")"));
  return out;
}

namespace tma {

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// Copies the box at (col, row, head, batch) of an operand into shared memory at dst; its
/// bytes complete a transaction on bar.
__device__ __forceinline__ void load(void* dst, const OperandMap& m, int col, int row, int head,
                                     int batch, std::uint64_t* bar) {
  std::int32_t c[4] = {col, 0, 0, 0};
  c[m.slot_row] = row;
  c[m.slot_head] = head;
  c[m.slot_batch] = batch;
  ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, dst,
                                    &m.map, c, bar);
}

__device__ __forceinline__ void barrier_init(std::uint64_t* bar, std::uint32_t count) {
  ::cuda::ptx::mbarrier_init(bar, count);
}
/// Makes barrier initialisation visible to the async proxy (the TMA unit).
__device__ __forceinline__ void barrier_init_fence() {
  ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
}
/// One arrival that also announces `bytes` of transactions to come.
__device__ __forceinline__ void arrive_expect(std::uint64_t* bar, std::uint32_t bytes) {
  (void)::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                               ::cuda::ptx::space_shared, bar, bytes);
}
__device__ __forceinline__ void arrive(std::uint64_t* bar) {
  (void)::cuda::ptx::mbarrier_arrive(bar);
}
/// Waits until the phase of parity `parity` has completed.
__device__ __forceinline__ void wait(std::uint64_t* bar, std::uint32_t parity) {
  while (!::cuda::ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
}
/// Orders this thread's generic-proxy shared-memory writes before later async-proxy reads
/// (wgmma operands, TMA stores).
__device__ __forceinline__ void fence_shared_to_async() {
  ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);
}

}  // namespace tma

}  // namespace ra::cuda::sm90
