"""Scaling: trials per hour with 1 and 2 workers (1 torch thread each) on one study.

The same space, seed and short proxies; each configuration gets a fresh study in the given
database (PostgreSQL by default: $AUTOPEFT_TEST_POSTGRES_URL, or --storage). Workers are
real `autopeft worker` processes; the clock runs from their start until the last exits,
so start-up (imports, model structure, tokenised split) counts against them, as it would
for a user. Target : 2 workers >= 1.8x the trials per hour of 1.

Usage:
    python benchmarks/scaling.py [--storage URL] [--trials 8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPACE = """
study: {study}
model: minilm-l6
task: {{dataset: tweet-sentiment}}
space: {{method: [lora, ia3], rank: [2, 4, 8], targets: [[query, value], all-linear], layers: {{top_k: [1, 6]}},
        learning_rate: {{log: [3.0e-4, 3.0e-3]}}}}
proxy: {{train_examples: 256, eval_examples: 128, steps: {steps}, batch_size: 16, max_length: 48, threads: 1}}
search: {{sampler: random, trials: {trials}, seed: 0}}
"""


def run(storage: str, workers: int, trials: int, steps: int) -> tuple[float, int]:
    from autopeft.search.loop import open_study, optuna_study
    from autopeft.search.prepare import prepare_search
    from autopeft.search.sampling.samplers import make_sampler
    from autopeft.space import load_space_text
    from autopeft.store import Store

    study = f"scaling-{workers}w-{uuid.uuid4().hex[:6]}"
    space = load_space_text(SPACE.format(study=study, steps=steps, trials=trials), "scaling")
    store = Store(storage)
    prep = prepare_search(space)  # tokenise once here: both runs then find the split cached
    optuna_study(store, open_study(store, prep), make_sampler(space.search))
    env = {**os.environ, "AUTOPEFT_STORAGE": storage, "AUTOPEFT_THREADS": "1"}
    cmd = [sys.executable, "-c", "from autopeft.cli import run; run()", "worker", study]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"a worker exited with {codes}")
    done = sum(r.status == "complete" for r in store.trials(study))
    return elapsed, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default=os.environ.get("AUTOPEFT_TEST_POSTGRES_URL"))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="4 trials of 3 steps")
    args = ap.parse_args()
    if not args.storage:
        raise SystemExit("give --storage URL or set AUTOPEFT_TEST_POSTGRES_URL (e.g. eval \"$(bash .ci/postgres.sh | tail -1)\")")
    trials, steps = (4, 3) if args.quick else (args.trials, args.steps)
    started = time.perf_counter()
    from autopeft.store import mask_url

    print(f"storage {mask_url(args.storage)}; {trials} trials of {steps} steps; 1 torch thread per worker")
    print(f"{'workers':>7} {'seconds':>8} {'complete':>9} {'trials/hour':>12}")
    rates = {}
    for workers in (1, 2):
        elapsed, done = run(args.storage, workers, trials, steps)
        rates[workers] = done / elapsed * 3600
        print(f"{workers:>7} {elapsed:>8.1f} {done:>9} {rates[workers]:>12.0f}")
    ratio = rates[2] / rates[1]
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"SUMMARY scaling: 2 workers {ratio:.2f}x the trials/hour of 1 (target >= 1.8: {'met' if ratio >= 1.8 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
