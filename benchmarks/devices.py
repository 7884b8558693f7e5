"""Step time and peak memory per precision and memory saver, side by side in one run.

For the bundled encoder (MiniLM-L6, 3-class BBC news topics at 256 tokens, batch 16) and
the bundled decoder (SmolLM2-135M, BBC article text as a causal LM at 128 tokens, batch 8),
LoRA r=8 on the query/value projections of every layer is trained through the product's
own isolated trial runner with ``proxy.precision`` fp32 / bf16 and
``proxy.gradient_checkpointing`` off / on, on the device ``--device`` names (the CPU here).
Each setting runs in its own trial process, so its peak memory is its own: on the CPU the
process's peak RSS, which includes the model and torch itself (about 0.5-1 GB), so memory
ratios understate the activation savings. Ratios are against fp32 of the same model, from
the same run.

Usage:
    python benchmarks/devices.py [--quick] [--device cpu] [--steps N] [--only encoder|decoder]
"""

from __future__ import annotations

import argparse
import os
import time

SETTINGS = [("fp32", "fp32", False), ("bf16", "bf16", False), ("fp32+ckpt", "fp32", True), ("bf16+ckpt", "bf16", True)]

MODELS = {
    "encoder": {
        "study": "devices-encoder", "model": "minilm-l6",
        "task": {"dataset": "bbc-news", "text": "text", "label": "label", "metric": "accuracy"},
        "space": {"method": "lora", "rank": 8, "targets": [["query", "value"]], "learning_rate": 1e-3},
        "proxy": {"train_examples": 160, "eval_examples": 16, "batch_size": 16, "max_length": 256, "prefix_cache": False},
    },
    "decoder": {
        "study": "devices-decoder", "model": "smollm2-135m",
        "task": {"type": "causal_lm", "dataset": "bbc-news", "text": "text", "metric": "eval_loss"},
        "objectives": {"eval_loss": "min", "trainable_params": "min"},
        "space": {"method": "lora", "rank": 8, "targets": [["q_proj", "v_proj"]], "learning_rate": 1e-4},
        "proxy": {"train_examples": 80, "eval_examples": 8, "batch_size": 8, "max_length": 128, "prefix_cache": False},
    },
}


def run_model(name: str, steps: int, device: str) -> list[tuple[str, float, float, str]]:
    from autopeft.methods import get_method
    from autopeft.search.prepare import prepare_search, trial_spec
    from autopeft.space import parse_space
    from autopeft.trials.executor import run_isolated

    doc = dict(MODELS[name])
    doc["proxy"] = {**doc["proxy"], "steps": steps, "log_every": 1, "device": device}
    prep = prepare_search(parse_space(doc, f"benchmarks/devices.py:{name}"))
    cand = prep.encoding.decode({})
    method = get_method(cand.method)
    from autopeft.methods import BuildContext

    config = method.config_json(method.build(cand, BuildContext(prep.arch, steps)))
    rows = []
    for label, precision, ckpt in SETTINGS:
        spec = trial_spec(prep, cand, config, study=doc["study"], trial=0, threads=os.cpu_count() or 1,
                          precision=precision, gradient_checkpointing=ckpt)
        result = run_isolated(spec)
        if result.status != "complete":
            raise SystemExit(f"{name} {label} failed: {result.error}")
        # The first step pays one-off costs (allocator warm-up): time the steady ones.
        per_step = result.train_time / steps
        rows.append((label, per_step, result.peak_memory_mb, result.memory_kind))
        print(f"  {name:8} {label:10} {per_step:7.3f} s/step  peak {result.peak_memory_mb:7.0f} MiB ({result.memory_kind})  "
              f"curve {[round(p[1], 3) for p in result.curve]}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 steps, encoder only: a smoke run")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=sorted(MODELS), default=None)
    args = ap.parse_args()
    started = time.perf_counter()
    steps = args.steps or (2 if args.quick else 6)
    names = [args.only] if args.only else (["encoder"] if args.quick else ["encoder", "decoder"])
    table = {}
    for name in names:
        table[name] = run_model(name, steps, args.device)
    print(f"\n{'model':8} {'setting':10} {'s/step':>8} {'x fp32':>7} {'peak MiB':>9} {'x fp32':>7}")
    summary = []
    for name, rows in table.items():
        base_t, base_m = rows[0][1], rows[0][2]
        for label, t, m, _ in rows:
            print(f"{name:8} {label:10} {t:8.3f} {t / base_t:7.2f} {m:9.0f} {m / base_m:7.2f}")
        by = {label: (t / base_t, m / base_m) for label, t, m, _ in rows}
        summary.append(f"{name}: bf16 time x{by['bf16'][0]:.2f}, ckpt memory x{by['fp32+ckpt'][1]:.2f} time x{by['fp32+ckpt'][0]:.2f}")
    print(f"({steps} steps per setting, device {args.device}, {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s)")
    print("SUMMARY: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
