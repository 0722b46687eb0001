// tests/tools/tolerance_table.cpp — how large the old GPU tolerances and the precision rule's
// bounds are, as multiples of the naive same-precision error, for one attention problem
// (B = 2, H = 3, T = 130, D = 64, R = 4, per-head gates, self-restart): the numbers of the table
// in docs/NOTES.md. Built on demand: cmake --build build --target ra_tolerance_table.
#include <ra/cpu.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include "../common/same_precision_attention.hpp"
using namespace ra;
template <class T>
void run(const char* name) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> N(0, 1);
  std::uniform_real_distribution<double> U(0.05, 1.5), A(0, 0.5);
  const index_t B = 2, H = 3, S = 130, D = 64;
  const int R = 4;
  const auto shp = shape(B, H, S, D);
  const std::size_t n = B * H * S * D;
  std::vector<T> q(n), k(n), v(n), dO(n);
  for (auto* x : {&q, &k, &v, &dO})
    for (auto& e : *x) e = convert<T>(N(rng));
  std::vector<float> ws(H), wr(H), a(H);
  for (index_t h = 0; h < H; ++h) {
    ws[h] = U(rng);
    wr[h] = U(rng);
    a[h] = A(rng);
  }
  std::vector<double> qd(n), kd(n), vd(n), dod(n);
  for (std::size_t i = 0; i < n; ++i) {
    qd[i] = convert<double>(q[i]);
    kd[i] = convert<double>(k[i]);
    vd[i] = convert<double>(v[i]);
    dod[i] = convert<double>(dO[i]);
  }
  Gates g = gates::per_head(ws.data(), wr.data());
  Restart r = restart::per_head(a.data());
  auto nx = folded_attention(make_view(qd.data(), shp), make_view(kd.data(), shp),
                             make_view(vd.data(), shp), R, g, causal, r);
  std::vector<double> o(n), dq(n), dk(n), dv(n);
  std::vector<float> lse(B * H * S), dws(H), dwr(H), da(H);
  cpu::attention_forward(nx, make_view(o.data(), shp), lse.data());
  cpu::attention_backward(nx, make_view(dod.data(), shp), make_view(dq.data(), shp),
                          make_view(dk.data(), shp), make_view(dv.data(), shp),
                          {dws.data(), dwr.data(), da.data()});
  auto nv = test::same_precision_attention<T>(make_view(q.data(), shp), make_view(k.data(), shp),
                                              make_view(v.data(), shp), R, g, r,
                                              make_view(dO.data(), shp));
  auto rel = [&](const std::vector<double>& x, const std::vector<double>& ref) {
    double e = 0, s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      e += (x[i] - ref[i]) * (x[i] - ref[i]);
      s += ref[i] * ref[i];
    }
    return std::sqrt(e / s);
  };
  double u = unit_roundoff(dtype_v<T>);
  auto allow = [&](const std::vector<double>& x, const std::vector<double>& ref,
                   const std::vector<double>& f) {
    double e = 0, ff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      e += (x[i] - ref[i]) * (x[i] - ref[i]);
      ff += f[i] * f[i];
    }
    return (2 * std::sqrt(e) + std::sqrt(ff)) / std::sqrt(e);
  };
  printf(
      "%s new total allowed / naive error: O %.1f dQf %.1f dKf %.1f dV %.1f; d w_std %.1f, d a "
      "%.1f\n",
      name, allow(nv.o, o, nv.o_floor), allow(nv.dq, dq, nv.dq_floor),
      allow(nv.dk, dk, nv.dk_floor), allow(nv.dv, dv, nv.dv_floor),
      (2 * std::abs(nv.d_w_std[0] - dws[0]) + nv.d_w_std_floor[0]) /
          std::abs(nv.d_w_std[0] - dws[0]),
      (2 * std::abs(nv.d_a[0] - da[0]) + nv.d_a_floor[0]) / std::abs(nv.d_a[0] - da[0]));
  printf("%s O: naive relL2 %.3g, old tol relL2 %.3g (%.0fx)\n", name, rel(nv.o, o),
         std::max(4 * u, 1e-5), std::max(4 * u, 1e-5) / rel(nv.o, o));
  double tb = std::max(8 * u, 2e-5);
  printf("%s dQf %.3g dKf %.3g dV %.3g: old tol %.3g (%.0fx %.0fx %.0fx)\n", name, rel(nv.dq, dq),
         rel(nv.dk, dk), rel(nv.dv, dv), tb, tb / rel(nv.dq, dq), tb / rel(nv.dk, dk),
         tb / rel(nv.dv, dv));
  // gate grads: old tol = max(8u,1e-5)*sum|terms| + 8u sqrt(BHTD) + 1e-6; sum|terms| approx via
  // CPU: Σ|dQhat*Qf|
  double l1 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    index_t d = i % D;
    index_t h = (i / (D * S)) % H;
    double gg = d < D - R ? effective_gate(ws[h], GateParam::clamp)
                          : effective_gate(wr[h], GateParam::clamp);
    if (d < D - R && h == 0) l1 += std::abs(dq[i] / gg * qd[i]);
  }
  double told = std::max(8 * u, 1e-5) * l1 + 8 * u * std::sqrt(double(B * H * S * D)) + 1e-6;
  printf("%s d w_std[0]: naive |err| %.3g, old tol %.3g (%.0fx), |grad| %.3g\n", name,
         std::abs(nv.d_w_std[0] - dws[0]), told, told / std::abs(nv.d_w_std[0] - dws[0]),
         std::abs(dws[0]));
}
int main() {
  run<bf16>("bf16");
  run<fp16>("fp16");
  run<float>("fp32");
}
