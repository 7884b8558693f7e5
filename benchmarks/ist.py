"""IST vs plain LoRA on the same configuration: step time and final metric.

LoRA r=8 on query+value in all layers at the quickstart proxy size, trained with and
without IST (active_fraction 0.25, probes every 10 steps) for each seed, through the real
isolated runner, side by side in one run. The seed-to-seed spread of plain LoRA is printed
beside the difference: a difference inside it is noise, not an effect.

Usage:
    python benchmarks/ist.py [--quick] [--seeds 2] [--steps N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 steps, 1 seed: a smoke run")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    started = time.perf_counter()

    from overhead import make_spec

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.spec import IstSpec

    steps = args.steps or (6 if args.quick else 30)
    seeds = 1 if args.quick else args.seeds
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml",
                       ["space.method=lora", "space.rank=8", "space.targets=[query, value]", "space.layers=all",
                        "space.learning_rate=0.002"])
    prep = prepare_search(space)
    metric = space.task.metric
    rows = {"plain": [], "ist": []}
    for seed in range(seeds):
        _, spec = make_spec(prep, {}, steps, threads=os.cpu_count() or 1)
        spec = dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, seed=seed, prefix_cache=False))
        for name, ist in (("plain", None), ("ist", IstSpec(active_fraction=0.25, every=10))):
            result = run_isolated(dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, ist=ist)))
            if result.status != "complete":
                raise SystemExit(f"{name} seed {seed} failed: {result.error}")
            rows[name].append((result.train_time / steps, result.metrics[metric]))
    print(f"LoRA r=8 query+value, all {prep.arch.num_layers} layers; {steps} steps; seeds {list(range(seeds))}")
    print(f"{'run':6} {'s/step':>8} {metric:>10} {'per seed':>24}")
    for name, values in rows.items():
        per_step = statistics.fmean(v[0] for v in values)
        score = statistics.fmean(v[1] for v in values)
        print(f"{name:6} {per_step:>8.3f} {score:>10.4f} {', '.join(f'{v[1]:.4f}' for v in values):>24}")
    plain_step = statistics.fmean(v[0] for v in rows["plain"])
    ist_step = statistics.fmean(v[0] for v in rows["ist"])
    delta = statistics.fmean(v[1] for v in rows["ist"]) - statistics.fmean(v[1] for v in rows["plain"])
    noise = statistics.stdev(v[1] for v in rows["plain"]) if seeds > 1 else float("nan")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    ratio = ist_step / plain_step
    print(f"SUMMARY ist: IST step time / plain = {ratio:.2f} ({'faster' if ratio < 1 else 'slower'}), "
          f"{metric} {delta:+.4f} vs plain (plain seed-to-seed sd {noise:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
