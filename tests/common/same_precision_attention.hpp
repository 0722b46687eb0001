// tests/common/same_precision_attention.hpp — folded attention, forward and backward, as a naive
// implementation in the storage precision T would compute it: the yardstick of the precision
// rule (precision.hpp) for every attention kernel, CPU and GPU.
//
// Storage type T (float, fp16, bf16); every sum accumulates in fp32, sequentially; what a
// straightforward implementation stores is rounded to T:
//   forward   Q̂ = T(g ⊙ Qf);  z = Q̂·Kfᵀ/√D (fp32);  lse = m + ln Σ e^(z−m) (fp32);
//             P = T(softmax(z));  O = T(P·V);  O' = T((1 − α)·O + α·V)
//   backward  P = e^(z − lse) (fp32);  dP' = dO'·Vᵀ;  Δ = rowsum(P ⊙ dP') (fp32);
//             dS = T(P ⊙ (dP' − Δ));  dV = T((1 − α)·T(P)ᵀ·dO' + α·dO');
//             dQ̂ = (1 − α)·dS·Kf/√D (fp32);  dQf = T(g ⊙ dQ̂);  dKf = T((1 − α)·dSᵀ·Q̂/√D);
//             d w_std = g'(w_std)·Σ_{b,t,d<D−R} dQ̂ ⊙ Qf (w_rec likewise, per layer: Σ_h);
//             d a_h = clamp'(a_h)·Σ_{b,t} dO' ⊙ (V − O)
// and, beside each output, its floor u·‖terms‖₂ (precision.hpp): u of T times the L2 norm of
// the elementary products summed into it. lse is an fp32 quantity whatever T is; its floor is
// 16 fp32 roundoffs of (1 + the largest |logit| of its row), the error budget of the GPU's
// approximate exp2/log2 (2^-22 relative each).
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
  std::vector<double> o, o_floor;      // O' (after the restart mix)
  std::vector<double> o_pre;           // O (before it; = O' without restart)
  std::vector<double> lse, lse_floor;  // natural-log log-sum-exp of the scaled logits
  std::vector<double> dq, dq_floor, dk, dk_floor, dv, dv_floor;
  std::vector<double> d_w_std, d_w_std_floor, d_w_rec, d_w_rec_floor, d_a, d_a_floor;
};

namespace detail {

// One (b, h) of the naive computation; sums that cross heads are returned per head.
struct HeadSums {
  float gs = 0, gr = 0;         // Σ dQ̂⊙Qf split at D−R (fp32, as the naive sums)
  float rho = 0;                // Σ dO'⊙(V−O)
  double gs_f2 = 0, gr_f2 = 0;  // Σ terms² of each (for the floors)
  double rho_f2 = 0;
};

}  // namespace detail

/// The naive folded attention in storage precision T over (B,H,T,D) views q, k, v (and dO'
/// d_out for the backward; pass a view with null data for a forward only). Gates and restart
/// values are host pointers.
template <class T, View QV, View KV, View VV, View DOV>
SamePrecisionAttention same_precision_attention(const QV& q, const KV& k, const VV& v, int R,
                                                const Gates& gates, const Restart& restart,
                                                const DOV& d_out) {
  const index_t B = q.extent(0), H = q.extent(1), S = q.extent(2), D = q.extent(3);
  const bool backward = d_out.data() != nullptr;
  const double u = unit_roundoff(dtype_v<T>), u32 = unit_roundoff(DType::f32);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const index_t n_gates = gates.mode == GateMode::per_head ? H : (gates.enabled() ? 1 : 0);
  const auto n4 = static_cast<std::size_t>(B * H * S * D), n3 = static_cast<std::size_t>(B * H * S);
  SamePrecisionAttention r;
  r.o.assign(n4, 0.0);
  r.o_floor.assign(n4, 0.0);
  r.o_pre.assign(n4, 0.0);
  r.lse.assign(n3, 0.0);
  r.lse_floor.assign(n3, 0.0);
  if (backward) {
    for (auto* x : {&r.dq, &r.dq_floor, &r.dk, &r.dk_floor, &r.dv, &r.dv_floor}) x->assign(n4, 0.0);
  }
  std::vector<detail::HeadSums> sums(static_cast<std::size_t>(B * H));

  parallel_for(static_cast<std::size_t>(B * H), [&](std::size_t bh) {
    const index_t b = static_cast<index_t>(bh) / H, h = static_cast<index_t>(bh) % H;
    const int gi = gates.index(static_cast<int>(h));
    const float g_std = gates.enabled() ? effective_gate(gates.w_std[gi], gates.param) : 1.f;
    const float g_rec = gates.enabled() ? effective_gate(gates.w_rec[gi], gates.param) : 1.f;
    const float alpha = restart.enabled() ? effective_restart(restart.a[h]) : 0.f;
    auto gate = [&](index_t d) { return d < D - R ? g_std : g_rec; };
    auto at = [&](index_t t, index_t d) { return static_cast<std::size_t>(t * D + d); };
    const std::size_t base4 = static_cast<std::size_t>(bh) * static_cast<std::size_t>(S * D);
    const std::size_t base3 = static_cast<std::size_t>(bh) * static_cast<std::size_t>(S);

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

    // Forward: z, lse, P rounded, O, O'.
    std::vector<float> z(static_cast<std::size_t>(S * S), 0.f), lse(S), o_t(S * D);
    for (index_t i = 0; i < S; ++i) {
      float m = -INFINITY, zmax = 0.f;
      for (index_t j = 0; j <= i; ++j) {
        float s = 0.f;
        for (index_t d = 0; d < D; ++d) s += qh[at(i, d)] * kf[at(j, d)];
        z[i * S + j] = s * scale;
        m = std::max(m, z[i * S + j]);
        zmax = std::max(zmax, std::abs(z[i * S + j]));
      }
      float l = 0.f;
      for (index_t j = 0; j <= i; ++j) l += std::exp(z[i * S + j] - m);
      lse[i] = m + std::log(l);
      r.lse[base3 + i] = lse[i];
      r.lse_floor[base3 + i] = 16.0 * u32 * (1.0 + zmax);
      for (index_t d = 0; d < D; ++d) {
        float acc = 0.f;
        double t2 = 0.0;
        for (index_t j = 0; j <= i; ++j) {
          const float p = round_to_storage<T>(std::exp(z[i * S + j] - m) / l);
          acc += p * vf[at(j, d)];
          t2 += static_cast<double>(p) * vf[at(j, d)] * p * vf[at(j, d)];
        }
        o_t[at(i, d)] = round_to_storage<T>(acc);
        const float mixed =
            round_to_storage<T>((1.f - alpha) * o_t[at(i, d)] + alpha * vf[at(i, d)]);
        const double av = static_cast<double>(alpha) * vf[at(i, d)];
        r.o_pre[base4 + at(i, d)] = o_t[at(i, d)];
        r.o[base4 + at(i, d)] = restart.enabled() ? mixed : o_t[at(i, d)];
        r.o_floor[base4 + at(i, d)] = u * std::sqrt((1.0 - alpha) * (1.0 - alpha) * t2 + av * av);
      }
    }
    if (!backward) return;

    // Backward.
    std::vector<float> p(static_cast<std::size_t>(S * S), 0.f),
        ds(static_cast<std::size_t>(S * S), 0.f);
    detail::HeadSums& hs = sums[bh];
    for (index_t i = 0; i < S; ++i) {
      std::vector<float> dp(static_cast<std::size_t>(i + 1));
      float delta = 0.f;
      for (index_t j = 0; j <= i; ++j) {
        p[i * S + j] = std::exp(z[i * S + j] - lse[i]);
        float s = 0.f;
        for (index_t d = 0; d < D; ++d) s += dof[at(i, d)] * vf[at(j, d)];
        dp[j] = s;
        delta += p[i * S + j] * s;
      }
      for (index_t j = 0; j <= i; ++j)
        ds[i * S + j] = round_to_storage<T>(p[i * S + j] * (dp[j] - delta));
      float rho = 0.f;
      double rho_f2 = 0.0;
      for (index_t d = 0; d < D; ++d) {
        const float term = dof[at(i, d)] * (vf[at(i, d)] - o_t[at(i, d)]);
        rho += term;
        rho_f2 += static_cast<double>(term) * term;
      }
      hs.rho += rho;
      hs.rho_f2 += rho_f2;
    }
    const double post = (1.0 - alpha) * scale;
    for (index_t i = 0; i < S; ++i)  // dQ̂, dQf, gate sums
      for (index_t d = 0; d < D; ++d) {
        float acc = 0.f;
        double t2 = 0.0;
        for (index_t j = 0; j <= i; ++j) {
          acc += ds[i * S + j] * kf[at(j, d)];
          t2 += static_cast<double>(ds[i * S + j]) * kf[at(j, d)] * ds[i * S + j] * kf[at(j, d)];
        }
        const float dqh = (1.f - alpha) * scale * acc;
        r.dq[base4 + at(i, d)] = round_to_storage<T>(gate(d) * dqh);
        r.dq_floor[base4 + at(i, d)] = u * gate(d) * post * std::sqrt(t2);
        const double gterm2 = post * post * t2 * qr[at(i, d)] * qr[at(i, d)];
        if (d < D - R) {
          hs.gs += dqh * qr[at(i, d)];
          hs.gs_f2 += gterm2;
        } else {
          hs.gr += dqh * qr[at(i, d)];
          hs.gr_f2 += gterm2;
        }
      }
    for (index_t j = 0; j < S; ++j)  // dKf, dV
      for (index_t d = 0; d < D; ++d) {
        float dk = 0.f, dv = 0.f;
        double k2 = 0.0, v2 = 0.0;
        for (index_t i = j; i < S; ++i) {
          const float pt = round_to_storage<T>(p[i * S + j]);
          dk += ds[i * S + j] * qh[at(i, d)];
          dv += pt * dof[at(i, d)];
          k2 += static_cast<double>(ds[i * S + j]) * qh[at(i, d)] * ds[i * S + j] * qh[at(i, d)];
          v2 += static_cast<double>(pt) * dof[at(i, d)] * pt * dof[at(i, d)];
        }
        const double ad = static_cast<double>(alpha) * dof[at(j, d)];
        r.dk[base4 + at(j, d)] = round_to_storage<T>((1.f - alpha) * scale * dk);
        r.dk_floor[base4 + at(j, d)] = u * post * std::sqrt(k2);
        r.dv[base4 + at(j, d)] = round_to_storage<T>((1.f - alpha) * dv + alpha * dof[at(j, d)]);
        r.dv_floor[base4 + at(j, d)] = u * std::sqrt((1.0 - alpha) * (1.0 - alpha) * v2 + ad * ad);
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
    r.d_w_std_floor[i] = u * std::abs(ds) * std::sqrt(gs_f2[i]);
    r.d_w_rec_floor[i] = u * std::abs(dr) * std::sqrt(gr_f2[i]);
  }
  for (index_t h = 0; h < H; ++h) {
    const auto i = static_cast<std::size_t>(h);
    const double da = restart.enabled() ? effective_restart_grad(restart.a[h]) : 0.0;
    r.d_a[i] = static_cast<float>(da * rho[i]);
    r.d_a_floor[i] = u * da * std::sqrt(rho_f2[i]);
  }
  return r;
}

}  // namespace ra::test
