#!/usr/bin/env python3
"""bench/compare_train.py — the GPT-2 training-step table: ra (bench/gpt2_step.cu) beside
PyTorch (bench/torch_gpt2.py), measured on the same GPU in the same command.

  compare_train.py RA_JSON TORCH_JSON OUT_JSON

Prints one row per (arm, variant) with step time, tokens/s and the ratio to PyTorch's best
compiled baseline, then the two targets of the issue: ra's RA arm at or above PyTorch's
compiled baseline, and within 2% of ra's own baseline arm. Writes both records and the
verdicts into OUT_JSON. Either input may be missing (its rows are then absent).
"""
import json
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"compare_train: {path}: {e}")
        return None


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    ra, pt = load(argv[1]), load(argv[2])
    rows = []
    for rec, who in ((ra, "ra"), (pt, "torch")):
        for r in (rec or {}).get("results", []):
            if r.get("error"):
                print(f"{who} {r.get('arm')} {r.get('variant')}: {r['error']}")
                continue
            rows.append((who, r["arm"], r["variant"], r["step_ms_median"], r["tokens_per_s"]))
    peer = max((r[4] for r in rows if r[0] == "torch" and r[1] == "baseline"
                and r[2] == "compile"), default=None)
    device = (ra or pt or {}).get("device", "?")
    print(f"\nGPT-2 training step on {device} (B, T, bf16 as in the records)")
    print(f"{'who':6} {'arm':9} {'variant':8} {'step ms':>9} {'tokens/s':>10} {'vs torch.compile baseline':>27}")
    for who, arm, var, ms, tok in rows:
        ratio = f"{tok / peer:.3f}x" if peer else "-"
        print(f"{who:6} {arm:9} {var:8} {ms:9.2f} {tok:10.0f} {ratio:>27}")
    ours = {r[1]: r[4] for r in rows if r[0] == "ra"}
    verdict = {}
    if "ra" in ours and peer:
        verdict["ra_vs_torch_compile_baseline"] = ours["ra"] / peer
    if "ra" in ours and "baseline" in ours:
        verdict["ra_vs_ra_baseline"] = ours["ra"] / ours["baseline"]
    if "ra_vs_torch_compile_baseline" in verdict:
        v = verdict["ra_vs_torch_compile_baseline"]
        print(f"target 1: ra RA arm >= PyTorch compiled baseline: {v:.3f}x -> "
              f"{'met' if v >= 1.0 else 'MISSED'}")
    if "ra_vs_ra_baseline" in verdict:
        v = verdict["ra_vs_ra_baseline"]
        print(f"target 2: ra RA arm within 2% of ra baseline: {v:.3f}x -> "
              f"{'met' if v >= 0.98 else 'MISSED'}")
    with open(argv[3], "w") as f:
        json.dump({"ra": ra, "torch": pt, "verdict": verdict}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
