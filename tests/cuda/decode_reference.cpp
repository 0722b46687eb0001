// tests/cuda/decode_reference.cpp — see decode_reference.hpp. Compiled by the host compiler.
//
// The naive same-precision result of a decode row is that of the square problem over the
// sequence's keys: row i of causal attention depends only on its own query and keys j <= i,
// so the square problem of n_b rows whose last T_q query rows are the new ones gives, in its
// last T_q rows, exactly the naive decode (restart mixes V of the row's own token in both).
#include "decode_reference.hpp"

#include <ra/cpu.hpp>

#include "../common/same_precision_attention.hpp"

namespace ra::test {

namespace {

template <class T>
DecodeReference reference(const DecodeProblem& pb) {
  const index_t B = pb.batch, H = pb.heads, D = pb.head_dim, S = pb.rows, M = pb.max_seq;
  const Gates g{pb.gate_mode, pb.gate_param, pb.w_std.data(), pb.w_rec.data()};
  const Restart r{pb.a.empty() ? nullptr : pb.a.data()};
  const T* q = static_cast<const T*>(pb.q);
  const T* k = static_cast<const T*>(pb.k);
  const T* v = static_cast<const T*>(pb.v);
  const auto n4 = static_cast<std::size_t>(B * H * S * D);
  DecodeReference ref;
  for (auto* x : {&ref.o, &ref.o_pre, &ref.n_o, &ref.n_o_floor, &ref.n_o_pre, &ref.n_o_pre_floor})
    x->assign(n4, 0.0);
  for (auto* x : {&ref.lse, &ref.n_lse, &ref.n_lse_floor})
    x->assign(static_cast<std::size_t>(B * H * S), 0.0);

  for (index_t b = 0; b < B; ++b) {
    const index_t n = pb.lengths[static_cast<std::size_t>(b)];
    // Sequence b in double: Qf (1,H,T_q,D); Kf, V its first n cache rows (1,H,n,D).
    std::vector<double> qd(static_cast<std::size_t>(H * S * D)),
        kd(static_cast<std::size_t>(H * n * D)), vd(kd.size());
    for (index_t h = 0; h < H; ++h) {
      for (index_t t = 0; t < S; ++t)
        for (index_t d = 0; d < D; ++d)
          qd[static_cast<std::size_t>((h * S + t) * D + d)] =
              convert<double>(q[((b * H + h) * S + t) * D + d]);
      for (index_t j = 0; j < n; ++j)
        for (index_t d = 0; d < D; ++d) {
          kd[static_cast<std::size_t>((h * n + j) * D + d)] =
              convert<double>(k[((b * H + h) * M + j) * D + d]);
          vd[static_cast<std::size_t>((h * n + j) * D + d)] =
              convert<double>(v[((b * H + h) * M + j) * D + d]);
        }
    }
    const auto qv = make_view(static_cast<const double*>(qd.data()), shape(index_t{1}, H, S, D));
    const auto kv = make_view(static_cast<const double*>(kd.data()), shape(index_t{1}, H, n, D));
    const auto vv = make_view(static_cast<const double*>(vd.data()), shape(index_t{1}, H, n, D));
    std::vector<double> o(static_cast<std::size_t>(H * S * D));
    std::vector<float> lse(static_cast<std::size_t>(H * S));
    cpu::attention_forward(folded_attention(qv, kv, vv, pb.rank, g, causal, r),
                           make_view(o.data(), shape(index_t{1}, H, S, D)), lse.data());

    // The naive: the square problem of n rows, the new queries last (earlier rows zero).
    std::vector<T> qs(static_cast<std::size_t>(H * n * D), T(0.f)), ks(qs.size()), vs(qs.size());
    for (index_t h = 0; h < H; ++h) {
      for (index_t t = 0; t < S; ++t)
        for (index_t d = 0; d < D; ++d)
          qs[static_cast<std::size_t>((h * n + n - S + t) * D + d)] =
              q[((b * H + h) * S + t) * D + d];
      for (index_t j = 0; j < n; ++j)
        for (index_t d = 0; d < D; ++d) {
          ks[static_cast<std::size_t>((h * n + j) * D + d)] = k[((b * H + h) * M + j) * D + d];
          vs[static_cast<std::size_t>((h * n + j) * D + d)] = v[((b * H + h) * M + j) * D + d];
        }
    }
    const auto sq = shape(index_t{1}, H, n, D);
    const auto naive = same_precision_attention<T>(make_view(static_cast<const T*>(qs.data()), sq),
                                                   make_view(static_cast<const T*>(ks.data()), sq),
                                                   make_view(static_cast<const T*>(vs.data()), sq),
                                                   pb.rank, g, r, StridedView<const T, 4>{});

    for (index_t h = 0; h < H; ++h) {
      const double alpha = r.enabled() ? effective_restart(pb.a[static_cast<std::size_t>(h)]) : 0.0;
      for (index_t t = 0; t < S; ++t) {
        const auto out3 = static_cast<std::size_t>((b * H + h) * S + t);
        const auto sq3 = static_cast<std::size_t>(h * n + n - S + t);
        ref.lse[out3] = lse[static_cast<std::size_t>(h * S + t)];
        ref.n_lse[out3] = naive.lse[sq3];
        ref.n_lse_floor[out3] = naive.lse_floor[sq3];
        for (index_t d = 0; d < D; ++d) {
          const auto out4 = out3 * static_cast<std::size_t>(D) + static_cast<std::size_t>(d);
          const auto sq4 = sq3 * static_cast<std::size_t>(D) + static_cast<std::size_t>(d);
          const double x = o[static_cast<std::size_t>((h * S + t) * D + d)];
          ref.o[out4] = x;
          // O = (O' − αV)/(1 − α), in double: exact up to double rounding.
          ref.o_pre[out4] =
              r.enabled()
                  ? (x - alpha * vd[static_cast<std::size_t>((h * n + n - S + t) * D + d)]) /
                        (1.0 - alpha)
                  : x;
          ref.n_o[out4] = naive.o[sq4];
          ref.n_o_floor[out4] = naive.o_floor[sq4];
          ref.n_o_pre[out4] = naive.o_pre[sq4];
          ref.n_o_pre_floor[out4] = naive.o_pre_floor[sq4];
        }
      }
    }
  }
  return ref;
}

}  // namespace

DecodeReference decode_reference(const DecodeProblem& pb) {
  return dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return reference<T>(pb);
  });
}

}  // namespace ra::test
