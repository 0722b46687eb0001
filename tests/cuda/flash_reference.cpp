// tests/cuda/flash_reference.cpp — see flash_reference.hpp. Compiled by the host compiler.
#include "flash_reference.hpp"

#include <cmath>

#include <ra/cpu.hpp>

namespace ra::test {

void reference_folded_attention(const FoldedProblem& pb, std::vector<double>& o,
                                std::vector<float>& lse) {
  const index_t B = pb.batch, T = pb.seq, H = pb.heads, D = pb.head_dim, C = H * D;
  o.assign(static_cast<std::size_t>(B * T * C), 0.0);
  lse.assign(static_cast<std::size_t>(B * H * T), 0.f);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    auto fused = make_view(static_cast<const T_*>(pb.fused), shape(B, T, 3 * C));  // (B,T,3C)
    auto qkv = folded_views(fused, H, D);              // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    auto out = heads(make_view(o.data(), shape(B, T, C)), H, D);  // (B,H,T,D) strides (TC,D,C,1)
    Gates g{pb.gate_mode, pb.gate_param, pb.w_std.data(), pb.w_rec.data()};
    Restart r{pb.a.empty() ? nullptr : pb.a.data()};
    auto node = folded_attention(qkv.q, qkv.k, qkv.v, pb.rank, g, causal, r);
    cpu::attention_forward(node, out, lse.data());
  });
}

void reference_folded_attention_backward(const FoldedProblem& pb, const void* d_out,
                                         ReferenceGrads& out) {
  const index_t B = pb.batch, T = pb.seq, H = pb.heads, D = pb.head_dim, C = H * D;
  const int n_gates = pb.gate_mode == GateMode::per_head ? pb.heads : 1;
  out.dfused.assign(static_cast<std::size_t>(B * T * 3 * C), 0.0);
  out.d_w_std.assign(n_gates, 0.f);
  out.d_w_rec.assign(n_gates, 0.f);
  out.d_a.assign(H, 0.f);
  out.w_std_l1.assign(n_gates, 0.0);
  out.w_rec_l1.assign(n_gates, 0.0);
  out.a_l1.assign(H, 0.0);
  dispatch_dtype(pb.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    auto fused = make_view(static_cast<const T_*>(pb.fused), shape(B, T, 3 * C));  // (B,T,3C)
    auto qkv = folded_views(fused, H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    auto dout = heads(make_view(static_cast<const T_*>(d_out), shape(B, T, C)), H, D);
    auto grads = folded_views(make_view(out.dfused.data(), shape(B, T, 3 * C)), H, D);
    Gates g{pb.gate_mode, pb.gate_param, pb.w_std.data(), pb.w_rec.data()};
    Restart r{pb.a.empty() ? nullptr : pb.a.data()};
    auto node = folded_attention(qkv.q, qkv.k, qkv.v, pb.rank, g, causal, r);
    cpu::AttentionGrads ag{out.d_w_std.data(), out.d_w_rec.data(),
                           pb.a.empty() ? nullptr : out.d_a.data()};
    cpu::attention_backward(node, dout, grads.q, grads.k, grads.v, ag);

    // Magnitudes of the terms behind the parameter gradients.
    std::vector<double> o(static_cast<std::size_t>(B * T * C));
    auto o_heads = heads(make_view(o.data(), shape(B, T, C)), H, D);
    cpu::attention_forward(node, o_heads, nullptr);
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h) {
        const int gi = pb.gate_mode == GateMode::per_head ? static_cast<int>(h) : 0;
        const double alpha = pb.a.empty() ? 0.0 : effective_restart(pb.a[h]);
        for (index_t t = 0; t < T; ++t)
          for (index_t d = 0; d < D; ++d) {
            const double qf = static_cast<float>(qkv.q(b, h, t, d));
            if (pb.gate_mode != GateMode::none) {
              const bool std_dim = d < D - pb.rank;
              const double gate = effective_gate(std_dim ? pb.w_std[gi] : pb.w_rec[gi],
                                                 pb.gate_param);
              const double term = std::abs(grads.q(b, h, t, d) / gate * qf);
              (std_dim ? out.w_std_l1 : out.w_rec_l1)[gi] += term;
            }
            if (!pb.a.empty()) {
              const double v = static_cast<float>(qkv.v(b, h, t, d));
              const double o_pre = (o_heads(b, h, t, d) - alpha * v) / (1.0 - alpha);
              out.a_l1[h] += std::abs(static_cast<float>(dout(b, h, t, d)) * (v - o_pre));
            }
          }
      }
  });
}

}  // namespace ra::test
