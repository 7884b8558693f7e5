"""Multi-fidelity: multi-objective successive halving over ``proxy.rungs``.

At each rung a trial is compared with every trial of the study that reached the same rung
(stopped there or gone on): points are (task metric at the rung, trainable parameters),
ranked by non-dominated sorting (front by front; inside a front, by the metric). The trial
goes on if it is among the best ``max(1, n // eta)`` of the ``n`` points. Trials stopped
early are recorded as ``pruned`` with their fidelity and told to optuna as PRUNED: BoTorch
and GPSampler model COMPLETE trials only, so a low-fidelity value never enters the GP as
if it were a full result; TPE and NSGA-II ignore them too. The front, ``show`` and
``export`` use full-fidelity (complete) trials only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autopeft.search.pareto import non_dominated
from autopeft.store.records import TrialRecord


def rung_objectives(objectives) -> list[tuple[str, str]]:
    """The objectives known at a rung: the task metric and trainable parameters."""
    from autopeft.tasks import METRIC_DIRECTIONS

    return [(n, d) for n, d in objectives if n in METRIC_DIRECTIONS or n == "trainable_params"]


def promote(records: Sequence[TrialRecord], objectives, number: int, step: int, metric_value: float,
            trainable_params: int, eta: int, role: str | None = None) -> bool:
    """Should trial ``number`` go on past the rung at ``step``?

    With ``role`` (a study with a target passes it for default LoRA, which it enqueues at
    several learning rates), the trial is judged only against the trials of its role: the best of them at each rung goes on, so
    that the reference reaches the target at its own best rate whatever the front holds.
    """
    objs = rung_objectives(objectives)
    if role is not None:
        metric_col = next(i for i, (n, _) in enumerate(objs) if n != "trainable_params")
        mine = _point(objs, metric_value, trainable_params)[metric_col]
        rivals = [_point(objs, value, r.trainable_params or 0)[metric_col] for r in records
                  if r.number != number and r.extras.get("baseline") == role
                  for rung_step, value in r.extras.get("rungs", []) if rung_step == step]
        return all(mine <= other for other in rivals)
    points: dict[int, list[float]] = {}
    for r in records:
        for rung_step, value in r.extras.get("rungs", []):
            if rung_step == step and r.number != number and r.trainable_params is not None:
                points[r.number] = _point(objs, value, r.trainable_params)
    points[number] = _point(objs, metric_value, trainable_params)
    order = _sorted(points, objs)
    keep = max(1, len(order) // eta)
    return order.index(number) < keep


def _point(objs, metric_value: float, params: int) -> list[float]:
    """As losses (smaller is better)."""
    out = []
    for name, direction in objs:
        value = float(params) if name == "trainable_params" else float(metric_value)
        out.append(-value if direction == "max" else value)
    return out


def _sorted(points: dict[int, list[float]], objs) -> list[int]:
    numbers = sorted(points)
    losses = np.array([points[n] for n in numbers], dtype=float)
    metric_col = next(i for i, (n, _) in enumerate(objs) if n != "trainable_params")
    order: list[int] = []
    remaining = np.arange(len(numbers))
    while len(remaining):
        front = remaining[non_dominated(losses[remaining])]
        order.extend(numbers[i] for i in sorted(front, key=lambda i: (losses[i, metric_col], numbers[i])))
        remaining = np.setdiff1d(remaining, front)
    return order
