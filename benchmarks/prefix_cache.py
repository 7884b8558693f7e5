"""Frozen-prefix cache: trial time with adapters in the top k of L layers, cached vs uncached.

For k = 1, 2, 3 a LoRA (r=8, query+value) trial at the quickstart proxy size runs through
the real isolated runner three ways, side by side in one run: without the cache, with the
cache being filled (the first trial of a placement computes the states), and with the cache
hit (every later trial). The reference is the full-depth trial (adapters in all L layers),
which no cache can shorten. Target (issue 3): cached <= k/L + 0.15 of the full-depth trial.

Usage:
    python benchmarks/prefix_cache.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 steps, k = 1 only: a smoke run")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    started = time.perf_counter()
    os.environ["AUTOPEFT_CACHE"] = tempfile.mkdtemp(prefix="autopeft-bench-")  # the fill is measured too

    import dataclasses

    from overhead import make_spec

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.trials.executor import run_isolated

    steps = args.steps or (6 if args.quick else 30)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", ["space.method=lora", "space.rank=8", "space.targets=[query, value]"])
    prep = prepare_search(space)
    L = prep.arch.num_layers
    ks = [1] if args.quick else [1, 2, 3]
    lr_param = {"learning_rate": 1e-3} if "learning_rate" in prep.encoding.distributions else {}

    def trial(k: int, cache: bool) -> float:
        params = {**lr_param, "top_k": k}
        _, spec = make_spec(prep, params, steps, threads=os.cpu_count() or 1)
        result = run_isolated(dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, prefix_cache=cache)))
        if result.status != "complete":
            raise SystemExit(f"trial failed: {result.error}")
        return result.wall_time

    full = trial(L, cache=False)
    print(f"quickstart proxy: {steps} steps, batch {space.proxy.batch_size}, max length {space.proxy.max_length}; "
          f"LoRA r=8 query+value; L = {L} layers; full-depth trial {full:.1f} s (wall, in the trial process)")
    print(f"{'k':>2} {'uncached s':>11} {'fill s':>8} {'cached s':>9} {'cached/full':>12} {'target':>8} {'speed-up':>9}")
    verdicts = []
    for k in ks:
        uncached = trial(k, cache=False)
        fill = trial(k, cache=True)
        hit = trial(k, cache=True)
        ratio, target = hit / full, k / L + 0.15
        verdicts.append(ratio <= target)
        print(f"{k:>2} {uncached:>11.1f} {fill:>8.1f} {hit:>9.1f} {ratio:>12.2f} {target:>8.2f} {uncached / hit:>8.2f}x")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"SUMMARY prefix cache: target cached <= k/L + 0.15 of full depth met for {sum(verdicts)}/{len(verdicts)} of k = {ks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
