"""Which rung signal ranks runs as the target will: rank correlation with the target, per step.

For every evaluation step of the learning-curve table (``benchmarks/curves/build.py``) and every
candidate rung signal — validation accuracy, validation macro-F1, validation loss, the smoothed
training loss — the Spearman correlation, over the table's configurations (seed 0), between the
signal at that step (oriented: a loss is negated) and validation accuracy at the target (step
150). The signal a search should judge rungs by is the one that ranks like the target earliest.

Also: where ``proxy.rungs: auto`` puts the first rung on this table (the product's own
``autopeft.search.fidelity.placement.place`` on default LoRA's row: LoRA r8 on query and value,
every layer, the middle of its rate band, the reference a search trains first), and each
signal's correlation there; and the seed-to-seed figure of the same protocol (Spearman between seed 0's and seed 1's target
accuracy over the configurations with both), the ceiling any signal can reach.

Usage:
    python benchmarks/curves/signals.py [--task tweet|bbc] [--table PATH]

Ends with one SUMMARY line: each signal's correlation at the first rung (goal: the rung signal,
``eval_loss``, at least 0.6 there), at the first evaluation step where the best signal reaches
0.6, and the seed-to-seed ceiling.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: Signal -> (index in an evaluation row after its step, sign that makes larger better).
SIGNALS = {"accuracy": (0, 1.0), "macro_f1": (1, 1.0), "eval_loss": (2, -1.0), "train_loss": (4, -1.0)}


def spearman(a, b) -> float:
    """Spearman's rho (average ranks for ties); nan for fewer than 3 pairs or a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):  # ties share their mean rank
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def load(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["status"] == "complete" and r["evals"]]


def table(rows: list[dict]) -> tuple[list[int], dict[str, dict[int, float]]]:
    """The evaluation steps below the target, and per signal and step the correlation with the target."""
    seed0 = [r for r in rows if r["seed"] == 0]
    steps = sorted({e[0] for r in seed0 for e in r["evals"] if e[0] < 150})
    target = [dict((e[0], e) for e in r["evals"]).get(150) for r in seed0]
    out: dict[str, dict[int, float]] = {}
    for name, (col, sign) in SIGNALS.items():
        out[name] = {}
        for step in steps:
            pairs = []
            for r, t in zip(seed0, target):
                e = dict((e[0], e) for e in r["evals"]).get(step)
                if t is None or e is None or len(e) <= col + 1 or e[col + 1] is None:
                    continue
                pairs.append((sign * e[col + 1], t[1]))
            out[name][step] = spearman(*zip(*pairs)) if len(pairs) >= 3 else float("nan")
    return steps, out


def seed_ceiling(rows: list[dict]) -> tuple[float, int]:
    by = {}
    for r in rows:
        final = dict((e[0], e) for e in r["evals"]).get(150)
        if final is not None:
            by.setdefault(json.dumps(r["point"], sort_keys=True), {})[r["seed"]] = final[1]
    pairs = [(v[0], v[1]) for v in by.values() if 0 in v and 1 in v]
    return (spearman(*zip(*pairs)) if len(pairs) >= 3 else float("nan")), len(pairs)


#: Default LoRA in the table's terms (rank 8 is RANKS[2]; lr 1: the middle of LoRA's band, the
#: first of the three rates a search with a target trains it at).
DEFAULT_LORA = {"method": "lora", "rank": 2, "targets": "query+value", "top_k": 6, "lr": 1}
RUNG_SIGNAL = "eval_loss"  # the shipped proxy.signal
ETA = 3


def first_rung(rows: list[dict], prior_loss: float | None) -> tuple[int | None, str]:
    """Where ``proxy.rungs: auto`` places the first rung, from default LoRA's seed-0 row, and why
    (None: the row is not in the table yet, or its signal never moved)."""
    from autopeft.search.fidelity.placement import place
    from autopeft.search.fidelity.signals import Reading, RungSignal

    row = next((r for r in rows if r["seed"] == 0 and r["point"] == DEFAULT_LORA), None)
    if row is None:
        return None, "default LoRA's run is not in the table yet"
    col, _ = SIGNALS[RUNG_SIGNAL]
    probes = [(e[0], Reading(e[col + 1], e[col + 2] or 0.0)) for e in row["evals"]
              if e[0] < 150 and len(e) > col + 2 and e[col + 2] is not None]
    if not probes:
        return None, "default LoRA's row has no standard errors (built before they were recorded)"
    ladder = place(RungSignal(RUNG_SIGNAL, "min"), probes, target_steps=150, eta=ETA, reference=0, finished=True,
                   prior_loss=prior_loss)
    return (ladder.rungs[0] if ladder.rungs else None), ladder.why()


def label_entropy(task: str) -> float | None:
    """The loss of answering the validation split's label frequencies (a trial's ``eval_prior_loss``)."""
    sys.path.insert(0, str(HERE))
    import replay

    return replay.prior_loss(replay._prepared(task))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("tweet", "bbc"), default="tweet")
    ap.add_argument("--table", default=None)
    args = ap.parse_args(argv)
    path = Path(args.table or HERE.parent / "data" / f"curves_{args.task}.jsonl")
    rows = load(path)
    n0 = sum(1 for r in rows if r["seed"] == 0)
    steps, corr = table(rows)
    print(f"table {path.name}: {n0} configurations at seed 0, {len(rows) - n0} second-seed runs")
    print("Spearman(signal at step, validation accuracy at 150) over the configurations:")
    print(f"{'step':>5} " + " ".join(f"{name:>11}" for name in SIGNALS))
    for step in steps:
        print(f"{step:>5} " + " ".join(f"{corr[name][step]:>11.2f}" for name in SIGNALS))
    ceiling, pairs = seed_ceiling(rows)
    print(f"seed 0 vs seed 1 at the target: Spearman {ceiling:.2f} over {pairs} configurations (the ceiling)")
    rung, why = first_rung(rows, label_entropy(args.task))
    print(f"proxy.rungs: auto on this table: {why}")
    if rung is not None:
        print(f"at the first rung ({rung}): " + ", ".join(f"{n} {corr[n][rung]:.2f}" for n in SIGNALS))
    best_step = next((s for s in steps if max(corr[n][s] for n in SIGNALS if not math.isnan(corr[n][s])) >= 0.6), None)
    at = best_step if best_step is not None else steps[0]
    ranked = sorted(SIGNALS, key=lambda n: -np.nan_to_num(corr[n][at], nan=-9))
    at_rung = (f"first rung {rung}: {RUNG_SIGNAL} {corr[RUNG_SIGNAL][rung]:.2f} "
               f"(goal >= 0.6: {'met' if corr[RUNG_SIGNAL][rung] >= 0.6 else 'not met'}); ") if rung is not None \
        else "first rung: none placed; "
    print(f"SUMMARY curves/signals ({args.task}, {n0} configurations): {at_rung}at step {at} "
          + ", ".join(f"{n} {corr[n][at]:.2f}" for n in ranked) + f"; seed-to-seed {ceiling:.2f} ({pairs} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
