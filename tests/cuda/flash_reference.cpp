// tests/cuda/flash_reference.cpp — see flash_reference.hpp. Compiled by the host compiler.
#include "flash_reference.hpp"

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

}  // namespace ra::test
