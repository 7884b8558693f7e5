"""Promote by the rung signal, or by the multi-fidelity model's prediction at the target?

At a rung, successive halving ranks the runs that reached it by what they show there. The
multi-fidelity sampler's model (``autopeft.search.sampling.models.fit_models``: a GP over
(configuration, fraction of the target) with an exponential-decay kernel on the fraction) can
instead predict each run's task metric at the target from its configuration, its own rung
reading and every curve the search has seen. This script measures, on the learning-curve table
(``benchmarks/data/curves_<task>.jsonl``), which of the two ranks a rung's cohort more like
the target does, before the product is made to promote by either.

One draw (``--draws``, default 40): the table's configurations are shuffled; the first
``--history`` of them are what the search has seen so far, a third of them trained to the
target (observations at the rung and at the target), the rest stopped at the rung (the rung
only), as under successive halving with eta 3; the next ``--cohort`` are the runs being judged
at the rung (their rung reading only). The model is the product's own ``fit_models`` on the
history and the cohort's rung readings, fed the task metric (validation accuracy) as the
sampler feeds it. Over the cohort, three rankings are compared with validation accuracy at the
target (seed means):

* ``eval_loss``: the shipped rung signal at the rung (the product's ``proxy.signal``);
* ``accuracy``: the task metric at the rung;
* ``model``: the model's posterior mean at the target.

Reported per ranking, as means over the draws: the Spearman correlation with the target, and
the shortfall of promoting its top third: the mean target accuracy of the cohort's true top
third minus that of the third it promotes (0: it promoted the right runs).
The rung is the first rung ``proxy.rungs: auto`` places on this table (``signals.first_rung``).

The configuration's unit encoding mirrors the sampler's (optuna's ``_SearchSpaceTransform``:
one-hot categoricals, integer and log ranges mapped to [0, 1]): method and targets one-hot,
rank index, top-k and the learning rate's position in its method's band in [0, 1].

Usage:
    python benchmarks/curves/promotion.py [--task tweet|bbc] [--draws 40] [--history 12] [--cohort 9]

Ends with one SUMMARY line: which ranking promotes better on this table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from signals import first_rung, label_entropy, load, spearman  # noqa: E402
from table import RANKS, Table  # noqa: E402

METHODS = ("lora", "ia3", "adalora")
TARGETS = ("query+value", "query+key+value", "all-linear")
RANKINGS = ("eval_loss", "accuracy", "model")


def encode(config) -> list[float]:
    """A configuration on the unit cube, as the sampler's transform lays it out."""
    return ([float(config.method == m) for m in METHODS] + [config.rank / (len(RANKS) - 1)]
            + [float(config.targets == t) for t in TARGETS] + [float(config.top_k == 6), config.lr / 2])


def reading(row, step: int) -> dict:
    return row.metrics_at(step)


def model_predictions(history, cohort, rung: int, target: int) -> np.ndarray:
    """The model's posterior mean of target accuracy for each cohort row."""
    import torch

    from autopeft.search.sampling.models import fit_models

    xs, ys = [], []
    for i, row in enumerate(history):
        xs.append(encode(row.config) + [rung / target])
        ys.append(reading(row, rung)["accuracy"])
        if i % 3 == 0:  # a third went on to the target
            xs.append(encode(row.config) + [1.0])
            ys.append(row.accuracy)
    for row in cohort:
        xs.append(encode(row.config) + [rung / target])
        ys.append(reading(row, rung)["accuracy"])
    data = SimpleNamespace(metric_x=np.array(xs, dtype=np.float64), metric_y=np.array(ys, dtype=np.float64),
                           objectives=(), constraint=None)
    models = fit_models(data)
    x = torch.tensor([encode(r.config) + [1.0] for r in cohort], dtype=torch.float64)
    with torch.no_grad():
        return models.models[0].posterior(x).mean.squeeze(-1).numpy()


def score(values: np.ndarray, truth: np.ndarray, keep: int) -> tuple[float, float]:
    """(Spearman with the truth, shortfall of keeping the ``keep`` largest values)."""
    top = np.argsort(-values, kind="stable")[:keep]
    best = np.sort(truth)[::-1][:keep]
    return spearman(values, truth), float(best.mean() - truth[top].mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("tweet", "bbc"), default="tweet")
    ap.add_argument("--table", default=None)
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--history", type=int, default=12)
    ap.add_argument("--cohort", type=int, default=9)
    ap.add_argument("--eta", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    path = Path(args.table or HERE.parent / "data" / f"curves_{args.task}.jsonl")
    table = Table.load(path)
    rung, why = first_rung(load(path), label_entropy(args.task))
    if rung is None:
        print(f"no rung on this table: {why}")
        return 1
    rows = list(table.rows.values())
    need = args.history + args.cohort
    if len(rows) < need:
        print(f"the table has {len(rows)} configurations; a draw needs {need}")
        return 1
    print(f"table {path.name}: {len(rows)} configurations; rung at {rung} steps ({why})")
    print(f"{args.draws} draws: history {args.history} runs (a third to the target), cohort {args.cohort}, "
          f"top {max(1, args.cohort // args.eta)} promoted")
    keep = max(1, args.cohort // args.eta)
    got = {name: ([], []) for name in RANKINGS}
    started = time.perf_counter()
    for draw in range(args.draws):
        shuffled = rows[:]
        random.Random(draw).shuffle(shuffled)
        history, cohort = shuffled[:args.history], shuffled[args.history:need]
        truth = np.array([r.accuracy for r in cohort])
        values = {
            "eval_loss": -np.array([reading(r, rung)["eval_loss"] for r in cohort]),
            "accuracy": np.array([reading(r, rung)["accuracy"] for r in cohort]),
            "model": model_predictions(history, cohort, rung, table.target),
        }
        for name in RANKINGS:
            rho, shortfall = score(values[name], truth, keep)
            got[name][0].append(rho)
            got[name][1].append(shortfall)
    print(f"{'ranking':>10} {'Spearman':>16} {'shortfall of the top third':>24}")
    summary = {}
    for name in RANKINGS:
        rhos = [r for r in got[name][0] if r == r]
        shortfalls = got[name][1]
        summary[name] = (statistics.mean(rhos), statistics.mean(shortfalls))
        print(f"{name:>10} {statistics.mean(rhos):>8.2f} ± {statistics.stdev(rhos):.2f}"
              f" {statistics.mean(shortfalls):>16.4f} ± {statistics.stdev(shortfalls):.4f}")
    wins = sum(m < e for m, e in zip(got["model"][1], got["eval_loss"][1]))
    losses = sum(m > e for m, e in zip(got["model"][1], got["eval_loss"][1]))
    print(f"model vs eval_loss, shortfall per draw: lower in {wins}, higher in {losses}, equal in "
          f"{args.draws - wins - losses} of {args.draws}; {time.perf_counter() - started:.0f}s")
    best = min(RANKINGS, key=lambda n: (summary[n][1], -summary[n][0]))
    print(f"SUMMARY curves/promotion ({args.task}, rung {rung}, {args.draws} draws): "
          + ", ".join(f"{n} rho {summary[n][0]:.2f} shortfall {summary[n][1]:.4f}" for n in RANKINGS)
          + f"; smallest shortfall: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
