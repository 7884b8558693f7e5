"""The learning-curve table as the replay reads it, and the scoring of a strategy's trace.

Standard library only: the peers (``peer_synetune.py``, ``peer_neps.py``) run in virtual
environments of their own, without autopeft, and import this module to read the table, snap
their configurations to it and write their traces, so every strategy is answered and charged
by the same code.

The table (``benchmarks/data/curves_<task>.jsonl``, written by ``build.py``): one row per
run, ``point`` = ``{method, rank, targets, top_k, lr}`` (``rank``: an index into the space's
ranks; ``lr``: an index 0..2 into the method's band), validation accuracy, macro-F1 and loss
every 15 steps to the target (150), and the training-loss curve every 5 steps.

What a strategy sees and what it is scored on:

- **seen**: the seed-0 run of the configuration (the run a trial with ``proxy.seed: 0``
  would make), at any step: an evaluation step's values (accuracy, macro-F1, validation loss
  and, in rows that have them, its standard error and the training loss the run reported
  there), or the last evaluation before a step between two; without a reported training loss,
  the curve's mean of the last 5 steps;
- **scored**: validation accuracy at the target, the mean over the table's seeds where it
  has two (every fifth configuration), and trainable parameters on a log10 scale.

Nearest configuration: a configuration the table lacks (the space's ``top_k`` takes every
integer 2..6, the table has 2 and 6; learning rates are continuous, the table has three per
method; a partial table lacks some points) is answered by the nearest row of the same
method: same targets and placement when the table has them (then the nearest ``top_k``,
ties to the smaller), and among those the smallest sum of the rank-index distance (over the
rank range) and the log learning-rate distance (over the method's band). While the table is
being built it may lack a method altogether: then the rows of every method answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

#: The table space's ranks (``rank`` in a point is an index into them) and top-k placements.
RANKS = (2, 4, 8, 16)
TOP_K = (2, 6)
#: The signals a rung can judge by, and their directions.
SIGNALS = {"accuracy": "max", "macro_f1": "max", "eval_loss": "min", "train_loss": "min"}
#: Validation examples per evaluation (``proxy.eval_examples`` of the table's spaces).
EVAL_EXAMPLES = 240


@dataclass(frozen=True, order=True)
class Config:
    """One table configuration, in the table's terms."""

    method: str
    rank: int  # index into RANKS (0 for a method without a rank)
    targets: str  # "query+value" | "query+key+value" | "all-linear"
    top_k: int
    lr: int  # index into the method's three rates

    def to_json(self) -> dict:
        return {"method": self.method, "rank": self.rank, "targets": self.targets, "top_k": self.top_k, "lr": self.lr}

    @classmethod
    def from_json(cls, data: dict) -> "Config":
        return cls(str(data["method"]), int(data["rank"]), str(data["targets"]), int(data["top_k"]), int(data["lr"]))


@dataclass(frozen=True)
class Row:
    """A configuration's runs, merged.

    Attributes:
        evals: Seed 0's ``(step, accuracy, macro_f1, eval_loss, eval_loss_se, train_loss)`` at
            each evaluation step (the last two None where the row does not have them).
        curve: Seed 0's ``(step, training loss)`` points.
        accuracy: Validation accuracy at the target, the mean over the table's seeds.
        seeds: How many seeds that mean is over.
    """

    config: Config
    learning_rate: float
    trainable_params: int
    evals: tuple[tuple, ...]
    curve: tuple[tuple[int, float], ...]
    accuracy: float
    seeds: int

    def metrics_at(self, step: int) -> dict:
        """What a trial of this configuration reports at a rung at ``step`` (seed 0)."""
        known = [e for e in self.evals if e[0] <= step] or [self.evals[0]]
        _, acc, f1, loss, loss_se, train = known[-1]
        if train is None:
            points = [c for c in self.curve if c[0] <= step] or [self.curve[0]]
            train = points[-1][1]
        out = {"accuracy": acc, "macro_f1": f1, "eval_loss": loss, "train_loss": train, "eval_examples": EVAL_EXAMPLES}
        if loss_se is not None:
            out["eval_loss_se"] = loss_se
        return out


@dataclass(frozen=True)
class Event:
    """A configuration reached ``step`` of training; ``spent`` is the strategy's cumulative steps
    trained once it had (``trial``: the strategy's own id of the run)."""

    trial: int
    config: Config
    step: int
    spent: int

    def to_json(self) -> dict:
        return {"trial": self.trial, "config": self.config.to_json(), "step": self.step, "spent": self.spent}

    @classmethod
    def from_json(cls, data: dict) -> "Event":
        return cls(int(data["trial"]), Config.from_json(data["config"]), int(data["step"]), int(data["spent"]))


@dataclass(frozen=True)
class Trace:
    """One strategy's replay at one search seed: its events in order."""

    strategy: str
    seed: int
    budget: int
    events: tuple[Event, ...]
    note: str = ""

    def to_json(self) -> dict:
        return {"strategy": self.strategy, "seed": self.seed, "budget": self.budget, "note": self.note,
                "events": [e.to_json() for e in self.events]}

    @classmethod
    def from_json(cls, data: dict) -> "Trace":
        return cls(str(data["strategy"]), int(data["seed"]), int(data["budget"]),
                   tuple(Event.from_json(e) for e in data["events"]), str(data.get("note", "")))


class Charger:
    """Charges training steps: a run pays only for the steps beyond the furthest it had reached
    (a run stopped at a rung at step s costs s; a resumed or promoted run its extra steps)."""

    def __init__(self) -> None:
        self.spent = 0
        self.reached: dict[int, int] = {}
        self.events: list[Event] = []

    def reach(self, trial: int, config: Config, step: int) -> Event:
        before = self.reached.get(trial, 0)
        if step > before:
            self.spent += step - before
            self.reached[trial] = step
        event = Event(trial, config, step, self.spent)
        self.events.append(event)
        return event


class Table:
    """The table's complete runs, merged per configuration (see the module docstring)."""

    def __init__(self, rows: Iterable[dict], target: int = 150) -> None:
        self.target = target
        runs: dict[Config, dict[int, dict]] = {}
        for r in rows:
            if r.get("status") != "complete" or not r.get("evals") or r["evals"][-1][0] != target:
                continue
            if any(v is None for e in r["evals"] for v in e[:4]):
                continue
            runs.setdefault(Config.from_json(r["point"]), {})[int(r["seed"])] = r
        self.rows: dict[Config, Row] = {}
        for config, by_seed in runs.items():
            first = by_seed.get(0) or by_seed[min(by_seed)]
            accs = [float(r["evals"][-1][1]) for r in by_seed.values()]
            self.rows[config] = Row(
                config, float(first["learning_rate"]), int(first["trainable_params"]),
                tuple(_eval(e) for e in first["evals"]),
                tuple((int(s), float(v)) for s, v in first["curve"]) or ((0, float("nan")),),
                sum(accs) / len(accs), len(accs))
        if not self.rows:
            raise ValueError("the table has no complete run yet")
        self.runs = sum(len(v) for v in runs.values())
        self.eval_steps = tuple(e[0] for e in next(iter(self.rows.values())).evals)
        #: Reference point: the worst accuracy and the largest parameter count in the table.
        self.worst_accuracy = min(r.accuracy for r in self.rows.values())
        self.largest = max(r.trainable_params for r in self.rows.values())
        self.front_hv = hypervolume(self.points(self.rows.values()), self.reference)
        by_method: dict[str, list[float]] = {}
        for r in self.rows.values():
            by_method.setdefault(r.config.method, []).append(r.learning_rate)
        self.bands = {m: (min(v), max(v)) for m, v in by_method.items()}

    @classmethod
    def load(cls, path: str | Path, target: int = 150) -> "Table":
        text = Path(path).read_text()
        return cls((json.loads(line) for line in text.splitlines() if line.strip()), target)

    # ----------------------------------------------------------------- lookup
    def nearest(self, method: str, rank: int, targets: str, top_k: int, learning_rate: float) -> Row:
        """The row answering a configuration (``rank``: the rank itself, e.g. 8, not an index)."""
        # A table still being built may lack a method: then any method's rows answer.
        rows = [r for r in self.rows.values() if r.config.method == method] or list(self.rows.values())
        same_targets = [r for r in rows if r.config.targets == targets] or rows
        ks = sorted({r.config.top_k for r in same_targets}, key=lambda k: (abs(k - top_k), k))
        placed = [r for r in same_targets if r.config.top_k == ks[0]]
        index = min(range(len(RANKS)), key=lambda i: (abs(math.log2(RANKS[i]) - math.log2(max(rank, 1))), i))
        lo, hi = self.bands.get(method, (1.0, 10.0))
        width = math.log(hi / lo) if hi > lo else math.log(10.0)
        lr = math.log(learning_rate)

        def distance(r: Row) -> tuple:
            return (abs(r.config.rank - index) / (len(RANKS) - 1) + abs(math.log(r.learning_rate) - lr) / width,
                    r.config)

        return min(placed, key=distance)

    def lookup(self, config: Config) -> Row:
        """The row of a table configuration (the nearest if the table lacks it)."""
        if config in self.rows:
            return self.rows[config]
        lo, hi = self.bands.get(config.method, (1e-3, 1e-2))
        rate = lo * (hi / lo) ** (config.lr / 2)
        return self.nearest(config.method, RANKS[config.rank], config.targets, config.top_k, rate)

    # ----------------------------------------------------------------- scoring
    @property
    def reference(self) -> tuple[float, float]:
        """As losses: (-worst accuracy, log10 of the largest parameter count)."""
        return (-self.worst_accuracy, math.log10(self.largest))

    @staticmethod
    def points(rows: Iterable[Row]) -> list[tuple[float, float]]:
        return [(-r.accuracy, math.log10(r.trainable_params)) for r in rows]

    def normalised_hv(self, configs: Iterable[Config]) -> float:
        """Hypervolume of ``configs`` at the target over that of the whole table's front (1.0)."""
        rows = {self.lookup(c).config: self.lookup(c) for c in configs}
        if not rows or self.front_hv <= 0:
            return 0.0
        return hypervolume(self.points(rows.values()), self.reference) / self.front_hv

    def hv_curve(self, trace: Trace) -> list[tuple[int, float]]:
        """``(cumulative steps, normalised HV)`` after each configuration that reached the target."""
        found: list[Config] = []
        out: list[tuple[int, float]] = []
        for e in trace.events:
            if e.step >= self.target:
                found.append(e.config)
                out.append((e.spent, self.normalised_hv(found)))
        return out


def _eval(e: list) -> tuple:
    """``(step, accuracy, macro_f1, eval_loss, eval_loss_se | None, train_loss | None)`` of a row's
    evaluation (``build.EVAL_KEYS`` after the step; older rows have the first four only)."""
    extra = [None if v is None else float(v) for v in e[4:6]]
    return (int(e[0]), float(e[1]), float(e[2]), float(e[3]), *(extra + [None] * (2 - len(extra))))


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Exact 2-D hypervolume of ``points`` (both minimised) bounded by ``reference``."""
    inside = sorted((x, y) for x, y in points if x < reference[0] and y < reference[1])
    hv, best_y = 0.0, reference[1]
    for x, y in inside:  # by the first objective; each point adds the strip below the best y so far
        if y < best_y:
            hv += (reference[0] - x) * (best_y - y)
            best_y = y
    return hv


def hv_at(curve: Sequence[tuple[int, float]], steps: int) -> float:
    """The HV a strategy had found with at most ``steps`` trained (0 before its first target run)."""
    value = 0.0
    for spent, hv in curve:
        if spent > steps:
            break
        value = hv
    return value


def steps_to(curve: Sequence[tuple[int, float]], hv: float) -> int | None:
    """The cumulative steps at which ``curve`` first reached ``hv`` (None: never)."""
    for spent, value in curve:
        if value >= hv - 1e-12:
            return spent
    return None
