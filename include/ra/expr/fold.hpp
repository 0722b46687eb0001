// ra/expr/fold.hpp — the folded views of a fused projection, as an expression type.
//
//   fold(src, B, H, D):  src's (BT,3C) result, seen as (B,T,3C)          [view]
//                        split along C into Qf | Kf | V, 3 x (B,T,C)     [split]
//                        each (B,T,H,D) transposed to (B,H,T,D)          [view, transpose]
//                        strides (3TC,D,3C,1)
//
// Nothing is computed or copied: a fold only says how its consumer (ra::attend) reads the
// operand's memory. The operand is a (BT,3C) view, or a node (the fused projection GEMM)
// whose result the consumer takes from the workspace. D may be ra::Int<D>: the views then
// have a static head dim, which reaches the attention kernel's instantiation as it is.
#pragma once

#include <array>
#include <type_traits>

#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/view.hpp>
#include <ra/expr/node.hpp>

namespace ra {

template <Operand Src, class DExt>
struct Fold {
  using value_type = typename Src::value_type;
  static constexpr bool kNodeSrc = !View<Src>;

  Src src;            // (BT,3C)
  index_t batch = 0;  // B
  index_t heads = 0;  // H
  DExt head_dim{};    // D: index_t or ra::Int<D>

  index_t seq() const { return batch > 0 ? rows() / batch : 0; }
  index_t channels() const { return heads * value(head_dim); }
  index_t rows() const { return extents_of_src()[0]; }

  /// Checks B, H, D against the operand's (BT,3C); throws ra::error naming the argument.
  void validate(const char* where = "fold") const {
    const auto e = extents_of_src();
    require_arg(batch > 0, where, "B", batch, "a positive batch size");
    require_arg(heads > 0, where, "H", heads, "a positive head count");
    require_arg(value(head_dim) > 0, where, "D", value(head_dim), "a positive head dim");
    require_arg(e[0] % batch == 0, where, "rows of the fused operand", e[0],
                detail::concat("a multiple of B = ", batch, " (B·T rows)"));
    require_arg(e[1] == 3 * channels(), where, "columns of the fused operand", e[1],
                detail::concat("3·H·D = ", 3 * channels()));
  }

  /// Qf, Kf, V (B,H,T,D) strides (3TC,D,3C,1) of a (BT,3C) buffer holding the operand's
  /// value (or its gradient).
  template <View V>
  auto views(const V& fused) const {
    static_assert(V::rank == 2, "fold: the fused buffer is (BT,3C)");
    const auto f3 = view(fused, shape(batch, seq(), 3 * channels()));  // (B,T,3C)
    return folded_views(f3, heads, head_dim);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  }

  /// The heads of a (BT,C) buffer in the same (B,T) order: (B,H,T,D) strides (TC,D,C,1).
  template <View V>
  auto heads_of(const V& rows_c) const {
    static_assert(V::rank == 2, "fold: O' is (BT,C)");
    return ra::heads(view(rows_c, shape(batch, seq(), channels())), heads, head_dim);
  }

 private:
  std::array<index_t, 2> extents_of_src() const {
    if constexpr (View<Src>) {
      static_assert(Src::rank == 2, "fold: the fused operand is (BT,3C)");
      return {src.extent(0), src.extent(1)};
    } else {
      return src.extents();
    }
  }
};

/// Folded views of a fused (BT,3C) operand: B batches, H heads of head dim D (an index or
/// ra::Int<D>). Throws ra::error when the operand's shape does not match.
template <Operand Src, class DExt>
Fold<Src, DExt> fold(const Src& src, index_t B, index_t H, DExt D) {
  Fold<Src, DExt> f{src, B, H, D};
  f.validate();
  return f;
}

}  // namespace ra
