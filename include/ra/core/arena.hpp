// ra/core/arena.hpp — the scratch memory an expression's evaluation takes its intermediates
// from: a bump allocator over chunks of memory, reset at the start of every evaluation.
//
//   arena.begin();                        // a new evaluation (pass)
//   T* fused = arena.take<T>(B * T * 3C); // 256-byte aligned, valid until the next begin()
//
// The chunks never move during a pass, so every pointer taken stays valid; when a pass needs
// more than the chunks hold, a new chunk is added. The next begin() then replaces them all by
// one chunk of the largest pass seen, so a repeated evaluation of the same (or a smaller)
// expression allocates nothing after its first. A planned owner (a GPU block) measures first
// — measure(true): take() records sizes and returns placeholder addresses, nothing runs —
// then hands the arena one region of its own allocation with adopt(), so no evaluation ever
// allocates.
//
// Memory is the chunk type: movable, constructible from a byte count, with data(). The host
// uses HostChunk below, the CUDA backend its DeviceBuffer<std::byte>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra {

/// Host memory for an Arena.
class HostChunk {
 public:
  HostChunk() = default;
  explicit HostChunk(index_t bytes)
      : data_(std::make_unique<std::byte[]>(static_cast<std::size_t>(bytes))) {}
  std::byte* data() const { return data_.get(); }

 private:
  std::unique_ptr<std::byte[]> data_;
};

template <class Memory>
class Arena {
 public:
  /// Offsets of taken buffers are multiples of this many bytes (cuBLAS's workspace alignment
  /// and the widest vector access of any kernel).
  static constexpr std::size_t kAlignment = 256;

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;

  /// Starts a pass: every earlier pointer is given back. When the last pass needed more than
  /// the first chunk, the chunks are replaced by one of the largest pass's size (the only
  /// place an arena allocates after its first pass).
  void begin() {
    ++pass_;
    if (chunks_.size() > 1 || (chunks_.size() == 1 && chunks_[0].bytes < high_water_)) {
      chunks_.clear();
      add_chunk(high_water_);
    }
    current_ = 0;
    offset_ = 0;
    used_ = 0;
  }

  /// n elements of T (null for n == 0), valid until the next begin(). While measuring, a
  /// placeholder address instead: distinct per buffer, aligned, never memory (evaluators
  /// launch nothing while measuring, so nothing reads or writes it).
  /// Throws ra::error on a negative n.
  template <class T>
  T* take(index_t n) {
    require_arg(n >= 0, "Arena::take", "n", n, "a non-negative element count");
    const std::size_t bytes = round_up(static_cast<std::size_t>(n) * sizeof(T));
    if (bytes == 0) return nullptr;
    const std::size_t at = used_;
    used_ += bytes;
    if (used_ > high_water_) high_water_ = used_;
    if (measuring_) return reinterpret_cast<T*>(kPlaceholderBase + at);
    while (current_ < chunks_.size() && offset_ + bytes > chunks_[current_].bytes) {
      ++current_;
      offset_ = 0;
    }
    if (current_ == chunks_.size()) add_chunk(bytes > high_water_ ? bytes : high_water_);
    std::byte* p = chunks_[current_].base + offset_;
    offset_ += bytes;
    return reinterpret_cast<T*>(p);
  }

  /// Uses `bytes` of caller memory (kAlignment-aligned, alive as long as the arena) as the
  /// only chunk; the arena never frees it. Throws ra::error on a null or misaligned pointer.
  void adopt(void* memory, std::size_t bytes) {
    require_arg(memory != nullptr || bytes == 0, "Arena::adopt", "memory", "a null pointer",
                "caller memory of `bytes` bytes");
    require_arg(reinterpret_cast<std::uintptr_t>(memory) % kAlignment == 0, "Arena::adopt",
                "memory", memory, "a 256-byte aligned pointer");
    chunks_.clear();
    chunks_.push_back({Memory{}, static_cast<std::byte*>(memory), bytes});
    if (bytes > high_water_) high_water_ = bytes;
    current_ = 0;
    offset_ = 0;
    used_ = 0;
  }

  /// While measuring, take() only records sizes (and returns placeholders): evaluators that
  /// see measuring() launch nothing.
  void measure(bool on) { measuring_ = on; }
  bool measuring() const { return measuring_; }

  /// Bytes the largest pass took so far (what one chunk must hold for allocation-free passes).
  std::size_t high_water() const { return high_water_; }
  /// Number of begin() calls: a forward's record names the pass it was taken in.
  std::uint64_t pass() const { return pass_; }
  /// Number of chunks (1 once the arena has settled).
  std::size_t chunks() const { return chunks_.size(); }
  /// Base and size of chunk i (for poisoning memory in tests).
  std::byte* chunk_data(std::size_t i) const { return chunks_.at(i).base; }
  std::size_t chunk_bytes(std::size_t i) const { return chunks_.at(i).bytes; }

 private:
  struct Chunk {
    Memory memory;  // empty for adopted memory
    std::byte* base = nullptr;
    std::size_t bytes = 0;
  };

  // Where measuring passes' placeholder addresses start (a page no allocation returns).
  static constexpr std::uintptr_t kPlaceholderBase = 4096;

  static std::size_t round_up(std::size_t n) {
    return (n + kAlignment - 1) / kAlignment * kAlignment;
  }

  void add_chunk(std::size_t bytes) {
    if (bytes == 0) return;
    Memory m(static_cast<index_t>(bytes));
    std::byte* base = reinterpret_cast<std::byte*>(m.data());
    chunks_.push_back({std::move(m), base, bytes});
    current_ = chunks_.size() - 1;
    offset_ = 0;
  }

  std::vector<Chunk> chunks_;
  std::size_t current_ = 0, offset_ = 0, used_ = 0, high_water_ = 0;
  std::uint64_t pass_ = 0;
  bool measuring_ = false;
};

}  // namespace ra
