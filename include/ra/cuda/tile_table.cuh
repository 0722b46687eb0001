// ra/cuda/tile_table.cuh — the tile sizes of the flash attention kernels, ONE table keyed by
// (kernel family, head dim D), each row with the measurement (or, where nothing was timed,
// the reason) that chose it. flash_forward.cuh and flash_backward.cuh read their tiles here
// and nowhere else; bench/flash_tune re-times the forward's alternatives on a new GPU.
//
// Measurements: bench/flash_tune on one NVIDIA H200 (2026-11-22; fp16, causal, R = 4,
// per-layer gates, B = 8, C = 768, median of 50 runs; bench/results/*-flash_tune.json).
#pragma once

namespace ra::cuda {

/// The kernel families that choose their own tiles. mma_sync: the mma.sync m16n8k16 kernels
/// (sm_80 and later, Hopper included). The sm_90a TMA + wgmma kernels add their family here.
enum class TileArch { mma_sync };

/// Tile shape of the tensor-core forward kernel: kBlockM query rows (16 per warp) against
/// kBlockN keys per step; __launch_bounds__ caps the registers so that kMinBlocks CTAs fit on
/// one SM. bench/flash_tune instantiates other shapes to re-check the table.
template <int D, int BlockM, int BlockN, int MinBlocks>
struct FlashTile {
  static constexpr int kHeadDim = D;
  static constexpr int kBlockM = BlockM;
  static constexpr int kBlockN = BlockN;
  static constexpr int kWarps = kBlockM / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kMinBlocks = MinBlocks;
  // Rows padded by 8 elements (16 bytes): consecutive rows start 4·(D/8+1) banks apart, so
  // the eight 16-byte rows of every ldmatrix land in distinct banks for all supported D.
  static constexpr int kPitch = D + 8;
  static constexpr int kKvTile = kBlockN * kPitch;
  static constexpr int kSmemElems = kBlockM * kPitch + 4 * kKvTile;  // Q, K[2], V[2]
  static_assert(D % 16 == 0, "head dim must be a multiple of 16");
  static_assert(BlockM % 16 == 0 && BlockN % 16 == 0, "tiles are multiples of 16");
};

/// Tile shape of the tensor-core backward: kRows rows per CTA (16 per warp: keys in the dK/dV
/// pass, queries in the dQ pass) against kCols columns per step.
template <int D, int Rows, int Cols>
struct FlashBackwardTileShape {
  static constexpr int kRows = Rows;
  static constexpr int kCols = Cols;
  static constexpr int kThreads = Rows / 16 * 32;
  static constexpr int kPitch = D + 8;  // as the forward's: conflict-free ldmatrix rows
  static_assert(D % 16 == 0 && Rows % 16 == 0 && Cols % 16 == 0, "tiles are multiples of 16");
};

/// The table: TileTable<family, D>::Forward and ::Backward. A (family, D) without a row does
/// not compile, so a new head dim or kernel family gets its tiles (and their measurement) here.
template <TileArch A, int D>
struct TileTable {
  static_assert(D == -1,
                "ra::cuda::TileTable: no tiles for this (kernel family, head dim D); "
                "add a row in ra/cuda/tile_table.cuh");
};

// Forward, why 128x64 with 8 warps: the K/V tiles are reused by 128 rows while the per-thread
// state (O: D/2 floats, S: 32 floats, Q̂: D/4 registers) fits the register file. Two CTAs per
// SM where D <= 64 (registers capped at 128) so one CTA's softmax overlaps the other's MMAs;
// larger D needs the registers (one CTA per SM).
// Backward, why 64 rows (4 warps) against 64 columns: 16 rows per warp for both products of
// each pass; 32 columns at D = 128, where the dK and dV accumulators alone take 128 fp32
// registers per thread. The backward's tiles have not been timed against alternatives.

/// D = 32. Forward: the D <= 64 rule; only this shape was timed (95.0 µs at T = 1024 with
/// H = 24, 316 µs at T = 2048). Backward: 64x64, not timed.
template <>
struct TileTable<TileArch::mma_sync, 32> {
  using Forward = FlashTile<32, 128, 64, 2>;
  using Backward = FlashBackwardTileShape<32, 64, 64>;
};

/// D = 64. Forward, T = 1024 (2048, 4096): 128x64 with 2 CTAs/SM 71.2 µs (231, 848), against
/// 1 CTA/SM 88.5 (292, 1068), 128x128 82.0 (263, 939), 64x64 with 4 CTAs/SM 74.0 (239, 913),
/// 64x128 81.1 (260, 933), 192x64 93.6 (271, 988). Backward: 64x64, not timed.
template <>
struct TileTable<TileArch::mma_sync, 64> {
  using Forward = FlashTile<64, 128, 64, 2>;
  using Backward = FlashBackwardTileShape<64, 64, 64>;
};

/// D = 80. Forward: not timed; one CTA per SM as at D = 128 (the register rule above).
/// Backward: 64x64, not timed.
template <>
struct TileTable<TileArch::mma_sync, 80> {
  using Forward = FlashTile<80, 128, 64, 1>;
  using Backward = FlashBackwardTileShape<80, 64, 64>;
};

/// D = 96. Forward: not timed; one CTA per SM as at D = 128 (the register rule above).
/// Backward: 64x64, not timed.
template <>
struct TileTable<TileArch::mma_sync, 96> {
  using Forward = FlashTile<96, 128, 64, 1>;
  using Backward = FlashBackwardTileShape<96, 64, 64>;
};

/// D = 128 (H = 6). Forward, T = 1024 (2048, 4096): 128x64 with 1 CTA/SM 73.4 µs (228, 834),
/// against 64x64 with 2 CTAs/SM 73.1 (234, 837) and 128x32 84.9 (272, 1008). Backward: 64x32
/// (the dK/dV accumulators take 128 registers), not timed.
template <>
struct TileTable<TileArch::mma_sync, 128> {
  using Forward = FlashTile<128, 128, 64, 1>;
  using Backward = FlashBackwardTileShape<128, 64, 32>;
};

/// The forward tiles of the mma.sync kernel at head dim D.
template <int D>
using FlashForwardTraits = typename TileTable<TileArch::mma_sync, D>::Forward;

namespace detail {

/// The backward tiles of the mma.sync kernels at head dim D.
template <int D>
using FlashBackwardTile = typename TileTable<TileArch::mma_sync, D>::Backward;

}  // namespace detail

}  // namespace ra::cuda
