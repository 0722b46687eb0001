"""Folded reciprocal attention written in plain torch ops (design §1): the tests' reference.

For a fused (B, T, 3C) tensor [Qf | Kf | V], per head Q̂ = Qf ⊙ g with g = g_std on the first
D - R dims and g_rec on the last R, Z = Q̂ Kfᵀ / √D masked causally, P = softmax(Z),
O = P V, with restart O' = (1 - α) O + α V, α = clamp(a, 0, 0.5). Differentiable everywhere
torch's clamp and softplus are, so autograd through it is the reference gradient.
"""

import math

import torch
import torch.nn.functional as F


def effective_gate(w, gate_param="clamp"):
    return F.softplus(w) if gate_param == "softplus" else w.clamp(min=1e-8)


def heads(t, H):
    B, T, C = t.shape
    return t.reshape(B, T, H, C // H).transpose(1, 2)  # (B,H,T,D)


def folded_attention(fused, H, R, w_std=None, w_rec=None, restart=None, gate_param="clamp"):
    """Returns O' (B,T,C) and lse (B,H,T) in fused's dtype."""
    B, T, C3 = fused.shape
    C = C3 // 3
    D = C // H
    q, k, v = (heads(t, H) for t in fused.split(C, dim=2))
    if w_std is not None:
        gs = effective_gate(w_std.to(fused.dtype), gate_param)  # (n,) n = 1 or H
        gr = effective_gate(w_rec.to(fused.dtype), gate_param)
        n = gs.shape[0]
        g = torch.cat([gs[:, None].expand(n, D - R), gr[:, None].expand(n, R)], dim=1)  # (n,D)
        q = q * g.view(1, n, 1, D)
    z = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B,H,T,T)
    causal = torch.ones(T, T, dtype=torch.bool, device=fused.device).tril()
    z = z.masked_fill(~causal, float("-inf"))
    lse = torch.logsumexp(z, dim=-1)
    o = torch.softmax(z, dim=-1) @ v
    if restart is not None:
        a = restart.to(fused.dtype).clamp(0.0, 0.5).view(1, H, 1, 1)
        o = (1 - a) * o + a * v
    return o.transpose(1, 2).reshape(B, T, C), lse


def repack_rows(C, H, R):
    """Design §1 'Weight repacking', written out: for each row of the folded W_attn (3C, C), the
    row of the stacked baseline [W_q; W_k; W_v] it comes from."""
    D = C // H
    rows = []
    for block, (std_src, low_src) in enumerate(((0, 1), (1, 0))):  # Qf: W_q | W_k; Kf: W_k | W_q
        for h in range(H):
            a, b = h * D, h * D + D
            rows += [std_src * C + r for r in range(a, b - R)]
            rows += [low_src * C + r for r in range(b - R, b)]
    rows += [2 * C + r for r in range(C)]
    return rows
