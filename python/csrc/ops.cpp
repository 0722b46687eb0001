// python/csrc/ops.cpp — the ra::folded_attention ops: their schemas, and their CPU kernels
// through ra's Eigen backend (computed in double; float32, float16, bfloat16 and float64
// tensors). The CUDA kernels are in ops_cuda.cu; fake functions and autograd in
// ra_torch/_ops.py.
//
//   folded_attention(fused (B,T,3C), n_head, rank, gate_mode, gate_param, w_std, w_rec, restart)
//     -> out (B,T,C) O' head-interleaved, lse (B,H,T) float32, out_pre (B,T,C) O before the
//        restart mix (restart given) or an empty (0,) tensor
//   folded_attention_backward(grad_out, fused, out, lse, out_pre, <the forward's arguments>)
//     -> grad_fused (B,T,3C), grad_w_std, grad_w_rec (like the gates, or (0,)), grad_restart
//        ((H,) or (0,)), gradients float32
//   repack_index(C, n_head, rank) -> (3C,) int64: row i of the folded c_attn weight is row
//     index[i] of the baseline [W_q; W_k; W_v]
#include <torch/library.h>
#include <ATen/ATen.h>

#include "checks.hpp"
#include "ra_adapter.hpp"

namespace ra_torch {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& fused, std::int64_t n_head, std::int64_t rank, c10::string_view gate_mode,
    c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart) {
  return run_forward(fused, n_head, rank, gate_mode, gate_param, w_std, w_rec, restart,
                     /*allow_f64=*/true, [](const FoldedCall& c, const ForwardOutputs& o) {
                       adapter::check_supported(kForward, c.D, c.R);
                       adapter::cpu_forward(c, o);
                     });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& fused, const at::Tensor& out,
    const at::Tensor& lse, const at::Tensor& out_pre, std::int64_t n_head, std::int64_t rank,
    c10::string_view gate_mode, c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart) {
  return run_backward(grad_out, fused, out, lse, out_pre, n_head, rank, gate_mode, gate_param,
                      w_std, w_rec, restart, /*allow_f64=*/true,
                      [](const FoldedCall& c, const BackwardArgs& a) {
                        adapter::check_supported(kBackward, c.D, c.R);
                        adapter::cpu_backward(c, a);
                      });
}

at::Tensor repack_index(std::int64_t C, std::int64_t n_head, std::int64_t rank) {
  constexpr const char* op = "ra::repack_index";
  TORCH_CHECK_VALUE(C > 0, op, ": argument 'C' is ", C, ", expected a positive channel count");
  at::Tensor index = at::empty({3 * C}, at::kLong);
  translate_errors(op, [&] {
    adapter::repack_index(C, n_head, static_cast<int>(rank), index.data_ptr<std::int64_t>());
  });
  return index;
}

}  // namespace
}  // namespace ra_torch

TORCH_LIBRARY(ra, m) {
  m.def(
      "folded_attention(Tensor fused, int n_head, int rank, str gate_mode, str gate_param, "
      "Tensor? w_std, Tensor? w_rec, Tensor? restart) -> (Tensor out, Tensor lse, "
      "Tensor out_pre)");
  m.def(
      "folded_attention_backward(Tensor grad_out, Tensor fused, Tensor out, Tensor lse, "
      "Tensor out_pre, int n_head, int rank, str gate_mode, str gate_param, Tensor? w_std, "
      "Tensor? w_rec, Tensor? restart) -> (Tensor grad_fused, Tensor grad_w_std, "
      "Tensor grad_w_rec, Tensor grad_restart)");
  m.def("repack_index(int C, int n_head, int rank) -> Tensor");
}

TORCH_LIBRARY_IMPL(ra, CPU, m) {
  m.impl("folded_attention", &ra_torch::forward_cpu);
  m.impl("folded_attention_backward", &ra_torch::backward_cpu);
}

TORCH_LIBRARY_IMPL(ra, CompositeExplicitAutograd, m) {
  m.impl("repack_index", &ra_torch::repack_index);
}
