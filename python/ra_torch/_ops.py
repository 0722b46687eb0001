"""The ra::folded_attention ops: native libraries, fake functions and autograd.

The schemas and kernels are registered from C++ (csrc/ops.cpp for the CPU, csrc/ops_cuda.cu
for CUDA). This module loads them and adds what torch.compile and autograd need: a fake
function per op giving exactly the real outputs' shapes, strides and dtypes, and the backward
formula through ``torch.library.register_autograd``. Argument checking happens once, in the
C++ kernels: a bad argument raises TypeError (dtype) or ValueError (everything else) naming
the argument, the value received and what was expected.
"""

from __future__ import annotations

import glob
import os
from typing import Optional, Tuple

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name: str, required: bool) -> bool:
    found = sorted(glob.glob(os.path.join(_HERE, f"lib{name}*.so")))
    if not found:
        if required:
            raise ImportError(f"ra_torch: lib{name}.so is not in {_HERE}; "
                              "build the package with `pip install --no-build-isolation ./python`")
        return False
    torch.ops.load_library(found[0])
    return True


_load("ra_torch_cpu", required=True)
#: True when this install has ra's CUDA kernels (built where nvcc existed).
CUDA_BUILT = _load("ra_torch_cuda", required=False)

GATE_MODES = ("none", "per_layer", "per_head")
GATE_PARAMS = ("clamp", "softplus")


def _check_devices(op, fused, named):
    # The C++ kernels check this too, but a tensor on another device than 'fused' can route the
    # call here (e.g. gates on "meta"), so the fake functions say it first.
    for name, t in named:
        if t is not None and t.device != fused.device:
            raise ValueError(f"{op}: argument '{name}' is on {t.device}, expected "
                             f"{fused.device} like 'fused'")


@torch.library.register_fake("ra::folded_attention")
def _folded_attention_fake(fused, n_head, rank, gate_mode, gate_param, w_std, w_rec, restart):
    _check_devices("ra::folded_attention", fused,
                   (("w_std", w_std), ("w_rec", w_rec), ("restart", restart)))
    B, T, C3 = fused.shape
    C = C3 // 3
    out = fused.new_empty((B, T, C))
    lse = fused.new_empty((B, n_head, T), dtype=torch.float32)
    out_pre = fused.new_empty((B, T, C)) if restart is not None else fused.new_empty((0,))
    return out, lse, out_pre


@torch.library.register_fake("ra::folded_attention_backward")
def _folded_attention_backward_fake(grad_out, fused, out, lse, out_pre, n_head, rank, gate_mode,
                                    gate_param, w_std, w_rec, restart):
    _check_devices("ra::folded_attention_backward", fused,
                   (("grad_out", grad_out), ("out", out), ("lse", lse), ("out_pre", out_pre),
                    ("w_std", w_std), ("w_rec", w_rec), ("restart", restart)))
    n_gates = 0 if gate_mode == "none" else (n_head if gate_mode == "per_head" else 1)
    f32 = dict(dtype=torch.float32)
    return (fused.new_empty(fused.shape), fused.new_empty((n_gates,), **f32),
            fused.new_empty((n_gates,), **f32),
            fused.new_empty((n_head if restart is not None else 0,), **f32))


@torch.library.register_fake("ra::repack_index")
def _repack_index_fake(C, n_head, rank):
    return torch.empty((3 * C,), dtype=torch.long)


def _setup_context(ctx, inputs, output):
    fused, n_head, rank, gate_mode, gate_param, w_std, w_rec, restart = inputs
    out, lse, out_pre = output
    ctx.save_for_backward(fused, out, lse, out_pre, w_std, w_rec, restart)
    ctx.args = (n_head, rank, gate_mode, gate_param)
    # lse and out_pre are saved for the backward, not outputs to differentiate.
    ctx.mark_non_differentiable(lse, out_pre)


def _backward(ctx, grad_out, grad_lse, grad_out_pre):
    fused, out, lse, out_pre, w_std, w_rec, restart = ctx.saved_tensors
    n_head, rank, gate_mode, gate_param = ctx.args
    grad_fused, grad_w_std, grad_w_rec, grad_restart = torch.ops.ra.folded_attention_backward(
        grad_out.contiguous(), fused, out, lse, out_pre, n_head, rank, gate_mode, gate_param,
        w_std, w_rec, restart)
    gated = gate_mode != "none"
    return (grad_fused, None, None, None, None, grad_w_std if gated else None,
            grad_w_rec if gated else None, grad_restart if restart is not None else None)


torch.library.register_autograd("ra::folded_attention", _backward, setup_context=_setup_context)


def folded_attention(fused: torch.Tensor, n_head: int, rank: int,
                     w_std: Optional[torch.Tensor] = None, w_rec: Optional[torch.Tensor] = None,
                     restart: Optional[torch.Tensor] = None, *, gate_mode: Optional[str] = None,
                     gate_param: str = "clamp") -> Tuple[torch.Tensor, torch.Tensor]:
    """Causal folded reciprocal attention over a fused (B, T, 3C) projection.

    ``fused`` holds [Qf | Kf | V] with Qf = [Q_std | K_low] and Kf = [K_std | Q_low] per head
    (the last ``rank`` dims of each head are the reciprocal part). Gates ``w_std``, ``w_rec``
    (float32, shape (1,) per layer or (n_head,) per head) scale the standard and reciprocal
    logits through g = max(w, 1e-8) (``gate_param="clamp"``) or softplus(w); ``restart``
    (float32, (n_head,)) mixes O' = (1 - a) O + a V with a = clamp(restart, 0, 0.5).
    ``gate_mode`` defaults to "none" without gates, "per_layer" for (1,) gates, else
    "per_head". Returns O' (B, T, C) and lse (B, n_head, T) float32 (not differentiable).
    """
    if gate_mode is None:
        if w_std is None and w_rec is None:
            gate_mode = "none"
        else:
            gate_mode = "per_layer" if (w_std if w_std is not None else w_rec).numel() == 1 \
                else "per_head"
    out, lse, _ = torch.ops.ra.folded_attention(fused, n_head, rank, gate_mode, gate_param, w_std,
                                                w_rec, restart)
    return out, lse


def repack_index(C: int, n_head: int, rank: int) -> torch.Tensor:
    """(3C,) int64: row i of the folded c_attn weight is row index[i] of the baseline's
    [W_q; W_k; W_v] (ra::repack_source, include/ra/core/folded.hpp)."""
    return torch.ops.ra.repack_index(C, n_head, rank)
