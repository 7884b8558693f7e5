"""Frozen-prefix cache: trial time with adapters in the top k of L layers, cached vs uncached.

For k = 1, 2, 3 a LoRA (r=8, query+value) trial at the quickstart proxy size runs through
the real isolated runner three ways, side by side in one run: without the cache, with the
cache being filled (the first trial of a placement computes the states), and with the cache
hit (every later trial). The reference is the full-depth trial (adapters in all L layers),
which no cache can shorten. Target : cached <= k/L + 0.15 of the full-depth trial.

With ``--all-rows`` it measures instead what a long run on every training row (as ``verify``
and ``export --train`` train) pays before its first step: a run of S steps reads S x batch
rows, and the cache now holds states for those rows only. Side by side, in one process and
on the same model: the fill over the whole train split (what every such run computed before)
and over the drawn rows, then a real isolated trial's own setup seconds.

Usage:
    python benchmarks/prefix_cache.py [--quick] [--steps N]
    python benchmarks/prefix_cache.py --all-rows [--steps 150] [--quick]
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
    ap.add_argument("--all-rows", action="store_true", help="a long run on every training row: fill and setup seconds")
    args = ap.parse_args()
    if args.all_rows:
        return all_rows(args)
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
    lr_param = {"learning_rate": 1e-3}  # make_spec decodes it whatever the space's rate encoding

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


def all_rows(args) -> int:
    started = time.perf_counter()
    os.environ["AUTOPEFT_CACHE"] = tempfile.mkdtemp(prefix="autopeft-bench-")
    import dataclasses
    from pathlib import Path as P

    import torch
    from overhead import make_spec

    from autopeft.methods import get_method
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.trials.batches import drawn_rows
    from autopeft.trials.data import load_split
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.model import load_base_model_for, path_in_model
    from autopeft.trials.prefix_cache import prefix_states

    steps = args.steps or (10 if args.quick else 150)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml",
                       ["space.method=lora", "space.rank=8", "space.targets=[query, value]",
                        "proxy.train_examples=1000000000", f"proxy.steps={steps}"])
    t0 = time.perf_counter()
    prep = prepare_search(space)
    prepare_s = time.perf_counter() - t0
    L = prep.arch.num_layers
    _, spec = make_spec(prep, {"top_k": 1, "learning_rate": 1e-3}, steps, threads=os.cpu_count() or 1)
    spec = dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, prefix_cache=True))
    torch.set_num_threads(os.cpu_count() or 1)
    split = load_split(spec.data_path)
    n = len(split["train"]["labels"])
    rows, _ = drawn_rows(n, spec.proxy.batch_size, steps, spec.proxy.seed)
    method = get_method(spec.method)
    model = method.wrap(load_base_model_for(spec), spec.peft_config)
    layers_path = path_in_model(model, model.get_base_model(), prep.arch.layers_path)
    fills = {}
    for name, train in (("whole split", split["train"]), ("drawn rows", {k: v[rows] for k, v in split["train"].items()})):
        t0 = time.perf_counter()
        prefix_states(model, layers_path, L - 1, {"train": train, "eval": split["eval"]},
                      P(tempfile.mkdtemp(prefix="autopeft-fill-")) / "states.safetensors")
        fills[name] = (len(train["labels"]), time.perf_counter() - t0)
    result = run_isolated(spec)
    if result.status != "complete":
        raise SystemExit(f"trial failed: {result.error}")
    print(f"tweet-sentiment, every training row ({n:,}); LoRA r=8 query+value on the top layer (states enter layer "
          f"{L - 1} of {L}); {steps} steps x batch {spec.proxy.batch_size}; data prepared in {prepare_s:.0f} s (once per study)")
    print(f"{'prefix-cache fill over':<24}{'train rows':>11}{'seconds':>9}")
    for name, (rows_n, secs) in fills.items():
        print(f"{name:<24}{rows_n:>11,}{secs:>9.1f}")
    print(f"isolated trial now: setup {result.setup_time:.1f} s, training {result.train_time:.1f} s, wall {result.wall_time:.1f} s")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    whole, drawn = fills["whole split"][1], fills["drawn rows"][1]
    print(f"SUMMARY prefix cache, all rows: fill {whole:.1f} s over the whole split vs {drawn:.1f} s over the drawn rows "
          f"({whole / max(drawn, 1e-9):.0f}x); trial setup now {result.setup_time:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
