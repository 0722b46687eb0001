"""The ra::folded_attention ops on the CPU: values and gradients against the plain-torch
reference, opcheck, gradcheck in float64, and the fake functions' metadata."""

import itertools
import warnings

import pytest
import torch

import ra_torch
from conftest import random_gates, random_restart
import reference

# (H, D, R, T): D and R from ra's supported lists; T = 1 and T not a multiple of anything.
SHAPES = [(2, 32, 4, 7), (1, 64, 0, 1), (3, 32, 16, 5), (2, 64, 8, 9)]
GATES = ["none", "per_layer", "per_head"]


def make_inputs(H, D, R, T, mode, restart, dtype=torch.float64, B=2):
    fused = torch.randn(B, T, 3 * H * D, dtype=dtype)
    w_std, w_rec = random_gates(mode, H)
    a = random_restart(H) if restart else None
    return fused, w_std, w_rec, a


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"H{s[0]}-d{s[1]}-r{s[2]}-T{s[3]}")
@pytest.mark.parametrize("mode", GATES)
@pytest.mark.parametrize("restart", [False, True], ids=["no_restart", "restart"])
@pytest.mark.parametrize("gate_param", ["clamp", "softplus"])
def test_matches_reference(seed, shape, mode, restart, gate_param):
    H, D, R, T = shape
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, mode, restart)
    params = [p for p in (w_std, w_rec, a) if p is not None]
    for t in [fused, *params]:
        t.requires_grad_(True)
    out, lse = ra_torch.folded_attention(fused, H, R, w_std, w_rec, a, gate_param=gate_param)
    ref_params = [p.detach().double().requires_grad_(True) for p in params]
    it = iter(ref_params)
    r_std, r_rec = (next(it), next(it)) if w_std is not None else (None, None)
    r_a = next(it) if a is not None else None
    fused_ref = fused.detach().clone().requires_grad_(True)
    ref_out, ref_lse = reference.folded_attention(fused_ref, H, R, r_std, r_rec, r_a, gate_param)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lse, ref_lse.float(), rtol=1e-6, atol=1e-6)

    grad = torch.randn_like(out)
    out.backward(grad)
    ref_out.backward(grad)
    torch.testing.assert_close(fused.grad, fused_ref.grad, rtol=1e-10, atol=1e-10)
    for p, r in zip(params, ref_params):
        # ra sums parameter gradients in double and returns them as float32.
        torch.testing.assert_close(p.grad, r.grad.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_matches_double(seed, dtype):
    """fp32/fp16/bf16 tensors on the CPU: computed in double, only the storage rounds."""
    H, D, R, T = 2, 32, 4, 6
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, "per_head", True, dtype=dtype)
    out, lse = ra_torch.folded_attention(fused, H, R, w_std, w_rec, a)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ref, _ = reference.folded_attention(fused.double(), H, R, w_std.double(), w_rec.double(),
                                        a.double())
    torch.testing.assert_close(out.double(), ref.to(dtype).double(), rtol=0, atol=2 * (
        torch.finfo(dtype).eps * ref.abs().max().item()))


def test_strided_fused_is_read_in_place(seed):
    """A fused view with padded rows (last stride 1) gives what the compact tensor gives."""
    H, D, R, T = 2, 32, 4, 5
    big = torch.randn(2, T, 3 * H * D + 16, dtype=torch.float64)
    fused = big[:, :, 8:8 + 3 * H * D]
    assert not fused.is_contiguous()
    out, lse = ra_torch.folded_attention(fused, H, R)
    ref, ref_lse = ra_torch.folded_attention(fused.contiguous(), H, R)
    assert torch.equal(out, ref) and torch.equal(lse, ref_lse)


@pytest.mark.parametrize("mode", GATES)
@pytest.mark.parametrize("restart", [False, True], ids=["no_restart", "restart"])
def test_gradcheck_fused(seed, mode, restart):
    """Finite differences in float64 of O' with respect to the fused input."""
    H, D, R, T = 2, 32, 4, 4
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, mode, restart, B=1)
    fused.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: ra_torch.folded_attention(f, H, R, w_std, w_rec, a)[0], (fused,))


@pytest.mark.parametrize("mode", ["per_layer", "per_head"])
@pytest.mark.parametrize("gate_param", ["clamp", "softplus"])
def test_gradcheck_gates_and_restart(seed, mode, gate_param):
    """Finite differences of O' with respect to the float32 gate and restart parameters (ra
    reads them as float32: eps = 1e-3 so that their rounding stays far below the step)."""
    H, D, R, T = 2, 32, 4, 4
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, mode, True, B=1)
    params = tuple(p.requires_grad_(True) for p in (w_std, w_rec, a))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not a double precision.*")
        assert torch.autograd.gradcheck(
            lambda s, r, x: ra_torch.folded_attention(fused, H, R, s, r, x,
                                                      gate_param=gate_param)[0],
            params, eps=1e-3, atol=1e-4, rtol=1e-3)


def test_gradcheck_can_fail(seed):
    """The gradcheck above is not vacuous: a wrong backward (gate gradient doubled) fails it."""
    H, D, R, T = 2, 32, 4, 3
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, "per_head", False, B=1)

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w):
            ctx.save_for_backward(w)
            return ra_torch.folded_attention(fused, H, R, w, w_rec)[0]

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            with torch.enable_grad():
                w = w.detach().requires_grad_(True)
                out = ra_torch.folded_attention(fused, H, R, w, w_rec)[0]
                (dw,) = torch.autograd.grad(out, w, g)
            return 2 * dw

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not a double precision.*")
        assert not torch.autograd.gradcheck(Wrong.apply, (w_std.requires_grad_(True),), eps=1e-3,
                                            atol=1e-4, rtol=1e-3, raise_exception=False)


OPCHECK_CASES = list(itertools.product(["none", "per_layer", "per_head"], [False, True]))


@pytest.mark.parametrize("mode,restart", OPCHECK_CASES,
                         ids=[f"{m}-{'restart' if r else 'plain'}" for m, r in OPCHECK_CASES])
def test_opcheck_forward(seed, mode, restart):
    """Schema, fake tensor, autograd registration and AOT dispatch with dynamic shapes."""
    H, D, R, T = 2, 32, 4, 5
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, mode, restart, dtype=torch.float32)
    for t in (fused, w_std, w_rec, a):
        if t is not None:
            t.requires_grad_(True)
    torch.library.opcheck(torch.ops.ra.folded_attention.default,
                          (fused, H, R, mode, "clamp", w_std, w_rec, a))


@pytest.mark.parametrize("restart", [False, True], ids=["plain", "restart"])
def test_opcheck_backward(seed, restart):
    H, D, R, T = 2, 32, 4, 5
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, "per_head", restart, dtype=torch.float32)
    out, lse, out_pre = torch.ops.ra.folded_attention(fused, H, R, "per_head", "clamp", w_std,
                                                      w_rec, a)
    torch.library.opcheck(torch.ops.ra.folded_attention_backward.default,
                          (torch.randn_like(out), fused, out, lse, out_pre, H, R, "per_head",
                           "clamp", w_std, w_rec, a))


def test_opcheck_repack_index():
    torch.library.opcheck(torch.ops.ra.repack_index.default, (64, 2, 4))


@pytest.mark.parametrize("mode", GATES)
@pytest.mark.parametrize("restart", [False, True], ids=["plain", "restart"])
def test_fake_metadata_equals_real(seed, mode, restart):
    """The fake functions give exactly the real outputs' shapes, strides and dtypes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    H, D, R, T = 2, 32, 4, 3
    fused, w_std, w_rec, a = make_inputs(H, D, R, T, mode, restart, dtype=torch.bfloat16)
    fwd_args = (H, R, mode, "clamp", w_std, w_rec, a)
    real = torch.ops.ra.folded_attention(fused, *fwd_args)
    grad_out = torch.randn_like(real[0])
    real_bwd = torch.ops.ra.folded_attention_backward(grad_out, fused, *real, *fwd_args)
    with FakeTensorMode() as mode_:
        to_fake = lambda t: mode_.from_tensor(t) if isinstance(t, torch.Tensor) else t  # noqa
        fake = torch.ops.ra.folded_attention(to_fake(fused), *map(to_fake, fwd_args))
        fake_bwd = torch.ops.ra.folded_attention_backward(
            to_fake(grad_out), to_fake(fused), *map(to_fake, real),
            *map(to_fake, fwd_args))
    for r, f in zip((*real, *real_bwd), (*fake, *fake_bwd)):
        assert (r.shape, r.stride(), r.dtype, r.device) == (f.shape, f.stride(), f.dtype, f.device)


def test_lse_is_not_differentiable(seed):
    fused, *_ = make_inputs(2, 32, 4, 3, "none", False)
    fused.requires_grad_(True)
    out, lse = ra_torch.folded_attention(fused, 2, 4)
    assert out.requires_grad and not lse.requires_grad


def test_empty_sequence(seed):
    fused = torch.randn(2, 0, 3 * 64, dtype=torch.float64, requires_grad=True)
    out, lse = ra_torch.folded_attention(fused, 2, 4)
    assert out.shape == (2, 0, 64) and lse.shape == (2, 2, 0)
    out.sum().backward()
    assert fused.grad.shape == fused.shape


def test_repack_index_matches_design():
    for C, H, R in [(64, 2, 4), (96, 3, 0), (128, 4, 16), (64, 1, 63)]:
        assert ra_torch.repack_index(C, H, R).tolist() == reference.repack_rows(C, H, R)
