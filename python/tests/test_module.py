"""ra_torch.nn.CausalSelfAttention: torch.compile without graph breaks, state_dict, and the
repack identities of the design (§2 I2-I4)."""

import io
import math
import types

import pytest
import torch

import ra_torch
from ra_torch import CausalSelfAttention, repack_c_attn
import reference


def config(**kw):
    base = dict(n_embd=64, n_head=2, bias=True, dropout=0.0)
    base.update(kw)
    return types.SimpleNamespace(**base)


def ra_module(dtype=torch.float64, **kw):
    m = CausalSelfAttention(config(attention="ra", **kw)).to(dtype)
    with torch.no_grad():  # gates and restart away from their initial values
        for p in (m.w_std, m.w_rec, m.restart):
            if p is not None:
                p.uniform_(0.2, 0.45)
    return m


def grads(module, x):
    return [p.grad.clone() for p in module.parameters()] + [x.grad.clone()]


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
@pytest.mark.parametrize("gates,restart", [("per_head", True), ("per_layer", False)])
def test_compile_fullgraph_matches_eager(seed, backend, gates, restart):
    """fullgraph=True fails on any graph break; forward and backward equal eager."""
    torch._dynamo.reset()
    eager = ra_module(torch.float32, ra_rank=4, ra_gates=gates, ra_restart=restart)
    compiled_module = ra_module(torch.float32, ra_rank=4, ra_gates=gates, ra_restart=restart)
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, fullgraph=True, backend=backend)
    x = torch.randn(2, 7, 64)
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ye, yc = eager(xe), compiled(xc)
    torch.testing.assert_close(yc, ye, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ye)
    ye.backward(g)
    yc.backward(g)
    for a, b in zip(grads(compiled_module, xc), grads(eager, xe)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_dynamic_shapes(seed):
    """One dynamic graph serves several sequence lengths, still without a graph break."""
    torch._dynamo.reset()
    m = ra_module(torch.float32, ra_rank=4)
    compiled = torch.compile(m, fullgraph=True, dynamic=True, backend="aot_eager")
    for T in (3, 8, 5):
        x = torch.randn(2, T, 64)
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip(seed, tmp_path):
    m = ra_module(ra_rank=4, ra_gates="per_head", ra_restart=True)
    names = set(m.state_dict())
    assert {"w_std", "w_rec", "restart", "c_attn.weight", "c_proj.bias"} <= names
    path = tmp_path / "attn.pt"
    torch.save(m.state_dict(), path)
    other = CausalSelfAttention(config(attention="ra", ra_rank=4, ra_restart=True)).double()
    other.load_state_dict(torch.load(path))
    x = torch.randn(2, 5, 64, dtype=torch.float64)
    assert torch.equal(other(x), m(x))


def test_baseline_state_dict_matches_nanogpt_names():
    """A baseline module has nanoGPT's parameter names, so nanoGPT checkpoints load into it."""
    m = CausalSelfAttention(config())
    assert set(m.state_dict()) == {"c_attn.weight", "c_attn.bias", "c_proj.weight",
                                   "c_proj.bias"}


def baseline_and_input(seed_dtype=torch.float64, **kw):
    base = CausalSelfAttention(config(**kw)).to(seed_dtype).eval()
    x = torch.randn(2, 9, 64, dtype=seed_dtype)
    return base, x


def set_gates(m, w_std, w_rec):
    with torch.no_grad():
        m.w_std.fill_(w_std)
        m.w_rec.fill_(w_rec)


@pytest.mark.parametrize("rank", [0, 4, 16])
def test_identity_I2_unrepacked_gates_one(seed, rank):
    """I2: gates 1/1 on the baseline's c_attn read as the folded layout (NOT repacked) compute
    the baseline: the folded score is then Q·Kᵀ over all D dims."""
    base, x = baseline_and_input()
    ra = CausalSelfAttention.from_baseline(base, rank=rank, repack=False)
    set_gates(ra, 1.0, 1.0)
    torch.testing.assert_close(ra(x), base(x), rtol=1e-10, atol=1e-12)


def test_identity_repacked_rank0_is_baseline(seed):
    """With R = 0 the repack is the identity, so gates 1/1 give the baseline."""
    base, x = baseline_and_input()
    w, b = repack_c_attn(base.c_attn.weight, base.c_attn.bias, 2, 0)
    assert torch.equal(w, base.c_attn.weight) and torch.equal(b, base.c_attn.bias)
    ra = CausalSelfAttention.from_baseline(base, rank=0)
    set_gates(ra, 1.0, 1.0)
    torch.testing.assert_close(ra(x), base(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rank", [4, 16])
def test_identity_I3_repacked_std_only(seed, rank):
    """I3: repacked weights with w_std = 1, w_rec = 0 (clamped to 1e-8) compute the baseline
    with the last R dims of each head's q zeroed."""
    base, x = baseline_and_input()
    ra = CausalSelfAttention.from_baseline(base, rank=rank)
    set_gates(ra, 1.0, 0.0)
    D = 32
    with torch.no_grad():
        for h in range(2):
            base.c_attn.weight[h * D + D - rank:(h + 1) * D] = 0
            base.c_attn.bias[h * D + D - rank:(h + 1) * D] = 0
    torch.testing.assert_close(ra(x), base(x), rtol=1e-7, atol=1e-8)


def test_identity_I4_repacked_any_gates(seed):
    """I4: repacked, any gates: logits = (w_std Q_std K_stdᵀ + w_rec (Q_low K_lowᵀ)ᵀ) / √D."""
    R, H, D = 4, 2, 32
    base, x = baseline_and_input()
    ra = CausalSelfAttention.from_baseline(base, rank=R, gates="per_head")
    w_std, w_rec = torch.tensor([0.7, 1.3]), torch.tensor([0.4, 2.0])
    with torch.no_grad():
        ra.w_std.copy_(w_std)
        ra.w_rec.copy_(w_rec)
    q, k, v = (reference.heads(t, H) for t in base.c_attn(x).split(64, dim=2))
    ds = D - R
    z = (w_std.double().view(1, H, 1, 1) * q[..., :ds] @ k[..., :ds].transpose(-1, -2)
         + w_rec.double().view(1, H, 1, 1) * (q[..., ds:] @ k[..., ds:].transpose(-1, -2))
         .transpose(-1, -2)) / math.sqrt(D)
    T = x.shape[1]
    z = z.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = (torch.softmax(z, -1) @ v).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(ra(x), base.c_proj(y), rtol=1e-10, atol=1e-12)


def test_repacked_gates_one_is_not_baseline(seed):
    """The identity the issue asked for does not hold for R > 0 (the reciprocal term is the
    TRANSPOSED low-rank score, design §1), and this test says so rather than pretend."""
    base, x = baseline_and_input()
    ra = CausalSelfAttention.from_baseline(base, rank=4)
    set_gates(ra, 1.0, 1.0)
    assert (ra(x) - base(x)).abs().max() > 1e-3


@pytest.mark.parametrize("bias", [True, False])
def test_repack_moves_bias_with_rows(seed, bias):
    base = CausalSelfAttention(config(bias=bias))
    w, b = repack_c_attn(base.c_attn.weight, base.c_attn.bias, 2, 4)
    rows = reference.repack_rows(64, 2, 4)
    assert torch.equal(w, base.c_attn.weight[rows])
    assert (b is None) if not bias else torch.equal(b, base.c_attn.bias[rows])


def test_softplus_gates_start_at_design_values():
    m = CausalSelfAttention(config(attention="ra", ra_gate_param="softplus"))
    g = torch.nn.functional.softplus
    torch.testing.assert_close(g(m.w_std), torch.full((2,), 0.9))
    torch.testing.assert_close(g(m.w_rec), torch.full((2,), 0.1))


def test_training_step_in_bfloat16(seed):
    """A bf16 model: the gates stay float32 inside the op and still get gradients."""
    m = CausalSelfAttention(config(attention="ra", ra_restart=True)).to(torch.bfloat16)
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    m(x).float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
