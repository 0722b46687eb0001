// python/csrc/ops_cuda.cu — the CUDA kernels of the ra::folded_attention ops (schemas in
// ops.cpp) through ra's flash kernels, on the current stream of the tensors' device. The
// kernels take float32, float16 and bfloat16 with 16-byte-aligned rows (ra validates and the
// binding reports which argument fails). Built into its own library (libra_torch_cuda.so):
// the flash kernel lists may be narrowed there (CI) while the CPU kernels keep every (D, R).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "checks.hpp"
#include "ra_adapter.hpp"

namespace ra_torch {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& fused, std::int64_t n_head, std::int64_t rank, c10::string_view gate_mode,
    c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart) {
  const c10::cuda::CUDAGuard guard(fused.device());
  return run_forward(fused, n_head, rank, gate_mode, gate_param, w_std, w_rec, restart,
                     /*allow_f64=*/false, [](const FoldedCall& c, const ForwardOutputs& o) {
                       adapter::check_supported(kForward, c.D, c.R);
                       adapter::cuda_forward(c, o, at::cuda::getCurrentCUDAStream());
                     });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& fused, const at::Tensor& out,
    const at::Tensor& lse, const at::Tensor& out_pre, std::int64_t n_head, std::int64_t rank,
    c10::string_view gate_mode, c10::string_view gate_param, const std::optional<at::Tensor>& w_std,
    const std::optional<at::Tensor>& w_rec, const std::optional<at::Tensor>& restart) {
  const c10::cuda::CUDAGuard guard(fused.device());
  return run_backward(grad_out, fused, out, lse, out_pre, n_head, rank, gate_mode, gate_param,
                      w_std, w_rec, restart, /*allow_f64=*/false,
                      [&](const FoldedCall& c, BackwardArgs& a) {
                        adapter::check_supported(kBackward, c.D, c.R);
                        // The caching allocator orders this buffer's reuse after the kernels on
                        // this stream.
                        const at::Tensor workspace =
                            at::empty({adapter::cuda_backward_workspace_floats(c.B, c.H, c.T)},
                                      fused.options().dtype(at::kFloat));
                        a.workspace = workspace.data_ptr<float>();
                        adapter::cuda_backward(c, a, at::cuda::getCurrentCUDAStream());
                      });
}

}  // namespace
}  // namespace ra_torch

TORCH_LIBRARY_IMPL(ra, CUDA, m) {
  m.impl("folded_attention", &ra_torch::forward_cuda);
  m.impl("folded_attention_backward", &ra_torch::backward_cuda);
}
