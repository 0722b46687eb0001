// tests/cuda/training_reference.hpp — the loop references of the training-kernel tests, each a
// template over the accumulation type Acc so that one piece of code gives both references of
// the precision rule (tests/common/precision.hpp):
//
//   Acc = double  the exact reference: every sum, product and function in double, nothing
//                 rounded on the way (inputs are the exact values of the rounded inputs the GPU
//                 saw);
//   Acc = float   the naive same-precision implementation: fp32 arithmetic, sums taken
//                 sequentially in the loops' order, and each output rounded once to its storage
//                 type (T for activations and their gradients, fp32 for statistics, losses,
//                 parameter gradients and optimizer state) — stored<Acc, T>().
//
// Beside each output value sits its floor, u·‖terms‖₂: u of the output's storage type times the
// L2 norm of the terms summed into it (the summands of the final expression for a pointwise
// function). Where an output is computed from an intermediate that carries a floor of its own
// (LayerNorm's mean and rstd, the sum a GELU epilogue applies gelu to), that floor is added,
// propagated to first order; where a kernel uses an approximate function with a documented
// error bound (rsqrtf, tanhf, __expf), the floor adds that bound. Each function's comment says
// what its floors are. Plain C++: no CUDA, no Eigen.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <ra/core/config.hpp>
#include <ra/core/dtype.hpp>
#include <ra/nn/adamw.hpp>

#include "../common/same_precision_attention.hpp"  // round_to_storage, detail::sq

namespace ra::test {

/// One output of a reference: values and the floor of each.
struct Computed {
  std::vector<double> v, floor;

  void assign(std::size_t n) {
    v.assign(n, 0.0);
    floor.assign(n, 0.0);
  }
};

/// What a reference stores for x: x itself (Acc = double, exact) or x rounded to the storage
/// type T (Acc = float, naive).
template <class Acc, class T>
double stored(Acc x) {
  if constexpr (std::is_same_v<Acc, double>) {
    return x;
  } else {
    static_assert(std::is_same_v<Acc, float>, "Acc is double (exact) or float (naive)");
    return round_to_storage<T>(x);
  }
}

/// Unit roundoff of fp32, the storage type of statistics, losses and parameter gradients.
inline constexpr double kU32 = 0x1p-24;

/// Unit roundoff of T.
template <class T>
constexpr double unit_of() {
  return unit_roundoff(dtype_v<T>);
}

namespace detail {

inline std::size_t at(index_t i) {
  return static_cast<std::size_t>(i);
}

// sq(x) = x·x comes from same_precision_attention.hpp.

}  // namespace detail

// ---- LayerNorm ----------------------------------------------------------------------------

struct LayerNormReference {
  Computed y, mean, rstd;  // forward: (N,C), (N), (N)
  Computed dx, dw, db;     // backward: (N,C), (C), (C); empty without dy
};

/// Relative error budget of the GPU's rsqrtf: 2 ulp (CUDA Math API), one ulp being at most
/// 2·u32 relative.
inline constexpr double kRsqrtBudget = 4.0 * kU32;

/// GPT-2's LayerNorm over rows of C (ra/cuda/layernorm.cuh): the forward from x (N,C), w (C)
/// and b (C; empty: none) and, when dy (N,C) is not empty, the backward with the residual
/// gradient dres (N,C; empty: none), from the reference's own mean and rstd. Outputs y, dx in
/// T; mean, rstd, dw, db in fp32. Floors — u·‖terms‖₂ of each output, plus the floors of the
/// statistics it is computed from, propagated (μ_f and ρ = r_f / r below):
///   mean  μ_f = u32·(‖x_i‖₂ / C + |μ|)               the sum's terms, and the division's rounding
///   rstd  r_f = u32·r·(4 + ½·‖(x_i − μ)²‖₂ / (C·(σ² + ε)))   rsqrtf's 2-ulp budget (kernel), and
///                                                    σ²'s floor through (σ² + ε)^-½
///   y     u_T·‖(x̂·w, b)‖₂ + |x̂·w|·ρ + |r·w|·μ_f
///   dx    u_T·‖(r·g, r·ḡ, r·x̂·h, dres)‖₂ + ρ·(|r·g| + |r·ḡ| + 3|r·x̂·h|) + r²·(|h| + |x̂·ḡ|)·μ_f
///         + r·u32·(‖g‖₂ + |x̂|·‖g ⊙ x̂‖₂) / C       with g = dy ⊙ w, ḡ = mean(g), h = mean(g ⊙ x̂)
///         (r·x̂·h goes as r³: x̂ and h carry r too)
///   dw    u32·‖dy ⊙ x̂‖₂ + Σ_rows |dy|·(|x̂|·ρ + r·μ_f);   db  u32·‖dy‖₂ (sums over a column)
template <class Acc, class T>
LayerNormReference layernorm_reference(const std::vector<double>& x, const std::vector<double>& w,
                                       const std::vector<double>& b, const std::vector<double>& dy,
                                       const std::vector<double>& dres, index_t N, index_t C) {
  using detail::at;
  using detail::sq;
  const double uT = unit_of<T>(), cd = static_cast<double>(C);
  const Acc eps = static_cast<Acc>(1e-5), cols = static_cast<Acc>(C);
  const bool backward = !dy.empty();
  LayerNormReference r;
  r.y.assign(at(N * C));
  r.mean.assign(at(N));
  r.rstd.assign(at(N));
  std::vector<Acc> dw(at(C), Acc(0)), db(at(C), Acc(0));
  std::vector<double> dw_t2(at(C), 0.0), dw_prop(at(C), 0.0), db_t2(at(C), 0.0);
  if (backward) {
    r.dx.assign(at(N * C));
    r.dw.assign(at(C));
    r.db.assign(at(C));
  }
  for (index_t i = 0; i < N; ++i) {
    const double* xr = x.data() + i * C;
    Acc s = 0;
    double x2 = 0.0;
    for (index_t c = 0; c < C; ++c) {
      s += static_cast<Acc>(xr[c]);
      x2 += sq(xr[c]);
    }
    const Acc mu = s / cols;
    Acc q = 0;
    double d4 = 0.0;
    for (index_t c = 0; c < C; ++c) {
      const Acc d = static_cast<Acc>(xr[c]) - mu;
      q += d * d;
      d4 += sq(sq(static_cast<double>(d)));
    }
    const Acc var = q / cols;
    const Acc rs = Acc(1) / std::sqrt(var + eps);
    const double rd = static_cast<double>(rs);
    const double mu_f = kU32 * (std::sqrt(x2) / cd + std::abs(static_cast<double>(mu)));
    const double rho = kU32 * (4.0 + 0.5 * std::sqrt(d4) / (cd * static_cast<double>(var + eps)));
    r.mean.v[at(i)] = stored<Acc, float>(mu);
    r.mean.floor[at(i)] = mu_f;
    r.rstd.v[at(i)] = stored<Acc, float>(rs);
    r.rstd.floor[at(i)] = rho * rd;
    for (index_t c = 0; c < C; ++c) {
      const Acc xh = (static_cast<Acc>(xr[c]) - mu) * rs;
      const Acc xw = xh * static_cast<Acc>(w[at(c)]);
      const Acc bc = b.empty() ? Acc(0) : static_cast<Acc>(b[at(c)]);
      r.y.v[at(i * C + c)] = stored<Acc, T>(xw + bc);
      r.y.floor[at(i * C + c)] =
          uT * std::sqrt(sq(xw) + sq(bc)) + std::abs(xw) * rho + rd * std::abs(w[at(c)]) * mu_f;
    }
    if (!backward) continue;
    const double* dyr = dy.data() + i * C;
    Acc sg = 0, sgx = 0;
    double g2 = 0.0, gx2 = 0.0;
    for (index_t c = 0; c < C; ++c) {
      const Acc g = static_cast<Acc>(dyr[c]) * static_cast<Acc>(w[at(c)]);
      const Acc gx = g * ((static_cast<Acc>(xr[c]) - mu) * rs);
      sg += g;
      sgx += gx;
      g2 += sq(g);
      gx2 += sq(gx);
    }
    const Acc mg = sg / cols, mgx = sgx / cols;
    const double mg_f = kU32 * std::sqrt(g2) / cd, mgx_f = kU32 * std::sqrt(gx2) / cd;
    for (index_t c = 0; c < C; ++c) {
      const std::size_t k = at(i * C + c);
      const Acc xh = (static_cast<Acc>(xr[c]) - mu) * rs;
      const Acc dyc = static_cast<Acc>(dyr[c]);
      const Acc g = dyc * static_cast<Acc>(w[at(c)]);
      const Acc res = dres.empty() ? Acc(0) : static_cast<Acc>(dres[k]);
      r.dx.v[k] = stored<Acc, T>(rs * (g - mg - xh * mgx) + res);
      const double t_g = std::abs(rd * g), t_mg = std::abs(rd * mg), t_x = std::abs(rd * xh * mgx);
      r.dx.floor[k] =
          uT * std::sqrt(sq(t_g) + sq(t_mg) + sq(t_x) + sq(res)) + rho * (t_g + t_mg + 3.0 * t_x) +
          rd * rd * (std::abs(mgx) + std::abs(xh * mg)) * mu_f + rd * (mg_f + std::abs(xh) * mgx_f);
      dw[at(c)] += dyc * xh;
      db[at(c)] += dyc;
      dw_t2[at(c)] += sq(dyc * xh);
      dw_prop[at(c)] += std::abs(dyc) * (std::abs(xh) * rho + rd * mu_f);
      db_t2[at(c)] += sq(dyc);
    }
  }
  if (backward)
    for (index_t c = 0; c < C; ++c) {
      r.dw.v[at(c)] = stored<Acc, float>(dw[at(c)]);
      r.dw.floor[at(c)] = kU32 * std::sqrt(dw_t2[at(c)]) + dw_prop[at(c)];
      r.db.v[at(c)] = stored<Acc, float>(db[at(c)]);
      r.db.floor[at(c)] = kU32 * std::sqrt(db_t2[at(c)]);
    }
  return r;
}

// ---- element-wise -------------------------------------------------------------------------

/// √(2/π) and the cubic coefficient of the tanh-form GELU, in Acc (in float: the kernels'
/// constants).
template <class Acc>
inline constexpr Acc kGeluS = static_cast<Acc>(0.7978845608028654);
template <class Acc>
inline constexpr Acc kGeluK = static_cast<Acc>(0.044715);

/// tanh(√(2/π)·(x + 0.044715·x³)) in Acc.
template <class Acc>
Acc gelu_tanh(Acc x) {
  return std::tanh(kGeluS<Acc> * (x + kGeluK<Acc> * x * x * x));
}

/// Relative error budget of the GPU's tanhf: 2 ulp (CUDA Math API), one ulp being at most
/// 2·u32 relative. cuBLASLt's GELU epilogues are held to the same budget.
inline constexpr double kTanhBudget = 4.0 * kU32;

/// gelu(x) = ½·x·(1 + t) in Acc, and its floor for a storage type of unit roundoff u:
/// u·½|x|·‖(1, t)‖₂ + ½|x|·|t|·kTanhBudget.
template <class Acc>
Acc gelu_value(Acc x, double u, double& floor) {
  const Acc t = gelu_tanh(x);
  const double xd = std::abs(static_cast<double>(x)), td = std::abs(static_cast<double>(t));
  floor = u * 0.5 * xd * std::sqrt(1.0 + td * td) + 0.5 * xd * td * kTanhBudget;
  return Acc(0.5) * x * (Acc(1) + t);
}

/// gelu'(x) = ½(1 + t) + ½·x·(1 − t²)·s' in Acc, s' = √(2/π)·(1 + 3·0.044715·x²), and its
/// floor for unit roundoff u: u·‖(½, ½t, ½x·s', −½x·s'·t²)‖₂ + |½ − x·t·s'|·|t|·kTanhBudget
/// (∂gelu'/∂t times t's budget).
template <class Acc>
Acc gelu_grad_value(Acc x, double u, double& floor) {
  const Acc t = gelu_tanh(x);
  const Acc s = kGeluS<Acc> * (Acc(1) + Acc(3) * kGeluK<Acc> * x * x);
  const double xd = static_cast<double>(x), sd = static_cast<double>(s),
               td = static_cast<double>(t), h = 0.5 * xd * sd;
  floor = u * std::sqrt(0.25 + 0.25 * td * td + h * h * (1.0 + td * td * td * td)) +
          std::abs(0.5 - xd * td * sd) * std::abs(td) * kTanhBudget;
  return Acc(0.5) * (Acc(1) + t) + Acc(0.5) * x * (Acc(1) - t * t) * s;
}

/// y = gelu(x) per element, in T; floor gelu_value's for u_T.
template <class Acc, class T>
Computed gelu_reference(const std::vector<double>& x) {
  Computed r;
  r.assign(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    r.v[i] = stored<Acc, T>(gelu_value<Acc>(static_cast<Acc>(x[i]), unit_of<T>(), r.floor[i]));
  return r;
}

/// dx = dy·gelu'(x) per element, in T; floor |dy| times gelu_grad_value's for u_T.
template <class Acc, class T>
Computed gelu_backward_reference(const std::vector<double>& dy, const std::vector<double>& x) {
  Computed r;
  r.assign(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double floor = 0.0;
    const Acc d = gelu_grad_value<Acc>(static_cast<Acc>(x[i]), unit_of<T>(), floor);
    r.v[i] = stored<Acc, T>(static_cast<Acc>(dy[i]) * d);
    r.floor[i] = std::abs(dy[i]) * floor;
  }
  return r;
}

/// c = a + b per element, in T; floor u_T·‖(a, b)‖₂.
template <class Acc, class T>
Computed add_reference(const std::vector<double>& a, const std::vector<double>& b) {
  Computed r;
  r.assign(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    r.v[i] = stored<Acc, T>(static_cast<Acc>(a[i]) + static_cast<Acc>(b[i]));
    r.floor[i] = unit_of<T>() * std::sqrt(detail::sq(a[i]) + detail::sq(b[i]));
  }
  return r;
}

// ---- reductions ---------------------------------------------------------------------------

/// Column sums of x (rows, cols) and of its squares, in fp32 (ra/cuda/reduce.cuh's
/// column_sums over (x, x²)); floors u32·‖x_c‖₂ and u32·‖x_c²‖₂.
template <class Acc>
void column_sums_reference(const std::vector<double>& x, index_t rows, index_t cols, Computed& sum,
                           Computed& sum_sq) {
  using detail::at;
  sum.assign(at(cols));
  sum_sq.assign(at(cols));
  for (index_t c = 0; c < cols; ++c) {
    Acc s = 0, q = 0;
    double s2 = 0.0, q2 = 0.0;
    for (index_t r = 0; r < rows; ++r) {
      const Acc v = static_cast<Acc>(x[at(r * cols + c)]);
      s += v;
      q += v * v;
      s2 += detail::sq(v);
      q2 += detail::sq(detail::sq(v));
    }
    sum.v[at(c)] = stored<Acc, float>(s);
    sum.floor[at(c)] = kU32 * std::sqrt(s2);
    sum_sq.v[at(c)] = stored<Acc, float>(q);
    sum_sq.floor[at(c)] = kU32 * std::sqrt(q2);
  }
}

/// Σ x in double, accurate enough to be the exact reference of a double sum: Neumaier's
/// compensated summation (error <= 2·u64·|Σ x| + O(n·u64²)·Σ|x|).
inline double compensated_sum(const std::vector<double>& x) {
  double s = 0.0, c = 0.0;
  for (double v : x) {
    const double t = s + v;
    c += std::abs(s) >= std::abs(v) ? (s - t) + v : (v - t) + s;
    s = t;
  }
  return s + c;
}

/// Σ x in double, sequentially: the naive double sum.
inline double sequential_sum(const std::vector<double>& x) {
  double s = 0.0;
  for (double v : x) s += v;
  return s;
}

// ---- embedding ----------------------------------------------------------------------------

/// out (B·S, C) = wte[tokens] + wpe[t] in T; floor u_T·‖(wte, wpe)‖₂.
template <class Acc, class T>
Computed embedding_forward_reference(const std::vector<std::int32_t>& tokens,
                                     const std::vector<double>& wte, const std::vector<double>& wpe,
                                     index_t S, index_t C) {
  using detail::at;
  const auto N = static_cast<index_t>(tokens.size());
  Computed r;
  r.assign(at(N * C));
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c) {
      const double a = wte[at(tokens[at(n)] * C + c)], p = wpe[at((n % S) * C + c)];
      r.v[at(n * C + c)] = stored<Acc, T>(static_cast<Acc>(a) + static_cast<Acc>(p));
      r.floor[at(n * C + c)] = unit_of<T>() * std::sqrt(detail::sq(a) + detail::sq(p));
    }
  return r;
}

/// dwpe (max_seq, C) = Σ_b dout[b,t] for t < S, 0 beyond; dwte (V, C) = dwte0 + the sum of
/// dout over each token's positions (summed in position order, then added onto dwte0; rows of
/// absent tokens are dwte0). fp32; floors u32·‖terms‖₂ (dwte's terms include dwte0).
template <class Acc>
void embedding_backward_reference(const std::vector<std::int32_t>& tokens,
                                  const std::vector<double>& dout, const std::vector<double>& dwte0,
                                  index_t S, index_t max_seq, index_t C, Computed& dwte,
                                  Computed& dwpe) {
  using detail::at;
  const auto N = static_cast<index_t>(tokens.size());
  std::vector<Acc> wpe(at(max_seq * C), Acc(0)), wte(dwte0.size(), Acc(0));
  std::vector<double> wpe_t2(wpe.size(), 0.0), wte_t2(wte.size(), 0.0);
  std::vector<bool> touched(wte.size(), false);
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c) {
      const double d = dout[at(n * C + c)];
      const std::size_t p = at((n % S) * C + c), t = at(tokens[at(n)] * C + c);
      wpe[p] += static_cast<Acc>(d);
      wpe_t2[p] += detail::sq(d);
      wte[t] += static_cast<Acc>(d);
      wte_t2[t] += detail::sq(d);
      touched[t] = true;
    }
  dwpe.assign(wpe.size());
  dwte.assign(wte.size());
  for (std::size_t i = 0; i < wpe.size(); ++i) {
    dwpe.v[i] = stored<Acc, float>(wpe[i]);
    dwpe.floor[i] = kU32 * std::sqrt(wpe_t2[i]);
  }
  for (std::size_t i = 0; i < wte.size(); ++i) {
    dwte.v[i] = touched[i] ? stored<Acc, float>(static_cast<Acc>(dwte0[i]) + wte[i]) : dwte0[i];
    dwte.floor[i] = touched[i] ? kU32 * std::sqrt(detail::sq(dwte0[i]) + wte_t2[i]) : 0.0;
  }
}

// ---- cross-entropy ------------------------------------------------------------------------

struct CrossEntropyReference {
  Computed loss;  // (N), fp32
  Computed grad;  // (N, V): the real columns, in T
};

/// Per-row loss lse_i − z_{i,t_i} and gradient (e^(z_ij − lse_i) − [j = t_i])·inv_n of logits z
/// (N, Vp) of which the first V columns are real; rows with target −1 give 0 (floor 0).
/// lse_i = m_i + log Σ_j e^(z_ij − m_i) with m_i the row's maximum. Floors:
///   loss  F_i = 16·u32·(1 + max_j |z_ij|): the error budget of the kernel's __expf and logf
///         (as same_precision_attention.hpp's lse floor), which covers the rounding of the loss
///   grad  inv_n·(u_T·‖(p_ij, [j = t_i])‖₂ + p_ij·(F_i + (4 + 2.35·|z_ij − lse_i|)·u32)): the
///         rounding to T, plus p = e^(z − lse) carrying lse's budget and __expf's own (CUDA
///         documents 2 + ⌊1.173·|x|⌋ ulp, one ulp being at most 2·u32 relative)
template <class Acc, class T>
CrossEntropyReference cross_entropy_reference(const std::vector<double>& z,
                                              const std::vector<std::int32_t>& targets, index_t V,
                                              index_t Vp, double inv_n) {
  using detail::at;
  const auto N = static_cast<index_t>(targets.size());
  const double uT = unit_of<T>();
  const Acc inv = static_cast<Acc>(inv_n);
  CrossEntropyReference r;
  r.loss.assign(at(N));
  r.grad.assign(at(N * V));
  for (index_t i = 0; i < N; ++i) {
    const std::int32_t target = targets[at(i)];
    if (target < 0) continue;
    const double* zr = z.data() + i * Vp;
    double m = -INFINITY, zmax = 0.0;
    for (index_t j = 0; j < V; ++j) {
      m = std::max(m, zr[j]);
      zmax = std::max(zmax, std::abs(zr[j]));
    }
    Acc l = 0;
    for (index_t j = 0; j < V; ++j) l += std::exp(static_cast<Acc>(zr[j]) - static_cast<Acc>(m));
    const Acc lse = static_cast<Acc>(m) + std::log(l);
    const double budget = 16.0 * kU32 * (1.0 + zmax);
    r.loss.v[at(i)] = stored<Acc, float>(lse - static_cast<Acc>(zr[target]));
    r.loss.floor[at(i)] = budget;
    for (index_t j = 0; j < V; ++j) {
      const Acc p = std::exp(static_cast<Acc>(zr[j]) - lse);
      const double hit = j == target ? 1.0 : 0.0, pd = static_cast<double>(p);
      r.grad.v[at(i * V + j)] = stored<Acc, T>((p - static_cast<Acc>(hit)) * inv);
      r.grad.floor[at(i * V + j)] =
          inv_n *
          (uT * std::sqrt(pd * pd + hit) +
           pd * (budget + (4.0 + 2.35 * std::abs(zr[j] - static_cast<double>(lse))) * kU32));
    }
  }
  return r;
}

// ---- GEMM products ------------------------------------------------------------------------

/// The unit error of one addition in the GPU's fp32 accumulation of a product of T inputs.
/// fp32 inputs (CUDA cores: FMA, round to nearest, in another order than the naive's): u32.
/// fp16 / bf16 inputs (tensor cores): 2·u32. Tensor cores do not round each addition to
/// nearest: they align the exact products of a block of k (and the accumulator) to the
/// largest exponent and truncate the aligned significands and the block's sum (round toward
/// zero), so an addition can lose up to one ulp of the running sum, 2·u32 relative, where
/// round to nearest loses at most half (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior
/// of NVIDIA tensor cores", PeerJ CS 7:e330, 2021, for V100/T4/A100; Khattak, Mikaitis,
/// "Accurate models of NVIDIA tensor cores", arXiv:2512.07004, 2025, for H100/B200). NVIDIA
/// documents only "fp32 accumulation" (CUBLAS_COMPUTE_32F), not its rounding.
template <class T>
constexpr double accumulation_unit() {
  return std::is_same_v<T, float> ? kU32 : 2.0 * kU32;
}

/// Y (M,N) = Σ_k a(i,k)·w(k,j) (+ bias_j) (+ c0_ij), summed sequentially over k, then the
/// bias, then c0 (accumulate: Y += product); stored in Tout. a and w are functors
/// (index_t, index_t) -> double; bias (N) and c0 (M·N) may be empty. Floor
/// u_Tout·‖(a_ik·w_kj over k, bias_j, c0_ij)‖₂ + acc_unit·‖partial sums‖₂: the final rounding,
/// and the first-order error of the fp32 sum, which a GEMM summing in blocks, in another
/// order and with another rounding redistributes (acc_unit: accumulation_unit<T>() of the
/// inputs' type; the partial sums are the naive's, one after each addition, as in
/// same_precision_gemm.hpp).
template <class Acc, class Tout, class FA, class FW>
Computed product_reference(index_t M, index_t N, index_t K, FA a, FW w,
                           const std::vector<double>& bias, const std::vector<double>& c0,
                           double acc_unit) {
  using detail::at;
  Computed r;
  r.assign(at(M * N));
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      Acc s = 0;
      double t2 = 0.0, partial2 = 0.0;
      const auto add = [&](Acc x) {
        s += x;
        t2 += detail::sq(x);
        partial2 += detail::sq(s);
      };
      for (index_t k = 0; k < K; ++k) add(static_cast<Acc>(a(i, k)) * static_cast<Acc>(w(k, j)));
      if (!bias.empty()) add(static_cast<Acc>(bias[at(j)]));
      if (!c0.empty()) add(static_cast<Acc>(c0[at(i * N + j)]));
      r.v[at(i * N + j)] = stored<Acc, Tout>(s);
      r.floor[at(i * N + j)] = unit_of<Tout>() * std::sqrt(t2) + acc_unit * std::sqrt(partial2);
    }
  return r;
}

struct GeluEpilogueReference {
  Computed aux;  // the pre-activation s = x·Wᵀ + b, in T
  Computed y;    // gelu(s), in T
};

/// cuBLASLt's GELU_AUX_BIAS epilogue: s (M,N) = x (M,K) · W (N,K)ᵀ + b, aux = T(s),
/// y = T(gelu(s)) with gelu applied to the unrounded sum. Floors: aux u_T·‖terms of s‖₂;
/// y u_T·|gelu'(s)|·‖terms of s‖₂ (s's floor propagated) + gelu_value's floor for u_T.
template <class Acc, class T>
GeluEpilogueReference gelu_epilogue_reference(const std::vector<double>& x,
                                              const std::vector<double>& w,
                                              const std::vector<double>& b, index_t M, index_t N,
                                              index_t K) {
  using detail::at;
  const double uT = unit_of<T>();
  GeluEpilogueReference r;
  r.aux.assign(at(M * N));
  r.y.assign(at(M * N));
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      Acc s = 0;
      double t2 = 0.0;
      for (index_t k = 0; k < K; ++k) {
        const Acc p = static_cast<Acc>(x[at(i * K + k)]) * static_cast<Acc>(w[at(j * K + k)]);
        s += p;
        t2 += detail::sq(p);
      }
      s += static_cast<Acc>(b[at(j)]);
      t2 += detail::sq(b[at(j)]);
      const std::size_t o = at(i * N + j);
      r.aux.v[o] = stored<Acc, T>(s);
      r.aux.floor[o] = uT * std::sqrt(t2);
      double gelu_floor = 0.0, unused = 0.0;
      r.y.v[o] = stored<Acc, T>(gelu_value<Acc>(s, uT, gelu_floor));
      const double slope = std::abs(static_cast<double>(gelu_grad_value<Acc>(s, uT, unused)));
      r.y.floor[o] = uT * slope * std::sqrt(t2) + gelu_floor;
    }
  return r;
}

/// cuBLASLt's DGELU epilogue: dx (M,N) = (dy (M,K) · W2 (K,N)) ⊙ gelu'(aux), W2 the first K·N
/// values of w read as (K,N), aux the pre-activation the forward stored (T). In T; floor
/// u_T·|gelu'(aux)|·‖terms of the product‖₂ + |product|·(gelu_grad_value's floor for u_T).
template <class Acc, class T>
Computed dgelu_epilogue_reference(const std::vector<double>& dy, const std::vector<double>& w,
                                  const std::vector<double>& aux, index_t M, index_t N, index_t K) {
  using detail::at;
  const double uT = unit_of<T>();
  Computed r;
  r.assign(at(M * N));
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      Acc s = 0;
      double t2 = 0.0;
      for (index_t k = 0; k < K; ++k) {
        const Acc p = static_cast<Acc>(dy[at(i * K + k)]) * static_cast<Acc>(w[at(k * N + j)]);
        s += p;
        t2 += detail::sq(p);
      }
      const std::size_t o = at(i * N + j);
      double grad_floor = 0.0;
      const Acc g = gelu_grad_value<Acc>(static_cast<Acc>(aux[o]), uT, grad_floor);
      r.v[o] = stored<Acc, T>(s * g);
      r.floor[o] = uT * std::abs(static_cast<double>(g)) * std::sqrt(t2) +
                   std::abs(static_cast<double>(s)) * grad_floor;
    }
  return r;
}

// ---- AdamW --------------------------------------------------------------------------------

struct AdamWReference {
  Computed p, m, v;          // fp32, one value per parameter
  std::uint64_t spikes = 0;  // elements SPAM clipped
};

/// One AdamW step (ra/nn/adamw.hpp's formula; with cfg.kind adamw_spam also SPAM's reset,
/// spike clipping and warm-up at step t) from the state p, m, v (fp32 values) with gradients g,
/// clip factor `scale`, learning rate lr at step t (1-based); decay: one byte per parameter.
/// Constants are taken in Acc (in float: as ra/cuda/adamw.cuh rounds them). Outputs in fp32.
///
/// Floors: the first-order budget of the fp32 update, u32 times the term each rounded
/// operation perturbs (precision.hpp), in L2, for m' = β1·m + (1−β1)·ĝ, v' = β2·v + (1−β2)·ĝ²
/// and p' = p − lr·(w·S + λ·p), S = m̂/(√v̂ + ε) (ĝ = scale·g, clipped by SPAM; the moments
/// before the step zero at a reset):
///   ĝ      relative 2u: the fp32 scale and the product (clipped: √(θ·v), 1.5u)
///   m'     β1·m (β1 rounded, the product), β1·ĝ (1 − β1 from the rounded β1: exact in fp32,
///          but off by β1's rounding, u·β1 absolute — 9u relative to (1 − β1) for β1 = 0.9),
///          (1−β1)·ĝ (the product, and 2u of ĝ), m' (the sum)
///   v'     likewise: β2·v twice, β2·ĝ² (1 − β2 = 0.05 from the rounded 0.95 is 4u off; up to
///          19u), (1−β2)·ĝ² (two products, 4u of ĝ²), v' (the sum)
///   p'     p and lr·(w·S + λ·p) (the final sum), lr·(w·S + λ·p) three times more (lr's
///          rounding, the product with lr, the inner sum), lr·λ·p twice (λ's rounding, the
///          product), and lr·w·S once for each of the seven roundings on S's chain (w, c1,
///          m/c1, √, +ε, ÷, w·) and half for c2 and v/c2 (under the root), with the errors of
///          m' and v' propagated (their floors relative, v's halved).
/// Without the constants' terms the floor covered the final rounding only, and a kernel that
/// fuses a product into an FMA (ra/cuda/adamw.cuh: fewer roundings, the same rounded
/// constants) failed where the naive's last rounding happened to cancel the constant's error
/// (host emulation of the kernel's PTX over 400 seeds: 6 failures, all in v, all where
/// (1−β2)·ĝ² dominates; none with these floors).
template <class Acc>
AdamWReference adamw_reference(const std::vector<double>& p, const std::vector<double>& g,
                               const std::vector<double>& m, const std::vector<double>& v,
                               const std::vector<std::uint8_t>& decay, double scale,
                               const nn::AdamWConfig& cfg, double lr, std::uint64_t t) {
  using detail::sq;
  const auto f = [](double x) { return static_cast<Acc>(x); };
  const Acc b1 = f(cfg.beta1), b2 = f(cfg.beta2), eps = f(cfg.eps), wd = f(cfg.weight_decay),
            rate = f(lr), s = f(scale);
  const Acc c1 = f(1.0 - std::pow(cfg.beta1, static_cast<double>(t)));
  const Acc c2 = f(1.0 - std::pow(cfg.beta2, static_cast<double>(t)));
  const nn::SpamPhase phase = cfg.phase(t);
  const Acc theta = f(cfg.spam.threshold), w = f(phase.warmup_scale);
  AdamWReference r;
  r.p.assign(p.size());
  r.m.assign(p.size());
  r.v.assign(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    Acc gi = f(g[i]) * s;
    const Acc m0 = phase.reset ? Acc(0) : f(m[i]), v0 = phase.reset ? Acc(0) : f(v[i]);
    if (phase.clip && v0 > Acc(0) && gi * gi > theta * v0) {
      gi = std::copysign(std::sqrt(theta * v0), gi);
      ++r.spikes;
    }
    const Acc mi = b1 * m0 + (Acc(1) - b1) * gi;
    const Acc vi = b2 * v0 + (Acc(1) - b2) * gi * gi;
    const Acc lam = decay[i] ? wd : Acc(0);
    const Acc step = w * ((mi / c1) / (std::sqrt(vi / c2) + eps));
    const Acc pi = f(p[i]) - rate * (step + lam * f(p[i]));
    r.m.v[i] = stored<Acc, float>(mi);
    r.v.v[i] = stored<Acc, float>(vi);
    r.p.v[i] = stored<Acc, float>(pi);
    // First-order budgets (see above), from the values in double.
    const double gv = static_cast<double>(gi), b1v = cfg.beta1, b2v = cfg.beta2;
    const double g_rel = 2.0;  // ĝ's relative error budget, in units of u
    const double m_old = std::abs(b1v * static_cast<double>(m0)),
                 m_new = std::abs((1.0 - b1v) * gv);
    const double m_floor = kU32 * std::sqrt(2.0 * sq(m_old) + sq(b1v * gv) + sq(m_new) +
                                            sq(g_rel * m_new) + sq(static_cast<double>(mi)));
    const double v_old = b2v * static_cast<double>(v0), v_new = (1.0 - b2v) * gv * gv;
    const double v_floor = kU32 * std::sqrt(2.0 * sq(v_old) + sq(b2v * gv * gv) + 2.0 * sq(v_new) +
                                            sq(2.0 * g_rel * v_new) + sq(static_cast<double>(vi)));
    // p' = p − lr·inner, inner = w·S + λ·p: the final sum (p, lr·inner), the product lr·inner,
    // lr's rounding and the inner sum (lr·inner each), λ's rounding and the product λ·p
    // (lr·λ·p each), and the chain of S (lr·w·S times its relative budget, lr's share counted).
    const double lr_s = std::abs(lr * static_cast<double>(step)),
                 lr_l = std::abs(lr * static_cast<double>(lam) * p[i]),
                 lr_inner =
                     std::abs(lr * (static_cast<double>(step) + static_cast<double>(lam) * p[i]));
    const double m_rel = mi != Acc(0) ? m_floor / std::abs(static_cast<double>(mi)) : 0.0;
    const double v_rel = vi != Acc(0) ? 0.5 * v_floor / std::abs(static_cast<double>(vi)) : 0.0;
    const double s_rel = std::sqrt(sq(kU32) * (7.0 + 2.0 * 0.25) + sq(m_rel) + sq(v_rel));
    r.m.floor[i] = m_floor;
    r.v.floor[i] = v_floor;
    r.p.floor[i] =
        std::sqrt(sq(kU32) * (sq(p[i]) + 4.0 * sq(lr_inner) + 2.0 * sq(lr_l)) + sq(lr_s * s_rel));
  }
  return r;
}

}  // namespace ra::test
