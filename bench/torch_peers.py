#!/usr/bin/env python3
"""bench/torch_peers.py — the PyTorch peers of ra_bench, on the same GPU, shapes and JSON schema.

Measures, for B=8, H=12, D=64, C=H*D, T in {1024, 2048, 4096}, fp16 (flags override):
  attention  F.scaled_dot_product_attention, causal, kernel alone, with the flash and the cuDNN
             backends; inputs (B,H,T,D) contiguous ("flash", "cudnn") and, for fairness with
             ra's in-place reads, q/k/v as strided views of one fused (B,T,3C) tensor
             ("flash-strided", "cudnn-strided").
  block      nanoGPT's CausalSelfAttention (c_attn Linear(C,3C) -> split -> view/transpose ->
             SDPA causal -> transpose/reshape -> c_proj Linear) = config "baseline", and the
             obvious PyTorch RA block with learnable per-layer gates (q scaled by
             cat(full(D-R, g_std), full(R, g_rec)), g = clamp_min(w, 1e-8)) = config "ra";
             each as "eager", "compile" (torch.compile, default mode unless --compile-mode),
             "graph-eager" and "graph-compile" (torch.cuda.CUDAGraph replay of either).
Everything runs under torch.no_grad(), as ra's forward is inference-only.

FLOPs follow ra_bench (the design's convention): attention 2*B*H*T^2*D (causal forward);
block 2*B*T*C*3C + 2*B*T*C*C + attention. Time: median of --iters runs after --warmup, each run
between two CUDA events. Attention inputs rotate among enough sets to exceed 4x L2, as in
ra_bench. peak_bytes: max_memory_allocated() growth during one call plus what the call reads
that was allocated before it (attention: q, k, v; block: parameters and x). allocs_per_call:
caching-allocator requests per call (PyTorch's analogue of a device allocation; it seldom
reaches cudaMalloc, whose count is cuda_malloc_per_call).

torch.compile is time-boxed: compiled variants run last, shape by shape, and a compile that
would not finish before --deadline is skipped and recorded with an error string, as is any
backend that is unavailable.
"""

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # older PyTorch: kernel-alone rows record the error
    SDPBackend = None
    sdpa_kernel = None

START = time.time()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--H", type=int, default=12)
    p.add_argument("--D", type=int, default=64)
    p.add_argument("--R", type=int, default=4)
    p.add_argument("--T", type=str, default="1024,2048,4096", help="comma-separated lengths")
    p.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16")
    p.add_argument("--warmup", type=int, default=None, help="default 10 (5 with --quick)")
    p.add_argument("--iters", type=int, default=None, help="default 50 (20 with --quick)")
    p.add_argument("--quick", action="store_true", help="T=1024 only, fewer runs")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (default: PyTorch's default mode)")
    p.add_argument("--deadline", type=float, default=None,
                   help="unix time by which to finish (default: start + --budget-s)")
    p.add_argument("--budget-s", type=float, default=240.0)
    p.add_argument("--json", default=None, help="write the records here")
    a = p.parse_args(argv)
    try:
        a.T = [int(t) for t in a.T.split(",") if t]
    except ValueError:
        p.error(f"--T got {a.T!r}, expected comma-separated positive integers")
    if a.quick and a.T == [1024, 2048, 4096]:
        a.T = [1024]
    a.warmup = a.warmup if a.warmup is not None else (5 if a.quick else 10)
    a.iters = a.iters if a.iters is not None else (20 if a.quick else 50)
    if a.deadline is None:
        a.deadline = START + a.budget_s
    if not 0 < a.R < a.D:
        p.error(f"--R is {a.R}, expected 0 < R < D = {a.D}")
    if any(t <= 0 for t in a.T) or min(a.B, a.H, a.D) <= 0:
        p.error("sizes must be positive")
    return a


# ---- timing and memory -------------------------------------------------------------------------

def median_us(fn, warmup, iters):
    """Median microseconds of fn() over `iters` runs after `warmup`, one event pair per run."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
    for start, stop in events:
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    return statistics.median(1e3 * start.elapsed_time(stop) for start, stop in events)


def alloc_counts():
    s = torch.cuda.memory_stats()
    return s.get("allocation.all.allocated", 0), s.get("num_device_alloc", 0)


def measure(fn, warmup, iters, resident_bytes):
    """(median_us, peak_bytes, allocs_per_call, cuda_malloc_per_call) of fn."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base + resident_bytes
    a0, m0 = alloc_counts()
    us = median_us(fn, warmup, iters)
    a1, m1 = alloc_counts()
    n = warmup + iters
    return us, peak, (a1 - a0) / n, (m1 - m0) / n


def attention_flops(B, H, T, D):
    return 2.0 * B * H * T * T * D


def block_flops(B, H, T, D):
    C = H * D
    return 2.0 * B * T * C * 3 * C + 2.0 * B * T * C * C + attention_flops(B, H, T, D)


def rel_diff(y, ref):
    """max|y - ref| / max|ref| in fp32 (inf when y holds a non-finite value)."""
    y, ref = y.float(), ref.float()
    if not torch.isfinite(y).all():
        return math.inf
    den = ref.abs().max().item()
    return (y - ref).abs().max().item() / den if den > 0 else math.inf


def error_text(e):
    line = f"{type(e).__name__}: {e}".strip().splitlines()
    return (line[0] if line else type(e).__name__)[:300]


class Recorder:
    def __init__(self, args, dtype):
        self.args, self.dtype, self.records = args, dtype, []

    def add(self, what, config, path, T, R, flops, result=None, error=None, **extra):
        a = self.args
        r = {"impl": "torch", "what": what, "config": config, "path": path, "B": a.B, "H": a.H,
             "T": T, "D": a.D, "R": R, "dtype": a.dtype,
             "gates": "per_layer" if config == "ra" else "none",
             "median_us": None, "tflops": None, "flops": flops, "peak_bytes": None,
             "allocs_per_call": None, "cuda_malloc_per_call": None}
        if result is not None:
            us, peak, allocs, mallocs = result
            r.update(median_us=us, tflops=flops / (us * 1e-6) / 1e12, peak_bytes=int(peak),
                     allocs_per_call=allocs, cuda_malloc_per_call=mallocs)
        if error is not None:
            r["error"] = error
        r.update(extra)
        self.records.append(r)
        shown = (f"{r['median_us']:10.1f} us {r['tflops']:7.1f} TFLOP/s "
                 f"{r['peak_bytes'] / 2**20:8.1f} MB {r['allocs_per_call']:6.2f} allocs"
                 if result is not None else f"ERROR {error}")
        print(f"torch {what:9s} {config:8s} {path:14s} T={T:5d} {shown}", flush=True)
        return r


def free_memory():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


# ---- attention kernel alone ------------------------------------------------------------------------

def input_sets(args, T, elem_bytes):
    """Sets to rotate among so the inputs exceed 4x L2 (same rule as ra_bench)."""
    C = args.H * args.D
    set_bytes = args.B * T * (4 * C * elem_bytes + args.H * 4)
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 0) or 50 * 2**20
    return max(1, min(16, -(-4 * l2 // set_bytes)))


def bench_attention(args, rec, T, dtype):
    B, H, D = args.B, args.H, args.D
    C = H * D
    sets = input_sets(args, T, torch.finfo(dtype).bits // 8)
    flops = attention_flops(B, H, T, D)
    gen = torch.Generator(device="cuda").manual_seed(1234 + T)

    def rnd(*shape):
        return torch.randn(*shape, device="cuda", dtype=dtype, generator=gen)

    layouts = {}
    # (B,H,T,D) contiguous, as SDPA prefers them.
    layouts[""] = [tuple(rnd(B, H, T, D) for _ in range(3)) for _ in range(sets)]
    # Views of one fused (B,T,3C) projection: (B,H,T,D) strides (3TC, D, 3C, 1), as ra reads.
    fused = [rnd(B, T, 3 * C) for _ in range(sets)]
    layouts["-strided"] = [tuple(f.view(B, T, 3, H, D)[:, :, i].transpose(1, 2) for i in range(3))
                           for f in fused]
    input_bytes = 3 * B * T * C * torch.finfo(dtype).bits // 8

    backends = [("flash", "FLASH_ATTENTION"), ("cudnn", "CUDNN_ATTENTION")]
    for suffix, qkv_sets in layouts.items():
        reference = None  # the first backend that runs; the others are checked against it
        for name, enum_name in backends:
            path = name + suffix
            try:
                if sdpa_kernel is None:
                    raise RuntimeError("torch.nn.attention.sdpa_kernel is not available")
                backend = getattr(SDPBackend, enum_name)
                counter = [0]

                def run():
                    q, k, v = qkv_sets[counter[0] % sets]
                    counter[0] += 1
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)

                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(*qkv_sets[0], is_causal=True)
                    check = None
                    if reference is None:
                        reference = out.float()
                    else:
                        check = rel_diff(out, reference)
                    result = measure(run, args.warmup, args.iters, input_bytes)
                extra = {"input_sets": sets}
                if check is not None:
                    extra["check_rel_diff"] = check
                rec.add("attention", "baseline", path, T, 0, flops, result, **extra)
            except Exception as e:  # a backend unavailable here: record why, go on
                rec.add("attention", "baseline", path, T, 0, flops, error=error_text(e))
    del layouts, fused
    free_memory()


# ---- blocks ------------------------------------------------------------------------------------------

class CausalSelfAttention(nn.Module):
    """nanoGPT's attention block (dropout 0, inference)."""

    def __init__(self, C, H):
        super().__init__()
        self.n_embd, self.n_head = C, H
        self.c_attn = nn.Linear(C, 3 * C, bias=True)
        self.c_proj = nn.Linear(C, C, bias=True)

    def forward(self, x):
        B, T, C = x.size()
        H = self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        q = q.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class GatedReciprocalAttention(CausalSelfAttention):
    """The obvious PyTorch RA block: folded Qf = [Q_std | K_low], Kf = [K_std | Q_low] come out
    of c_attn; the learnable per-layer gates scale Q once, per dim, by
    cat(full(D-R, g_std), full(R, g_rec)); SDPA's default scale is 1/sqrt(D) of the full head."""

    def __init__(self, C, H, R):
        super().__init__(C, H)
        self.rank = R
        self.w_std = nn.Parameter(torch.tensor(0.9))
        self.w_rec = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        B, T, C = x.size()
        H, R = self.n_head, self.rank
        D = C // H
        qf, kf, v = self.c_attn(x).split(self.n_embd, dim=2)
        qf = qf.view(B, T, H, D).transpose(1, 2)
        kf = kf.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        g_std = self.w_std.clamp_min(1e-8)
        g_rec = self.w_rec.clamp_min(1e-8)
        scale = torch.cat([g_std.expand(D - R), g_rec.expand(R)]).to(qf.dtype)
        y = F.scaled_dot_product_attention(qf * scale, kf, v, attn_mask=None, dropout_p=0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


def make_block(args, config, dtype):
    C = args.H * args.D
    torch.manual_seed(7)
    m = CausalSelfAttention(C, args.H) if config == "baseline" else \
        GatedReciprocalAttention(C, args.H, args.R)
    m = m.cuda().eval()
    m.c_attn.to(dtype)  # the gates stay fp32, as ra's
    m.c_proj.to(dtype)
    return m


def capture_graph(fn):
    """A CUDAGraph replaying fn() (warmed up on a side stream first, as PyTorch requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


class Block:
    """One (config, T): the module, its input and the eager reference output."""

    def __init__(self, args, config, T, dtype):
        self.config, self.T = config, T
        self.module = make_block(args, config, dtype)
        gen = torch.Generator(device="cuda").manual_seed(99 + T)
        self.x = torch.randn(args.B, T, args.H * args.D, device="cuda", dtype=dtype,
                             generator=gen)
        params = sum(p.numel() * p.element_size() for p in self.module.parameters())
        self.resident = params + self.x.numel() * self.x.element_size()
        self.R = 0 if config == "baseline" else args.R
        self.reference = self.module(self.x)


def bench_block_variant(args, rec, blk, path, fn):
    flops = block_flops(args.B, args.H, blk.T, args.D)
    try:
        t0 = time.time()
        compile_s = None
        if path.startswith("graph"):
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            graph, out = capture_graph(fn)
            graph.replay()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base + blk.resident
            a0, m0 = alloc_counts()
            us = median_us(graph.replay, args.warmup, args.iters)
            a1, m1 = alloc_counts()
            n = args.warmup + args.iters
            result = (us, peak, (a1 - a0) / n, (m1 - m0) / n)
        else:
            out = fn()  # compiles on the first call of a compiled module
            torch.cuda.synchronize()
            if path == "compile":
                compile_s = time.time() - t0
            result = measure(fn, args.warmup, args.iters, blk.resident)
        extra = {"check_rel_diff": rel_diff(out, blk.reference)}
        if compile_s is not None:
            extra["compile_s"] = round(compile_s, 2)
        rec.add("block", blk.config, path, blk.T, blk.R, flops, result, **extra)
        return True
    except Exception as e:
        rec.add("block", blk.config, path, blk.T, blk.R, flops, error=error_text(e))
        if os.environ.get("RA_BENCH_TRACEBACK"):
            traceback.print_exc()
        return False


def bench_block_eager(args, rec, config, T, dtype):
    blk = Block(args, config, T, dtype)
    bench_block_variant(args, rec, blk, "eager", lambda: blk.module(blk.x))
    bench_block_variant(args, rec, blk, "graph-eager", lambda: blk.module(blk.x))


def bench_blocks_eager(args, rec, T, dtype):
    for config in ("baseline", "ra"):
        bench_block_eager(args, rec, config, T, dtype)  # its tensors die on return
        free_memory()


class CompileClock:
    """Predicts how long the next torch.compile takes from the ones before it."""

    def __init__(self, deadline):
        self.deadline, self.seen = deadline, []

    def allows(self):
        # The first compile pays for Inductor's start-up; later ones reuse it.
        expect = 1.5 * max(self.seen) if self.seen else 60.0
        return time.time() + expect < self.deadline, expect


def bench_block_compiled(args, rec, config, T, dtype, clock):
    flops = block_flops(args.B, args.H, T, args.D)
    R = 0 if config == "baseline" else args.R
    ok, expect = clock.allows()
    if not ok:
        msg = (f"skipped: time budget (about {expect:.0f} s of compilation would end after "
               f"the deadline)")
        for path in ("compile", "graph-compile"):
            rec.add("block", config, path, T, R, flops, error=msg)
        return
    blk = Block(args, config, T, dtype)
    torch._dynamo.reset()  # a fresh static-shape compile per (module, T)
    compiled = torch.compile(blk.module, dynamic=False, mode=args.compile_mode)
    t0 = time.time()
    if bench_block_variant(args, rec, blk, "compile", lambda: compiled(blk.x)):
        clock.seen.append(rec.records[-1].get("compile_s", time.time() - t0))
        bench_block_variant(args, rec, blk, "graph-compile", lambda: compiled(blk.x))
    else:
        clock.seen.append(time.time() - t0)
        rec.add("block", config, "graph-compile", T, R, flops,
                error="skipped: torch.compile failed")


def bench_blocks_compiled(args, rec, T, dtype, clock):
    for config in ("baseline", "ra"):
        bench_block_compiled(args, rec, config, T, dtype, clock)  # its tensors die on return
        free_memory()


def cudnn_version():
    try:
        return torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - only informative
        return None


def skip_shape(args, rec, T):
    msg = "skipped: time budget (the deadline passed before this shape)"
    for path in ("flash", "cudnn", "flash-strided", "cudnn-strided"):
        rec.add("attention", "baseline", path, T, 0, attention_flops(args.B, args.H, T, args.D),
                error=msg)
    for config in ("baseline", "ra"):
        for path in ("eager", "graph-eager"):
            rec.add("block", config, path, T, 0 if config == "baseline" else args.R,
                    block_flops(args.B, args.H, T, args.D), error=msg)


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("torch_peers: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    dtype = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    props = torch.cuda.get_device_properties(0)
    sm = f"{props.major}.{props.minor}"
    print(f"torch_peers: {props.name} (sm {sm}), torch {torch.__version__}, "
          f"cuDNN {cudnn_version()}, B={args.B} H={args.H} D={args.D} R={args.R} "
          f"{args.dtype}, T={args.T}, {args.warmup} warm-up + {args.iters} timed runs, "
          f"{args.deadline - time.time():.0f} s left", flush=True)
    rec = Recorder(args, dtype)
    with torch.no_grad():
        for T in args.T:
            if time.time() > args.deadline:  # over budget already: say so rather than overrun
                skip_shape(args, rec, T)
                continue
            bench_attention(args, rec, T, dtype)
            bench_blocks_eager(args, rec, T, dtype)
        clock = CompileClock(args.deadline)
        for T in args.T:
            if args.no_compile:
                for config in ("baseline", "ra"):
                    for path in ("compile", "graph-compile"):
                        rec.add("block", config, path, T, 0 if config == "baseline" else args.R,
                                block_flops(args.B, args.H, T, args.D),
                                error="skipped: --no-compile")
                continue
            bench_blocks_compiled(args, rec, T, dtype, clock)

    doc = {"device": props.name, "sm": sm,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "commit": os.environ.get("RA_COMMIT") or "unknown",
           "torch": torch.__version__, "cudnn": cudnn_version(),
           "flops_convention": "attention 2*B*H*T^2*D (causal forward); "
                               "block 2*B*T*C*3C + 2*B*T*C*C + attention",
           "records": rec.records}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"torch_peers: wrote {args.json} ({len(rec.records)} records, "
              f"{time.time() - START:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
