// tests/consumer/main.cpp — uses the installed package: folded views of a fused (B,T,3C)
// buffer, a reciprocal-attention node with per-layer gates evaluated on the CPU device, and a
// naive double loop that must agree with it. Exits non-zero on any mismatch.
#include <ra/ra.hpp>  // core + expr + the CPU backend, as a downstream user includes it

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  constexpr ra::index_t B = 2, T = 5, H = 2, D = 32, R = 4, C = H * D;
  std::vector<float> fused(B * T * 3 * C);
  unsigned state = 12345u;  // a fixed LCG: the check is about the package, not the numerics
  for (float& x : fused) {
    state = state * 1664525u + 1013904223u;
    x = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) - 0.5f;
  }
  std::vector<float> out(B * T * C, NAN);  // poisoned: an unwritten element fails the check

  auto fused_v = ra::make_view(fused.data(), ra::shape(B, T, 3 * C));  // (B,T,3C)
  auto qkv = ra::folded_views(fused_v, H, ra::Int<D>{});  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  auto o = ra::heads(ra::make_view(out.data(), ra::shape(B, T, C)), H,
                     ra::Int<D>{});  // (B,H,T,D) strides (TC,D,C,1)
  const float w_std = 0.9f, w_rec = 0.1f;
  auto node =
      ra::folded_attention<ra::Rank<R>>(qkv.q, qkv.k, qkv.v, ra::gates::per_layer(&w_std, &w_rec));
  ra::eval(o, node, ra::cpu::device{});

  double worst = 0.0;
  for (ra::index_t b = 0; b < B; ++b)
    for (ra::index_t h = 0; h < H; ++h)
      for (ra::index_t i = 0; i < T; ++i) {
        auto at = [&](int block, ra::index_t t, ra::index_t d) {
          return static_cast<double>(fused[(b * T + t) * 3 * C + block * C + h * D + d]);
        };
        std::vector<double> p(i + 1);
        double m = -INFINITY, sum = 0.0;
        for (ra::index_t j = 0; j <= i; ++j) {
          double s = 0.0;
          for (ra::index_t d = 0; d < D; ++d)
            s += (d < D - R ? w_std : w_rec) * at(0, i, d) * at(1, j, d);
          p[j] = s / std::sqrt(static_cast<double>(D));
          m = std::fmax(m, p[j]);
        }
        for (double& x : p) sum += (x = std::exp(x - m));
        for (ra::index_t d = 0; d < D; ++d) {
          double ref = 0.0;
          for (ra::index_t j = 0; j <= i; ++j) ref += p[j] / sum * at(2, j, d);
          const double err = std::fabs(static_cast<double>(o(b, h, i, d)) - ref);
          worst = std::isnan(err) ? INFINITY : std::fmax(worst, err);
        }
      }
  std::printf(
      "consumer: ra %d.%d.%d, folded attention B=%ld T=%ld H=%ld D=%ld R=%ld, "
      "max |cpu - naive| = %.3g\n",
      RA_VERSION_MAJOR, RA_VERSION_MINOR, RA_VERSION_PATCH, static_cast<long>(B),
      static_cast<long>(T), static_cast<long>(H), static_cast<long>(D), static_cast<long>(R),
      worst);
  return worst <= 1e-5 ? 0 : 1;  // fp32 output of a double computation: ~1e-7 expected
}
