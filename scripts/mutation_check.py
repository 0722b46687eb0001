#!/usr/bin/env python3
"""scripts/mutation_check.py — shows that the GPU attention tests catch deliberate faults.

Each mutation below is one literal edit of a kernel header (a plausible bug: a gate sum over
the gated Q̂, the R split off by one column, a missing (1 − α), ρ from O', a softplus gradient
without its sigmoid, a zeroed gate gradient, a dropped last row). For each, a copy of
include/ with the edit goes to <build>/mutants/m<k>/include, and one CMake build
(tests/mutation.cmake) compiles the flash kernels against each copy — only the kernels see the
mutated headers — and links them with the unchanged test objects into ra_cuda_tests_m<k>.
Then each binary runs the tests that should catch its fault; a mutation counts as caught when
that run fails (exit code neither 0 nor 77). The unmutated control (m0) must pass. The kernels
are narrowed to D = 64, R = 4 (every dtype) to keep the builds short.

  python3 scripts/mutation_check.py [--build DIR] [--jobs N] [--json FILE] [--only K,...]

Needs a GPU and the tool chain of scripts/gpu_check.sh; prints a table, writes JSON, and exits
non-zero when a mutation is not caught, the control fails, or an edit no longer applies.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BWD = "include/ra/cuda/sm80/flash_backward.cuh"
PASSES = "include/ra/cuda/backward_passes.cuh"
FWD = "include/ra/cuda/flash_forward.cuh"

# (id, what, file, old text, new text, Catch test spec that must fail)
MUTATIONS = [
    (1, "gate sum over the gated Q̂ instead of raw Qf", PASSES,
     "gsum += (c < kStd ? dqh.x * qraw.x : 0.f) + (c + 1 < kStd ? dqh.y * qraw.y : 0.f);",
     "gsum += (c < kStd ? dqh.x * qraw.x * gate.x : 0.f) + (c + 1 < kStd ? dqh.y * qraw.y * gate.x : 0.f);",
     "[flash_backward]~[long]"),
    (2, "the R split of the gate sums off by one column", PASSES,
     "  gsum += (c < kStd ? dqh.x * qraw.x : 0.f) + (c + 1 < kStd ? dqh.y * qraw.y : 0.f);\n"
     "  rsum += (c < kStd ? 0.f : dqh.x * qraw.x) + (c + 1 < kStd ? 0.f : dqh.y * qraw.y);",
     "  gsum += (c < kStd - 1 ? dqh.x * qraw.x : 0.f) + (c + 1 < kStd - 1 ? dqh.y * qraw.y : 0.f);\n"
     "  rsum += (c < kStd - 1 ? 0.f : dqh.x * qraw.x) + (c + 1 < kStd - 1 ? 0.f : dqh.y * qraw.y);",
     "[flash_backward]~[long]"),
    (3, "a missing (1 - α) in dQ", BWD,
     "const float q_scale = f.scale * (1.f - alpha);",
     "const float q_scale = f.scale;",
     "[flash_backward]~[long]"),
    (4, "ρ computed from O' instead of O", PASSES,
     "if (restart) rho += dout * (to_float(v[d]) - out);",
     "if (restart) rho += dout * (to_float(v[d]) - to_float(static_cast<const T*>(f.o)"
     "[b * f.o_batch_stride + h * f.o_head_stride + row * f.o_row_stride + d]));",
     "[flash_backward]~[long]"),
    (5, "a softplus gate gradient without its sigmoid", PASSES,
     "if (p.d_w_std) p.d_w_std[i] = effective_gate_grad(gates.w_std[i], gates.param) * sum_std;",
     "if (p.d_w_std) p.d_w_std[i] = (gates.param == GateParam::softplus ? 1.f : "
     "effective_gate_grad(gates.w_std[i], gates.param)) * sum_std;",
     "[flash_backward]~[long]"),
    (6, "a zeroed gate gradient", PASSES,
     "if (p.d_w_std) p.d_w_std[i] = effective_gate_grad(gates.w_std[i], gates.param) * sum_std;",
     "if (p.d_w_std) p.d_w_std[i] = 0.f * sum_std;",
     "[flash_backward]~[long]"),
    (7, "the last query row dropped from dKf and dV", BWD,
     "const bool masked = m0 + qc < kr || m0 + qc >= T_;",
     "const bool masked = m0 + qc < kr || m0 + qc >= T_ - 1;",
     "[flash_backward]~[long]"),
    (8, "the last key dropped from the forward", FWD,
     "if (col > row || col >= T_) s[j][i] = -INFINITY;",
     "if (col > row || col >= T_ - 1) s[j][i] = -INFINITY;",
     "[flash]~[long]"),
]


def run(cmd, log, cwd=ROOT, env=None):
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def first_failure(log):
    with open(log, errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if "FAILED:" in line:
            for later in lines[i + 1:i + 40]:
                if "ratio" in later or "with expansion" in later or "CHECK" in later:
                    return later.strip()[:200]
            return line.strip()[:200]
    for line in lines[::-1]:
        if line.startswith("test cases:") or line.startswith("All tests passed"):
            return line.strip()
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-mutants"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 4)
    ap.add_argument("--json", default="")
    ap.add_argument("--only", default="", help="comma-separated mutation ids (default: all)")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS
              if not args.only or str(m[0]) in args.only.split(",")]
    build = os.path.abspath(args.build)
    root = os.path.join(build, "mutants")
    os.makedirs(root, exist_ok=True)

    # The mutated include trees (m0: the control, unchanged).
    ids = [0] + [m[0] for m in chosen]
    for k in ids:
        dst = os.path.join(root, f"m{k}", "include")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "include"), dst)
    for k, what, path, old, new, _ in chosen:
        target = os.path.join(root, f"m{k}", path)
        text = open(target).read()
        if text.count(old) != 1:
            print(f"mutation_check: M{k} ({what}) no longer applies: the text to replace occurs "
                  f"{text.count(old)} times in {path}, expected once; update MUTATIONS",
                  file=sys.stderr)
            return 2
        open(target, "w").write(text.replace(old, new))

    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    prefix = []
    if os.path.isdir(os.path.join(ROOT, ".devdeps/usr")):
        prefix = [f"-DCMAKE_PREFIX_PATH={os.path.join(ROOT, '.devdeps/usr')}"]
    t0 = time.time()
    rc = run(["cmake", "-S", ROOT, "-B", build, *gen, *prefix, "-DCMAKE_BUILD_TYPE=Release",
              "-DCMAKE_CUDA_ARCHITECTURES=90a", "-DRA_CUDA_HEAD_DIMS=64", "-DRA_CUDA_RANKS=4",
              "-DRA_BUILD_EXAMPLES=OFF", "-DRA_BUILD_BENCH=OFF",
              "-DRA_CUDA_TEST_SOURCES=flash_case.cu;test_flash_forward.cu;test_flash_backward.cu",
              f"-DRA_TEST_MUTANTS={';'.join(str(k) for k in ids)}",
              f"-DRA_TEST_MUTANT_ROOT={root}"],
             os.path.join(build, "configure.log"))
    if rc != 0:
        print(f"mutation_check: configure failed, see {build}/configure.log", file=sys.stderr)
        return 1
    rc = run(["cmake", "--build", build, "-j", str(args.jobs), "--target",
              *[f"ra_cuda_tests_m{k}" for k in ids]], os.path.join(build, "build.log"))
    if rc != 0:
        print(f"mutation_check: build failed, see {build}/build.log", file=sys.stderr)
        return 1
    print(f"mutation_check: built {len(ids)} binaries in {time.time() - t0:.0f} s")

    def binary(k):
        for dirpath, _, files in os.walk(build):
            if f"ra_cuda_tests_m{k}" in files:
                return os.path.join(dirpath, f"ra_cuda_tests_m{k}")
        raise FileNotFoundError(f"ra_cuda_tests_m{k}")

    rows, ok = [], True
    specs = {0: "[flash]~[long],[flash_backward]~[long]"}
    specs.update({m[0]: m[5] for m in chosen})
    whats = {0: "control: no mutation"}
    whats.update({m[0]: m[1] for m in chosen})
    for k in ids:
        log = os.path.join(build, f"m{k}.log")
        t = time.time()
        code = run([binary(k), specs[k], "-w", "NoAssertions", "--durations", "no"], log)
        caught = code not in (0, 77)
        good = (not caught and code == 0) if k == 0 else caught
        ok = ok and good
        rows.append({"id": k, "mutation": whats[k], "tests": specs[k], "exit_code": code,
                     "result": ("passes" if code == 0 else f"FAILS (exit {code})") if k == 0
                     else ("caught" if caught else "NOT CAUGHT"),
                     "first_failure": first_failure(log), "seconds": round(time.time() - t, 1)})
    print("| id | mutation | tests | result | first failed check |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| M{r['id']} | {r['mutation']} | `{r['tests']}` | {r['result']} | "
              f"{r['first_failure']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mutations": rows, "all_good": ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
