#!/usr/bin/env python3
"""bench/compare.py — merges ra_bench's and torch_peers.py's JSON, prints one table per shape and
the issue's targets, writes bench/results/<device>-<date>.json and a PNG bar chart per shape.

Ratios ("vs best torch") divide a row's median time by the best PyTorch figure of the same kind
at the same shape: attention rows by the fastest SDPA record (any backend, contiguous or
strided inputs), block rows by the fastest PyTorch *baseline* block (eager, compile or graph).
Below 1.00x means faster than PyTorch's best.

Targets (issue 3; benchmarks, not tests):
  ra-fused     ra's RA block (fused path) within 1.02x of ra's baseline block (fused path)
  kernel       ra's RA attention kernel no slower than the best SDPA backend (aim 0.8x);
               the issue sets it at the seeds' shape, T = 1024, and it is shown for every T
  ra-block     ra's best RA block (fused or graph) at or under PyTorch's best baseline block

Usage: compare.py --ra ra.json --torch torch.json [--out-dir bench/results] [--copy-to DIR]
"""

import argparse
import datetime
import json
import math
import os
import re
import shutil
import sys

SHAPE_KEYS = ("B", "H", "T", "D", "dtype")
TARGET_FUSED = 1.02
TARGET_KERNEL = 1.0
AIM_KERNEL = 0.8
TARGET_BLOCK = 1.0


def load(path, impl):
    """The document at path, or an empty one (with the reason) when it is missing or broken."""
    if not path:
        return {"records": [], "error": f"no {impl} JSON given"}
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return {"records": [], "error": f"{impl} JSON {path}: {e}"}
    for r in doc.get("records", []):
        r.setdefault("impl", impl)
    return doc


def ok(r):
    v = r.get("median_us")
    return r.get("error") is None and isinstance(v, (int, float)) and v > 0 and math.isfinite(v)


def shape_of(r):
    return tuple(r.get(k) for k in SHAPE_KEYS)


def shape_label(shape):
    return " ".join(f"{k}={v}" for k, v in zip(SHAPE_KEYS[:-1], shape[:-1])) + f" {shape[-1]}"


def best(records, **match):
    """The fastest successful record whose fields equal `match`, or None."""
    cands = [r for r in records if ok(r) and all(r.get(k) == v for k, v in match.items())]
    return min(cands, key=lambda r: r["median_us"]) if cands else None


def find(records, **match):
    for r in records:
        if ok(r) and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def label(r):
    return f"{r['impl']} {r['config']} {r['path']}"


# ---- analysis ------------------------------------------------------------------------------------

def analyse(records):
    """Per shape: its records with ratios filled in, and the target verdicts."""
    shapes = sorted({shape_of(r) for r in records},
                    key=lambda s: tuple((0, v) if isinstance(v, (int, float)) else (1, str(v))
                                        for v in s))
    out = []
    for shape in shapes:
        rows = [r for r in records if shape_of(r) == shape]
        best_attn = best(rows, impl="torch", what="attention")
        best_block = best(rows, impl="torch", what="block", config="baseline")
        for r in rows:
            # The backward alone (ra's "attention_bwd", per path) has no PyTorch peer of its own.
            ref = {"attention": best_attn, "block": best_block}.get(r["what"])
            r["ratio_vs_best_torch"] = (r["median_us"] / ref["median_us"]
                                        if ok(r) and ref is not None else None)
            r["best_torch"] = label(ref) if ref is not None else None
        out.append({"shape": shape, "rows": rows, "targets": targets(shape, rows, best_attn,
                                                                     best_block)})
    return out


def verdict(name, shape, value, limit, detail, aim=None):
    t = {"target": name, "T": shape[2], "limit": limit, "value": value, "detail": detail}
    if value is None:
        t["status"] = "n/a"
    else:
        t["status"] = "met" if value <= limit else "missed"
        if aim is not None:
            t["aim"] = aim
            t["aim_status"] = "met" if value <= aim else "missed"
    return t


def missing(*named):
    return "no " + " and no ".join(name for name, r in named if r is None) + " figure"


def targets(shape, rows, best_attn, best_block):
    res = []
    ra_base = find(rows, impl="ra", what="block", config="baseline", path="fused")
    ra_fused = find(rows, impl="ra", what="block", config="ra", path="fused")
    value = ra_fused["median_us"] / ra_base["median_us"] if ra_fused and ra_base else None
    res.append(verdict("RA fused <= 1.02x ra baseline fused", shape, value, TARGET_FUSED,
                       "ra block ra/fused vs baseline/fused" if value is not None else
                       missing(("ra RA fused block", ra_fused), ("ra baseline fused block",
                                                                 ra_base))))

    kernel = find(rows, impl="ra", what="attention", config="ra", path="kernel")
    value = kernel["median_us"] / best_attn["median_us"] if kernel and best_attn else None
    res.append(verdict("RA kernel <= best SDPA (aim 0.8x)", shape, value, TARGET_KERNEL,
                       f"vs {label(best_attn)}" if value is not None else
                       missing(("ra RA kernel", kernel), ("SDPA", best_attn)),
                       aim=AIM_KERNEL))

    ra_blocks = [r for r in rows if ok(r) and r["impl"] == "ra" and r["what"] == "block"
                 and r["config"] == "ra" and r["path"] in ("fused", "graph")]
    ra_best = min(ra_blocks, key=lambda r: r["median_us"]) if ra_blocks else None
    value = ra_best["median_us"] / best_block["median_us"] if ra_best and best_block else None
    res.append(verdict("RA block <= best torch baseline block", shape, value, TARGET_BLOCK,
                       (f"{label(ra_best)} vs {label(best_block)}" if value is not None else
                        missing(("ra RA block", ra_best), ("torch baseline block",
                                                           best_block)))))
    return res


# ---- printing --------------------------------------------------------------------------------------

def fmt(v, spec, width):
    return f"{v:{width}{spec}}" if isinstance(v, (int, float)) and math.isfinite(v) else \
        f"{'-':>{width}}"


PATH_ORDER = ["kernel", "mma_sync", "sm90", "sm90_dkdv", "unfused", "fused", "graph", "flash",
              "cudnn", "flash-strided", "cudnn-strided", "eager", "compile", "graph-eager",
              "graph-compile"]


def row_order(r):
    path = PATH_ORDER.index(r["path"]) if r["path"] in PATH_ORDER else len(PATH_ORDER)
    return (r["what"] != "attention", r["impl"] != "ra", r["config"] != "baseline", path,
            r["path"])


def print_shape(entry):
    print(f"\n== {shape_label(entry['shape'])} ==")
    print(f"{'impl':5} {'what':13} {'config':8} {'path':14} {'median_us':>9} {'TFLOP/s':>7} "
          f"{'peak_MB':>8} {'allocs':>6} {'vs_best_torch':>13}")
    for r in sorted(entry["rows"], key=row_order):
        head = f"{r['impl']:5} {r['what']:13} {r['config']:8} {r['path']:14}"
        if not ok(r):
            print(f"{head} {('error: ' + str(r.get('error', 'no time')))[:60]}")
            continue
        peak = r.get("peak_bytes")
        ratio = r.get("ratio_vs_best_torch")
        print(f"{head} {fmt(r['median_us'], '.1f', 9)} {fmt(r.get('tflops'), '.1f', 7)} "
              f"{fmt(peak / 2**20 if peak is not None else None, '.1f', 8)} "
              f"{fmt(r.get('allocs_per_call'), '.2f', 6)} "
              f"{(fmt(ratio, '.2f', 12) + 'x') if ratio is not None else fmt(None, '', 13)}")


def print_targets(analysis):
    print("\n== targets (issue 3; benchmarks, not tests) ==")
    for entry in analysis:
        for t in entry["targets"]:
            if t["value"] is None:
                status = "n/a (" + t["detail"] + ")"
            else:
                status = f"{t['status']:6} {t['value']:.3f}x (limit {t['limit']:.2f}x"
                if "aim" in t:
                    status += f", aim {t['aim']:.2f}x {t['aim_status']}"
                status += f"; {t['detail']})"
            print(f"T={t['T']:<5} {t['target']:38} {status}")


# ---- files -------------------------------------------------------------------------------------------

def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "unknown-device"


def plot(entry, device, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [("attention", "attention kernel (forward, causal)"),
             ("block", "attention block (forward)")]
    groups = [[r for r in sorted(entry["rows"], key=row_order) if r["what"] == k and ok(r)]
              for k, _ in kinds]
    heights = [max(len(g), 1) for g in groups]
    fig, axes = plt.subplots(2, 1, figsize=(9, 1.2 + 0.32 * sum(heights) + 1.0),
                             gridspec_kw={"height_ratios": heights})
    colours = {"ra": "#1f77b4", "torch": "#ff7f0e"}
    for ax, (kind, title), rows in zip(axes, kinds, groups):
        if not rows:
            ax.text(0.5, 0.5, "no successful runs", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = [label(r) for r in rows]
        times = [r["median_us"] for r in rows]
        ax.barh(range(len(rows)), times, color=[colours.get(r["impl"], "grey") for r in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median time (us), lower is better")
        ax.set_title(title, fontsize=10)
        right = max(times)
        ax.set_xlim(0, right * 1.32)
        for i, r in enumerate(rows):
            text = f"{r['median_us']:.0f} us"
            if r.get("tflops"):
                text += f", {r['tflops']:.0f} TF/s"
            if r.get("ratio_vs_best_torch") is not None:
                text += f", {r['ratio_vs_best_torch']:.2f}x"
            ax.text(r["median_us"] + right * 0.01, i, text, va="center", fontsize=7)
    fig.suptitle(f"ra vs PyTorch on {device}: {shape_label(entry['shape'])}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ra", help="ra_bench --json output")
    p.add_argument("--torch", help="torch_peers.py --json output")
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "results"))
    p.add_argument("--commit", default=None, help="default: $RA_COMMIT, else the inputs'")
    p.add_argument("--copy-to", default=None, help="also copy the files written here")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)

    ra, torch_doc = load(args.ra, "ra"), load(args.torch, "torch")
    for doc in (ra, torch_doc):
        if doc.get("error"):
            print(f"compare: {doc['error']}", file=sys.stderr)
    records = [r for r in ra["records"] + torch_doc["records"] if all(k in r for k in
                                                                      ("what", "config", "path"))]
    if not records:
        print("compare: no records to compare", file=sys.stderr)
        return 1
    device = ra.get("device") or torch_doc.get("device") or "unknown device"
    if ra.get("device") and torch_doc.get("device") and ra["device"] != torch_doc["device"]:
        print(f"compare: WARNING ra ran on {ra['device']!r}, torch on {torch_doc['device']!r}",
              file=sys.stderr)
    date = (ra.get("date") or torch_doc.get("date") or
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    commit = (args.commit or os.environ.get("RA_COMMIT") or
              next((d["commit"] for d in (ra, torch_doc)
                    if d.get("commit") and d["commit"] != "unknown"), "unknown"))
    analysis = analyse(records)

    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"{slug(device)}-{date[:10]}")
    merged = {"device": device, "sm": ra.get("sm") or torch_doc.get("sm"), "date": date,
              "commit": commit,
              "flops_convention": ra.get("flops_convention") or torch_doc.get("flops_convention"),
              "ratio_convention": "median_us / best PyTorch median_us of the same kind and shape "
                                  "(attention: any SDPA record; block: baseline blocks)",
              "ra": {k: v for k, v in ra.items() if k != "records"},
              "torch": {k: v for k, v in torch_doc.items() if k != "records"},
              "records": [r for e in analysis for r in e["rows"]],
              "targets": [t for e in analysis for t in e["targets"]]}
    written = [stem + ".json"]
    with open(written[0], "w") as f:
        json.dump(merged, f, indent=1)
    if not args.no_plot:
        try:
            for entry in analysis:
                png = f"{stem}-T{entry['shape'][2]}.png"
                plot(entry, device, png)
                written.append(png)
        except ImportError as e:
            print(f"compare: no chart ({e})", file=sys.stderr)
    if args.copy_to:
        os.makedirs(args.copy_to, exist_ok=True)
        for path in written:
            shutil.copy(path, args.copy_to)
    for path in written:
        print(f"compare: wrote {path}")

    print(f"\nra vs PyTorch on {device} (sm {merged['sm']}), commit {commit}, {date}")
    print("time: median of CUDA-event-timed runs; TFLOP/s: attention 2*B*H*T^2*D, block "
          "+ 2*B*T*C*4C; ratio: / best PyTorch of the same kind")
    for entry in analysis:
        print_shape(entry)
    print_targets(analysis)
    return 0


if __name__ == "__main__":
    sys.exit(main())
