// examples/gpt2_attention_block.cpp — a GPT-2 attention block (C = 768, H = 12, D = 64) in
// baseline (R = 0) and reciprocal (R = 4, per-layer gates) form on the CPU backend.
//
// Both blocks are loaded from the same GPT-2-initialised baseline weights (the RA block
// through repack_qkv), run forward and backward on a random x (B, T, C), and the program
// prints how closely identities I1-I4 of design.md §2 hold and how long each step took.
// It exits with status 1 when an identity misses its tolerance.
//
//   gpt2_attention_block [--B 1] [--T 128] [--R 4] [--dtype f32|f64] [--seed 1]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/ra.hpp>

namespace {

using ra::index_t;
using Clock = std::chrono::steady_clock;

struct Options {
  index_t B = 1, T = 128;
  int R = 4;
  std::string dtype = "f32";
  std::uint64_t seed = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    // Sizes up to 2^16: the block plans (B·T, 3C) buffers and (T, T) scores per head.
    if (a == "--B" && has_value) {
      o.B = ra::parse_integer<index_t>("gpt2_attention_block: --B", argv[++i], 1, 1 << 16);
    } else if (a == "--T" && has_value) {
      o.T = ra::parse_integer<index_t>("gpt2_attention_block: --T", argv[++i], 1, 1 << 16);
    } else if (a == "--R" && has_value) {
      o.R = ra::parse_integer<int>("gpt2_attention_block: --R", argv[++i], 0, 63);
    } else if (a == "--dtype" && has_value) {
      o.dtype = argv[++i];
    } else if (a == "--seed" && has_value) {
      o.seed = ra::parse_integer<std::uint64_t>("gpt2_attention_block: --seed", argv[++i]);
    } else {
      throw ra::error(
          "usage: gpt2_attention_block [--B n] [--T n] [--R r] [--dtype f32|f64] "
          "[--seed s]; unknown argument '" +
          a + "'");
    }
  }
  ra::require_arg(o.dtype == "f32" || o.dtype == "f64", "gpt2_attention_block", "--dtype", o.dtype,
                  "f32 or f64");
  return o;
}

// Runs f, prints its wall time under `name`, returns what f returns.
template <class F>
auto timed(const char* name, F&& f) {
  const auto t0 = Clock::now();
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    std::printf("  %-34s %9.1f ms\n", name,
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  } else {
    auto r = f();
    std::printf("  %-34s %9.1f ms\n", name,
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    return r;
  }
}

// max |a - b| and max |b| over two equally sized buffers.
template <class T>
std::pair<double, double> max_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double e = 0.0, m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    e = std::isfinite(d) ? std::max(e, d) : std::numeric_limits<double>::infinity();
    m = std::max(m, std::abs(double(b[i])));
  }
  return {e, m};
}

// One identity's outcome: the largest error, the scale of the values, the tolerance
// (relative to 1 + scale) and a note.
struct Outcome {
  double err = 0.0, scale = 0.0, tol = 0.0;
  const char* note = "";
};

struct Report {
  int failures = 0;
  // Runs `check`, prints its outcome and time, counts a failure when it misses its tolerance.
  template <class F>
  void identity(const char* name, const char* what, F&& check) {
    const auto t0 = Clock::now();
    const Outcome o = check();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const double bound = o.tol * (1.0 + o.scale);
    const bool ok = o.err <= bound;
    failures += ok ? 0 : 1;
    std::printf(
        "  %-3s %-46s max |error| %-10.3g (max |value| %-7.3g, tolerance %-9.3g) %-6s "
        "%7.1f ms %s\n",
        name, what, o.err, o.scale, bound, ok ? "ok" : "FAILED", ms, o.note);
  }
};

template <class T>
int run(const Options& opt) {
  constexpr index_t C = 768, H = 12, D = C / H;
  const index_t B = opt.B, S = opt.T;
  const int R = opt.R;
  // Identities hold up to rounding of the storage type: a few dozen units of roundoff of
  // a sum of ~C products; I3 also carries the clamp floor g_rec = 1e-8.
  const double eps = std::numeric_limits<T>::epsilon(), tol = 64 * eps;
  std::printf(
      "GPT-2 attention block on the CPU backend: B=%lld T=%lld C=%lld H=%lld D=%lld "
      "R=%d, %s storage, double compute\n",
      (long long)B, (long long)S, (long long)C, (long long)H, (long long)D, R, opt.dtype.c_str());

  // A GPT-2-initialised baseline: W_q, W_k, W_v, W_o ~ N(0, 0.02), W_o residual-scaled.
  std::printf("\nsteps:\n");
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal(0.0, 0.02);
  std::vector<T> w[4], b[4];
  for (int i = 0; i < 4; ++i) {
    w[i].resize(C * C);
    b[i].resize(C);
    for (T& v : w[i]) v = T(normal(rng) * (i == 3 ? 1.0 / std::sqrt(24.0) : 1.0));
    for (T& v : b[i]) v = T(normal(rng));
  }
  auto mat = [&](int i) {
    return ra::make_view(static_cast<const T*>(w[i].data()), ra::shape(C, C));
  };
  auto vec = [&](int i) { return ra::make_view(static_cast<const T*>(b[i].data()), ra::shape(C)); };

  const ra::AttentionBlockConfig base_cfg{C,     H,   0, ra::GateMode::none, ra::GateParam::clamp,
                                          false, true};
  const ra::AttentionBlockConfig ra_cfg{
      C, H, R, ra::GateMode::per_layer, ra::GateParam::clamp, false, true};
  ra::nn::AttentionBlock<T> base(base_cfg), rab(ra_cfg);
  timed("load baseline (R = 0)", [&] {
    base.load_baseline(mat(0), mat(1), mat(2), vec(0), vec(1), vec(2), mat(3), vec(3));
  });
  timed("load + repack (RA)",
        [&] { rab.load_baseline(mat(0), mat(1), mat(2), vec(0), vec(1), vec(2), mat(3), vec(3)); });

  std::vector<T> x(B * S * C), dy(B * S * C);
  std::normal_distribution<double> unit(0.0, 1.0);
  for (T& v : x) v = T(unit(rng));
  for (T& v : dy) v = T(unit(rng));
  const auto xv = ra::make_view(static_cast<const T*>(x.data()), ra::shape(B, S, C));    // (B,T,C)
  const auto dyv = ra::make_view(static_cast<const T*>(dy.data()), ra::shape(B, S, C));  // (B,T,C)
  std::vector<T> y_base(x.size()), y_ra(x.size()), dx_base(x.size()), dx_ra(x.size());
  const ra::cpu::device cpu;
  timed("forward, baseline",
        [&] { base.forward(xv, ra::make_view(y_base.data(), ra::shape(B, S, C)), cpu); });
  timed("forward, RA",
        [&] { rab.forward(xv, ra::make_view(y_ra.data(), ra::shape(B, S, C)), cpu); });
  timed("backward, baseline",
        [&] { base.backward(dyv, ra::make_view(dx_base.data(), ra::shape(B, S, C)), cpu); });
  timed("backward, RA",
        [&] { rab.backward(dyv, ra::make_view(dx_ra.data(), ra::shape(B, S, C)), cpu); });
  std::printf("  RA gate gradients: d w_std = %.6g, d w_rec = %.6g\n", rab.gradients().w_std[0],
              rab.gradients().w_rec[0]);

  Report report;
  std::printf("\nidentities (design.md section 2):\n");
  const auto& fused_buf = rab.buffers().fused;  // (B,T,3C) of the last RA call
  const auto fused = ra::make_view(fused_buf.data(), ra::shape(B, S, 3 * C));  // (B,T,3C)
  const auto qkv = ra::folded_views(fused, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)

  report.identity("I1", "gates once on Q = sqrt(g) on Q and K", [&] {
    const auto& prm = rab.parameters();
    const double g_std = ra::effective_gate(prm.w_std[0], ra::GateParam::clamp);
    const double g_rec = ra::effective_gate(prm.w_rec[0], ra::GateParam::clamp);
    std::vector<T> qs(B * H * S * D), ks(qs.size()), o_ra(qs.size()), o_plain(qs.size());
    const auto shp = ra::shape(B, H, S, D);
    auto qsv = ra::make_view(qs.data(), shp);  // (B,H,T,D) strides (HTD,TD,D,1)
    auto ksv = ra::make_view(ks.data(), shp);  // (B,H,T,D)
    for (index_t bb = 0; bb < B; ++bb)
      for (index_t h = 0; h < H; ++h)
        for (index_t t = 0; t < S; ++t)
          for (index_t d = 0; d < D; ++d) {
            const double s = std::sqrt(d < D - R ? g_std : g_rec);
            qsv(bb, h, t, d) = T(double(qkv.q(bb, h, t, d)) * s);
            ksv(bb, h, t, d) = T(double(qkv.k(bb, h, t, d)) * s);
          }
    ra::eval(ra::make_view(o_ra.data(), shp),
             ra::folded_attention(qkv.q, qkv.k, qkv.v, R,
                                  ra::gates::per_layer(&prm.w_std[0], &prm.w_rec[0])),
             cpu);
    ra::eval(ra::make_view(o_plain.data(), shp),
             ra::folded_attention(ra::make_view(static_cast<const T*>(qs.data()), shp),
                                  ra::make_view(static_cast<const T*>(ks.data()), shp), qkv.v, 0),
             cpu);
    const auto [e, m] = max_diff(o_ra, o_plain);
    return Outcome{e, m, tol};
  });

  report.identity("I2", "gates 1 / 1 = plain attention on the split", [&] {
    ra::nn::AttentionBlock<T> ones(ra_cfg), plain(base_cfg);
    ones.parameters() = rab.parameters();
    ones.parameters().w_std = {1.f};
    ones.parameters().w_rec = {1.f};
    plain.parameters() = rab.parameters();
    plain.parameters().w_std.clear();
    plain.parameters().w_rec.clear();
    std::vector<T> y1(x.size()), y2(x.size());
    ones.forward(xv, ra::make_view(y1.data(), ra::shape(B, S, C)), cpu);
    plain.forward(xv, ra::make_view(y2.data(), ra::shape(B, S, C)), cpu);
    const auto [e, m] = max_diff(y1, y2);
    return Outcome{e, m, tol};
  });

  report.identity("I3", "gates 1 / 0 = baseline, q's last R dims zeroed", [&] {
    ra::nn::AttentionBlock<T> ra10(ra_cfg), zeroed(base_cfg);
    ra10.parameters() = rab.parameters();
    ra10.parameters().w_std = {1.f};
    ra10.parameters().w_rec = {0.f};
    zeroed.parameters() = base.parameters();
    auto& wa = zeroed.parameters().w_attn;
    auto& ba = zeroed.parameters().b_attn;
    for (index_t h = 0; h < H; ++h)
      for (index_t row = (h + 1) * D - R; row < (h + 1) * D; ++row) {
        std::fill(wa.begin() + row * C, wa.begin() + (row + 1) * C, T(0.0f));
        ba[row] = T(0.0f);
      }
    std::vector<T> y1(x.size()), y2(x.size());
    ra10.forward(xv, ra::make_view(y1.data(), ra::shape(B, S, C)), cpu);
    zeroed.forward(xv, ra::make_view(y2.data(), ra::shape(B, S, C)), cpu);
    const auto [e, m] = max_diff(y1, y2);
    return Outcome{e, m, std::max(tol, 1e-7), "(g_rec = 1e-8, the clamp floor)"};
  });

  report.identity("I4", "folded logits from the baseline Q, K", [&] {
    // The baseline's own Q, K (B,T,C) from its fused buffer (R = 0: W_attn = [W_q; W_k; W_v]).
    const T* bf = base.buffers().fused.data();  // (B,T,3C) of the last baseline call
    const auto& prm = rab.parameters();
    const double g_std = ra::effective_gate(prm.w_std[0], ra::GateParam::clamp);
    const double g_rec = ra::effective_gate(prm.w_rec[0], ra::GateParam::clamp);
    std::vector<float> lse(B * H * S);
    std::vector<T> o(B * H * S * D);
    ra::cpu::attention_forward(
        ra::folded_attention(qkv.q, qkv.k, qkv.v, R,
                             ra::gates::per_layer(&prm.w_std[0], &prm.w_rec[0])),
        ra::make_view(o.data(), ra::shape(B, H, S, D)), lse.data());
    double e = 0.0, m = 0.0;
    for (index_t bb = 0; bb < B; ++bb)
      for (index_t h = 0; h < H; ++h) {
        ra::cpu::Matrix q(S, D), k(S, D);
        for (index_t t = 0; t < S; ++t)
          for (index_t d = 0; d < D; ++d) {
            q(t, d) = double(bf[(bb * S + t) * 3 * C + h * D + d]);
            k(t, d) = double(bf[(bb * S + t) * 3 * C + C + h * D + d]);
          }
        const index_t Ds = D - R;
        ra::cpu::Matrix z = g_std * q.leftCols(Ds) * k.leftCols(Ds).transpose();
        z += g_rec * (q.rightCols(R) * k.rightCols(R).transpose()).transpose();
        z /= std::sqrt(double(D));
        for (index_t i = 0; i < S; ++i) {
          const double mx = z.row(i).head(i + 1).maxCoeff();
          const double want = mx + std::log((z.row(i).head(i + 1).array() - mx).exp().sum());
          const double got = lse[(bb * H + h) * S + i];
          e = std::max(e, std::abs(got - want));
          m = std::max(m, std::abs(want));
        }
      }
    // lse is stored in fp32 whatever the storage type.
    return Outcome{e, m, std::max(tol, 64 * double(std::numeric_limits<float>::epsilon())),
                   "(via the fp32 per-row lse)"};
  });

  std::printf("\n%s\n", report.failures == 0 ? "all identities hold" : "IDENTITY CHECK FAILED");
  return report.failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options opt = parse(argc, argv);
    const int rc = opt.dtype == "f64" ? run<double>(opt) : run<float>(opt);
    ra::flush_stdout("gpt2_attention_block");
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
