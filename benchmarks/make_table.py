"""Build the tabular sampler benchmark: every point of a fixed grid, trained once for real.

The grid is the cross product of the space in ``benchmarks/tabular_space.yaml`` (method x
rank x targets x top-k placement on ``minilm-l6`` + ``tweet-sentiment``), with fields a
method ignores collapsed (IA3 has no rank, so it contributes targets x top-k points only).
Each point goes through our own code path, exactly as a search would run it:
``prepare_search`` -> ``SpaceEncoding.decode`` -> ``Method.build`` / ``config_json`` /
``count_trainable`` -> ``TrialSpec`` -> ``autopeft.trials.executor.run_isolated`` (one thread).

A second training seed (same data split, other adapter initialisation and data order) is
run for every ``--repeat-every``-th point, so that the benchmark can report the
seed-to-seed noise of the very protocol the table was made with (DESIGN.md, "Noise").

Results are appended as JSON lines to ``benchmarks/data/tabular_tweet.jsonl``, one per
finished trial; a rerun skips the points already there, so the script is resumable and
can run in the background (``nohup python benchmarks/make_table.py &``).

Usage:
    python benchmarks/make_table.py [--out PATH] [--limit N] [--list] [--reverse]

Two workers can share the file: ``make_table.py & make_table.py --reverse &`` (each
re-reads the file before every trial; they meet once, in the middle).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE = HERE / "tabular_space.yaml"
OUT = HERE / "data" / "tabular_tweet.jsonl"


def point_key(params: dict, seed: int) -> str:
    """Stable identity of one grid point at one seed (used to skip finished points)."""
    return json.dumps({**params, "seed": seed}, sort_keys=True)


def grid_params(encoding) -> list[dict]:
    """Every distinct encoded point of the grid, with the fields a method ignores set to
    their first value (so IA3 appears once per targets x top-k, not once per rank)."""
    from autopeft.methods import get_method

    names = list(encoding.distributions)
    axes = [list(_values(encoding.distributions[n])) for n in names]
    seen, out = set(), []
    for combo in itertools.product(*axes):
        params = dict(zip(names, combo))
        uses = get_method(encoding.decode(params).method).uses
        if "rank" in params and "rank" not in uses:
            params["rank"] = _values(encoding.distributions["rank"])[0]
        key = json.dumps(params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def _values(dist) -> list:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return list(range(dist.low, dist.high + 1, dist.step or 1))


def schedule(points: list[dict], repeat_every: int) -> list[tuple[dict, int]]:
    """Grid points in a fixed shuffled order (a partial table still spans the grid), with
    a seed-1 repeat of every ``repeat_every``-th point interleaved right after it."""
    order = list(points)
    random.Random(0).shuffle(order)
    out = []
    for i, p in enumerate(order):
        out.append((p, 0))
        if repeat_every and i % repeat_every == 0:
            out.append((p, 1))
    return out


def build_spec(prep, params: dict, seed: int, number: int):
    """The ``TrialSpec`` of one grid point, built the way ``autopeft.search.loop`` builds it."""
    from autopeft.methods import BuildContext, get_method
    from autopeft.search.prepare import trial_spec

    cand = prep.encoding.decode(params)
    method = get_method(cand.method)
    ctx = BuildContext(prep.arch, prep.space.proxy.steps, base_model=prep.model.location)
    config = method.build(cand, ctx)
    count = method.count_trainable(cand, ctx)
    spec = trial_spec(prep, cand, method.config_json(config), study=prep.space.study, trial=number,
                      seed=seed, timeout=600.0, threads=1)
    return cand, count, spec


def done_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("status") == "complete":
                keys.add(point_key(row["params"], row["seed"]))
    return keys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(SPACE))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--limit", type=int, default=None, help="stop after N new trials (timing runs)")
    ap.add_argument("--repeat-every", type=int, default=8, help="a second seed for every N-th point (0: none)")
    ap.add_argument("--list", action="store_true", help="print the grid size and exit")
    ap.add_argument("--reverse", action="store_true",
                    help="work from the end of the schedule (a second worker on the same file meets the first once)")
    args = ap.parse_args(argv)

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.trials.executor import run_isolated

    started = time.perf_counter()
    space = load_space(args.space)
    prep = prepare_search(space)
    points = grid_params(prep.encoding)
    todo = schedule(points, args.repeat_every)
    print(f"grid: {len(points)} points, {len(todo) - len(points)} seed repeats, {len(todo)} trials", flush=True)
    if args.list:
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ran = failed_in_a_row = 0
    numbered = list(enumerate(todo))
    for number, (params, seed) in reversed(numbered) if args.reverse else numbered:
        if point_key(params, seed) in done_keys(out):  # re-read: another worker may have done it
            continue
        if args.limit is not None and ran >= args.limit:
            break
        cand, count, spec = build_spec(prep, params, seed, number)
        t0 = time.perf_counter()
        result = run_isolated(spec)
        row = {
            "params": params, "seed": seed, "candidate": cand.to_json(), "status": result.status,
            "accuracy": result.metrics.get("accuracy"), "macro_f1": result.metrics.get("macro_f1"),
            "eval_loss": result.metrics.get("eval_loss"), "trainable_params": result.trainable_params or count,
            "counted_params": count, "train_time": result.train_time, "wall_time": time.perf_counter() - t0,
            "error": result.error,
        }
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        ran += 1
        failed_in_a_row = 0 if result.status == "complete" else failed_in_a_row + 1
        if failed_in_a_row >= 5:  # a broken environment, not a bad point: stop rather than burn the grid
            print(f"stopping: 5 trials in a row failed, last: {result.error}")
            return 1
        acc = row["accuracy"]
        print(f"[{number + 1}/{len(todo)}] {cand.method} r={cand.rank} {cand.targets.label} k={len(cand.layers)} "
              f"seed={seed}: {result.status} acc={acc if acc is None else round(acc, 3)} "
              f"params={row['trainable_params']:,} {row['wall_time']:.1f}s", flush=True)
    total = len(done_keys(out))
    print(f"wall time {time.perf_counter() - started:.1f}s; ran {ran} trials")
    print(f"SUMMARY make_table: {total}/{len(todo)} trials complete in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
