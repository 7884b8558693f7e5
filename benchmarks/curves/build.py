"""Build the learning-curve table: every configuration of a quickstart-sized space, trained
for real to 150 steps and measured every 15 steps, so that search strategies can be replayed
against it in seconds (``benchmarks/curves/replay.py``).

The grid (``--task tweet`` or ``bbc``, spaces ``benchmarks/curves/<task>.yaml``): method x rank x
targets x top-k placement (k in {2, 6}), with the fields a method ignores collapsed (IA3 has no
rank), each at three learning rates of its method's band (the quickstart's bands: low, the
geometric middle, high). 162 configurations per task. Every configuration is trained with seed
0; every fifth one again with seed 1 (other adapter initialisation and data order), so that the
table carries the seed-to-seed noise of its own protocol.

Each run goes through the search's own code path (``prepare_search`` -> ``SpaceEncoding.decode``
-> ``Method.build`` -> ``trial_spec`` -> ``run_isolated``), one thread, and is evaluated on the
validation split at steps 15, 30, ..., 135 (as rungs that always promote) and 150. A row keeps
every candidate rung signal: validation accuracy, macro-F1, loss and the loss's standard error
over examples at each evaluation, the smoothed training loss there, and the training-loss curve
(mean of every 5 steps). Because the schedule is the one a search with
``target.steps: 150`` trains, a row's value at step s is what that search's trial shows at a
rung at step s.

Rows are appended to ``benchmarks/data/curves_<task>.jsonl``, one per finished run; a rerun skips
what is there, so the build resumes where it stopped. One process per core:

    python benchmarks/curves/build.py --task tweet --worker 0/2 &
    python benchmarks/curves/build.py --task tweet --worker 1/2 &

It ends with one SUMMARY line. It is data for the replay, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
#: Learning-rate band per method (the quickstart's): three rates each, low / middle / high.
BANDS = {"lora": (5.0e-4, 5.0e-3), "adalora": (5.0e-4, 5.0e-3), "ia3": (3.0e-3, 3.0e-2)}
TOP_K = (2, 6)
EVERY = 15  # steps between evaluations
SECOND_SEED_EVERY = 5
#: What each evaluation keeps, after its step (rows from before ``eval_loss_se`` existed have 4 fields).
EVAL_KEYS = ("accuracy", "macro_f1", "eval_loss", "eval_loss_se", "train_loss")


def rates(method: str) -> list[float]:
    low, high = BANDS[method]
    return [low, math.sqrt(low * high), high]


def grid(encoding) -> list[dict]:
    """Every configuration: ``{method, rank, targets, top_k, lr}`` in the encoding's terms (``rank``:
    an index into the space's ranks; ``lr``: an index 0..2 into the method's band), the rank of a
    method that has none fixed at the first value."""
    from autopeft.methods import get_method

    r = encoding.distributions["rank"]  # an index into the space's ranks
    ranks = list(range(r.low, r.high + 1))
    targets = list(encoding.distributions["targets"].choices)
    out, seen = [], set()
    for method, rank, target, k, lr in itertools.product(list(BANDS), ranks, targets, TOP_K, range(3)):
        uses = get_method(method).uses
        point = {"method": method, "rank": rank if "rank" in uses else ranks[0], "targets": target, "top_k": k, "lr": lr}
        key = json.dumps(point, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def schedule(points: list[dict]) -> list[tuple[dict, int]]:
    """Points in a fixed shuffled order (a partial table still spans the grid), with a seed-1
    run of every ``SECOND_SEED_EVERY``-th point right after its seed-0 run (a partial table
    still measures the noise)."""
    order = list(points)
    random.Random(0).shuffle(order)
    runs = []
    for i, p in enumerate(order):
        runs.append((p, 0))
        if i % SECOND_SEED_EVERY == 0:
            runs.append((p, 1))
    # Default LoRA's runs first (the seeds chosen as above): the reference a search trains first,
    # on which ``proxy.rungs: auto`` places the rungs (signals.py replays that placement).
    return [r for r in runs if is_default_lora(r[0])] + [r for r in runs if not is_default_lora(r[0])]


def is_default_lora(point: dict) -> bool:
    """LoRA r8 (``rank`` 2: an index into 2, 4, 8, 16) on query and value, every layer, any rate."""
    return (point["method"], point["rank"], point["targets"], point["top_k"]) == ("lora", 2, "query+value", 6)


def key_of(point: dict, seed: int) -> str:
    return json.dumps({**point, "seed": seed}, sort_keys=True)


def done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {key_of(r["point"], r["seed"]) for r in rows if r["status"] != "failed"}


def candidate_of(prep, point: dict):
    params = {"method": point["method"], "rank": point["rank"], "targets": point["targets"], "top_k": point["top_k"]}
    params = {k: v for k, v in params.items() if k in prep.encoding.distributions}
    cand = prep.encoding.decode(params)
    return dataclasses.replace(cand, learning_rate=rates(point["method"])[point["lr"]])


def run(prep, point: dict, seed: int, number: int) -> dict:
    """Train one configuration at one seed; its row."""
    from autopeft.methods import BuildContext, get_method
    from autopeft.search.prepare import trial_spec
    from autopeft.trials.executor import run_isolated

    cand = candidate_of(prep, point)
    method = get_method(cand.method)
    steps = prep.space.proxy.steps
    config = method.build(cand, BuildContext(prep.arch, steps, base_model=prep.model.location))
    spec = trial_spec(prep, cand, method.config_json(config), study=prep.space.study, trial=number, seed=seed,
                      rungs=tuple(range(EVERY, steps, EVERY)), timeout=7200.0)
    evals: list = []

    def at_rung(step: int, metrics: dict) -> bool:
        evals.append([step, *(metrics.get(k) for k in EVAL_KEYS)])
        return True

    t0 = time.perf_counter()
    result = run_isolated(spec, on_rung=at_rung)
    if result.status == "complete":
        m = result.metrics
        evals.append([steps, *(m.get(k) for k in EVAL_KEYS)])
    return {
        "point": point, "seed": seed, "rank": cand.rank, "learning_rate": cand.learning_rate, "status": result.status,
        "trainable_params": result.trainable_params or method.count_trainable(
            cand, BuildContext(prep.arch, steps, base_model=prep.model.location)),
        "evals": [[s, *(None if v is None else round(float(v), 5) for v in rest)] for s, *rest in evals],
        "curve": [[int(s), round(float(v), 5)] for s, v in result.curve],
        "cpu_time": round(result.cpu_time, 1), "wall_time": round(time.perf_counter() - t0, 1), "error": result.error,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("tweet", "bbc"), default="tweet")
    ap.add_argument("--worker", default="0/1", help="i/n: this process takes every n-th run from the i-th")
    ap.add_argument("--limit", type=int, default=None, help="stop after N runs (timing)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--list", action="store_true", help="print the grid's size and exit")
    args = ap.parse_args(argv)
    i, n = (int(x) for x in args.worker.split("/"))

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    started = time.perf_counter()
    prep = prepare_search(load_space(HERE / f"{args.task}.yaml"))
    points = grid(prep.encoding)
    todo = schedule(points)
    print(f"grid: {len(points)} configurations, {len(todo)} runs ({len(todo) - len(points)} second seeds)", flush=True)
    if args.list:
        return 0
    out = Path(args.out or DATA / f"curves_{args.task}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    ran = failed_in_a_row = 0
    for number, (point, seed) in enumerate(todo):
        if number % n != i or key_of(point, seed) in done(out):
            continue
        if args.limit is not None and ran >= args.limit:
            break
        row = run(prep, point, seed, number)
        with out.open("a") as f:  # one line per write: two workers append without tearing rows
            f.write(json.dumps(row) + "\n")
        ran += 1
        failed_in_a_row = 0 if row["status"] != "failed" else failed_in_a_row + 1
        if failed_in_a_row >= 5:
            print(f"stopping: 5 runs in a row failed, last: {row['error']}")
            return 1
        last = row["evals"][-1] if row["evals"] else [None, None, None, None]
        print(f"[{number + 1}/{len(todo)}] {point} seed={seed}: {row['status']} acc@150={last[1]} "
              f"loss@150={last[3]} params={row['trainable_params']:,} cpu={row['cpu_time']}s wall={row['wall_time']}s",
              flush=True)
    print(f"wall time {time.perf_counter() - started:.0f}s; ran {ran}")
    print(f"SUMMARY curves/build: {len(done(out))}/{len(todo)} runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
