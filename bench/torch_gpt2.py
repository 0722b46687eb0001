#!/usr/bin/env python3
"""bench/torch_gpt2.py — the PyTorch peer of ra's GPT-2 training-step benchmark, on the same GPU.

Measures one full training step (forward and loss, backward, clip_grad_norm_(1.0), AdamW step,
zero_grad(set_to_none=True)) of nanoGPT's GPT-2 124M: vocab 50257 padded to 50304, 12 layers,
12 heads, C=768, block size 1024, biases, dropout 0, pre-LayerNorm blocks, tanh-GELU MLP (4C),
final LayerNorm, LM head tied to wte, GPT-2 init (normal 0.02, c_proj weights
0.02/sqrt(2*n_layer)), cross-entropy over every position; the model returns the loss only.
Attention: F.scaled_dot_product_attention(is_causal=True), default backend choice (recorded:
the enabled backends and the kernels one bf16 SDPA forward+backward at this shape launches).
Precision as nanoGPT: fp32 parameters, bf16 torch.autocast around forward and loss, backward
outside it, TF32 allowed; AdamW(lr 6e-4, betas (0.9, 0.95), eps 1e-8, fused), weight decay 0.1
on 2-D parameters only.

Arms (the "attention" field of each result says which kernel ran):
  baseline        SDPA, PyTorch's default backend choice;
  baseline_cudnn  SDPA with the cuDNN backend forced (torch.nn.attention.sdpa_kernel around the
                  whole step, so the compile traces it too); an error if cuDNN cannot take it;
  ra              c_attn's output read as the folded Qf = [Q_std | K_low], Kf = [K_std | Q_low],
                  V; Qf scaled per head-dim slot by cat(full(D-R, g_std), full(R, g_rec)),
                  g = clamp_min(w, 1e-8), w learnable fp32 (shape (1,) per layer or (H,) per head,
                  init 0.9 / 0.1, no weight decay); then the same SDPA call (torch ops only);
  ra_op           the same parameters and function through ra's custom op
                  ra_torch.folded_attention (ra's flash kernels on CUDA, its Eigen backend on the
                  CPU), gates applied in the kernel; compiled with fullgraph=True. ra_torch is
                  imported only for this arm: without it the arm is recorded as skipped, with why.
Variants: "eager", "compile" (torch.compile of the model, default mode unless --compile-mode;
the optimizer step stays eager, as in nanoGPT). Compiled results carry graph_breaks (dynamo's
graph-break count during the first step's compile, with the first reasons) and fullgraph.

Data: random token ids, four (B,T) batches drawn once and rotated. Time: perf_counter around
each whole step, torch.cuda.synchronize() before and after, --steps steps after --warmup (the
first compiles); median, mean, tokens/s = B*T / median. peak_bytes: max_memory_allocated()
reset before the model is built (peak_bytes_timed: reset after warm-up). loss: the last step's,
read after timing. params: unique parameters with the padded wte rows; params_unpadded: without
them. Time-boxed: a variant that would end after --deadline-s (a first compile reckoned at
60 s, later ones at the longest seen) is skipped with error "skipped: deadline"; a failure is
recorded (traceback when RA_BENCH_TRACEBACK is set) and the other variants go on.
"""

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings

START = time.time()

import torch  # noqa: E402 - START counts the import too
import torch._dynamo  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402 - graph breaks per compile
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FIRST_COMPILE_S = 60.0  # the first torch.compile of the model, forward and backward
GUESS_STEP_S = 0.5      # a step's time before any has been measured
ARMS = ("baseline", "baseline_cudnn", "ra", "ra_op")
FIELDS = ("arm", "variant", "attention", "step_ms_median", "step_ms_mean", "tokens_per_s",
          "peak_bytes", "peak_bytes_timed", "loss", "params", "params_unpadded", "steps",
          "first_step_s", "fullgraph", "graph_breaks", "graph_break_reasons", "error")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, default in (("--batch", 16), ("--seq", 1024), ("--block-size", 1024),
                          ("--n-layer", 12), ("--n-head", 12), ("--n-embd", 768),
                          ("--vocab", 50257), ("--R", 4), ("--warmup", 10), ("--steps", 30)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--gates", choices=["per_layer", "per_head", "none"], default="per_layer")
    p.add_argument("--arms", default="baseline,ra", help=f"comma-separated: {', '.join(ARMS)}")
    p.add_argument("--variants", default="eager,compile", help="comma-separated: eager, compile")
    p.add_argument("--compile-mode", default=None, help="default: PyTorch's default mode")
    p.add_argument("--deadline-s", type=float, default=240.0, help="seconds from start")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: a smoke run (no autocast, no compile, unfused AdamW)")
    p.add_argument("--json", default=None, help="write the record here (default: stdout)")
    a = p.parse_args(argv)
    a.arms = [s for s in a.arms.split(",") if s]
    a.variants = [s for s in a.variants.split(",") if s]
    if not a.arms or not set(a.arms) <= set(ARMS):
        p.error(f"--arms got {a.arms}, expected a comma-separated subset of {','.join(ARMS)}")
    if not a.variants or not set(a.variants) <= {"eager", "compile"}:
        p.error(f"--variants got {a.variants}, expected a comma-separated subset of eager,compile")
    if min(a.batch, a.seq, a.n_layer, a.n_head, a.n_embd, a.vocab, a.warmup, a.steps) <= 0:
        p.error("sizes, --warmup and --steps must be positive")
    if a.n_embd % a.n_head:
        p.error(f"--n-embd {a.n_embd} is not a multiple of --n-head {a.n_head}")
    if {"ra", "ra_op"} & set(a.arms) and not 0 < a.R < a.n_embd // a.n_head:
        p.error(f"--R is {a.R}, expected 0 < R < D = {a.n_embd // a.n_head}")
    if a.seq > a.block_size:
        p.error(f"--seq {a.seq} exceeds --block-size {a.block_size}")
    a.padded_vocab = -(-a.vocab // 64) * 64  # 50257 -> 50304, as nanoGPT
    a.deadline = START + a.deadline_s
    return a


# ---- the model: nanoGPT's, dropout 0, biases on -------------------------------------------------

@dataclasses.dataclass
class Config:
    vocab: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    R: int = 0           # 0: the baseline attention
    gates: str = "none"  # with R > 0: per_layer | per_head | none
    ra_op: bool = False  # with R > 0: ra's custom op instead of the torch-ops RA form


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention. With R > 0, the RA form: the same c_attn output read as the folded
    Qf = [Q_std | K_low], Kf = [K_std | Q_low], V, and Qf gated once per head-dim slot, in torch
    ops, or (cfg.ra_op) by ra's custom op on the whole (B,T,3C) c_attn output. Both forms
    create the same parameters in the same order, so one seed gives both the same weights."""

    def __init__(self, cfg):
        super().__init__()
        C, H = cfg.n_embd, cfg.n_head
        self.n_embd, self.n_head, self.rank = C, H, cfg.R
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.gated = cfg.R > 0 and cfg.gates != "none"
        self.gate_mode = cfg.gates if self.gated else "none"
        self.folded_attention = None
        if cfg.R > 0 and cfg.ra_op:
            import ra_torch  # only this arm needs it (run_variant reports it missing)
            self.folded_attention = ra_torch.folded_attention
        if self.gated:
            n = H if cfg.gates == "per_head" else 1
            self.w_std = nn.Parameter(torch.full((n,), 0.9))  # fp32, also under autocast
            self.w_rec = nn.Parameter(torch.full((n,), 0.1))

    def gate_vector(self, D):
        """cat(full(D-R, g_std), full(R, g_rec)) per gate set: (n,1,D), n = 1 or H."""
        R = self.rank
        g_std = self.w_std.clamp_min(1e-8).unsqueeze(1)  # (n,1)
        g_rec = self.w_rec.clamp_min(1e-8).unsqueeze(1)  # (n,1)
        return torch.cat([g_std.expand(-1, D - R), g_rec.expand(-1, R)], dim=1).unsqueeze(1)

    def forward(self, x):
        B, T, C = x.size()
        H = self.n_head
        D = C // H
        if self.folded_attention is not None:  # gates fp32 whatever autocast does to fused
            y, _ = self.folded_attention(self.c_attn(x), H, self.rank,
                                         self.w_std if self.gated else None,
                                         self.w_rec if self.gated else None,
                                         gate_mode=self.gate_mode)
            return self.c_proj(y)  # y is (B,T,C) already: no transpose, no copy
        q, k, v = self.c_attn(x).split(C, dim=2)  # ra: q is Qf, k is Kf
        q = q.view(B, T, H, D).transpose(1, 2)  # (B,H,T,D)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        if self.gated:
            q = q * self.gate_vector(D).to(q.dtype)  # (n,1,D) broadcasts over (B,H,T,D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_optimizer(model, fused):
    """nanoGPT's configure_optimizers: weight decay on 2-D parameters only (not the gates)."""
    params = list(model.parameters())  # the tied wte/lm_head weight once
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=fused)


# ---- measurement ---------------------------------------------------------------------------------

def error_text(e):
    if os.environ.get("RA_BENCH_TRACEBACK"):
        return traceback.format_exc()
    line = f"{type(e).__name__}: {e}".strip().splitlines()
    return (line[0] if line else type(e).__name__)[:300]


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def make_batches(args, device, n=4):
    gen = torch.Generator(device=device).manual_seed(1234)
    tokens = torch.randint(0, args.vocab, (n, args.batch, args.seq + 1), device=device,
                           generator=gen)
    return [(tokens[i, :, :-1].contiguous(), tokens[i, :, 1:].contiguous()) for i in range(n)]


def run_variant(args, arm, variant, batches, device):
    """Builds, warms up and times one (arm, variant); returns its figures."""
    cuda = device.type == "cuda"
    folded = arm in ("ra", "ra_op")
    cfg = Config(args.padded_vocab, args.block_size, args.n_layer, args.n_head, args.n_embd,
                 R=args.R if folded else 0, gates=args.gates if folded else "none",
                 ra_op=arm == "ra_op")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(1337)  # both arms start from the same weights
    with device:
        model = GPT(cfg)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    opt = make_optimizer(model, fused=cuda)
    # ra's op must trace whole: a graph break there would fail the compile, not hide in a count.
    fullgraph = arm == "ra_op"
    run = (torch.compile(model, mode=args.compile_mode, fullgraph=fullgraph)
           if variant == "compile" else model)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step(i):
        x, y = batches[i % len(batches)]
        amp = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cuda
               else contextlib.nullcontext())
        with sdpa_choice(arm):
            with amp:
                loss = run(x, y)
            loss.backward()  # outside autocast, as nanoGPT
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    sync()
    counters.clear()
    t0 = time.perf_counter()
    loss = step(0)  # compiles, in the compile variant
    sync()
    first_step_s = time.perf_counter() - t0
    breaks = counters["graph_break"]  # reason -> count, from this arm's compile only
    for i in range(1, args.warmup):
        if time.time() > args.deadline:
            break
        loss = step(i)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()  # from here: the timed steps alone
    times = []
    for i in range(args.steps):
        if len(times) >= 3 and time.time() > args.deadline:
            break  # over budget: "steps" says how many were timed
        sync()
        t0 = time.perf_counter()
        loss = step(args.warmup + i)
        sync()
        times.append(time.perf_counter() - t0)
    final = loss.item()
    median = statistics.median(times)
    return {"step_ms_median": 1e3 * median, "step_ms_mean": 1e3 * statistics.fmean(times),
            "tokens_per_s": args.batch * args.seq / median,
            "peak_bytes": max(peak, torch.cuda.max_memory_allocated()) if cuda else None,
            "peak_bytes_timed": torch.cuda.max_memory_allocated() if cuda else None,
            "loss": final if math.isfinite(final) else None, "params": n_params,
            "params_unpadded": n_params - (args.padded_vocab - args.vocab) * args.n_embd,
            "steps": len(times), "first_step_s": round(first_step_s, 2),
            "fullgraph": fullgraph if variant == "compile" else None,
            "graph_breaks": sum(breaks.values()) if variant == "compile" else None,
            "graph_break_reasons": ([str(k)[:200] for k in list(breaks)[:3]]
                                    if variant == "compile" else None),
            "error": None if math.isfinite(final) else f"non-finite loss {final}"}


ATTENTION = {"baseline": "SDPA (default backend choice)",
             "baseline_cudnn": "SDPA (cuDNN backend forced)",
             "ra": "RA in torch ops: gated Qf, then SDPA (default backend choice)",
             "ra_op": "ra_torch.folded_attention (ra's kernels, gates in the kernel)"}


def sdpa_choice(arm):
    """The SDPA backends an arm may use: cuDNN alone for baseline_cudnn, else the default."""
    if arm != "baseline_cudnn":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.CUDNN_ATTENTION])


def ra_op_unavailable(device):
    """Why the ra_op arm cannot run here (None when it can): ra_torch is imported lazily so the
    other arms run without it."""
    try:
        import ra_torch
    except Exception as e:  # noqa: BLE001 - an ImportError or a failing native library
        return f"skipped: ra_torch is not importable ({error_text(e)})"
    if device.type == "cuda" and not ra_torch.CUDA_BUILT:
        return "skipped: ra_torch was built without CUDA kernels (no nvcc at install time)"
    return None


def sdpa_backends():
    return {name: (fn() if fn is not None else None) for name, fn in
            ((n, getattr(torch.backends.cuda, f"{n}_sdp_enabled", None))
             for n in ("flash", "cudnn", "mem_efficient", "math"))}


def sdpa_kernels(args, arm="baseline"):
    """Attention kernels that one bf16 causal SDPA forward+backward launches at (B,H,T,D) with
    contiguous inputs (the model's are strided views), under the arm's backend choice (the
    default, or cuDNN forced). Best effort."""
    try:
        from torch.profiler import ProfilerActivity, profile
        shape = (args.batch, args.n_head, args.seq, args.n_embd // args.n_head)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        with sdpa_choice(arm):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
            torch.cuda.synchronize()
            with warnings.catch_warnings(), profile(activities=[ProfilerActivity.CUDA]) as prof:
                warnings.simplefilter("ignore")  # the profiler's notice about cycles
                F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
                torch.cuda.synchronize()
        keys = ("flash", "fmha", "attention", "attn", "sdpa", "cudnn", "efficient")
        names = sorted({e.name for e in prof.events() if not e.name.startswith("aten::")
                        and any(key in e.name.lower() for key in keys)})
        return [n[:160] for n in names[:8]] or ["(no attention kernel recognised)"]
    except Exception as e:  # noqa: BLE001 - only informative
        return [f"error: {error_text(e)}"]


def ra_torch_info():
    """Where ra_torch came from and whether it has CUDA kernels (None: not importable)."""
    try:
        import ra_torch
    except Exception:  # noqa: BLE001 - the arm records why
        return None
    return {"path": os.path.dirname(ra_torch.__file__), "cuda_built": ra_torch.CUDA_BUILT}


def expected_s(args, variant, step_s, compile_s):
    step = 1.5 * max(step_s) if step_s else GUESS_STEP_S
    first = 0.0 if variant != "compile" else (max(compile_s) if compile_s else FIRST_COMPILE_S)
    return first + (args.warmup + args.steps) * step


def cells(r):
    """arm | variant | step ms (median) | tokens/s | peak GiB | loss (or the error)."""
    if r["step_ms_median"] is None:
        return [r["arm"], r["variant"], "-", "-", "-", r["error"].strip().splitlines()[-1]]
    peak = f"{r['peak_bytes'] / 2**30:.2f}" if r["peak_bytes"] is not None else "-"
    loss = f"{r['loss']:.4f}" if r["loss"] is not None else r["error"]
    return [r["arm"], r["variant"], f"{r['step_ms_median']:.2f}", f"{r['tokens_per_s']:.0f}",
            peak, loss]


def table(results):
    rows = [["arm", "variant", "step ms (median)", "tokens/s", "peak GiB", "loss"]]
    rows += [cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(" | ".join([c.ljust(w) for c, w in zip(row, widths)] + row[5:])
                     for row in rows)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("torch_gpt2: no CUDA device visible to PyTorch (--device cpu: a smoke run)",
              file=sys.stderr)
        return 1
    if cuda:  # as nanoGPT; the legacy setters keep the new fp32_precision flags consistent
        with warnings.catch_warnings():  # PyTorch 2.9+ warns that they will be deprecated
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"torch_gpt2: {name}, torch {torch.__version__}, B={args.batch} T={args.seq} "
          f"L={args.n_layer} H={args.n_head} C={args.n_embd} V={args.vocab}->{args.padded_vocab} "
          f"R={args.R} gates={args.gates}, {args.warmup} warm-up + {args.steps} timed steps, "
          f"{args.deadline - time.time():.0f} s left", flush=True)
    kernels = sdpa_kernels(args) if cuda else None
    kernels_cudnn = sdpa_kernels(args, "baseline_cudnn") if cuda and "baseline_cudnn" in args.arms \
        else None
    batches = make_batches(args, device)
    free_memory(device)

    results, step_s, compile_s = [], [], []
    for variant in args.variants:  # eager first (default): cheap, and it calibrates the budget
        for arm in args.arms:
            r = dict.fromkeys(FIELDS)
            r.update(arm=arm, variant=variant, attention=ATTENTION[arm], steps=0)
            if variant == "compile" and not cuda:
                r["error"] = "skipped: torch.compile is not run on cpu"
            elif arm == "ra_op" and ra_op_unavailable(device):
                r["error"] = ra_op_unavailable(device)
            elif arm == "baseline_cudnn" and not cuda:
                r["error"] = "skipped: the cuDNN backend needs CUDA"
            elif time.time() + expected_s(args, variant, step_s, compile_s) > args.deadline:
                r["error"] = "skipped: deadline"
            else:
                try:
                    if variant == "compile":
                        torch._dynamo.reset()  # a fresh compile per arm
                    r.update(run_variant(args, arm, variant, batches, device))
                    step_s.append(r["step_ms_median"] / 1e3)
                    if variant == "compile":
                        compile_s.append(r["first_step_s"])
                except Exception as e:  # noqa: BLE001 - recorded, the others go on
                    r["error"] = error_text(e)
                    if os.environ.get("RA_BENCH_TRACEBACK"):
                        print(r["error"], file=sys.stderr, flush=True)
                if variant == "compile":
                    torch._dynamo.reset()  # drop the compiled graphs and what they hold
                free_memory(device)
            results.append(r)
            print("torch gpt2 " + " | ".join(cells(r)) +
                  (f" | first step {r['first_step_s']:.1f} s, {r['steps']} timed, "
                   f"mean {r['step_ms_mean']:.2f} ms" if r["step_ms_mean"] is not None else ""),
                  flush=True)

    print(table(results), flush=True)
    doc = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "commit": os.environ.get("RA_COMMIT") or "unknown",
           "config": {"batch": args.batch, "seq": args.seq, "n_layer": args.n_layer,
                      "n_head": args.n_head, "n_embd": args.n_embd, "vocab": args.vocab,
                      "padded_vocab": args.padded_vocab, "block_size": args.block_size,
                      "R": args.R, "gates": args.gates,
                      "dtype": "bf16 autocast, fp32 master" if cuda else "fp32 (cpu smoke run)",
                      "tf32": cuda, "warmup": args.warmup, "steps": args.steps,
                      "compile_mode": args.compile_mode or "default",
                      "optimizer": "AdamW lr 6e-4 betas (0.9, 0.95) eps 1e-8, weight decay 0.1 "
                                   f"on 2-D params, fused={cuda}; clip_grad_norm_ 1.0",
                      "sdpa_backends_enabled": sdpa_backends() if cuda else None,
                      "sdpa_kernels": kernels, "sdpa_kernels_cudnn": kernels_cudnn,
                      "ra_torch": ra_torch_info() if "ra_op" in args.arms else None},
           "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"torch_gpt2: wrote {args.json} ({len(results)} results, "
              f"{time.time() - START:.0f} s)", flush=True)
    else:
        print(json.dumps(doc, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
