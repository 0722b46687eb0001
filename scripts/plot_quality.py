#!/usr/bin/env python3
"""scripts/plot_quality.py — the loss curves of a quality test (examples/quality_test.cpp).

    python3 scripts/plot_quality.py build/quality/quality.json build/quality/quality.png

One panel per phase: validation loss against training tokens (matched-tokens phase) or
against training seconds (matched wall-clock phase), baseline and RA per seed, with the
training loss faint behind. Needs matplotlib (Debian: python3-matplotlib); exits with status
2 and a message when it is missing, so the caller can go on without the picture.
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
        ax.set_title(f"{title}: {phase['verdict']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # Wrapped to the figure's width (one panel holds about 100 characters at this size).
    title = f"RA vs baseline — {q['ra_flags']} | {q['common_flags']}"
    fig.suptitle(textwrap.fill(title, width=100 * len(phases)), fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
