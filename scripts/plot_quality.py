#!/usr/bin/env python3
"""scripts/plot_quality.py — the loss curves of a quality test (examples/quality_test.cpp).

    python3 scripts/plot_quality.py build/quality/quality.json build/quality/quality.png

One panel per phase: validation loss against training tokens (matched-tokens phase) or
against training seconds (matched wall-clock phase), baseline and RA per seed, with the
training loss faint behind; the title carries each phase's verdict and paired 95% interval.

Beside it, when the RA runs logged their gates over training (gates_curve.tsv of train_gpt2,
"gate_curve" in the JSON): quality_gates.png (the PNG's name with "_gates"), a heatmap of the
effective reciprocal gate g_rec for each RA run of the first phase — one row per layer (per
layer and head with per-head gates), one column per evaluation — which shows where the
reciprocal part is kept and where it is switched off.

Needs matplotlib (Debian: python3-matplotlib); exits with status 2 and a message when it is
missing, so the caller can go on without the picture.
"""
import json
import sys
import textwrap


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_quality.py: matplotlib is not installed (python3-matplotlib); no PNG",
              file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        q = json.load(f)
    phases = q["phases"]
    fig, axes = plt.subplots(1, len(phases), figsize=(6.5 * len(phases), 4.5), squeeze=False)
    colours = {"baseline": "tab:blue", "ra": "tab:red"}
    styles = ["-", "--", ":", "-."]
    for ax, phase in zip(axes[0], phases):
        x = 1 if phase["name"] == "tokens" else 2  # columns: step, tokens, train_s, loss
        seeds = sorted({r["seed"] for r in phase["runs"]})
        for run in phase["runs"]:
            ls = styles[seeds.index(run["seed"]) % len(styles)]
            c = colours.get(run["arm"], "black")
            train = run["train_curve"]
            if train:
                ax.plot([p[x] for p in train], [p[3] for p in train], color=c, alpha=0.15,
                        linewidth=0.8)
            val = run["val_curve"]
            ax.plot([p[x] for p in val], [p[3] for p in val], ls, color=c, marker="o",
                    markersize=3, label=f"{run['arm']} seed {run['seed']} "
                                        f"(val {run['val_loss']:.4f})")
        ax.set_xlabel("training tokens" if x == 1 else "training seconds")
        ax.set_ylabel("loss (nats/token)")
        title = "matched tokens" if phase["name"] == "tokens" else "matched wall-clock"
        ax.set_title(textwrap.fill(f"{title}: {phase['verdict']}", width=70), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # Wrapped to the figure's width (one panel holds about 100 characters at this size).
    title = f"RA vs baseline — {q['ra_flags']} | {q['common_flags']}"
    fig.suptitle(textwrap.fill(title, width=100 * len(phases)), fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=120)
    plot_gates(q, argv[2])
    return 0


def plot_gates(q, png):
    """The g_rec heatmaps (see the top); nothing when no RA run logged gates."""
    import matplotlib.pyplot as plt

    runs = [r for r in q["phases"][0]["runs"] if r["arm"] == "ra" and r.get("gate_curve")]
    if not runs:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs) + 1.0, 4.5), squeeze=False)
    image = None
    for ax, run in zip(axes[0], runs):
        rows = run["gate_curve"]  # step, layer, gate, g_std, g_rec
        steps = sorted({int(r[0]) for r in rows})
        keys = sorted({(int(r[1]), int(r[2])) for r in rows})
        grid = [[float("nan")] * len(steps) for _ in keys]
        for r in rows:
            grid[keys.index((int(r[1]), int(r[2])))][steps.index(int(r[0]))] = r[4]
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0.0, vmax=max(0.2, max(r[4] for r in rows)))
        per_head = len(keys) > len({k[0] for k in keys})
        ticks = list(range(0, len(steps), max(1, len(steps) // 6)))
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(steps[i]) for i in ticks], fontsize=7)
        ax.set_xlabel("step")
        if per_head:
            starts = [i for i, k in enumerate(keys) if k[1] == 0]
            ax.set_yticks(starts)
            ax.set_yticklabels([f"L{keys[i][0]}" for i in starts], fontsize=7)
            ax.set_ylabel("layer (rows: heads)")
        else:
            ax.set_yticks(range(len(keys)))
            ax.set_yticklabels([f"L{k[0]}" for k in keys], fontsize=7)
            ax.set_ylabel("layer")
        ax.set_title(f"seed {run['seed']}: g_rec (final val {run['val_loss']:.4f})", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="effective g_rec")
    fig.suptitle(f"reciprocal gate over training — {q['ra_flags']}", fontsize=8)
    stem = png[:-4] if png.endswith(".png") else png
    fig.savefig(stem + "_gates.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
