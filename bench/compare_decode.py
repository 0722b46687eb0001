#!/usr/bin/env python3
"""bench/compare_decode.py — the generation table: ra (bench/decode_bench.cu) beside Hugging Face
transformers (bench/hf_generate.py), measured on the same GPU in the same command.

  compare_decode.py RA_JSON HF_JSON OUT_JSON

Per batch size: ra's baseline and RA arms (their faster variant, graph or eager) and the best
HF variant, ranked by step_us_mean (the mean decode step: ra's from its per-step times, HF's
from (generate − prefill) / (new_tokens − 1), with no synchronization added). Then the issue's
targets: batch-1 latency ≤ 2× the weight-read floor, ≥ 1.5× faster than the best PyTorch, and
the RA arm ≤ 1.03× ra's baseline. Writes both records and the verdicts into OUT_JSON. Either
input may be missing (its rows are then absent).
"""
import json
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"compare_decode: {path}: {e}")
        return None


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    ra, hf = load(argv[1]), load(argv[2])
    rows = []
    for rec in (ra, hf):
        if not rec:
            continue
        for r in rec.get("results", []):
            if r.get("error"):
                print(f"{r.get('impl')} {r.get('variant')} batch {r.get('batch')}: {r['error']}")
                continue
            rows.append(r)
    device = (ra or hf or {}).get("device", "?")
    cfg = (ra or hf or {}).get("config", {})
    print(f"\nGPT-2 generation on {device}: prompt {cfg.get('prompt')}, {cfg.get('new_tokens')} "
          "new tokens, greedy, bf16")
    print(f"{'impl':4} {'arm':8} {'variant':8} {'batch':>5} {'prefill_ms':>10} {'step_us_mean':>12} "
          f"{'step_us_med':>11} {'step_us_p90':>11} {'tokens/s':>10} {'vs_floor':>8} "
          f"{'vs_best_hf':>10}")
    verdict, best = {}, {}
    for B in sorted({r["batch"] for r in rows}):
        at = [r for r in rows if r["batch"] == B]
        hf_best = min((r for r in at if r["impl"] == "hf"), key=lambda r: r["step_us_mean"],
                      default=None)
        floor = next((r["floor_us"] for r in at if r.get("floor_us")), None)
        for r in sorted(at, key=lambda r: (r["impl"] != "ra", r["arm"], r["variant"])):
            vs_floor = f"{r['step_us_mean'] / floor:.2f}x" if floor else "-"
            vs_hf = f"{r['step_us_mean'] / hf_best['step_us_mean']:.3f}x" if hf_best else "-"
            print(f"{r['impl']:4} {r['arm']:8} {r['variant']:8} {B:5} {r['prefill_ms']:10.2f} "
                  f"{r['step_us_mean']:12.1f} {r['step_us_median']:11.1f} {r['step_us_p90']:11.1f} "
                  f"{r['tokens_per_s']:10.0f} {vs_floor:>8} {vs_hf:>10}")
        ours = {}
        for arm in ("baseline", "ra"):
            mine = [r for r in at if r["impl"] == "ra" and r["arm"] == arm]
            if mine:
                ours[arm] = min(mine, key=lambda r: r["step_us_mean"])
        best[B] = {"ra_" + a: {"variant": r["variant"], "step_us_mean": r["step_us_mean"],
                               "tokens_per_s": r["tokens_per_s"]} for a, r in ours.items()}
        if hf_best:
            best[B]["hf"] = {"variant": hf_best["variant"], "step_us_mean": hf_best["step_us_mean"],
                             "tokens_per_s": hf_best["tokens_per_s"]}
        if B == 1 and floor and "baseline" in ours:
            verdict["batch1_latency_vs_floor"] = ours["baseline"]["step_us_mean"] / floor
        if B == 1 and hf_best and "baseline" in ours:
            verdict["batch1_speedup_vs_best_hf"] = hf_best["step_us_mean"] / ours["baseline"]["step_us_mean"]
        if "ra" in ours and "baseline" in ours:
            verdict[f"batch{B}_ra_vs_baseline"] = (ours["ra"]["step_us_mean"] /
                                                   ours["baseline"]["step_us_mean"])
        graphs = [r for r in at if r["impl"] == "ra" and r.get("first_tokens")]
        for arm in ("baseline", "ra"):
            toks = {tuple(r["first_tokens"]) for r in graphs if r["arm"] == arm}
            if len(toks) > 1:
                print(f"note: ra {arm} batch {B}: graph and eager made different tokens")
    print()
    if "batch1_latency_vs_floor" in verdict:
        v = verdict["batch1_latency_vs_floor"]
        print(f"target 1: batch-1 latency within 2x the weight-read floor: {v:.2f}x -> "
              f"{'met' if v <= 2.0 else 'MISSED'}")
    if "batch1_speedup_vs_best_hf" in verdict:
        v = verdict["batch1_speedup_vs_best_hf"]
        print(f"target 2: batch 1 at least 1.5x faster than the best PyTorch: {v:.2f}x -> "
              f"{'met' if v >= 1.5 else 'MISSED'}")
    for k, v in sorted(verdict.items()):
        if k.endswith("_ra_vs_baseline"):
            print(f"target 3 ({k.split('_')[0]}): RA arm within 1.03x of ra's baseline: {v:.3f}x -> "
                  f"{'met' if v <= 1.03 else 'MISSED'}")
    with open(argv[3], "w") as f:
        json.dump({"ra": ra, "hf": hf, "best": {str(k): v for k, v in best.items()},
                   "verdict": verdict}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
