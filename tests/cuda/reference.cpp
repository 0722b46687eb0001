// tests/cuda/reference.cpp — see reference.hpp. Compiled by the host compiler (Eigen inside).
#include "reference.hpp"

#include <cstddef>

#include <ra/cpu.hpp>

#include "../common/same_precision_attention.hpp"
#include "../common/same_precision_gemm.hpp"

namespace ra::test {

namespace {

// n elements of `dtype` at p, exactly, as doubles (null p or n = 0: empty).
std::vector<double> to_double(DType dtype, const void* p, index_t n) {
  std::vector<double> out;
  if (p == nullptr || n == 0) return out;
  out.resize(static_cast<std::size_t>(n));
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(p);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = convert<double>(src[i]);
  });
  return out;
}

// The naive attention of pb over the (B,T,3C) fused buffer `fused` of T: O' (B,T,C) compact,
// lse (B,H,T).
template <class T>
void naive_attention_of(const AttentionProblem& pb, const T* fused, Naive& o, Naive& lse) {
  const index_t B = pb.B, S = pb.T, H = pb.H, D = pb.D, C = H * D;
  const auto fv = make_view(fused, shape(B, S, 3 * C));  // (B,T,3C)
  const auto qkv = folded_views(fv, H, D);               // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const Gates g{pb.gates, pb.param, pb.w_std.data(), pb.w_rec.data()};
  const Restart r{pb.a.empty() ? nullptr : pb.a.data()};
  const auto nv =
      same_precision_attention<T>(qkv.q, qkv.k, qkv.v, pb.R, g, r, StridedView<const T, 4>{});
  // (B,H,T,D) row-major to (B,T,C): a head's D values of one token stay consecutive.
  o.values.assign(nv.o.size(), 0.0);
  o.floor.assign(nv.o.size(), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t t = 0; t < S; ++t)
        for (index_t d = 0; d < D; ++d) {
          const auto from = static_cast<std::size_t>(((b * H + h) * S + t) * D + d);
          const auto to = static_cast<std::size_t>((b * S + t) * C + h * D + d);
          o.values[to] = nv.o[from];
          o.floor[to] = nv.o_floor[from];
        }
  lse.values = nv.lse;
  lse.floor = nv.lse_floor;
}

}  // namespace

std::vector<double> reference_gemm(DType dtype, index_t M, index_t N, index_t K, const void* a,
                                   index_t lda, const void* w, const void* bias) {
  require_arg(lda >= K, "reference_gemm", "lda", lda, "lda >= K");
  // A is gathered with its row stride; the last row needs only K elements.
  const std::vector<double> a_d = to_double(dtype, a, M == 0 ? 0 : (M - 1) * lda + K);
  const std::vector<double> w_d = to_double(dtype, w, N * K);
  const std::vector<double> b_d = to_double(dtype, bias, N);
  std::vector<double> y(static_cast<std::size_t>(M * N));
  const auto av = make_view(a_d.data(), shape(M, K), {lda, 1});  // (M,K) strides (lda,1)
  const auto wv = make_view(w_d.data(), shape(N, K));            // (N,K) strides (K,1)
  const auto yv = make_view(y.data(), shape(M, N));              // (M,N) strides (N,1)
  if (bias != nullptr) {
    ra::eval(yv, gemm(av, wv, make_view(b_d.data(), shape(N))), cpu::device{});
  } else {
    ra::eval(yv, gemm(av, wv), cpu::device{});
  }
  return y;
}

void reference_attention(const AttentionProblem& pb, std::vector<double>& o,
                         std::vector<double>& lse) {
  const index_t B = pb.B, T = pb.T, H = pb.H, D = pb.D, C = H * D;
  const std::vector<double> fused_d = to_double(pb.dtype, pb.fused, B * T * 3 * C);
  o.assign(static_cast<std::size_t>(B * T * C), 0.0);
  std::vector<float> lse_f(static_cast<std::size_t>(B * H * T));
  const auto fused = make_view(fused_d.data(), shape(B, T, 3 * C));  // (B,T,3C)
  const auto qkv = folded_views(fused, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto out = heads(make_view(o.data(), shape(B, T, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
  const Gates g{pb.gates, pb.param, pb.w_std.data(), pb.w_rec.data()};
  const Restart r{pb.a.empty() ? nullptr : pb.a.data()};
  const auto node = folded_attention(qkv.q, qkv.k, qkv.v, pb.R, g, causal, r);
  cpu::attention_forward(node, out, lse_f.data());
  lse.assign(lse_f.begin(), lse_f.end());
}

/// A problem's weights in double and the block's view of them (gates and restart values as
/// the problem holds them).
struct DoubleWeights {
  std::vector<double> w_attn, w_o, b_attn, b_o;
  AttentionBlockWeights<double> w;
  explicit DoubleWeights(const BlockProblem& pb) {
    const AttentionBlockConfig& cfg = pb.cfg;
    const index_t C = cfg.C;
    w_attn = to_double(pb.dtype, pb.w_attn, 3 * C * C);
    w_o = to_double(pb.dtype, pb.w_o, C * C);
    b_attn = to_double(pb.dtype, cfg.bias ? pb.b_attn : nullptr, 3 * C);
    b_o = to_double(pb.dtype, cfg.bias ? pb.b_o : nullptr, C);
    w.w_attn = make_view(w_attn.data(), shape(3 * C, C));  // (3C,C)
    w.w_o = make_view(w_o.data(), shape(C, C));            // (C,C)
    if (cfg.bias) {
      w.b_attn = make_view(b_attn.data(), shape(3 * C));  // (3C)
      w.b_o = make_view(b_o.data(), shape(C));            // (C)
    }
    w.w_std = pb.w_std.empty() ? nullptr : pb.w_std.data();
    w.w_rec = pb.w_rec.empty() ? nullptr : pb.w_rec.data();
    w.a = pb.a.empty() ? nullptr : pb.a.data();
  }
  DoubleWeights(const DoubleWeights&) = delete;
  DoubleWeights& operator=(const DoubleWeights&) = delete;
};

std::vector<double> reference_block(const BlockProblem& pb) {
  const AttentionBlockConfig& cfg = pb.cfg;
  const index_t B = pb.B, T = pb.T, C = cfg.C;
  const std::vector<double> x = to_double(pb.dtype, pb.x, B * T * C);
  const DoubleWeights dw(pb);
  const AttentionBlockWeights<double>& w = dw.w;
  std::vector<double> y(static_cast<std::size_t>(B * T * C));
  cpu::BlockBuffers<double> buffers;
  cpu::block_forward<double>(cfg, make_view(x.data(), shape(B, T, C)), w,
                             make_view(y.data(), shape(B, T, C)), buffers);
  return y;
}

Naive naive_gemm(DType dtype, index_t M, index_t N, index_t K, const void* a, index_t lda,
                 const void* w, const void* bias) {
  require_arg(lda >= K, "naive_gemm", "lda", lda, "lda >= K");
  Naive r;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto av = make_view(static_cast<const T*>(a), shape(M, K), {lda, 1});  // (M,K)
    const auto wv = make_view(static_cast<const T*>(w), shape(N, K));            // (N,K)
    const auto bv = bias != nullptr ? make_view(static_cast<const T*>(bias), shape(N))
                                    : StridedView<const T, 1>{};  // (N), or none
    auto nv = same_precision_gemm<T>(av, wv, bv);
    r.values = std::move(nv.y);
    r.floor = std::move(nv.floor);
  });
  return r;
}

void naive_attention(const AttentionProblem& pb, Naive& o, Naive& lse) {
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    naive_attention_of<T>(pb, static_cast<const T*>(pb.fused), o, lse);
  });
}

AttentionProblem attention_step(const BlockProblem& pb, const void* fused) {
  const AttentionBlockConfig& cfg = pb.cfg;
  AttentionProblem ap;
  ap.dtype = pb.dtype;
  ap.B = pb.B;
  ap.T = pb.T;
  ap.H = cfg.H;
  ap.D = cfg.head_dim();
  ap.R = cfg.R;
  ap.gates = cfg.gates;
  ap.param = cfg.gate_param;
  ap.w_std = pb.w_std;
  ap.w_rec = pb.w_rec;
  ap.a = cfg.restart ? pb.a : std::vector<float>{};
  ap.fused = fused;
  return ap;
}

Naive naive_block(const BlockProblem& pb) {
  const AttentionBlockConfig& cfg = pb.cfg;
  const index_t B = pb.B, S = pb.T, C = cfg.C;
  Naive y;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto bias = [&](const void* p, index_t n) {  // (n), or none
      return cfg.bias ? make_view(static_cast<const T*>(p), shape(n)) : StridedView<const T, 1>{};
    };
    // Each stage's output is stored in T, as the naive block would store its activations.
    const auto fused = same_precision_gemm<T>(
        make_view(static_cast<const T*>(pb.x), shape(B * S, C)),
        make_view(static_cast<const T*>(pb.w_attn), shape(3 * C, C)), bias(pb.b_attn, 3 * C));
    std::vector<T> fused_t(fused.y.size());
    for (std::size_t i = 0; i < fused_t.size(); ++i) fused_t[i] = convert<T>(fused.y[i]);
    Naive o, lse;
    naive_attention_of<T>(attention_step(pb, fused_t.data()), fused_t.data(), o, lse);
    std::vector<T> o_t(o.values.size());
    for (std::size_t i = 0; i < o_t.size(); ++i) o_t[i] = convert<T>(o.values[i]);
    auto nv = same_precision_gemm<T>(make_view(o_t.data(), shape(B * S, C)),
                                     make_view(static_cast<const T*>(pb.w_o), shape(C, C)),
                                     bias(pb.b_o, C));
    y.values = std::move(nv.y);
    y.floor = std::move(nv.floor);
  });
  return y;
}

BlockGrads reference_block_backward(const BlockProblem& pb, const void* dy) {
  const AttentionBlockConfig& cfg = pb.cfg;
  const index_t B = pb.B, S = pb.T, C = cfg.C, M = B * S;
  const std::vector<double> x = to_double(pb.dtype, pb.x, M * C);
  const std::vector<double> dyd = to_double(pb.dtype, dy, M * C);
  const DoubleWeights dw(pb);
  const AttentionBlockWeights<double>& w = dw.w;
  BlockGrads g;
  g.dx.resize(static_cast<std::size_t>(M * C));
  g.w_attn.resize(static_cast<std::size_t>(3 * C * C));
  g.w_o.resize(static_cast<std::size_t>(C * C));
  if (cfg.bias) {
    g.b_attn.resize(static_cast<std::size_t>(3 * C));
    g.b_o.resize(static_cast<std::size_t>(C));
  }
  std::vector<float> gs(static_cast<std::size_t>(cfg.gate_count())), gr(gs.size()),
      ga(cfg.restart ? static_cast<std::size_t>(cfg.H) : 0);
  AttentionBlockGrads<double> views;
  views.w_attn = make_view(g.w_attn.data(), shape(3 * C, C));
  views.w_o = make_view(g.w_o.data(), shape(C, C));
  if (cfg.bias) {
    views.b_attn = make_view(g.b_attn.data(), shape(3 * C));
    views.b_o = make_view(g.b_o.data(), shape(C));
  }
  views.w_std = gs.empty() ? nullptr : gs.data();
  views.w_rec = gr.empty() ? nullptr : gr.data();
  views.a = ga.empty() ? nullptr : ga.data();
  cpu::BlockBuffers<double> buffers;
  cpu::block_backward<double>(cfg, make_view(x.data(), shape(B, S, C)), w,
                              make_view(dyd.data(), shape(B, S, C)),
                              make_view(g.dx.data(), shape(B, S, C)), views, buffers);
  g.w_std.assign(gs.begin(), gs.end());
  g.w_rec.assign(gr.begin(), gr.end());
  g.a.assign(ga.begin(), ga.end());
  return g;
}

NaiveBlockGrads naive_block_backward(const BlockProblem& pb, const void* dy) {
  const AttentionBlockConfig& cfg = pb.cfg;
  const index_t B = pb.B, S = pb.T, C = cfg.C, H = cfg.H, D = cfg.head_dim(), M = B * S;
  NaiveBlockGrads r;
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto to_t = [](const std::vector<double>& v) {
      std::vector<T> t(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) t[i] = convert<T>(v[i]);
      return t;
    };
    const auto put = [](SamePrecisionGemm&& g, std::vector<double>& value,
                        std::vector<double>& floor) {
      value = std::move(g.y);
      floor = std::move(g.floor);
    };
    const StridedView<const T, 1> no_bias{};
    const auto x = make_view(static_cast<const T*>(pb.x), shape(M, C));  // (M,C)
    const auto dyv = make_view(static_cast<const T*>(dy), shape(M, C));  // (M,C)
    const auto w_attn = make_view(static_cast<const T*>(pb.w_attn), shape(3 * C, C));
    const auto w_o = make_view(static_cast<const T*>(pb.w_o), shape(C, C));
    const std::vector<T> ones(static_cast<std::size_t>(M), convert<T>(1.0));
    const auto ones_row = make_view(ones.data(), shape(1, M));  // (1,M): column sums as a GEMM

    // The forward's fused = T(x·W_attnᵀ + b_attn), and dO' = T(dy·W_o).
    const auto fused =
        to_t(same_precision_gemm<T>(
                 x, w_attn,
                 cfg.bias ? make_view(static_cast<const T*>(pb.b_attn), shape(3 * C)) : no_bias)
                 .y);
    const auto d_o = to_t(same_precision_gemm<T>(dyv, transpose<1, 0>(w_o), no_bias).y);
    // The attention forward (O') and backward (dQf, dKf, dV, gates, restart) in T.
    const auto qkv = folded_views(make_view(fused.data(), shape(B, S, 3 * C)), H, D);
    const Gates g{cfg.gates, cfg.gate_param, pb.w_std.data(), pb.w_rec.data()};
    const Restart rs{cfg.restart ? pb.a.data() : nullptr};
    const auto att = same_precision_attention<T>(
        qkv.q, qkv.k, qkv.v, cfg.R, g, rs, heads(make_view(d_o.data(), shape(B, S, C)), H, D));
    std::vector<T> o(static_cast<std::size_t>(M * C)), d_fused(static_cast<std::size_t>(M * 3 * C));
    // The floors of O' and of dfused: an implementation's own O' and dfused differ from the
    // naive's by up to these, and the GEMMs that read them carry that difference on.
    std::vector<double> o_floor(o.size()), d_fused_floor(d_fused.size());
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h)
        for (index_t t = 0; t < S; ++t)
          for (index_t d = 0; d < D; ++d) {
            const auto from = static_cast<std::size_t>(((b * H + h) * S + t) * D + d);
            const index_t row = b * S + t, col = h * D + d;
            const auto at = [&](index_t part) {
              return static_cast<std::size_t>(row * 3 * C + part * C + col);
            };
            o[static_cast<std::size_t>(row * C + col)] = convert<T>(att.o[from]);
            o_floor[static_cast<std::size_t>(row * C + col)] = att.o_floor[from];
            d_fused[at(0)] = convert<T>(att.dq[from]);
            d_fused[at(1)] = convert<T>(att.dk[from]);
            d_fused[at(2)] = convert<T>(att.dv[from]);
            d_fused_floor[at(0)] = att.dq_floor[from];
            d_fused_floor[at(1)] = att.dk_floor[from];
            d_fused_floor[at(2)] = att.dv_floor[from];
          }
    const auto ov = make_view(static_cast<const T*>(o.data()), shape(M, C));             // (M,C)
    const auto dfv = make_view(static_cast<const T*>(d_fused.data()), shape(M, 3 * C));  // (M,3C)

    // Output projection: dW_o = dyᵀ·O', db_o = Σ dy (fp32).
    put(same_precision_gemm<float>(transpose<1, 0>(dyv), transpose<1, 0>(ov), no_bias),
        r.values.w_o, r.floor.w_o);
    if (cfg.bias)
      put(same_precision_gemm<float>(transpose<1, 0>(dyv), ones_row, no_bias), r.values.b_o,
          r.floor.b_o);
    // Projection: dx = T(dfused·W_attn), dW_attn = dfusedᵀ·x, db_attn = Σ dfused (fp32).
    put(same_precision_gemm<T>(dfv, transpose<1, 0>(w_attn), no_bias), r.values.dx, r.floor.dx);
    put(same_precision_gemm<float>(transpose<1, 0>(dfv), transpose<1, 0>(x), no_bias),
        r.values.w_attn, r.floor.w_attn);
    if (cfg.bias)
      put(same_precision_gemm<float>(transpose<1, 0>(dfv), ones_row, no_bias), r.values.b_attn,
          r.floor.b_attn);
    // Propagated input floors: Y = A·Bᵀ gains ‖floor(A)_{i,r}·B_{j,r}‖_r (and likewise for B).
    const auto add_propagated = [](std::vector<double>& floor, index_t rows, index_t cols,
                                   index_t inner, auto&& term) {
      for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) {
          double s2 = 0.0;
          for (index_t r = 0; r < inner; ++r) {
            const double t = term(i, j, r);
            s2 += t * t;
          }
          auto& f = floor[static_cast<std::size_t>(i * cols + j)];
          f = std::sqrt(f * f + s2);
        }
    };
    const auto val = [](const auto& v, index_t i, index_t ld, index_t j) {
      return static_cast<double>(v[static_cast<std::size_t>(i * ld + j)]);
    };
    const auto dyd = [&](index_t r, index_t c) {
      return static_cast<double>(convert<double>(dyv(r, c)));
    };
    // dW_o (C,C) = dyᵀ·O': O' enters with its floor.
    add_propagated(r.floor.w_o, C, C, M,
                   [&](index_t i, index_t j, index_t m) { return dyd(m, i) * val(o_floor, m, C, j); });
    // dx (M,C) = dfused·W_attn; dW_attn (3C,C) = dfusedᵀ·x; db_attn = Σ_rows dfused.
    add_propagated(r.floor.dx, M, C, 3 * C, [&](index_t m, index_t k, index_t j) {
      return val(d_fused_floor, m, 3 * C, j) * static_cast<double>(convert<double>(w_attn(j, k)));
    });
    add_propagated(r.floor.w_attn, 3 * C, C, M, [&](index_t j, index_t k, index_t m) {
      return val(d_fused_floor, m, 3 * C, j) * static_cast<double>(convert<double>(x(m, k)));
    });
    if (cfg.bias)
      add_propagated(r.floor.b_attn, 1, 3 * C, M, [&](index_t, index_t j, index_t m) {
        return val(d_fused_floor, m, 3 * C, j);
      });
    if (cfg.gates != GateMode::none) {
      r.values.w_std = att.d_w_std;
      r.floor.w_std = att.d_w_std_floor;
      r.values.w_rec = att.d_w_rec;
      r.floor.w_rec = att.d_w_rec_floor;
    }
    if (cfg.restart) {
      r.values.a = att.d_a;
      r.floor.a = att.d_a_floor;
    }
  });
  return r;
}

}  // namespace ra::test
