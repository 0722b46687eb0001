// tests/cuda/flash_reference.cpp — see flash_reference.hpp. Compiled by the host compiler.
#include "flash_reference.hpp"

#include <ra/cpu.hpp>

namespace ra::test {

namespace {

template <class T>
FlashReference reference(const FoldedProblem& pb, const T* d_out_host) {
  const index_t B = pb.batch, S = pb.seq, H = pb.heads, D = pb.head_dim, C = H * D;
  const auto n4 = static_cast<std::size_t>(B * H * S * D);
  const bool backward = d_out_host != nullptr;
  const Gates g{pb.gate_mode, pb.gate_param, pb.w_std.data(), pb.w_rec.data()};
  const Restart r{pb.a.empty() ? nullptr : pb.a.data()};

  // The same rounded inputs, exactly, in double.
  const T* fused_t = static_cast<const T*>(pb.fused);
  std::vector<double> fused(static_cast<std::size_t>(B * S * 3 * C)), d_out;
  for (std::size_t i = 0; i < fused.size(); ++i) fused[i] = convert<double>(fused_t[i]);
  if (backward) {
    d_out.resize(static_cast<std::size_t>(B * S * C));
    for (std::size_t i = 0; i < d_out.size(); ++i) d_out[i] = convert<double>(d_out_host[i]);
  }
  const auto in = folded_views(make_view(fused.data(), shape(B, S, 3 * C)), H,
                               D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto node = folded_attention(in.q, in.k, in.v, pb.rank, g, causal, r);
  const auto shp = shape(B, H, S, D);

  FlashReference ref;
  ExactAttention& x = ref.exact;
  x.o.assign(n4, 0.0);
  std::vector<float> lse(static_cast<std::size_t>(B * H * S));
  cpu::attention_forward(node, make_view(x.o.data(), shp), lse.data());
  x.lse.assign(lse.begin(), lse.end());
  // O = (O' − αV)/(1 − α), in double: exact up to double rounding.
  x.o_pre = x.o;
  if (r.enabled()) {
    std::size_t i = 0;
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h) {
        const double alpha = effective_restart(pb.a[static_cast<std::size_t>(h)]);
        for (index_t t = 0; t < S; ++t)
          for (index_t d = 0; d < D; ++d, ++i)
            x.o_pre[i] = (x.o[i] - alpha * in.v(b, h, t, d)) / (1.0 - alpha);
      }
  }
  if (backward) {
    for (auto* v : {&x.dq, &x.dk, &x.dv}) v->assign(n4, 0.0);
    const std::size_t ng = pb.w_std.size();
    std::vector<float> dws(ng), dwr(ng), da(static_cast<std::size_t>(H));
    const auto dov = heads(make_view(d_out.data(), shape(B, S, C)), H, D);  // (B,H,T,D)
    cpu::attention_backward(node, dov, make_view(x.dq.data(), shp), make_view(x.dk.data(), shp),
                            make_view(x.dv.data(), shp),
                            {dws.data(), dwr.data(), r.enabled() ? da.data() : nullptr});
    x.d_w_std.assign(dws.begin(), dws.end());
    x.d_w_rec.assign(dwr.begin(), dwr.end());
    x.d_a.assign(da.begin(), da.end());
  }

  const auto in_t = folded_views(make_view(fused_t, shape(B, S, 3 * C)), H, D);
  if (backward) {
    const auto dov_t = heads(make_view(d_out_host, shape(B, S, C)), H, D);
    ref.naive = same_precision_attention<T>(in_t.q, in_t.k, in_t.v, pb.rank, g, r, dov_t);
  } else {
    ref.naive = same_precision_attention<T>(in_t.q, in_t.k, in_t.v, pb.rank, g, r,
                                            StridedView<const T, 4>{});
  }
  return ref;
}

}  // namespace

FlashReference flash_reference(const FoldedProblem& pb, const void* d_out) {
  return dispatch_dtype(pb.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return reference<T>(pb, static_cast<const T*>(d_out));
  });
}

}  // namespace ra::test
