"""bench/torch_gpt2.py's ra_op arm on the CPU (a smoke run of the training-step benchmark): the
custom op trains the same model as the torch-ops RA arm, and without ra_torch the arm is
recorded as skipped, with why, while the others still run."""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--device", "cpu", "--batch", "2", "--seq", "24", "--block-size", "32", "--n-layer", "2",
        "--n-head", "2", "--n-embd", "128", "--vocab", "97", "--R", "4", "--warmup", "2",
        "--steps", "3", "--variants", "eager"]


def load_bench():
    spec = importlib.util.spec_from_file_location("torch_gpt2",
                                                  os.path.join(ROOT, "bench", "torch_gpt2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path, *extra):
    out = tmp_path / "bench.json"
    assert load_bench().main(TINY + list(extra) + ["--json", str(out)]) == 0
    return {r["arm"]: r for r in json.loads(out.read_text())["results"]}


@pytest.mark.parametrize("gates", ["per_layer", "per_head"])
def test_ra_op_arm_trains_like_the_torch_ops_arm(tmp_path, gates):
    """Same seed, same parameters: after 5 AdamW steps the losses agree to float32 rounding."""
    results = run(tmp_path, "--arms", "ra,ra_op", "--gates", gates)
    ra, op = results["ra"], results["ra_op"]
    assert ra["error"] is None and op["error"] is None, (ra["error"], op["error"])
    assert op["params"] == ra["params"]
    assert op["steps"] == ra["steps"] == 3
    assert op["loss"] == pytest.approx(ra["loss"], rel=1e-4)
    assert op["attention"].startswith("ra_torch.folded_attention")


def test_ra_op_arm_skipped_without_ra_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ra_torch", None)  # import ra_torch raises ImportError
    results = run(tmp_path, "--arms", "baseline,ra_op")
    assert results["baseline"]["error"] is None
    assert results["ra_op"]["error"].startswith("skipped: ra_torch is not importable")
    assert results["ra_op"]["step_ms_median"] is None
