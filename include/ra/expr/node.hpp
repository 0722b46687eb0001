// ra/expr/node.hpp — what an expression is, and how a device evaluates one.
//
// An expression is a tree: its leaves are views (ra::View: memory the caller owns), its inner
// nodes lazy operations (ra::gemm, ra::fold, ra::attend, ...) that hold their operands by
// value. Every node's result is a matrix (M, N) of one element type; views of it (the folded
// Qf, Kf, V of a fused projection, its (B,H,T,D) heads) are taken by the consuming node,
// never copied.
//
//   auto tape = ra::eval(y, expr, dev);   // forward: y = expr; intermediates in dev's workspace
//   ra::backward(expr, tape, dy, dev);    // gradients into the sinks the nodes name
//
// Evaluation is found by type, not by a chain of branches: Evaluator<Node, Device> is the ONE
// evaluator of a node kind on a device, a specialisation beside that device's kernel
// (ra/cpu/gemm.hpp, ra/cuda/gemm_eval.cuh, ...). It provides
//   static Tape forward(const Node&, const Out& out, const Device&);
//   static void backward(const Node&, const Tape&, const DOut& d_out, const Device&);
// where Tape is what the backward needs of the forward (views of intermediates in the
// device's workspace). A new node kind adds its header and one evaluator per device; nothing
// else changes.
//
// The device's workspace (an ra::Arena) provides the intermediates: a node whose operand is a
// node takes the operand's result buffer from it and evaluates the operand into it. The
// workspace is reset by ra::eval, and the backward continues in the same pass, so a tape is
// valid until the next ra::eval on that workspace (ra::backward checks it).
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra {

/// A lazy node (not a view): it declares node_tag and value_type.
template <class E>
concept Node = requires {
  typename std::remove_cvref_t<E>::node_tag;
  typename std::remove_cvref_t<E>::value_type;
};

/// A node whose result is a matrix: extents() gives its (M,N), so another node can take it
/// as an operand (the workspace provides its buffer).
template <class E>
concept MatrixNode = Node<E> && requires(const std::remove_cvref_t<E>& e) {
  { e.extents() } -> std::convertible_to<std::array<index_t, 2>>;
};

/// An operand of a node: a view (a leaf) or a matrix node.
template <class E>
concept Operand = View<E> || MatrixNode<E>;

/// A gradient nobody wants (a sink of a node or of a leaf left out).
struct NoGrad {};

/// The evaluator of node kind N on device Dev: specialised once per (node kind, device)
/// beside the device's kernels. There is no generic definition: an expression a device cannot
/// evaluate fails to compile, naming both.
template <class N, class Dev>
struct Evaluator;

/// What a view operand leaves on the tape: nothing (it is its own value).
struct LeafTape {};

namespace detail {

/// Checks a tape's pass against the device's workspace: a tape is valid until the next
/// ra::eval on that workspace.
template <class Dev>
void require_current(const char* where, std::uint64_t tape_pass, const Dev& dev) {
  require(tape_pass == dev.pass(), where, ": the tape is of evaluation pass ", tape_pass,
          " but the device's workspace is at pass ", dev.pass(),
          ", expected the backward right after its forward (another ra::eval ran in between)");
}

}  // namespace detail

/// Evaluates `node` into `out` on `dev` within the current pass (what evaluators call for
/// their operands). Returns the node's tape.
template <Node N, class Out, class Dev>
auto forward(const N& node, const Out& out, const Dev& dev) {
  return Evaluator<std::remove_cvref_t<N>, std::remove_cvref_t<Dev>>::forward(node, out, dev);
}

/// Backward of `node` given the gradient of its result, within the current pass.
template <Node N, class Tape, class DOut, class Dev>
void backward_step(const N& node, const Tape& tape, const DOut& d_out, const Dev& dev) {
  Evaluator<std::remove_cvref_t<N>, std::remove_cvref_t<Dev>>::backward(node, tape, d_out, dev);
}

/// The value of an operand within the current pass, and the operand's tape: a view is
/// itself (no copy; LeafTape); a node is evaluated into a compact (M,N) buffer taken from the
/// device's workspace.
template <Operand E, class Dev>
auto materialise(const E& e, const Dev& dev) {
  if constexpr (View<E>) {
    return std::pair<E, LeafTape>{e, LeafTape{}};
  } else {
    using T = typename E::value_type;
    const auto ext = e.extents();
    const auto value =
        make_view(dev.template take<T>(ext[0] * ext[1]), shape(ext[0], ext[1]));  // (M,N)
    auto tape = ra::forward(e, value, dev);
    return std::pair<StridedView<T, 2>, decltype(tape)>{value, std::move(tape)};
  }
}

/// The tape of the whole expression: the evaluated tree's tape and the workspace pass it
/// belongs to.
template <class Tape>
struct ExprTape {
  Tape tape;
  std::uint64_t pass = 0;
};

/// Evaluates an expression into `out` on `dev`: resets the device's workspace, walks the
/// tree, returns its tape. Nothing else happens at the call site; the device chooses every
/// kernel. Throws what the evaluators throw (ra::error naming the bad argument).
template <class Out, Node N, class Dev>
auto eval(Out&& out, const N& node, Dev&& dev) {
  dev.begin();
  auto tape = ra::forward(node, out, dev);
  return ExprTape<decltype(tape)>{std::move(tape), dev.pass()};
}

/// Evaluates a matrix expression into a buffer of the device's workspace (for a forward whose
/// result only the backward needs). Returns the (M,N) result and the tape.
template <MatrixNode N, class Dev>
auto eval(const N& node, Dev&& dev) {
  using T = typename N::value_type;
  dev.begin();
  const auto ext = node.extents();
  const auto out = make_view(dev.template take<T>(ext[0] * ext[1]), shape(ext[0], ext[1]));
  auto tape = ra::forward(node, out, dev);
  return std::pair<StridedView<T, 2>, ExprTape<decltype(tape)>>{
      out, ExprTape<decltype(tape)>{std::move(tape), dev.pass()}};
}

/// Backward of an expression evaluated by ra::eval(out, node, dev) just before, on the same
/// device: given d_out (the gradient of out), writes the gradients into the sinks the nodes
/// name (Gemm::with_grads, attend's grads). Intermediate gradients come from the device's
/// workspace. Throws ra::error when the tape is not of the device's current pass.
template <Node N, class Tape, class DOut, class Dev>
void backward(const N& node, const ExprTape<Tape>& tape, const DOut& d_out, Dev&& dev) {
  detail::require_current("ra::backward", tape.pass, dev);
  backward_step(node, tape.tape, d_out, dev);
}

}  // namespace ra
