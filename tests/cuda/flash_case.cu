// tests/cuda/flash_case.cu — see flash_case.hpp.
#include "flash_case.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>
#include <ra/cuda/flash_backward.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "flash_reference.hpp"

namespace ra::test {

std::string describe(const FlashCase& c) {
  std::ostringstream os;
  os << c.dtype << " B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " R=" << c.R
     << " gates=" << c.gates << "/" << c.param << (c.below_floor ? " (w_rec below floor)" : "")
     << " restart=" << c.restart << (c.separate_inputs ? " separate inputs" : " fused inputs")
     << (c.backward ? (c.compact_grads ? ", compact grads" : ", folded grads") : ", forward only")
     << " path="
     << (c.path == cuda::ForwardPath::mma_sync    ? "mma.sync"
         : c.path == cuda::ForwardPath::tma_wgmma ? "tma+wgmma (sm_90a)"
                                                  : "automatic");
  if (c.backward) os << " backward path=" << cuda::path_name(c.backward_path);
  os << " seed=" << seed();
  return os.str();
}

namespace {

// A device tensor (B,H,T,D) either compact or as one third of a (B,T,3C) buffer.
template <class T>
struct Tensor4 {
  cuda::DeviceBuffer<T> buf;
  StridedView<T, 4> view;
};

// Host (B,H,T,D) double copy of a device (B,H,T,D) view into an allocation of n_alloc
// elements at `base`, after all queued work.
template <class T, class V>
std::vector<double> download(const V& v, const T* base, index_t n_alloc) {
  const std::vector<T> host = to_host(base, n_alloc);
  const auto offset = static_cast<std::size_t>(v.data() - base);
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(v.size()));
  for (index_t b = 0; b < v.extent(0); ++b)
    for (index_t h = 0; h < v.extent(1); ++h)
      for (index_t t = 0; t < v.extent(2); ++t)
        for (index_t d = 0; d < v.extent(3); ++d)
          out.push_back(convert<double>(
              host[offset + static_cast<std::size_t>(b * v.stride(0) + h * v.stride(1) +
                                                     t * v.stride(2) + d * v.stride(3))]));
  return out;
}

std::vector<double> as_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

template <class T>
void run(const FlashCase& c, std::mt19937_64& rng) {
  const index_t B = c.B, S = c.T, H = c.H, D = c.D, C = H * D;
  INFO(describe(c));
  const auto fused_h = random_vector<T>(B * S * 3 * C, rng);
  const auto dout_h = random_vector<T>(c.backward ? B * S * C : 0, rng);
  FoldedProblem pb;
  pb.dtype = c.dtype;
  pb.batch = c.B, pb.seq = c.T, pb.heads = c.H, pb.head_dim = c.D, pb.rank = c.R;
  pb.gate_mode = c.gates;
  pb.gate_param = c.param;
  randomize_parameters(pb, c.restart, rng, c.below_floor);
  pb.fused = fused_h.data();
  const FlashReference ref = flash_reference(pb, c.backward ? dout_h.data() : nullptr);

  // Inputs: the fused buffer's folded views, or the same values as compact tensors.
  const auto fused = to_device(fused_h);
  const auto hq = folded_views(make_view(fused_h.data(), shape(B, S, 3 * C)), H, D);
  const auto in = folded_views(make_view(fused.data(), shape(B, S, 3 * C)), H,
                               D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto shp = shape(B, H, S, D);
  cuda::DeviceBuffer<T> q_sep, k_sep, v_sep;
  StridedView<const T, 4> qv = in.q, kv = in.k, vv = in.v;
  if (c.separate_inputs) {
    std::vector<T> q(static_cast<std::size_t>(B * H * S * D)), k(q.size()), v(q.size());
    std::size_t i = 0;
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h)
        for (index_t t = 0; t < S; ++t)
          for (index_t d = 0; d < D; ++d, ++i) {
            q[i] = hq.q(b, h, t, d);
            k[i] = hq.k(b, h, t, d);
            v[i] = hq.v(b, h, t, d);
          }
    q_sep = to_device(q);
    k_sep = to_device(k);
    v_sep = to_device(v);
    qv = make_view(static_cast<const T*>(q_sep.data()), shp);
    kv = make_view(static_cast<const T*>(k_sep.data()), shp);
    vv = make_view(static_cast<const T*>(v_sep.data()), shp);
  }
  const auto w_std = to_device(pb.w_std), w_rec = to_device(pb.w_rec), a = to_device(pb.a);
  const Gates g{c.gates, c.param, w_std.data(), w_rec.data()};
  const Restart r{c.restart ? a.data() : nullptr};
  const auto node = folded_attention(qv, kv, vv, c.R, g, causal, r);

  // Forward: O' and O in (B,T,C) layout, lse; all poisoned.
  cuda::DeviceBuffer<T> out(B * S * C), out_pre(B * S * C);
  cuda::DeviceBuffer<float> lse(B * H * S);
  poison(out.data(), out.size());
  poison(out_pre.data(), out_pre.size());
  poison(lse.data(), lse.size());
  const auto o = heads(make_view(out.data(), shape(B, S, C)), H, D);  // (B,H,T,D) (TC,D,C,1)
  const auto o_pre = heads(make_view(out_pre.data(), shape(B, S, C)), H, D);
  cuda::AttentionParams fwd = c.restart ? cuda::make_params(node, o, lse.data(), o_pre)
                                        : cuda::make_params(node, o, lse.data());
  fwd.path = c.path;
  cuda::attention_forward(fwd, nullptr);
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  const std::string ty = ra::detail::concat(c.dtype);
  auto fam = [&](const char* what) { return std::string("flash ") + what + " " + ty; };
  const auto& n = ref.naive;
  const auto& x = ref.exact;
  RA_CHECK_PRECISION(judge(fam("O'"), "O'", download(o, out.data(), out.size()), n.o, x.o,
                           n.o_floor, static_cast<std::size_t>(D)));
  if (c.restart)
    RA_CHECK_PRECISION(judge(fam("O"), "O (before the restart mix)",
                             download(o_pre, out_pre.data(), out_pre.size()), n.o_pre, x.o_pre,
                             n.o_pre_floor, static_cast<std::size_t>(D)));
  else  // without restart o_pre is not written: it must keep its poison
    CHECK(is_poison(to_host(out_pre.data(), 1)[0]));
  RA_CHECK_PRECISION(judge(fam("lse"), "lse", as_double(to_host(lse.data(), lse.size())), n.lse,
                           x.lse, n.lse_floor, 1));
  if (!c.backward) return;

  // Backward: gradients folded into a (B,T,3C) buffer or compact; parameter gradients.
  const auto dout = to_device(dout_h);
  const auto d_o = heads(make_view(static_cast<const T*>(dout.data()), shape(B, S, C)), H, D);
  cuda::DeviceBuffer<T> dfused(c.compact_grads ? 0 : B * S * 3 * C),
      dq_c(c.compact_grads ? B * H * S * D : 0), dk_c(dq_c.size()), dv_c(dq_c.size());
  StridedView<T, 4> dq, dk, dv;
  if (c.compact_grads) {
    dq = make_view(dq_c.data(), shp);
    dk = make_view(dk_c.data(), shp);
    dv = make_view(dv_c.data(), shp);
  } else {
    const auto gr = folded_views(make_view(dfused.data(), shape(B, S, 3 * C)), H, D);
    dq = gr.q;
    dk = gr.k;
    dv = gr.v;
  }
  const auto n_gates = static_cast<index_t>(pb.w_std.size());
  cuda::DeviceBuffer<float> dw_std(n_gates), dw_rec(n_gates), da(H),
      ws(cuda::backward_workspace_floats(B, H, S));
  for (auto* buf : {&dw_std, &dw_rec, &da, &ws}) poison(buf->data(), buf->size());
  for (auto* buf : {&dfused, &dq_c, &dk_c, &dv_c}) poison(buf->data(), buf->size());
  cuda::AttentionBackwardParams bwd =
      cuda::make_backward_params(fwd, d_o, dq, dk, dv, dw_std.data(), dw_rec.data(),
                                 c.restart ? da.data() : nullptr, ws.data());
  bwd.path = c.backward_path;
  cuda::attention_backward(bwd, nullptr);
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  const index_t n_dq = c.compact_grads ? dq_c.size() : dfused.size();
  const T* base_q = c.compact_grads ? dq_c.data() : dfused.data();
  const T* base_k = c.compact_grads ? dk_c.data() : dfused.data();
  const T* base_v = c.compact_grads ? dv_c.data() : dfused.data();
  const auto Dz = static_cast<std::size_t>(D);
  RA_CHECK_PRECISION(
      judge(fam("dQf"), "dQf", download(dq, base_q, n_dq), n.dq, x.dq, n.dq_floor, Dz));
  RA_CHECK_PRECISION(
      judge(fam("dKf"), "dKf", download(dk, base_k, n_dq), n.dk, x.dk, n.dk_floor, Dz));
  RA_CHECK_PRECISION(
      judge(fam("dV"), "dV", download(dv, base_v, n_dq), n.dv, x.dv, n.dv_floor, Dz));
  if (c.gates != GateMode::none) {
    RA_CHECK_PRECISION(judge(fam("d w_std"), "d w_std", as_double(to_host(dw_std.data(), n_gates)),
                             n.d_w_std, x.d_w_std, n.d_w_std_floor, 1));
    RA_CHECK_PRECISION(judge(fam("d w_rec"), "d w_rec", as_double(to_host(dw_rec.data(), n_gates)),
                             n.d_w_rec, x.d_w_rec, n.d_w_rec_floor, 1));
  } else {  // nothing to differentiate: the gate gradients are not written
    CHECK(is_poison(to_host(dw_std.data(), 1)[0]));
  }
  if (c.restart)
    RA_CHECK_PRECISION(
        judge(fam("d a"), "d a", as_double(to_host(da.data(), H)), n.d_a, x.d_a, n.d_a_floor, 1));
}

}  // namespace

void run_flash_case(const FlashCase& c, std::mt19937_64& rng) {
  switch (c.dtype) {
    case DType::f16:
      run<fp16>(c, rng);
      break;
    case DType::bf16:
      run<bf16>(c, rng);
      break;
    case DType::f32:
      run<float>(c, rng);
      break;
  }
}

}  // namespace ra::test
