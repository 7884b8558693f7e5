"""Who goes on at a rung: multi-objective successive halving, on a signal, within noise.

At each rung a trial is compared with every trial of the study that reached the same rung
(stopped there or gone on): points are (rung signal, trainable parameters), ranked by
non-dominated sorting (front by front; inside a front, by the signal). The trial goes on if
it is among the best ``max(1, n // eta)`` of the ``n`` points, or if the rung cannot tell the
runs apart at all: when the best and the worst signal there are within noise of each other
(:data:`Z` standard errors of their difference), a cut would rank noise, so every run goes on.

The signal is the study's ``proxy.signal`` (``autopeft.search.fidelity.signals``); without one
(older callers) it is the task metric. A record's ``rungs`` (stored in its extras as
``[step, task metric, signal, standard error]``, ``[step, task metric]`` in studies recorded
before rung signals; read as ``autopeft.store.trial_extras.Rung``) holds one entry per rung it
was judged at.

Trials stopped early are recorded as ``pruned`` with their fidelity and told to optuna as
PRUNED; the front, ``show`` and ``export`` use trials at the target only. A sampler that
models every step trained reads the rungs from the trial's optuna attributes
(``autopeft.search.sampling.multi_fidelity``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from autopeft.search.fidelity.signals import Reading, RungSignal
from autopeft.search.analysis.pareto import non_dominated
from autopeft.store.records import TrialRecord
from autopeft.store.trial_extras import Rung

#: Standard errors of a difference below which two rung readings are "within noise" (~95 %).
Z = 2.0


def rung_objectives(objectives) -> list[tuple[str, str]]:
    """The objectives known at a rung: the task metric and trainable parameters."""
    from autopeft.tasks import METRIC_DIRECTIONS

    return [(n, d) for n, d in objectives if n in METRIC_DIRECTIONS or n == "trainable_params"]


def rung_at(step: int, metric_value: float | None, reading: Reading | None) -> Rung:
    """What a trial's record keeps of one rung: the task metric there and the signal's reading."""
    if reading is None:
        return Rung(step, metric_value)
    return Rung(step, metric_value, reading.value, reading.se)


def entry_reading(entry: Rung, signal: RungSignal | None) -> Reading | None:
    """The signal's reading at a rung (the task metric's, without a signal or in an old entry)."""
    if signal is not None and entry.signal is not None:
        value, se = entry.signal, entry.signal_se
    else:
        value, se = entry.metric, 0.0
    if value is None or not math.isfinite(float(value)):
        return None
    return Reading(float(value), float(se or 0.0))


def promote(records: Sequence[TrialRecord], objectives, number: int, step: int, metric_value: float,
            trainable_params: int, eta: int, role: str | None = None, *, signal: RungSignal | None = None,
            reading: Reading | None = None) -> bool:
    """Should trial ``number`` go on past the rung at ``step``?

    Args:
        records: The study's trials (the others' rungs are read from their records).
        objectives: The study's ``(name, direction)`` objectives.
        metric_value: The trial's task metric at the rung (the signal when ``signal`` is None).
        signal: The rung signal (None: the task metric, without noise).
        reading: The trial's reading of ``signal`` at the rung.
        role: A study with a target passes it for default LoRA, which it enqueues at several
            learning rates: the trial is judged only against the trials of its role, and the
            best of them at each rung goes on, so that the reference reaches the target at its
            own best rate whatever the front holds.
    """
    objs = rung_objectives(objectives)
    if reading is None:  # the trial did not report the signal (a runner of its own): the task metric judges
        signal, reading = None, Reading(float(metric_value))
    if signal is not None:  # the signal stands where the task metric stood
        objs = [(signal.name, signal.direction) if n != "trainable_params" else (n, d) for n, d in objs]
    metric_col = next(i for i, (n, _) in enumerate(objs) if n != "trainable_params")
    if role is not None:
        mine = _point(objs, reading.value, trainable_params)[metric_col]
        rivals = [_point(objs, r.value, 0)[metric_col] for r in _readings(records, number, step, signal, role)]
        return all(mine <= other for other in rivals)
    points: dict[int, list[float]] = {}
    noise: dict[int, Reading] = {number: reading}
    for r in records:
        if r.number == number or r.trainable_params is None:
            continue
        for entry in r.rungs:
            if entry.step == step and (other := entry_reading(entry, signal)) is not None:
                points[r.number] = _point(objs, other.value, r.trainable_params)
                noise[r.number] = other
    points[number] = _point(objs, reading.value, trainable_params)
    if indistinguishable(list(noise.values())):
        return True
    order = _sorted(points, objs)
    keep = max(1, len(order) // eta)
    return order.index(number) < keep


def indistinguishable(readings: Sequence[Reading]) -> bool:
    """Whether every reading at a rung is within noise of every other: the best and the worst
    differ by at most :data:`Z` standard errors of their difference. Readings without a
    standard error are never within noise (a rung with no noise figure ranks as it always did)."""
    if len(readings) < 2:
        return False
    low = min(readings, key=lambda r: r.value)
    high = max(readings, key=lambda r: r.value)
    se = math.hypot(low.se, high.se)
    return se > 0 and high.value - low.value <= Z * se


def _readings(records: Sequence[TrialRecord], number: int, step: int, signal: RungSignal | None, role: str):
    for r in records:
        if r.number != number and r.role == role:
            for entry in r.rungs:
                if entry.step == step and (reading := entry_reading(entry, signal)) is not None:
                    yield reading


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
