"""Every input the ops and the module cannot take raises a Python exception naming the
argument, the value received and what was expected (TypeError for dtypes, ValueError else)."""

import types

import pytest
import torch

import ra_torch
from ra_torch import CausalSelfAttention, repack_c_attn

H, D, R, T = 2, 32, 4, 3
C = H * D


def fused(dtype=torch.float32, **kw):
    return torch.randn(2, T, 3 * C, dtype=dtype, **kw)


def gates(n=H, dtype=torch.float32, device="cpu"):
    return torch.full((n,), 0.5, dtype=dtype, device=device)


def forward(f=None, n_head=H, rank=R, mode="per_head", param="clamp", w_std="default",
            w_rec="default", restart=None):
    f = fused() if f is None else f
    w_std = gates() if isinstance(w_std, str) else w_std
    w_rec = gates() if isinstance(w_rec, str) else w_rec
    return torch.ops.ra.folded_attention(f, n_head, rank, mode, param, w_std, w_rec, restart)


FORWARD_CASES = {
    "fused_dtype": (lambda: forward(fused().int()), TypeError,
                    "argument 'fused' has dtype int32, expected float32, float16, bfloat16 or "
                    "float64"),
    "fused_rank2": (lambda: forward(torch.randn(T, 3 * C)), ValueError,
                    "argument 'fused' has shape [3, 192], expected (B, T, 3C)"),
    "fused_last_extent": (lambda: forward(torch.randn(2, T, 3 * C + 1)), ValueError,
                          "argument 'fused' has shape [2, 3, 193], expected a last extent 3C"),
    "fused_last_stride": (lambda: forward(torch.randn(2, T, 6 * C)[:, :, ::2]), ValueError,
                          "argument 'fused' has strides [1152, 384, 2], expected a last stride "
                          "of 1"),
    "n_head_zero": (lambda: forward(n_head=0, mode="none", w_std=None, w_rec=None), ValueError,
                    "argument 'n_head' is 0, expected a positive head count"),
    "rank_ge_d": (lambda: forward(rank=32), ValueError,
                  "argument 'rank' is 32, expected 0 <= rank < D = 32"),
    "rank_negative": (lambda: forward(rank=-1), ValueError,
                      "argument 'rank' is -1, expected 0 <= rank < D = 32"),
    "unsupported_d": (lambda: forward(torch.randn(1, T, 3 * 2 * 48), mode="none", w_std=None,
                                      w_rec=None), ValueError,
                      "unsupported head dim D = 48, supported values are {32, 64, 80, 96, 128}"),
    "unsupported_r": (lambda: forward(rank=3), ValueError,
                      "unsupported reciprocal rank R = 3, supported values are "
                      "{0, 1, 2, 4, 8, 16}"),
    "gate_mode": (lambda: forward(mode="per_token"), ValueError,
                  "argument 'gate_mode' is 'per_token', expected 'none', 'per_layer' or "
                  "'per_head'"),
    "gate_param": (lambda: forward(param="sigmoid"), ValueError,
                   "argument 'gate_param' is 'sigmoid', expected 'clamp' or 'softplus'"),
    "gates_without_mode": (lambda: forward(mode="none"), ValueError,
                           "arguments 'w_std' and 'w_rec' are given, expected None with "
                           "gate_mode 'none'"),
    "w_std_missing": (lambda: forward(w_std=None), ValueError,
                      "argument 'w_std' is None, expected a tensor with gate_mode 'per_head'"),
    "w_rec_missing": (lambda: forward(w_rec=None), ValueError,
                      "argument 'w_rec' is None, expected a tensor with gate_mode 'per_head'"),
    "w_std_shape_per_head": (lambda: forward(w_std=gates(1)), ValueError,
                             "argument 'w_std' has shape [1], expected (2,) (one value per head"),
    "w_rec_shape_per_layer": (lambda: forward(mode="per_layer", w_std=gates(1)), ValueError,
                              "argument 'w_rec' has shape [2], expected (1,) (one value per "
                              "layer"),
    "w_std_dtype": (lambda: forward(w_std=gates(dtype=torch.float64)), TypeError,
                    "argument 'w_std' has dtype float64, expected float32"),
    "w_rec_stride": (lambda: forward(w_rec=torch.ones(2 * H)[::2]), ValueError,
                     "argument 'w_rec' has stride 2, expected 1 (contiguous)"),
    "w_std_device": (lambda: forward(w_std=gates(device="meta")), ValueError,
                     "argument 'w_std' is on meta, expected cpu like 'fused'"),
    "w_std_nan": (lambda: forward(w_std=torch.tensor([0.5, float("nan")])), ValueError,
                  "argument 'gates.w_std[1]' is nan, expected a finite value"),
    "restart_shape": (lambda: forward(restart=torch.zeros(3)), ValueError,
                      "argument 'restart' has shape [3], expected (2,) (one value per head)"),
    "restart_dtype": (lambda: forward(restart=torch.zeros(2, dtype=torch.float16)), TypeError,
                      "argument 'restart' has dtype float16, expected float32"),
    "restart_inf": (lambda: forward(restart=torch.tensor([0.1, float("inf")])), ValueError,
                    "argument 'restart.a[1]' is inf, expected a finite value"),
}


def backward_args():
    f = fused()
    w = gates()
    out, lse, out_pre = torch.ops.ra.folded_attention(f, H, R, "per_head", "clamp", w, w, None)
    return dict(grad_out=torch.randn_like(out), fused=f, out=out, lse=lse, out_pre=out_pre,
                n_head=H, rank=R, gate_mode="per_head", gate_param="clamp", w_std=w, w_rec=w,
                restart=None)


def backward(**changes):
    args = backward_args()
    args.update({k: (v(args) if callable(v) else v) for k, v in changes.items()})
    return torch.ops.ra.folded_attention_backward(*args.values())


BACKWARD_CASES = {
    "grad_out_shape": (lambda: backward(grad_out=lambda a: a["grad_out"][:, :2]), ValueError,
                       "argument 'grad_out' has shape [2, 2, 64], expected (2, 3, 64)"),
    "grad_out_dtype": (lambda: backward(grad_out=lambda a: a["grad_out"].double()), TypeError,
                       "argument 'grad_out' has dtype float64, expected float32 like 'fused'"),
    "grad_out_stride": (lambda: backward(grad_out=lambda a: torch.randn(2, T, 2 * C)[:, :, ::2]),
                        ValueError, "argument 'grad_out' has strides [384, 128, 2], expected a "
                                    "last stride of 1"),
    "out_dtype": (lambda: backward(out=lambda a: a["out"].half()), TypeError,
                  "argument 'out' has dtype float16, expected float32 like 'fused'"),
    "lse_shape": (lambda: backward(lse=lambda a: a["lse"][:, :1]), ValueError,
                  "argument 'lse' has shape [2, 1, 3]"),
    "lse_dtype": (lambda: backward(lse=lambda a: a["lse"].double()), TypeError,
                  "argument 'lse' has dtype float64, expected float32"),
    "lse_device": (lambda: backward(lse=lambda a: a["lse"].to("meta")), ValueError,
                   "argument 'lse' is on meta, expected cpu like 'fused'"),
    "out_pre_with_restart": (lambda: backward(restart=torch.full((H,), 0.1)), ValueError,
                             "argument 'out_pre' has shape [0], expected (2, 3, 64)"),
}


OP_CASES = {**{f"forward-{k}": ("ra::folded_attention: ", *v) for k, v in FORWARD_CASES.items()},
            **{f"backward-{k}": ("ra::folded_attention_backward: ", *v)
               for k, v in BACKWARD_CASES.items()}}


@pytest.mark.parametrize("case", OP_CASES)
def test_op_rejects(case):
    """The message starts with the op's name and names the argument, value and expectation."""
    op, call, exc, message = OP_CASES[case]
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(op)
    assert message in str(info.value)


def test_cases_can_pass():
    """The happy path of both helpers runs: the failures above come from the one bad value."""
    forward()
    backward()


def test_repack_index_rejects():
    with pytest.raises(ValueError, match="argument 'R' is 32, expected 0 <= R < D = 32"):
        ra_torch.repack_index(64, 2, 32)
    with pytest.raises(ValueError, match="argument 'C' is 64, expected a multiple of H = 3"):
        ra_torch.repack_index(64, 3, 0)


def config(**kw):
    base = dict(n_embd=64, n_head=2, bias=True, dropout=0.0)
    base.update(kw)
    return types.SimpleNamespace(**base)


MODULE_CASES = {
    "attention": (dict(attention="flash"), "argument 'attention' is 'flash', expected one of "
                                           "'baseline', 'ra'"),
    "rank": (dict(attention="ra", ra_rank=32), "argument 'rank' is 32, expected 0 <= rank < "
                                               "head dim 32"),
    "gates": (dict(attention="ra", ra_gates="per_token"), "argument 'gates' is 'per_token'"),
    "gate_param": (dict(attention="ra", ra_gate_param="exp"), "argument 'gate_param' is 'exp'"),
    "heads": (dict(n_head=3), "n_embd = 64 and n_head = 3, expected n_embd a multiple"),
    "dropout": (dict(attention="ra", dropout=0.1), "dropout is 0.1 in RA mode"),
}


@pytest.mark.parametrize("case", MODULE_CASES)
def test_module_rejects(case):
    fields, message = MODULE_CASES[case]
    with pytest.raises(ValueError) as info:
        CausalSelfAttention(config(**fields))
    assert message in str(info.value)


def test_module_dropout_opt_out():
    m = CausalSelfAttention(config(attention="ra", dropout=0.1, ra_skip_attn_dropout=True))
    assert m.resid_dropout.p == 0.1


def test_repack_c_attn_rejects():
    with pytest.raises(ValueError, match=r"argument 'weight' has shape \(64, 64\), expected "
                                         r"\(3C, C\)"):
        repack_c_attn(torch.zeros(64, 64), None, 2, 4)
    with pytest.raises(ValueError, match=r"argument 'bias' has shape \(64,\), expected \(192,\)"):
        repack_c_attn(torch.zeros(192, 64), torch.zeros(64), 2, 4)
