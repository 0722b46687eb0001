#!/usr/bin/env python3
"""tests/programs/hf_mapping.py — ra's checkpoint mapped into transformers' GPT2LMHeadModel
(bench/hf_generate.py's ra_checkpoint_to_hf) computes ra's model:

  hf_mapping.py RA_LOGITS BASELINE_CKPT RA_CKPT RESTART_CKPT

For the baseline and the RA checkpoint (gates, no restart; byte tokens), the logits of ra's CPU
model (tests/programs/ra_logits.cpp: double arithmetic, fp32 storage) at every position of one
sequence must equal the mapped model's (fp32, CPU) within TOL of the logit scale. Leaving the
RA gates out must move the logits past that tolerance (the check can fail, and the gates are
exercised), and the checkpoint with self-restart must be refused by name. Exits 77 (skipped)
when transformers is not importable.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

TEXT = b"Once upon a time"  # byte tokens, max_seq 16 in the smoke models
TOL = 2e-6  # of 1 + max |logit|: fp32 against ra's double arithmetic differs by ~1e-7


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def ra_logits(program, ckpt, ids, torch):
    out = subprocess.run([program, ckpt] + [str(t) for t in ids], capture_output=True, check=False,
                         text=True)
    if out.returncode != 0:
        fail(f"ra_logits on {ckpt} exited with {out.returncode}: {out.stderr}")
    return torch.tensor([[float(x) for x in line.split()] for line in out.stdout.splitlines()],
                        dtype=torch.float64)


def hf_logits(config, state, ids, torch, hf):
    model = hf.load_model(config, state, "cpu", torch.float32)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def diff(a, b):
    """max |a - b| over 1 + max |a|, and where."""
    d = (a - b).abs()
    i = int(d.argmax())
    return d.max().item() / (1.0 + a.abs().max().item()), divmod(i, a.shape[1])


def main(argv):
    if len(argv) != 5:
        print(__doc__)
        return 2
    try:
        import torch
        import transformers  # noqa: F401
        import hf_generate as hf
    except ImportError as e:
        print(f"skipped: {e} (transformers is needed for the mapping)")
        return 77
    program, baseline, ra_ckpt, restart = argv[1:]
    ids = list(TEXT)
    for ckpt in (baseline, ra_ckpt):
        config, state, cfg = hf.ra_checkpoint_to_hf(ckpt)
        z_ra = ra_logits(program, ckpt, ids, torch)
        z_hf = hf_logits(config, state, ids, torch, hf)
        if z_ra.shape != z_hf.shape:
            fail(f"{ckpt}: ra's logits are {tuple(z_ra.shape)}, the mapped model's "
                 f"{tuple(z_hf.shape)}")
        err, (t, v) = diff(z_ra, z_hf)
        if not err <= TOL:
            fail(f"{ckpt} ({cfg['arm']}): logits differ by {err:.2e} of the scale at position {t}, "
                 f"token {v}: ra {z_ra[t, v].item():.7f}, mapped {z_hf[t, v].item():.7f} "
                 f"(allowed {TOL:.0e})")
        print(f"ok: {ckpt} ({cfg['arm']}, R {cfg['R']}, gates {cfg['gates']}): logits equal "
              f"within {err:.1e} of the scale (allowed {TOL:.0e})")
        if cfg["arm"] == "ra":
            _, ungated, _ = hf.ra_checkpoint_to_hf(ckpt, apply_gates=False)
            moved, _ = diff(z_ra, hf_logits(config, ungated, ids, torch, hf))
            if moved <= TOL:
                fail(f"{ckpt}: without the gates the logits move by {moved:.2e} only, expected "
                     f"more than {TOL:.0e}: the check would not see a missing gate")
            print(f"ok: without the gates they differ by {moved:.1e} of the scale (the check "
                  "sees the gates)")
    try:
        hf.ra_checkpoint_to_hf(restart)
    except hf.MappingError as e:
        if "self-restart" not in str(e):
            fail(f"{restart}: refused with '{e}', expected a message naming self-restart")
        print(f"ok: refused: {e}")
    else:
        fail(f"{restart}: a checkpoint with self-restart was mapped, expected a refusal")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
