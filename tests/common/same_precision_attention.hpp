// tests/common/same_precision_attention.hpp — folded attention, forward and backward, as a
// naive implementation in the storage precision T computes it: the yardstick of the precision
// rule (precision.hpp) for every attention kernel, CPU and GPU.
//
// Storage type T (float, fp16, bf16); every sum accumulates in fp32, sequentially; the inputs,
// Q̂, the probabilities P, dS and the outputs are rounded to T (the logits z and dP' stay fp32,
// as in a fused kernel):
//   forward   Q̂ = T(g ⊙ Qf);  z = Q̂·Kfᵀ/√D;  lse = m + ln Σ e^(z−m);  P = T(softmax(z));
//             O = T(P·V);  O' = T((1 − α)·O + α·V)
//   backward  P = T(e^(z − lse));  dP' = dO'·Vᵀ;  Δ = rowsum(P ⊙ dP');  dS = T(P ⊙ (dP' − Δ));
//             dV = T((1 − α)·Pᵀ·dO' + α·dO');  dQ̂ = (1 − α)·dS·Kf/√D (fp32);
//             dQf = T(g ⊙ dQ̂);  dKf = T((1 − α)·dSᵀ·Q̂/√D);
//             d w_std = g'(w_std)·Σ_{b,t,d<D−R} dQ̂ ⊙ Qf (w_rec likewise; per layer: Σ_h);
//             d a_h = clamp'(a_h)·Σ_{b,t} dO' ⊙ (V − O)
//
// Beside each output, its floor: the first-order rounding budget u·‖terms‖₂ of precision.hpp,
// where each elementary term carries the relative error of the operation that produces it —
// u of T for what is stored in T, u of fp32 for fp32 sums, and for P = e^(z − lse) the error
// ε_P = u_T + 4·u_32 + u_32·(‖q̂⊙k‖/√D + |z| + |lse|) (the GPU's exp is accurate to 2 ulp of
// fp32, and its argument carries the fp32 roundings of z and lse) — times the term's
// sensitivity: the error a same-precision implementation should expect, which the naive's own
// error can undershoot by chance. With ⊕ the root sum of squares:
//   O       ‖ε_P P_j V_j‖ ⊕ u_T·|O| ⊕ u_32·|O|·√(1 + ln n) ⊕ u_32·|O|·‖partial sums of l‖/l
//           (n keys; the online softmax's rescalings of the accumulator, and the normaliser
//           l summed in another order, which scales a whole row coherently)
//   O'      (1 − α)·floor(O) ⊕ u_T·|α V| ⊕ u_T·|O'|
//   lse     16 u_32 (1 + max|z|) ⊕ u_32·‖P_j ‖q̂⊙k_j‖/√D‖ ⊕ u_32·‖partial sums of l‖/l
//           ⊕ u_T·‖q̂ ⊙ Σ_j P_j k_j‖/√D with gates (16 u_32: the GPU's approximate exp2/log2,
//           2^-22 relative each; the last: Q̂'s rounding, which a kernel's own gate value
//           may take to the neighbouring T value)
//   backward P = e^(z − lse) with the forward's stored lse: ε_P + floor(lse) wherever ε_P
//           enters below
//   Δ_i     u_T·Σ_j P|dP'_j| + u_T·Σ_d |dO'_d O_d| + Σ_j ε_P P|dP'_j| + u_32·Σ_j P‖dO'⊙V_j‖:
//           the worst-case (L1) budget of the two standard ways to form it (Σ_j P·dP' and
//           Σ_d dO'·O), since its error is common to all of a row's gradients and no averaging
//           protects a row with few keys from it
//   dS_ij   u_T·|dS| ⊕ u_32·P‖dO'⊙V_j‖ ⊕ ε_P·P·|dP' − Δ|, plus P·floor(Δ_i)
//   dQ̂_id   (1 − α)/√D·(‖K_jd·dS-floor_ij‖_j ⊕ floor(Δ_i)·|Σ_j P_ij K_jd|)   (Δ coherent)
//   dKf_jd  (1 − α)/√D·‖Q̂_id·(dS-floor_ij ⊕ P_ij floor(Δ_i))‖_i
//   dV_jd   (1 − α)·‖dO'_id·ε_P P_ij‖_i ⊕ u_T·|α dO'_jd| ⊕ u_T·|dV|
//   gate    |g'|·(the dQ̂ floors weighted by Qf, the Δ part coherent within a row)
//   d a     |clamp'|·‖dO'_id·(floor(O)_id ⊕ u_32 |V − O|)‖
// Every fp32 sum also carries u_32 times the norm of its partial sums (the first-order error
// of recursive summation), so the terms of z, dP', O, dQ̂, dKf, dV and the parameter sums
// include them. For 16-bit T the u_T terms dominate; for fp32 these bound what the fp32
// kernels' own operation order (online softmax, expf, tree sums) may add to the naive's.
//
// Heads run on all hardware threads (each (b, h) is independent; sums across heads are taken
// afterwards in a fixed order, so results do not depend on the thread count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <vector>

#include <ra/core/dtype.hpp>
#include <ra/core/tensor.hpp>
#include <ra/expr/gates.hpp>

namespace ra::test {

/// x rounded to the storage type T and back (identity for float).
template <class T>
float round_to_storage(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return static_cast<float>(T(x));
  }
}

/// Runs f(i) for i in [0, n) on all hardware threads.
template <class F>
void parallel_for(std::size_t n, F&& f) {
  const std::size_t workers =
      std::min<std::size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  if (workers <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::vector<std::thread> pool;
  for (std::size_t w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (std::size_t i = w; i < n; i += workers) f(i);
    });
  for (auto& t : pool) t.join();
}

/// What the naive implementation computed, with the floor of each output. Tensors are
/// (B,H,T,D) row-major (lse (B,H,T)); parameter gradients have one value per gate (1 or H)
/// and per head (d_a); the backward's parts are empty after a forward-only call.
struct SamePrecisionAttention {
  std::vector<double> o, o_floor;          // O' (after the restart mix)
  std::vector<double> o_pre, o_pre_floor;  // O (before it; = O' without restart)
  std::vector<double> lse, lse_floor;      // natural-log log-sum-exp of the scaled logits
  std::vector<double> dq, dq_floor, dk, dk_floor, dv, dv_floor;
  std::vector<double> d_w_std, d_w_std_floor, d_w_rec, d_w_rec_floor, d_a, d_a_floor;
};

namespace detail {

// Sums of one (b, h) that cross heads: the naive's fp32 sums and the squares of their floors.
struct HeadSums {
  float gs = 0, gr = 0;  // Σ dQ̂⊙Qf split at D−R
  float rho = 0;         // Σ dO'⊙(V−O)
  double gs_f2 = 0, gr_f2 = 0, rho_f2 = 0;
};

inline double sq(double x) {
  return x * x;
}

}  // namespace detail

/// The naive folded attention in storage precision T over (B,H,T,D) views q, k, v (and dO'
/// d_out for the backward; pass a view with null data for a forward only). Gates and restart
/// values are host pointers.
template <class T, View QV, View KV, View VV, View DOV>
SamePrecisionAttention same_precision_attention(const QV& q, const KV& k, const VV& v, int R,
                                                const Gates& gates, const Restart& restart,
                                                const DOV& d_out) {
  using detail::sq;
  const index_t B = q.extent(0), H = q.extent(1), S = q.extent(2), D = q.extent(3);
  const bool backward = d_out.data() != nullptr;
  const double u = unit_roundoff(dtype_v<T>), u32 = unit_roundoff(DType::f32);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const index_t n_gates = gates.mode == GateMode::per_head ? H : (gates.enabled() ? 1 : 0);
  const auto n4 = static_cast<std::size_t>(B * H * S * D);
  const auto n3 = static_cast<std::size_t>(B * H * S);
  SamePrecisionAttention r;
  for (auto* x : {&r.o, &r.o_floor, &r.o_pre, &r.o_pre_floor}) x->assign(n4, 0.0);
  r.lse.assign(n3, 0.0);
  r.lse_floor.assign(n3, 0.0);
  if (backward)
    for (auto* x : {&r.dq, &r.dq_floor, &r.dk, &r.dk_floor, &r.dv, &r.dv_floor}) x->assign(n4, 0.0);
  std::vector<detail::HeadSums> sums(static_cast<std::size_t>(B * H));

  parallel_for(static_cast<std::size_t>(B * H), [&](std::size_t bh) {
    const index_t b = static_cast<index_t>(bh) / H, h = static_cast<index_t>(bh) % H;
    const int gi = gates.index(static_cast<int>(h));
    const float g_std = gates.enabled() ? effective_gate(gates.w_std[gi], gates.param) : 1.f;
    const float g_rec = gates.enabled() ? effective_gate(gates.w_rec[gi], gates.param) : 1.f;
    const float alpha = restart.enabled() ? effective_restart(restart.a[h]) : 0.f;
    auto gate = [&](index_t d) { return d < D - R ? g_std : g_rec; };
    auto at = [&](index_t t, index_t d) { return static_cast<std::size_t>(t * D + d); };
    auto tt = [&](index_t i, index_t j) { return static_cast<std::size_t>(i * S + j); };
    const std::size_t base4 = bh * static_cast<std::size_t>(S * D);
    const std::size_t base3 = bh * static_cast<std::size_t>(S);

    // Inputs as fp32 (exact), Q̂ rounded to T.
    std::vector<float> qr(S * D), qh(S * D), kf(S * D), vf(S * D), dof(backward ? S * D : 0);
    for (index_t t = 0; t < S; ++t)
      for (index_t d = 0; d < D; ++d) {
        qr[at(t, d)] = static_cast<float>(q(b, h, t, d));
        qh[at(t, d)] = round_to_storage<T>(gate(d) * qr[at(t, d)]);
        kf[at(t, d)] = static_cast<float>(k(b, h, t, d));
        vf[at(t, d)] = static_cast<float>(v(b, h, t, d));
        if (backward) dof[at(t, d)] = static_cast<float>(d_out(b, h, t, d));
      }

    // Forward. z, and zt = ‖q̂⊙k_j‖/√D (the scale of z's fp32 rounding).
    const auto n2 = static_cast<std::size_t>(S * S);
    std::vector<float> z(n2, 0.f), lse(S), o_t(S * D);
    std::vector<double> zt(n2, 0.0), eps_p(n2, 0.0), fo(S * D);
    for (index_t i = 0; i < S; ++i) {
      float m = -INFINITY, zmax = 0.f;
      for (index_t j = 0; j <= i; ++j) {
        float s = 0.f;
        double s2 = 0.0;
        for (index_t d = 0; d < D; ++d) {
          s += qh[at(i, d)] * kf[at(j, d)];
          s2 += sq(static_cast<double>(qh[at(i, d)]) * kf[at(j, d)]) + sq(s);
        }
        z[tt(i, j)] = s * scale;
        zt[tt(i, j)] = std::sqrt(s2) * scale;
        m = std::max(m, z[tt(i, j)]);
        zmax = std::max(zmax, std::abs(z[tt(i, j)]));
      }
      float l = 0.f;
      double l_partial2 = 0.0;  // the partial sums of l, for lse's summation budget
      for (index_t j = 0; j <= i; ++j) {
        l += std::exp(z[tt(i, j)] - m);
        l_partial2 += sq(l);
      }
      lse[i] = m + std::log(l);
      double lse_t2 = l_partial2 / sq(l);
      for (index_t j = 0; j <= i; ++j) {
        lse_t2 += sq(std::exp(z[tt(i, j)] - lse[i]) * zt[tt(i, j)]);
        eps_p[tt(i, j)] = (std::is_same_v<T, float> ? 0.0 : u) + 4 * u32 +
                          u32 * (zt[tt(i, j)] + std::abs(z[tt(i, j)]) + std::abs(lse[i]));
      }
      // With gates, Q̂ = T(g ⊙ Qf) is rounded, and a kernel's g (its own softplus) may put an
      // element on the other side of a rounding boundary than the naive's: lse moves by
      // Σ_d δq̂_d·k̄_d/√D (k̄ = Σ_j P_j K_j, the same δq̂ for every key), budget
      // u·‖q̂ ⊙ k̄‖/√D.
      double qk2 = 0.0;
      if (gates.enabled()) {
        for (index_t d = 0; d < D; ++d) {
          double kbar = 0.0;
          for (index_t j = 0; j <= i; ++j)
            kbar += std::exp(static_cast<double>(z[tt(i, j)]) - lse[i]) * kf[at(j, d)];
          qk2 += sq(u * scale * qh[at(i, d)] * kbar);
        }
      }
      r.lse[base3 + i] = lse[i];
      r.lse_floor[base3 + i] =
          std::sqrt(sq(16.0 * u32 * (1.0 + zmax)) + sq(u32) * lse_t2 + qk2);
      const double rescale2 = sq(u32) * (1.0 + std::log(static_cast<double>(i + 1)));
      // The normaliser l's own summation error scales the whole row of O coherently (a
      // kernel's l is summed in another order than the naive's): u_32·‖partial sums of l‖/l.
      const double norm2 = sq(u32) * l_partial2 / sq(l);
      for (index_t d = 0; d < D; ++d) {
        float acc = 0.f;
        double partial2 = 0.0;
        for (index_t j = 0; j <= i; ++j) {
          acc += round_to_storage<T>(std::exp(z[tt(i, j)] - m) / l) * vf[at(j, d)];
          partial2 += sq(acc);
        }
        double t2 = sq(u32) * partial2;
        for (index_t j = 0; j <= i; ++j) {
          const double p = std::exp(static_cast<double>(z[tt(i, j)]) - lse[i]);
          t2 += sq(eps_p[tt(i, j)] * p * vf[at(j, d)]);
        }
        o_t[at(i, d)] = round_to_storage<T>(acc);
        fo[at(i, d)] = std::sqrt(t2 + (sq(u) + rescale2 + norm2) * sq(acc));
        const float mixed =
            round_to_storage<T>((1.f - alpha) * o_t[at(i, d)] + alpha * vf[at(i, d)]);
        r.o_pre[base4 + at(i, d)] = o_t[at(i, d)];
        r.o_pre_floor[base4 + at(i, d)] = fo[at(i, d)];
        r.o[base4 + at(i, d)] = restart.enabled() ? mixed : o_t[at(i, d)];
        r.o_floor[base4 + at(i, d)] = restart.enabled()
                                          ? std::sqrt(sq((1.0 - alpha) * fo[at(i, d)]) +
                                                      sq(u * alpha * vf[at(i, d)]) + sq(u * mixed))
                                          : fo[at(i, d)];
      }
    }
    if (!backward) return;

    // Backward. P (rounded), dP', Δ, dS and their floors.
    std::vector<float> p(n2, 0.f), dp(n2, 0.f), ds(n2, 0.f);
    std::vector<double> pf(n2, 0.0), dpt(n2, 0.0), ds_f2(n2, 0.0), fdelta(S, 0.0);
    detail::HeadSums& hs = sums[bh];
    // A kernel's backward forms P from the lse its forward stored, which carries up to that
    // lse's floor of error: P's relative error there is ε_P plus floor(lse_i).
    auto eps_b = [&](index_t i, index_t j) { return eps_p[tt(i, j)] + r.lse_floor[base3 + i]; };
    for (index_t i = 0; i < S; ++i) {
      float delta = 0.f;
      double fd = 0.0;  // worst-case (L1) budget, see the top of this header
      for (index_t d = 0; d < D; ++d) fd += u * std::abs(dof[at(i, d)] * o_t[at(i, d)]);
      for (index_t j = 0; j <= i; ++j) {
        pf[tt(i, j)] = std::exp(z[tt(i, j)] - lse[i]);
        p[tt(i, j)] = round_to_storage<T>(static_cast<float>(pf[tt(i, j)]));
        float s = 0.f;
        double s2 = 0.0;
        for (index_t d = 0; d < D; ++d) {
          s += dof[at(i, d)] * vf[at(j, d)];
          s2 += sq(static_cast<double>(dof[at(i, d)]) * vf[at(j, d)]) + sq(s);
        }
        dp[tt(i, j)] = s;
        dpt[tt(i, j)] = std::sqrt(s2);
        delta += p[tt(i, j)] * s;
        fd += pf[tt(i, j)] * ((u + eps_b(i, j)) * std::abs(s) + u32 * dpt[tt(i, j)]);
      }
      fdelta[i] = fd;
      for (index_t j = 0; j <= i; ++j) {
        ds[tt(i, j)] = round_to_storage<T>(p[tt(i, j)] * (dp[tt(i, j)] - delta));
        ds_f2[tt(i, j)] = sq(u * ds[tt(i, j)]) + sq(u32 * pf[tt(i, j)] * dpt[tt(i, j)]) +
                          sq(eps_b(i, j) * pf[tt(i, j)] * (dp[tt(i, j)] - delta));
      }
      float rho = 0.f;
      for (index_t d = 0; d < D; ++d) {
        rho += dof[at(i, d)] * (vf[at(i, d)] - o_t[at(i, d)]);
        hs.rho_f2 +=
            sq(dof[at(i, d)]) * (sq(fo[at(i, d)]) + sq(u32 * (vf[at(i, d)] - o_t[at(i, d)]))) +
            sq(u32 * (hs.rho + rho));
      }
      hs.rho += rho;
    }
    const double post = (1.0 - alpha) * scale;
    for (index_t i = 0; i < S; ++i) {   // dQ̂, dQf, gate sums
      double coh_s = 0.0, coh_r = 0.0;  // Σ_{d in part} Qf_id Σ_j P_ij K_jd
      for (index_t d = 0; d < D; ++d) {
        float acc = 0.f;
        double ind2 = 0.0, pk = 0.0;
        for (index_t j = 0; j <= i; ++j) {
          acc += ds[tt(i, j)] * kf[at(j, d)];
          ind2 += sq(kf[at(j, d)]) * ds_f2[tt(i, j)] + sq(u32 * acc);
          pk += pf[tt(i, j)] * kf[at(j, d)];
        }
        const float dqh = (1.f - alpha) * scale * acc;
        r.dq[base4 + at(i, d)] = round_to_storage<T>(gate(d) * dqh);
        const double fdq = post * std::sqrt(ind2 + sq(fdelta[i] * pk));
        r.dq_floor[base4 + at(i, d)] =
            std::sqrt(sq(gate(d) * fdq) + sq(u * r.dq[base4 + at(i, d)]));
        const double qv = qr[at(i, d)];
        if (d < D - R) {
          hs.gs += dqh * qr[at(i, d)];
          hs.gs_f2 += sq(qv * post) * ind2 + sq(u32 * hs.gs);
          coh_s += qv * pk;
        } else {
          hs.gr += dqh * qr[at(i, d)];
          hs.gr_f2 += sq(qv * post) * ind2 + sq(u32 * hs.gr);
          coh_r += qv * pk;
        }
      }
      hs.gs_f2 += sq(post * fdelta[i] * coh_s);
      hs.gr_f2 += sq(post * fdelta[i] * coh_r);
    }
    for (index_t j = 0; j < S; ++j)  // dKf, dV
      for (index_t d = 0; d < D; ++d) {
        float dk = 0.f, dv = 0.f;
        double k2 = 0.0, v2 = 0.0;
        for (index_t i = j; i < S; ++i) {
          dk += ds[tt(i, j)] * qh[at(i, d)];
          dv += p[tt(i, j)] * dof[at(i, d)];
          k2 += sq(qh[at(i, d)]) * (ds_f2[tt(i, j)] + sq(pf[tt(i, j)] * fdelta[i])) + sq(u32 * dk);
          v2 += sq(dof[at(i, d)] * pf[tt(i, j)] * eps_b(i, j)) + sq(u32 * dv);
        }
        const double ad = static_cast<double>(alpha) * dof[at(j, d)];
        r.dk[base4 + at(j, d)] = round_to_storage<T>((1.f - alpha) * scale * dk);
        r.dk_floor[base4 + at(j, d)] = std::sqrt(sq(post) * k2 + sq(u * r.dk[base4 + at(j, d)]));
        r.dv[base4 + at(j, d)] = round_to_storage<T>((1.f - alpha) * dv + alpha * dof[at(j, d)]);
        r.dv_floor[base4 + at(j, d)] =
            std::sqrt(sq(1.0 - alpha) * v2 + sq(u * ad) + sq(u * r.dv[base4 + at(j, d)]));
      }
  });
  if (!backward) return r;

  // Parameter gradients: per-head sums in a fixed order (b, then h), in fp32.
  r.d_w_std.assign(static_cast<std::size_t>(n_gates), 0.0);
  r.d_w_rec.assign(static_cast<std::size_t>(n_gates), 0.0);
  r.d_w_std_floor.assign(static_cast<std::size_t>(n_gates), 0.0);
  r.d_w_rec_floor.assign(static_cast<std::size_t>(n_gates), 0.0);
  r.d_a.assign(static_cast<std::size_t>(H), 0.0);
  r.d_a_floor.assign(static_cast<std::size_t>(H), 0.0);
  std::vector<float> gs(static_cast<std::size_t>(n_gates), 0.f), gr(gs),
      rho(static_cast<std::size_t>(H), 0.f);
  std::vector<double> gs_f2(gs.size(), 0.0), gr_f2(gs.size(), 0.0), rho_f2(rho.size(), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      const auto& hs = sums[static_cast<std::size_t>(b * H + h)];
      if (n_gates > 0) {
        const auto gi = static_cast<std::size_t>(gates.index(static_cast<int>(h)));
        gs[gi] += hs.gs;
        gr[gi] += hs.gr;
        gs_f2[gi] += hs.gs_f2;
        gr_f2[gi] += hs.gr_f2;
      }
      rho[static_cast<std::size_t>(h)] += hs.rho;
      rho_f2[static_cast<std::size_t>(h)] += hs.rho_f2;
    }
  for (std::size_t i = 0; i < gs.size(); ++i) {
    const double ds = effective_gate_grad(gates.w_std[i], gates.param);
    const double dr = effective_gate_grad(gates.w_rec[i], gates.param);
    r.d_w_std[i] = static_cast<float>(ds * gs[i]);
    r.d_w_rec[i] = static_cast<float>(dr * gr[i]);
    r.d_w_std_floor[i] = std::abs(ds) * std::sqrt(gs_f2[i]);
    r.d_w_rec_floor[i] = std::abs(dr) * std::sqrt(gr_f2[i]);
  }
  for (index_t h = 0; h < H; ++h) {
    const auto i = static_cast<std::size_t>(h);
    const double da = restart.enabled() ? effective_restart_grad(restart.a[h]) : 0.0;
    r.d_a[i] = static_cast<float>(da * rho[i]);
    r.d_a_floor[i] = da * std::sqrt(rho_f2[i]);
  }
  return r;
}

}  // namespace ra::test
