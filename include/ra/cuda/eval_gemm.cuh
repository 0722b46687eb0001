// ra/cuda/eval_gemm.cuh — the GEMM node on the GPU (its one evaluator on cuda::device).
//
//   forward:   A's node (if any) into the workspace; Y = A · Wᵀ (+ bias in the epilogue)
//   backward:  dA = dY · W            (W read as (K,N): w_kn, no transpose in memory)
//              dW = dYᵀ · A           (dY and A read as (K,M): a_km, w_kn; fp32 dW for 16-bit
//                                      inputs when the sink is fp32: y_f32)
//              db = Σ_rows dY         in dW's epilogue (BGRADB), or where cuBLASLt offers no
//                                      algorithm for that, column_sums (reduce.cuh)
// dA goes to A's sink, or into a workspace buffer that A's node's backward receives.
#pragma once

#include <type_traits>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>
#include <ra/cuda/check.cuh>
#include <ra/cuda/device.cuh>
#include <ra/cuda/gemm.cuh>
#include <ra/cuda/reduce.cuh>
#include <ra/expr/gemm.hpp>
#include <ra/expr/node.hpp>

namespace ra::cuda::detail {

// The summands of a bias gradient: dY (rows, cols) with row stride ld.
template <class T>
struct ColumnOf {
  const T* dy;
  index_t ld;
  __device__ float2 operator()(index_t r, index_t c) const {
    return make_float2(static_cast<float>(dy[r * ld + c]), 0.f);
  }
};

template <View V>
void require_unit_columns(const char* where, const char* name, const V& v) {
  require_arg(v.stride(1) == 1 || v.extent(1) == 1, where, ra::detail::concat(name, ".stride(1)"),
              v.stride(1), "1 (cuBLASLt reads row-major rows)");
}

}  // namespace ra::cuda::detail

namespace ra {

template <class AV, class WV, class BiasV, class G>
struct Evaluator<Gemm<AV, WV, BiasV, G>, cuda::device> {
  using N = Gemm<AV, WV, BiasV, G>;
  using T = typename N::value_type;

  template <View YV>
  static auto forward(const N& node, const YV& y, const cuda::device& dev) {
    node.validate("cuda::gemm");
    auto [a, a_tape] = materialise(node.a, dev);
    if (node.has_bias()) {
      run(Gemm<decltype(a), WV, BiasV>{a, node.w, node.bias}, y, dev);
    } else {
      run(Gemm<decltype(a), WV>{a, node.w}, y, dev);
    }
    return GemmTape<decltype(a), decltype(a_tape)>{a, a_tape};
  }

  template <class Tape, View DYV>
  static void backward(const N& node, const Tape& tape, const DYV& dy, const cuda::device& dev) {
    constexpr const char* where = "cuda::gemm backward";
    const index_t M = node.m(), K = node.k(), Nn = node.n();
    require(dy.extent(0) == M && dy.extent(1) == Nn, where, ": 'dY' has shape ",
            to_string(dy.extents()), ", expected (", M, ",", Nn, ")");
    cuda::detail::require_unit_columns(where, "dY", dy);
    if constexpr (N::kNodeA) {
      const auto da = make_view(dev.template take<T>(M * K), shape(M, K));  // (M,K) for A's node
      input_grad(node, dy, da, dev);
      weight_grads(node, tape.a, dy, dev);
      backward_step(node.a, tape.a_tape, da, dev);
    } else {
      weight_grads(node, tape.a, dy, dev);
      if constexpr (View<std::remove_cvref_t<decltype(node.grads.a)>>) {
        if (detail::wanted(node.grads.a)) input_grad(node, dy, node.grads.a, dev);
      }
    }
  }

 private:
  template <class Leaf, View YV>
  static void run(const Leaf& leaf, const YV& y, const cuda::device& dev) {
    const cuda::GemmShape s = cuda::gemm_shape(leaf, y, dev.tf32);
    dev.with_plan(s, [&](const cuda::GemmPlan& p) {
      if (!dev.measuring()) p.run(leaf, y, dev.stream);
    });
  }

  // dA (M,K) = dY (M,N) · W (N,K), W read as the (K,N)-stored operand.
  template <View DYV, View DAV>
  static void input_grad(const N& node, const DYV& dy, const DAV& da, const cuda::device& dev) {
    constexpr const char* where = "cuda::gemm backward";
    static_assert(std::is_same_v<typename DAV::value_type, T>, "gemm: dA has the type of A");
    require(da.extent(0) == node.m() && da.extent(1) == node.k(), where, ": 'dA' has shape ",
            to_string(da.extents()), ", expected (", node.m(), ",", node.k(), ")");
    cuda::detail::require_unit_columns(where, "dA", da);
    cuda::detail::require_unit_columns(where, "W", node.w);
    cuda::GemmShape s = cuda::GemmShape::compact(node.m(), node.k(), node.n(), dtype_v<T>, false);
    s.lda = cuda::detail::leading_dim(dy);
    s.ldw = cuda::detail::leading_dim(node.w);
    s.ldy = cuda::detail::leading_dim(da);
    s.w_kn = true;
    s.tf32 = dev.tf32;
    s.alignment = cuda::detail::common_alignment({dy.data(), node.w.data(), da.data()});
    dev.with_plan(s, [&](const cuda::GemmPlan& p) {
      if (!dev.measuring())
        p.run(static_cast<const void*>(dy.data()), node.w.data(), nullptr, da.data(), dev.stream);
    });
  }

  // dW (N,K) = dYᵀ · A and db (N) = the column sums of dY, into the node's sinks.
  template <class AVal, View DYV>
  static void weight_grads(const N& node, const AVal& a, const DYV& dy, const cuda::device& dev) {
    using DW = std::remove_cvref_t<decltype(node.grads.w)>;
    using DB = std::remove_cvref_t<decltype(node.grads.bias)>;
    constexpr bool kBias = View<DB> && N::kHasBias;
    const bool want_b = node.has_bias() && detail::wanted(node.grads.bias);
    if constexpr (View<DW>) {
      if (detail::wanted(node.grads.w) && weight_grad(node, a, dy, want_b, dev)) return;
    }
    if constexpr (kBias) {
      if (want_b) column_sums(node, dy, dev);
    }
  }

  // dW, and db in its epilogue when want_b and cuBLASLt has that algorithm (returns whether
  // db was written).
  template <class AVal, View DYV>
  static bool weight_grad(const N& node, const AVal& a, const DYV& dy, bool want_b,
                          const cuda::device& dev) {
    constexpr const char* where = "cuda::gemm backward";
    using GT = typename std::remove_cvref_t<decltype(node.grads.w)>::value_type;
    static_assert(std::is_same_v<GT, T> || std::is_same_v<GT, float>,
                  "gemm: dW is of A's element type or fp32");
    const index_t M = node.m(), K = node.k(), Nn = node.n();
    const auto& dw = node.grads.w;
    require(dw.extent(0) == Nn && dw.extent(1) == K, where, ": 'dW' has shape ",
            to_string(dw.extents()), ", expected (", Nn, ",", K, ")");
    cuda::detail::require_unit_columns(where, "dW", dw);
    cuda::detail::require_unit_columns(where, "A", a);
    cuda::GemmShape s = cuda::GemmShape::compact(Nn, K, M, dtype_v<T>, false);
    s.lda = cuda::detail::leading_dim(dy);
    s.ldw = cuda::detail::leading_dim(a);
    s.ldy = cuda::detail::leading_dim(dw);
    s.a_km = true;
    s.w_kn = true;
    s.y_f32 = std::is_same_v<GT, float> && !std::is_same_v<T, float>;
    s.tf32 = dev.tf32;
    s.alignment = cuda::detail::common_alignment({dy.data(), a.data(), dw.data()});
    if constexpr (View<std::remove_cvref_t<decltype(node.grads.bias)>> && N::kHasBias) {
      if (want_b) {
        const auto& db = node.grads.bias;
        static_assert(std::is_same_v<typename std::remove_cvref_t<decltype(db)>::value_type, GT>,
                      "gemm: db has dW's element type (BGRADB writes it with dW)");
        require_arg(db.extent(0) == Nn, where, "db.extent(0)", db.extent(0),
                    ra::detail::concat("N = ", Nn));
        require_arg(db.stride(0) == 1 || Nn == 1, where, "db.stride(0)", db.stride(0),
                    "1 (a packed vector)");
        cuda::GemmShape with_db = s;
        with_db.epilogue = cuda::GemmEpilogue::bias_grad;
        with_db.alignment =
            cuda::detail::common_alignment({dy.data(), a.data(), dw.data(), db.data()});
        const bool done = dev.with_plan(
            with_db,
            [&](const cuda::GemmPlan& p) {
              if (!dev.measuring())
                p.run_with_aux(static_cast<const void*>(dy.data()), a.data(), nullptr, dw.data(),
                               db.data(), dev.stream);
            },
            /*may_fail=*/true);
        if (done) return true;
      }
    }
    dev.with_plan(s, [&](const cuda::GemmPlan& p) {
      if (!dev.measuring())
        p.run(static_cast<const void*>(dy.data()), a.data(), nullptr, dw.data(), dev.stream);
    });
    return false;
  }

  // db (N) = Σ_rows dY by the deterministic column sums (an fp32 sink).
  template <View DYV>
  static void column_sums(const N& node, const DYV& dy, const cuda::device& dev) {
    constexpr const char* where = "cuda::gemm backward";
    const auto& db = node.grads.bias;
    using GT = typename std::remove_cvref_t<decltype(db)>::value_type;
    if constexpr (!std::is_same_v<GT, float>) {
      throw unsupported(ra::detail::concat(
          where, ": a ", dtype_v<GT>,
          " bias gradient without the BGRADB epilogue, expected an fp32 'db' (column sums)"));
    } else {
      const index_t M = node.m(), Nn = node.n();
      require_arg(db.stride(0) == 1 || Nn == 1, where, "db.stride(0)", db.stride(0),
                  "1 (a packed vector)");
      float* scratch = dev.template take<float>(cuda::column_sums_scratch(M, Nn, 1));
      if (dev.measuring()) return;
      cuda::column_sums<1>(cuda::detail::ColumnOf<T>{dy.data(), cuda::detail::leading_dim(dy)}, M,
                           Nn, db.data(), nullptr, scratch, dev.stream);
    }
  }
};

}  // namespace ra
