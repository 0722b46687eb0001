"""The ops on CUDA tensors (ra's flash kernels) in fp16/bf16/fp32 against the CPU double
reference. Needs a GPU: without one every test here is reported SKIPPED, never passed.
D = 64 and R in {0, 4}: the kernels CI compiles (a device build compiles every pair)."""

import ctypes
import glob
import os
import shutil
import subprocess
import types

import pytest
import torch

import ra_torch
from conftest import random_gates, random_restart
import reference

needs_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and ra_torch.CUDA_BUILT),
    reason="no CUDA device" if not torch.cuda.is_available() else
    "ra_torch was built without CUDA kernels")


def test_cuda_kernels_built_where_nvcc_exists():
    """Where nvcc exists and torch has CUDA (CI), the CUDA library was built and registered."""
    nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
    if not (nvcc and torch.version.cuda):
        pytest.skip("no nvcc or a CPU-only torch: the CUDA kernels are not built here")
    assert ra_torch.CUDA_BUILT
    for op in ("ra::folded_attention", "ra::folded_attention_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")


def dynamic_symbols(lib, which):
    out = subprocess.run(["nm", "-D", f"--{which}-only", lib], check=True, capture_output=True,
                         text=True).stdout
    return [line.split()[-1] for line in out.splitlines() if line.split()]


def test_cuda_library_uses_torchs_cuda_runtime():
    """libra_torch_cuda.so holds no CUDA runtime of its own: it imports every runtime symbol
    from the shared libcudart (versioned by its soname), defines none, and the libcudart that
    torch loaded has each one. A second runtime in the process, or one older than what nvcc
    emitted calls for, is a crash at the first launch, not an error message."""
    if not ra_torch.CUDA_BUILT:
        pytest.skip("ra_torch was built without CUDA kernels")
    if not shutil.which("nm") or not os.path.exists("/proc/self/maps"):
        pytest.skip("needs nm (binutils) and /proc/self/maps (Linux)")
    (lib,) = glob.glob(os.path.join(os.path.dirname(ra_torch.__file__), "libra_torch_cuda*.so"))
    own = [s for s in dynamic_symbols(lib, "defined") if s.startswith(("cuda", "__cuda"))]
    assert not own, f"{lib} defines CUDA runtime symbols (a static cudart): {own[:5]}"
    imported = [s.split("@")[0] for s in dynamic_symbols(lib, "undefined")
                if "@libcudart.so" in s]
    assert "__cudaRegisterFatBinary" in imported, f"{lib} does not import the shared libcudart"
    with open("/proc/self/maps") as f:
        loaded = sorted({line.split()[-1] for line in f if "libcudart.so" in line})
    assert len(loaded) == 1, f"expected the one libcudart torch loaded, found {loaded}"
    runtime = ctypes.CDLL(loaded[0])
    missing = [s for s in imported if not hasattr(runtime, s)]
    assert not missing, f"torch's {loaded[0]} lacks {missing} (nvcc newer than torch's runtime?)"


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


CASES = [(dtype, R, mode, restart, T)
         for dtype in (torch.float16, torch.bfloat16, torch.float32)
         for R in (0, 4)
         for mode, restart in (("none", False), ("per_layer", True), ("per_head", False),
                               ("per_head", True))
         for T in (1, 67)]


@needs_gpu
@pytest.mark.parametrize("dtype,R,mode,restart,T", CASES,
                         ids=[f"{str(d)[6:]}-r{r}-{m}-{'restart' if s else 'plain'}-T{t}"
                              for d, r, m, s, t in CASES])
def test_cuda_matches_double_reference(seed, dtype, R, mode, restart, T):
    """Error vs the double reference at most 2x that of the same math in the same precision
    (plain torch ops on the GPU), plus a small floor; forward and every gradient."""
    H, D, B = 3, 64, 2
    fused = torch.randn(B, T, 3 * H * D, dtype=torch.float64)
    w_std, w_rec = random_gates(mode, H)
    a = random_restart(H) if restart else None
    params = [p for p in (w_std, w_rec, a) if p is not None]
    grad = torch.randn(B, T, H * D, dtype=torch.float64)

    def run(f, ps, fn):
        f = f.detach().requires_grad_(True)
        ps = [p.detach().requires_grad_(True) for p in ps]
        it = iter(ps)
        s, r = (next(it), next(it)) if mode != "none" else (None, None)
        x = next(it) if restart else None
        out, lse = fn(f, s, r, x)
        out.backward(grad.to(out.device, out.dtype))
        return out, lse, f.grad, [p.grad for p in ps]

    ours = run(fused.to("cuda", dtype), [p.cuda() for p in params],
               lambda f, s, r, x: ra_torch.folded_attention(f, H, R, s, r, x, gate_mode=mode))
    exact = run(fused, [p.double() for p in params],
                lambda f, s, r, x: reference.folded_attention(f, H, R, s, r, x))
    naive = run(fused.to("cuda", dtype), [p.cuda().to(dtype) for p in params],
                lambda f, s, r, x: reference.folded_attention(f, H, R, s, r, x))
    floor = 1e-3 if dtype != torch.float32 else 1e-5
    for name, o, e, n in [("out", ours[0], exact[0], naive[0]), ("lse", ours[1], exact[1], naive[1]),
                          ("grad_fused", ours[2], exact[2], naive[2])] + \
            [(f"grad_param{i}", o, e, n) for i, (o, e, n) in enumerate(zip(ours[3], exact[3],
                                                                           naive[3]))]:
        scale = max(e.abs().max().item(), 1.0)
        err, naive_err = max_err(o.cpu(), e), max_err(n.cpu(), e)
        assert err <= 2 * naive_err + floor * scale, \
            f"{name}: error {err:.3g} vs naive {naive_err:.3g} (floor {floor * scale:.3g})"


@needs_gpu
@pytest.mark.parametrize("mode,restart", [("none", False), ("per_head", True)])
def test_cuda_opcheck(seed, mode, restart):
    H, D, R, T = 2, 64, 4, 33
    fused = torch.randn(2, T, 3 * H * D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w_std, w_rec = random_gates(mode, H, device="cuda")
    a = random_restart(H, device="cuda") if restart else None
    for t in (w_std, w_rec, a):
        if t is not None:
            t.requires_grad_(True)
    torch.library.opcheck(torch.ops.ra.folded_attention.default,
                          (fused, H, R, mode, "clamp", w_std, w_rec, a))


@needs_gpu
def test_cuda_module_compiles_fullgraph(seed):
    torch._dynamo.reset()
    config = types.SimpleNamespace(n_embd=128, n_head=2, bias=True, dropout=0.0, attention="ra",
                                   ra_rank=4, ra_restart=True)
    eager = ra_torch.CausalSelfAttention(config).cuda().to(torch.bfloat16)
    compiled = torch.compile(eager, fullgraph=True)
    x = torch.randn(2, 65, 128, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(compiled(x), eager(x))
    compiled(x).float().square().mean().backward()
    assert all(p.grad is not None for p in eager.parameters())


@needs_gpu
def test_cuda_rejects_float64():
    with pytest.raises(TypeError, match="argument 'fused' has dtype float64, expected float32, "
                                        "float16 or bfloat16 \\(float64 only on the CPU\\)"):
        ra_torch.folded_attention(torch.zeros(1, 2, 384, device="cuda", dtype=torch.float64), 2, 4)


@needs_gpu
def test_cuda_rejects_gates_on_host():
    fused = torch.zeros(1, 2, 384, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="argument 'w_std' is on cpu, expected cuda:0 like 'fused'"):
        ra_torch.folded_attention(fused, 2, 4, torch.ones(2), torch.ones(2, device="cuda"))


@needs_gpu
def test_cuda_rejects_misaligned_rows():
    """ra's kernels move 16-byte chunks: a fused view starting 2 bytes in is refused by name."""
    big = torch.zeros(1, 2, 384 + 8, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="ra::folded_attention: .*pointer"):
        ra_torch.folded_attention(big[:, :, 1:385], 2, 4)


@needs_gpu
def test_cuda_rejects_unsupported_head_dim():
    with pytest.raises(ValueError, match="unsupported head dim D = 48"):
        ra_torch.folded_attention(torch.zeros(1, 2, 288, device="cuda", dtype=torch.float16), 2, 4)
