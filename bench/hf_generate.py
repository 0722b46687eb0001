#!/usr/bin/env python3
"""bench/hf_generate.py — the Hugging Face peer of bench/decode_bench.cu: transformers'
GPT2LMHeadModel.generate() on the same GPU, same shape, same decoding (greedy).

  hf_generate.py [--batch 1,16] [--prompt 128] [--new-tokens 256]
                 [--variants eager,static,compile] [--seed 1] [--ra-checkpoint PATH]
                 [--n-layer 12] [--n-head 12] [--n-embd 768] [--vocab 50257]
                 [--warmup 2] [--repeats 3] [--json PATH]

Model: GPT-2 124M (n_positions 1024, gelu_new, LayerNorm eps 1e-5, dropout 0, tied head) in
bf16 on cuda:0, random weights from torch.manual_seed(--seed), or the weights of an ra
checkpoint (--ra-checkpoint, mapped by ra_checkpoint_to_hf below). Prompts: --prompt random
token ids per sequence (seeded by --seed and the batch size). Every run makes exactly
--new-tokens tokens: do_sample=False, min_new_tokens = max_new_tokens (EOS = vocab − 1 is
suppressed until then).

Variants (each on a fresh copy of the model):
  eager    generate() with the default dynamic cache
  static   generation_config.cache_implementation = "static", HF's automatic compile off
           (disable_compile = True)
  compile  the static cache with model.forward = torch.compile(model.forward,
           mode="reduce-overhead", fullgraph=True) — the way the transformers docs give
           (HF's own automatic compile off, so the forward is compiled once)
  auto     the static cache with HF's automatic compile of the decoding forward (its
           default CompileConfig)
A variant that fails (e.g. a compile error) is recorded with its error and no figures.

Timing (time.perf_counter around a torch.cuda.synchronize()d call): tokens/s = batch ·
new_tokens / the median generate() time; prefill_ms = median time of generate() with one new
token; step_us_mean = (generate − prefill) / (new_tokens − 1). step_us_median and step_us_p90
come from one more run with a streamer that synchronizes and stamps each new token (on CUDA,
generate() already waits for every step's stop check, so this adds little; still, the
comparison, bench/compare_decode.py, ranks by step_us_mean on both sides).

The mapping (ra's checkpoint, include/ra/nn/checkpoint.hpp, into GPT2LMHeadModel): ra stores
each linear weight as (out, in) rows = outputs and HF's Conv1D as (in, out), so each weight is
transposed; wte's first `vocab` rows are the embedding and the tied LM head; LayerNorms and
biases map by name. The baseline arm maps exactly. The RA arm without self-restart also maps
exactly: its score is ⟨Qf ⊙ g, Kf⟩ / √D (the gates act on the Q tile only) over the folded
columns, so scaling the Qf rows of W_attn and b_attn by g (g_std on each head's first D − R
rows, g_rec on its last R) gives plain attention with the same logits. Self-restart
(O' = (1 − α) O + α V) has no counterpart in GPT-2 and is refused. The checkpoint's CRC-32C
is not verified here (ra's own programs verify it); the header, config and sizes are.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

MAGIC = b"RACHECKP"
ARMS = ("baseline", "ra")
GATE_MODES = ("none", "per_layer", "per_head")
GATE_PARAMS = ("clamp", "softplus")
GATE_FLOOR = 1e-8


class MappingError(ValueError):
    """An ra checkpoint that cannot be read or cannot be mapped into GPT2LMHeadModel."""


def padded_vocab(vocab):
    return (vocab + 63) // 64 * 64


def read_ra_checkpoint(path):
    """(config dict, fp32 parameters as a numpy array) of an ra checkpoint (version 3)."""
    import numpy as np

    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:8] != MAGIC:
            raise MappingError(f"{path}: not an ra checkpoint (expected the magic 'RACHECKP')")
        version, _, body = struct.unpack("<IIQ", head[8:24])
        if version != 3:
            raise MappingError(f"{path}: checkpoint version {version}, expected 3")
        size = os.fstat(f.fileno()).st_size
        if size != 24 + body + 4:
            raise MappingError(f"{path}: {size} bytes, expected 24 + body {body} + 4")
        cfg_bytes = f.read(5 * 8 + 1 + 4 + 3 + 4 + 1)
        vocab, max_seq, n_layer, n_head, C = struct.unpack("<5q", cfg_bytes[:40])
        arm, R, gates, gate_param, restart, dropout, bias = struct.unpack(
            "<BiBBBfB", cfg_bytes[40:])
        (count,) = struct.unpack("<Q", f.read(8))
        params = np.fromfile(f, dtype="<f4", count=count)
    if arm >= len(ARMS) or gates >= len(GATE_MODES) or gate_param >= len(GATE_PARAMS):
        raise MappingError(f"{path}: arm {arm}, gates {gates}, gate_param {gate_param}: "
                           "expected values ra knows")
    cfg = dict(vocab=vocab, max_seq=max_seq, n_layer=n_layer, n_head=n_head, C=C,
               arm=ARMS[arm], R=R, gates=GATE_MODES[gates], gate_param=GATE_PARAMS[gate_param],
               restart=bool(restart), dropout=dropout, bias=bool(bias))
    if params.size != count:
        raise MappingError(f"{path}: {params.size} parameters read, expected {count}")
    return cfg, params


def ra_layout(cfg):
    """Name -> (offset, shape) in ra's flat parameter buffer (model::gpt2_layout's order)."""
    C, L, H = cfg["C"], cfg["n_layer"], cfg["n_head"]
    ra_arm = cfg["arm"] == "ra"
    bias = 1 if cfg["bias"] else 0
    gate_count = 0 if not ra_arm or cfg["gates"] == "none" else (
        1 if cfg["gates"] == "per_layer" else H)
    restart_count = H if ra_arm and cfg["restart"] else 0
    out, total = {}, 0

    def add(name, rows, cols=1):
        nonlocal total
        if rows * cols == 0:
            return
        out[name] = (total, (rows, cols) if cols > 1 else (rows,))
        total += rows * cols

    add("wte", padded_vocab(cfg["vocab"]), C)
    add("wpe", cfg["max_seq"], C)
    for i in range(L):
        p = f"h.{i}."
        add(p + "ln1.weight", C)
        add(p + "ln1.bias", bias * C)
        add(p + "attn.w_attn", 3 * C, C)
        add(p + "attn.b_attn", bias * 3 * C)
        add(p + "attn.w_o", C, C)
        add(p + "attn.b_o", bias * C)
        add(p + "ln2.weight", C)
        add(p + "ln2.bias", bias * C)
        add(p + "mlp.w_fc", 4 * C, C)
        add(p + "mlp.b_fc", bias * 4 * C)
        add(p + "mlp.w_proj", C, 4 * C)
        add(p + "mlp.b_proj", bias * C)
    add("ln_f.weight", C)
    add("ln_f.bias", bias * C)
    for i in range(L):
        p = f"h.{i}."
        add(p + "attn.w_std", gate_count)
        add(p + "attn.w_rec", gate_count)
        add(p + "attn.a", restart_count)
    return out, total


def effective_gate(w, param):
    if param == "softplus":
        return w if w > 20.0 else math.log1p(math.exp(w))
    return max(w, GATE_FLOOR)


def ra_checkpoint_to_hf(path, apply_gates=True):
    """(transformers.GPT2Config, state dict of fp32 tensors) equal to the ra checkpoint's model.

    Raises MappingError for a checkpoint with self-restart, which GPT-2 cannot express.
    apply_gates=False leaves the RA gates out (wrong on purpose: the negative control of the
    mapping's test)."""
    import numpy as np
    import torch

    cfg, params = read_ra_checkpoint(path)
    if cfg["arm"] == "ra" and cfg["restart"]:
        raise MappingError(
            f"{path}: the RA arm with self-restart (O' = (1 - a) O + a V) has no counterpart "
            "in GPT2LMHeadModel, expected a checkpoint without --restart")
    layout, total = ra_layout(cfg)
    if total != params.size:
        raise MappingError(f"{path}: {params.size} parameters, expected {total} for its config")

    def get(name):
        off, shape = layout[name]
        return params[off:off + int(np.prod(shape))].reshape(shape).copy()

    C, H, V, L = cfg["C"], cfg["n_head"], cfg["vocab"], cfg["n_layer"]
    D = C // H
    R = cfg["R"] if cfg["arm"] == "ra" else 0
    zeros = np.zeros
    sd = {"transformer.wte.weight": get("wte")[:V], "transformer.wpe.weight": get("wpe")}
    for i in range(L):
        p, q = f"h.{i}.", f"transformer.h.{i}."
        w_attn = get(p + "attn.w_attn")
        b_attn = get(p + "attn.b_attn") if cfg["bias"] else zeros(3 * C, np.float32)
        if cfg["arm"] == "ra" and cfg["gates"] != "none" and apply_gates:
            w_std, w_rec = get(p + "attn.w_std"), get(p + "attn.w_rec")
            for h in range(H):
                k = h if w_std.size == H else 0
                g_std = effective_gate(float(w_std[k]), cfg["gate_param"])
                g_rec = effective_gate(float(w_rec[k]), cfg["gate_param"])
                rows = slice(h * D, h * D + D - R), slice(h * D + D - R, (h + 1) * D)
                for r, g in zip(rows, (g_std, g_rec)):
                    w_attn[r] *= np.float32(g)
                    b_attn[r] *= np.float32(g)
        sd[q + "ln_1.weight"] = get(p + "ln1.weight")
        sd[q + "ln_1.bias"] = get(p + "ln1.bias") if cfg["bias"] else zeros(C, np.float32)
        sd[q + "attn.c_attn.weight"] = w_attn.T
        sd[q + "attn.c_attn.bias"] = b_attn
        sd[q + "attn.c_proj.weight"] = get(p + "attn.w_o").T
        sd[q + "attn.c_proj.bias"] = get(p + "attn.b_o") if cfg["bias"] else zeros(C, np.float32)
        sd[q + "ln_2.weight"] = get(p + "ln2.weight")
        sd[q + "ln_2.bias"] = get(p + "ln2.bias") if cfg["bias"] else zeros(C, np.float32)
        sd[q + "mlp.c_fc.weight"] = get(p + "mlp.w_fc").T
        sd[q + "mlp.c_fc.bias"] = get(p + "mlp.b_fc") if cfg["bias"] else zeros(4 * C, np.float32)
        sd[q + "mlp.c_proj.weight"] = get(p + "mlp.w_proj").T
        sd[q + "mlp.c_proj.bias"] = get(p + "mlp.b_proj") if cfg["bias"] else zeros(C, np.float32)
    sd["transformer.ln_f.weight"] = get("ln_f.weight")
    sd["transformer.ln_f.bias"] = get("ln_f.bias") if cfg["bias"] else zeros(C, np.float32)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    hf_cfg = hf_config(V, cfg["max_seq"], L, H, C)
    return hf_cfg, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, cfg


def hf_config(vocab, max_seq, n_layer, n_head, C):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab, n_positions=max_seq, n_embd=C, n_layer=n_layer,
                      n_head=n_head, activation_function="gelu_new", resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                      bos_token_id=vocab - 1, eos_token_id=vocab - 1, pad_token_id=vocab - 1,
                      tie_word_embeddings=True)


def load_model(config, state_dict, device, dtype):
    """A GPT2LMHeadModel of `config` holding `state_dict` (or its seeded random init)."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(config)
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        missing = [k for k in missing if not k.endswith("attn.bias") and
                   not k.endswith("attn.masked_bias")]
        if missing or unexpected:
            raise MappingError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
    return model.to(device=device, dtype=dtype).eval()


class StepClock:
    """A generate() streamer that synchronizes and stamps each put() (prompt, then each token)."""

    def __init__(self, torch):
        self.torch, self.stamps = torch, []

    def put(self, value):
        self.torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def end(self):
        pass


def quantile(v, q):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def run_variant(args, variant, base_state, config, prompts, torch):
    import copy

    model = load_model(config, base_state, "cuda", torch.bfloat16)
    gen = copy.deepcopy(model.generation_config)
    gen.do_sample = False
    gen.max_new_tokens = gen.min_new_tokens = args.new_tokens
    gen.eos_token_id = gen.pad_token_id = config.eos_token_id
    if variant != "eager":
        gen.cache_implementation = "static"
    if variant in ("static", "compile"):
        gen.disable_compile = True
    if variant == "compile":
        torch._dynamo.reset()
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    elif variant == "auto":
        torch._dynamo.reset()
    mask = torch.ones_like(prompts)

    def generate(new_tokens, streamer=None):
        g = copy.deepcopy(gen)
        g.max_new_tokens = g.min_new_tokens = new_tokens
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(prompts, attention_mask=mask, generation_config=g,
                                 streamer=streamer)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    for _ in range(args.warmup):
        generate(args.new_tokens)
        generate(1)
    totals, prefills, out = [], [], None
    for _ in range(args.repeats):
        t, out = generate(args.new_tokens)
        totals.append(t)
        prefills.append(generate(1)[0])
    clock = StepClock(torch)
    generate(args.new_tokens, streamer=clock)
    # stamps: the prompt, the first token (after the prefill), then one per decode step
    steps = [1e6 * (b - a) for a, b in zip(clock.stamps[1:], clock.stamps[2:])]
    total, prefill = quantile(totals, 0.5), quantile(prefills, 0.5)
    B = prompts.shape[0]
    made = out.shape[1] - prompts.shape[1]
    if made != args.new_tokens:
        raise RuntimeError(f"generate made {made} tokens, expected {args.new_tokens}")
    return {
        "impl": "hf", "arm": "baseline", "variant": variant, "batch": B,
        "prefill_ms": 1e3 * prefill,
        "step_us_mean": 1e6 * (total - prefill) / max(1, args.new_tokens - 1),
        "step_us_median": quantile(steps, 0.5), "step_us_p90": quantile(steps, 0.9),
        "tokens_per_s": B * args.new_tokens / total,
        "first_tokens": out[0, prompts.shape[1]:prompts.shape[1] + 16].tolist(),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--variants", default="eager,static,compile")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ra-checkpoint")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        if v not in ("eager", "static", "compile", "auto"):
            ap.error(f"--variants: '{v}', expected eager, static, compile or auto")
    if args.new_tokens < 1 or args.prompt < 1 or any(b < 1 for b in batches):
        ap.error("--prompt, --new-tokens and --batch must be positive")
    try:
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"hf_generate.py: {e}. transformers is not installed: on a machine with "
                 "internet, `pip download transformers tokenizers safetensors huggingface_hub "
                 "regex -d .whl-hf`, carry .whl-hf over, `pip install --no-index --target "
                 "/tmp/hf-site .whl-hf/*.whl` and run with PYTHONPATH=/tmp/hf-site "
                 "(bench/README.md, 'Generation')")
    if not torch.cuda.is_available():
        sys.exit("hf_generate.py: no CUDA device visible to PyTorch, expected a GPU")
    weights = f"random (torch.manual_seed({args.seed}))"
    arm = "baseline"
    if args.ra_checkpoint:
        try:
            config, state, ra_cfg = ra_checkpoint_to_hf(args.ra_checkpoint)
        except MappingError as e:
            sys.exit(f"hf_generate.py: --ra-checkpoint: {e}")
        weights, arm = f"ra checkpoint {args.ra_checkpoint}", ra_cfg["arm"]
    else:
        config = hf_config(args.vocab, 1024, args.n_layer, args.n_head, args.n_embd)
        torch.manual_seed(args.seed)
        state = load_model(config, None, "cpu", torch.float32).state_dict()
    if args.prompt + args.new_tokens > config.n_positions:
        ap.error(f"--prompt + --new-tokens = {args.prompt + args.new_tokens}, expected at most "
                 f"n_positions = {config.n_positions}")
    device = torch.cuda.get_device_name(0)
    print(f"hf_generate: {device}, transformers {transformers.__version__}, torch "
          f"{torch.__version__}, prompt {args.prompt}, {args.new_tokens} new tokens (greedy), "
          f"bf16, weights {weights}")
    print(f"{'variant':8} {'batch':>5} {'prefill_ms':>10} {'step_us_mean':>12} "
          f"{'step_us_med':>12} {'step_us_p90':>12} {'tokens/s':>11}")
    results = []
    for B in batches:
        g = torch.Generator().manual_seed(args.seed * 1000003 + B)
        prompts = torch.randint(0, config.vocab_size, (B, args.prompt), generator=g).cuda()
        for v in variants:
            try:
                r = run_variant(args, v, state, config, prompts, torch)
                r["arm"] = arm
                print(f"{v:8} {B:5} {r['prefill_ms']:10.2f} {r['step_us_mean']:12.1f} "
                      f"{r['step_us_median']:12.1f} {r['step_us_p90']:12.1f} "
                      f"{r['tokens_per_s']:11.0f}", flush=True)
            except Exception as e:  # recorded, the other variants still run
                r = {"impl": "hf", "arm": arm, "variant": v, "batch": B,
                     "error": f"{type(e).__name__}: {e}"[:500]}
                print(f"{v:8} {B:5} failed: {r['error']}", flush=True)
                if os.environ.get("RA_BENCH_TRACEBACK"):
                    raise
            results.append(r)
            torch.cuda.empty_cache()
    if args.json:
        rec = {
            "device": device,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": os.environ.get("RA_COMMIT", "unknown"),
            "config": {"prompt": args.prompt, "new_tokens": args.new_tokens,
                       "n_layer": config.n_layer, "n_head": config.n_head,
                       "n_embd": config.n_embd, "vocab": config.vocab_size, "dtype": "bf16",
                       "decoding": "greedy", "weights": weights, "warmup": args.warmup,
                       "repeats": args.repeats, "transformers": transformers.__version__,
                       "torch": torch.__version__},
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(rec, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
