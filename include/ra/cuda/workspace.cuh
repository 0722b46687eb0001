// ra/cuda/workspace.cuh — device memory planned once: named regions laid out back to back at
// 256-byte aligned offsets inside ONE allocation.
//
//   auto ws = Workspace::plan({region_of<T>("fused", B * T * 3 * C),
//                              region_of<float>("lse", B * H * T),
//                              {"cublas", 32 << 20}});
//   T* fused = ws.region<T>("fused");
//
// After plan() the workspace never allocates: region() only computes base + offset. 256 bytes
// is cudaMalloc's own alignment and what cuBLAS asks of a user workspace, so every region is
// as aligned as a fresh allocation, for any element type or vector width.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/cuda/buffer.cuh>

namespace ra::cuda {

/// One region of a workspace plan: a name and a size in bytes.
struct WorkspaceRegion {
  std::string name;
  std::size_t bytes = 0;
};

/// A region of `count` elements of T. Throws ra::error on a negative count.
template <class T>
WorkspaceRegion region_of(std::string name, index_t count) {
  require_arg(count >= 0, "region_of", name, count, "a non-negative element count");
  return {std::move(name), static_cast<std::size_t>(count) * sizeof(T)};
}

/// Named regions of one device allocation. Move-only; frees its memory on destruction.
class Workspace {
 public:
  /// Offsets of regions are multiples of this many bytes.
  static constexpr std::size_t kAlignment = 256;

  Workspace() = default;

  /// Lays `regions` out in order at kAlignment-aligned offsets and makes one allocation of
  /// the total. Throws ra::error on an empty or repeated name, ra::cuda_error when the
  /// allocation fails.
  static Workspace plan(const std::vector<WorkspaceRegion>& regions) {
    Workspace ws;
    std::size_t offset = 0;
    for (const auto& r : regions) {
      require_arg(!r.name.empty(), "Workspace::plan", "region name", "empty", "a non-empty name");
      require_arg(ws.find(r.name) == kNotFound, "Workspace::plan", "region name", r.name,
                  "names that appear once");
      ws.slots_.push_back({r.name, offset, r.bytes});
      offset += round_up(r.bytes);
    }
    ws.memory_ = DeviceBuffer<std::byte>(static_cast<index_t>(offset));
    return ws;
  }

  /// Total bytes of the one allocation.
  std::size_t bytes() const { return memory_.bytes(); }
  /// Number of regions.
  std::size_t size() const { return slots_.size(); }
  /// Base of the allocation (null when every region is empty).
  void* data() const { return memory_.data(); }

  bool contains(std::string_view name) const { return find(name) != kNotFound; }

  /// Index of the region called `name`. Throws ra::error when there is none.
  std::size_t index(std::string_view name) const {
    const std::size_t i = find(name);
    require_arg(i != kNotFound, "Workspace::region", "name", name,
                ra::detail::concat("one of the planned regions ", names()));
    return i;
  }

  /// Region i as T* (null for an empty region). Throws ra::error when i is out of range or
  /// the region's size is not a whole number of T.
  template <class T>
  T* region(std::size_t i) const {
    require_arg(i < slots_.size(), "Workspace::region", "index", i,
                ra::detail::concat("less than the number of regions ", slots_.size()));
    const Slot& s = slots_[i];
    require_arg(s.bytes % sizeof(T) == 0, "Workspace::region", s.name,
                ra::detail::concat(s.bytes, " bytes"),
                ra::detail::concat("a multiple of sizeof(T) = ", sizeof(T)));
    if (s.bytes == 0) return nullptr;
    return reinterpret_cast<T*>(static_cast<std::byte*>(memory_.data()) + s.offset);
  }

  /// The region called `name` as T* (null for an empty region). Throws ra::error when there
  /// is no such region or its size is not a whole number of T.
  template <class T>
  T* region(std::string_view name) const {
    return region<T>(index(name));
  }

  /// Size in bytes of region i.
  std::size_t region_bytes(std::size_t i) const {
    require_arg(i < slots_.size(), "Workspace::region_bytes", "index", i,
                ra::detail::concat("less than the number of regions ", slots_.size()));
    return slots_[i].bytes;
  }
  std::size_t region_bytes(std::string_view name) const { return region_bytes(index(name)); }

  /// Offset in bytes of region i from data().
  std::size_t region_offset(std::size_t i) const {
    require_arg(i < slots_.size(), "Workspace::region_offset", "index", i,
                ra::detail::concat("less than the number of regions ", slots_.size()));
    return slots_[i].offset;
  }

 private:
  struct Slot {
    std::string name;
    std::size_t offset = 0;
    std::size_t bytes = 0;
  };

  static constexpr std::size_t kNotFound = static_cast<std::size_t>(-1);

  static std::size_t round_up(std::size_t n) {
    return (n + kAlignment - 1) / kAlignment * kAlignment;
  }

  std::size_t find(std::string_view name) const {
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].name == name) return i;
    return kNotFound;
  }

  std::string names() const {
    std::string s = "{";
    for (std::size_t i = 0; i < slots_.size(); ++i) s += (i ? ", " : "") + slots_[i].name;
    return s + "}";
  }

  std::vector<Slot> slots_;
  DeviceBuffer<std::byte> memory_;
};

}  // namespace ra::cuda
