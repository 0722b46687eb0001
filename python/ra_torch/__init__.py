"""ra for PyTorch: folded reciprocal attention as torch.library custom ops (CPU through ra's
Eigen backend, CUDA through ra's flash kernels), with fake functions and autograd so
torch.compile(fullgraph=True) traces it, and a drop-in nanoGPT CausalSelfAttention."""

from ._ops import CUDA_BUILT, GATE_MODES, GATE_PARAMS, folded_attention, repack_index
from .nn import CausalSelfAttention, raw_gate, repack_c_attn

__all__ = ["CUDA_BUILT", "GATE_MODES", "GATE_PARAMS", "CausalSelfAttention", "folded_attention",
           "raw_gate", "repack_c_attn", "repack_index"]
