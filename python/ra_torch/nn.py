"""A drop-in CausalSelfAttention for nanoGPT-style models, and the baseline weight repack.

``CausalSelfAttention(config)`` reads the fields nanoGPT's does (``n_embd``, ``n_head``,
``bias``, ``dropout``) and has the same submodules (``c_attn``, ``c_proj``, ``attn_dropout``,
``resid_dropout``), so a nanoGPT model's state_dict loads into a baseline module unchanged.
Extra fields (config attributes, or keyword arguments that override them):

  attention      "baseline" (nanoGPT's scaled_dot_product_attention) or "ra" (ra's folded op)
  ra_rank        reciprocal rank R (0 <= R < D; default 4)
  ra_gates       "none", "per_layer" or "per_head" (default "per_head")
  ra_gate_param  "clamp" (g = max(w, 1e-8), default) or "softplus"
  ra_restart     self-restart O' = (1 - a) O + a V per head (default False)

In RA mode ``c_attn`` produces the folded layout [Qf | Kf | V]; ``repack_c_attn`` /
``CausalSelfAttention.from_baseline`` turn a trained baseline's weights into it.
ra's kernel has no dropout on the attention probabilities: an RA module with dropout > 0
raises unless ``ra_skip_attn_dropout=True`` says to keep only the residual dropout.
"""

from __future__ import annotations

import math
import types
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._ops import GATE_MODES, GATE_PARAMS, folded_attention, repack_index

#: Initial effective gates (design §1) and restart mix.
GATE_INIT_STD = 0.9
GATE_INIT_REC = 0.1
RESTART_INIT = 0.05


def raw_gate(g: float, gate_param: str) -> float:
    """The raw parameter whose effective gate is g (inverse of clamp or softplus)."""
    if gate_param == "softplus":
        return g if g > 20.0 else math.log(math.expm1(g))
    return g


def repack_c_attn(weight: torch.Tensor, bias: Optional[torch.Tensor], n_head: int,
                  rank: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Repacks a baseline c_attn (weight (3C, C) = [W_q; W_k; W_v], bias (3C)) into the folded
    layout: per head, Qf = [Q_std | K_low] and Kf = [K_std | Q_low] (the last ``rank`` rows of
    each head's q and k swap blocks). A row permutation (ra's repack_qkv): biases move with
    their rows, gates are not baked in. Returns new tensors."""
    if weight.dim() != 2 or weight.shape[0] != 3 * weight.shape[1]:
        raise ValueError(f"repack_c_attn: argument 'weight' has shape {tuple(weight.shape)}, "
                         "expected (3C, C)")
    C = weight.shape[1]
    if bias is not None and tuple(bias.shape) != (3 * C,):
        raise ValueError(f"repack_c_attn: argument 'bias' has shape {tuple(bias.shape)}, "
                         f"expected ({3 * C},)")
    index = repack_index(C, n_head, rank).to(weight.device)
    return weight[index].clone(), (bias[index].clone() if bias is not None else None)


def _choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"CausalSelfAttention: argument '{name}' is {value!r}, expected one of "
                         f"{', '.join(repr(a) for a in allowed)}")
    return value


class CausalSelfAttention(nn.Module):
    """nanoGPT's causal self-attention with an RA mode (see the module docstring)."""

    def __init__(self, config, *, attention: Optional[str] = None, rank: Optional[int] = None,
                 gates: Optional[str] = None, gate_param: Optional[str] = None,
                 restart: Optional[bool] = None):
        super().__init__()

        def pick(value, field, default):
            return value if value is not None else getattr(config, field, default)

        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = float(getattr(config, "dropout", 0.0))
        bias = getattr(config, "bias", True)
        if self.n_head <= 0 or self.n_embd % self.n_head != 0:
            raise ValueError(f"CausalSelfAttention: n_embd = {self.n_embd} and n_head = "
                             f"{self.n_head}, expected n_embd a multiple of a positive n_head")
        self.attention = _choice("attention", pick(attention, "attention", "baseline"),
                                 ("baseline", "ra"))
        self.c_attn = nn.Linear(self.n_embd, 3 * self.n_embd, bias=bias)
        self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(self.dropout)
        self.resid_dropout = nn.Dropout(self.dropout)
        self.rank = 0
        self.gates = "none"
        self.gate_param = "clamp"
        self.w_std = self.w_rec = self.restart = None
        if self.attention == "baseline":
            return

        head_dim = self.n_embd // self.n_head
        self.rank = int(pick(rank, "ra_rank", 4))
        if not 0 <= self.rank < head_dim:
            raise ValueError(f"CausalSelfAttention: argument 'rank' is {self.rank}, expected "
                             f"0 <= rank < head dim {head_dim}")
        self.gates = _choice("gates", pick(gates, "ra_gates", "per_head"), GATE_MODES)
        self.gate_param = _choice("gate_param", pick(gate_param, "ra_gate_param", "clamp"),
                                  GATE_PARAMS)
        if self.dropout > 0 and not getattr(config, "ra_skip_attn_dropout", False):
            raise ValueError(f"CausalSelfAttention: dropout is {self.dropout} in RA mode, but "
                             "ra's kernel has no attention-probability dropout; expected "
                             "dropout = 0, or config.ra_skip_attn_dropout = True to keep only "
                             "the residual dropout")
        if self.gates != "none":
            n = self.n_head if self.gates == "per_head" else 1
            self.w_std = nn.Parameter(torch.full((n,), raw_gate(GATE_INIT_STD, self.gate_param)))
            self.w_rec = nn.Parameter(torch.full((n,), raw_gate(GATE_INIT_REC, self.gate_param)))
        if pick(restart, "ra_restart", False):
            self.restart = nn.Parameter(torch.full((self.n_head,), RESTART_INIT))

    @classmethod
    def from_baseline(cls, baseline: nn.Module, *, rank: int = 4, gates: str = "per_head",
                      gate_param: str = "clamp", restart: bool = False, repack: bool = True,
                      skip_attn_dropout: bool = False) -> "CausalSelfAttention":
        """An RA module continuing a baseline one: c_proj copied, c_attn repacked into the
        folded layout (``repack=False`` copies it unchanged). Gates start at 0.9 / 0.1.
        A baseline with dropout > 0 needs ``skip_attn_dropout=True`` (see the module doc)."""
        config = types.SimpleNamespace(
            n_embd=baseline.n_embd, n_head=baseline.n_head, dropout=baseline.dropout,
            bias=baseline.c_attn.bias is not None, ra_skip_attn_dropout=skip_attn_dropout)
        module = cls(config, attention="ra", rank=rank, gates=gates, gate_param=gate_param,
                     restart=restart)
        module.to(device=baseline.c_attn.weight.device, dtype=baseline.c_attn.weight.dtype)
        with torch.no_grad():
            w, b = baseline.c_attn.weight, baseline.c_attn.bias
            if repack:
                w, b = repack_c_attn(w, b, baseline.n_head, rank)
            module.c_attn.weight.copy_(w)
            if b is not None:
                module.c_attn.bias.copy_(b)
            module.c_proj.load_state_dict(baseline.c_proj.state_dict())
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        if self.attention == "baseline":
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                               dropout_p=self.dropout if self.training else 0,
                                               is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
        else:
            # Gates and restart stay float32 whatever the model's dtype (ra's kernels read fp32).
            f32 = lambda p: p.float() if p is not None else None  # noqa: E731
            y, _ = folded_attention(self.c_attn(x), self.n_head, self.rank, f32(self.w_std),
                                    f32(self.w_rec), f32(self.restart), gate_mode=self.gates,
                                    gate_param=self.gate_param)
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self) -> str:
        if self.attention == "baseline":
            return "attention='baseline'"
        return (f"attention='ra', rank={self.rank}, gates='{self.gates}', "
                f"gate_param='{self.gate_param}', restart={self.restart is not None}")
