// ra/cpu/matrix.hpp — moving strided views in and out of Eigen double matrices.
//
// The CPU backend computes in double: load() gathers a (M,N) or (N) view of any element
// type and any strides into a row-major Eigen matrix (each element through
// ra::convert<double>), store() rounds a matrix back into a view of any element type and
// strides. Gathers are O(size) element moves; every product runs in Eigen's GEMM.
#pragma once

#include <Eigen/Core>

#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/tensor.hpp>

namespace ra::cpu {

/// The backend's working matrix: dynamic, double, row-major (like the views it mirrors).
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A column of doubles (one value per row of a Matrix).
using Vector = Eigen::VectorXd;
/// A row of doubles (one value per column of a Matrix).
using RowVector = Eigen::RowVectorXd;

/// True when an optional output view was not given (null data): the result is not wanted.
template <View V>
bool absent(const V& v) {
  return v.data() == nullptr;
}

namespace detail {

/// Throws ra::error naming `arg` when a non-empty view has no data.
template <View V>
void require_data(const char* where, const char* arg, const V& v) {
  require_arg(v.data() != nullptr || v.size() == 0, where, arg, "a null pointer",
              ra::detail::concat("data for a tensor of shape ", to_string(v.extents())));
}

}  // namespace detail

/// The (M,N) view `v` as a double matrix.
template <ViewOfRank<2> V>
Matrix load(const V& v) {
  Matrix m(v.extent(0), v.extent(1));
  const auto* p = v.data();
  const index_t s0 = v.stride(0), s1 = v.stride(1);
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j) m(i, j) = convert<double>(p[i * s0 + j * s1]);
  return m;
}

/// The (N) view `v` as a double row vector.
template <ViewOfRank<1> V>
RowVector load(const V& v) {
  RowVector r(v.extent(0));
  for (index_t j = 0; j < r.size(); ++j) r(j) = convert<double>(v(j));
  return r;
}

/// Rounds the (M,N) matrix `m` into the (M,N) view `v`. Throws ra::error on a shape mismatch.
template <ViewOfRank<2> V, class Derived>
void store(const V& v, const Eigen::MatrixBase<Derived>& expr) {
  using T = typename V::value_type;
  // Evaluate once: coefficient access into a product expression would redo the product.
  const auto& m = expr.eval();
  require(v.extent(0) == m.rows() && v.extent(1) == m.cols(), "cpu::store: output has shape ",
          to_string(v.extents()), ", expected (", m.rows(), ",", m.cols(), ")");
  auto* p = v.data();
  const index_t s0 = v.stride(0), s1 = v.stride(1);
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j)
      p[i * s0 + j * s1] = convert<T>(static_cast<double>(m(i, j)));
}

/// Rounds the vector `r` (row or column) into the (N) view `v`. Throws ra::error on a size
/// mismatch.
template <ViewOfRank<1> V, class Derived>
void store(const V& v, const Eigen::MatrixBase<Derived>& expr) {
  using T = typename V::value_type;
  const auto& r = expr.eval();
  require(v.extent(0) == r.size(), "cpu::store: output has shape ", to_string(v.extents()),
          ", expected (", r.size(), ")");
  for (index_t j = 0; j < r.size(); ++j) v(j) = convert<T>(static_cast<double>(r(j)));
}

}  // namespace ra::cpu
