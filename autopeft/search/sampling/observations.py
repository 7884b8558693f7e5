"""What the multi-fidelity sampler learns from: every evaluation of every trial, from optuna's trials.

A trial contributes, on the unit encoding of its configuration (optuna's
``_SearchSpaceTransform``: one-hot categoricals, log and integer ranges mapped to [0, 1]):

* to the task metric, one point per evaluation before the end (the user attribute
  ``rung_observations``, probes and rungs alike) at the fraction of the target it had trained,
  and its value at the target when it completed;
* to each other objective (log10 trainable parameters), its told value when complete, else its
  ``trainable_params`` attribute (known before training) when that objective is the parameter count;
* to the budget constraint, its value (set before training, infeasible trials included).

Infeasible trials were told stand-in values: they enter the constraint only. Values are
oriented so that larger is better (botorch maximises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from autopeft.search.optuna_view import OBSERVATIONS

#: optuna's prefix of constraint system attributes (``Trial.set_constraint``).
_CONSTRAINT_PREFIX = "constraints:"


@dataclass(frozen=True)
class Observations:
    """Training data of the multi-fidelity sampler (arrays of float64).

    Attributes:
        transform: optuna's ``_SearchSpaceTransform`` of the search space (d unit columns).
        metric_x: ``(n, d + 1)``: configurations, then the fraction of the target trained.
        metric_y: ``(n,)``: the task metric there, oriented (larger is better).
        objectives: Per other objective, in study order: ``(x (m, d), y (m,))``, oriented.
        constraint: ``(x (k, d), y (k,))`` of the budget constraint (feasible when <= 0), or None.
        baseline: ``(b, d)``: configurations trained (the acquisition's noisy incumbents).
        pending: ``(p, d)``: configurations being trained now.
        trained: Trials with at least one evaluation.
        tried: Parameter dicts of every trial given (any state).
    """

    transform: Any
    metric_x: np.ndarray
    metric_y: np.ndarray
    objectives: tuple
    constraint: tuple | None
    baseline: np.ndarray
    pending: np.ndarray
    trained: int
    tried: tuple = field(default=())

    def untransform(self, row: np.ndarray) -> dict:
        return self.transform.untransform(row)

    def tried_keys(self, key) -> set:
        return {configuration_of(p, key) for p in self.tried}


def configuration_of(params: dict, key: Callable[[dict], Hashable] | None) -> Hashable:
    """What makes ``params`` a configuration: ``key(params)``, else the raw values."""
    got = key(params) if key is not None else None
    return got if got is not None else tuple(sorted((k, repr(v)) for k, v in params.items()))


def fraction(step: float, target: float) -> float:
    """A step as the fraction of the target trained, in (0, 1]."""
    return min(1.0, max(step, 1e-9) / target) if target and target > 0 else 1.0


def log10_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return math.log10(value) if value > 0 else None


def gather(trials: Sequence, search_space: dict, *, metric_index: int, directions: Sequence, metric_names: Sequence | None,
           target_steps: int | None) -> Observations | None:
    """The :class:`Observations` of optuna ``trials`` (frozen) on ``search_space``; None when none fits it."""
    from optuna._transform import _SearchSpaceTransform
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    transform = _SearchSpaceTransform(search_space, transform_log=True, transform_step=True, transform_0_1=True)
    names = list(metric_names or [])
    sign = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in directions]
    fits = [t for t in trials if all(n in t.params for n in search_space)]
    if not fits:
        return None
    target = target_steps or max((s for t in fits for s, _ in t.user_attrs.get(OBSERVATIONS) or []), default=1)
    mx, my, base, pend, tried = [], [], [], [], []
    others = {i: ([], []) for i in range(len(directions)) if i != metric_index}
    con_x, con_y = [], []
    trained = 0
    for t in fits:
        x = transform.transform({n: t.params[n] for n in search_space})
        tried.append(dict(t.params))
        if t.state == TrialState.RUNNING:
            pend.append(x)
            continue
        con = [v for k, v in t.system_attrs.items() if k.startswith(_CONSTRAINT_PREFIX)]
        if con:
            con_x.append(x)
            con_y.append(float(max(con)))
        if t.user_attrs.get("status") == "infeasible":
            continue
        points = [(fraction(s, target), v) for s, v in t.user_attrs.get(OBSERVATIONS) or [] if _finite(v)]
        complete = t.state == TrialState.COMPLETE and t.values is not None
        if complete and _finite(t.values[metric_index]):
            points.append((1.0, t.values[metric_index]))
        if not points:
            continue
        trained += 1
        base.append(x)
        for s, v in points:
            mx.append(np.append(x, s))
            my.append(sign[metric_index] * float(v))
        for i, (ox, oy) in others.items():
            value = t.values[i] if complete else _known_before_training(t, names[i] if i < len(names) else "")
            if _finite(value):
                ox.append(x)
                oy.append(sign[i] * float(value))
    d = len(transform.bounds)
    return Observations(
        transform=transform,
        metric_x=np.array(mx, dtype=float).reshape(-1, d + 1),
        metric_y=np.array(my, dtype=float),
        objectives=tuple((np.array(ox, dtype=float).reshape(-1, d), np.array(oy, dtype=float))
                         for _, (ox, oy) in sorted(others.items())),
        constraint=(np.array(con_x, dtype=float).reshape(-1, d), np.array(con_y, dtype=float)) if con_x else None,
        baseline=np.unique(np.array(base, dtype=float).reshape(-1, d), axis=0),
        pending=np.array(pend, dtype=float).reshape(-1, d),
        trained=trained,
        tried=tuple(tried),
    )


def _known_before_training(trial, name: str) -> float | None:
    """An objective a stopped trial still knows: its parameter count (optuna's name says the scale)."""
    if name.startswith("trainable_params"):
        count = trial.user_attrs.get("trainable_params")
        return log10_or_none(count) if name.endswith("_log10") else count
    return None


def _finite(value) -> bool:
    try:
        return value is not None and np.isfinite(float(value))
    except (TypeError, ValueError):
        return False
