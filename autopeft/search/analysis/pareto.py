"""Pareto fronts, the knee, and the other ways to pick one trial from a study.

Fronts are computed from autopeft's trial records rather than with ``study.best_trials``:
the records know what optuna does not (an infeasible trial's imputed values are not
results), and the dashboard must draw fronts without opening optuna's storage. The
non-dominated filter is checked against ``study.best_trials`` in the tests.

A diverged trial (``autopeft.search.analysis.divergence``: a collapsed classifier, a loss that did
not fall) is a real observation, and the sampler learns from it, but it is never a result to
offer: every front and pick here is taken over :func:`eligible` trials only, so a run that
collapsed cannot sit on the front because it trained few parameters. Such trials stay in
every trial table, labelled by :func:`diverged`, and can still be exported by number.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from autopeft.errors import ExportError
from autopeft.search.analysis.divergence import divergence
from autopeft.search.scales import scaled
from autopeft.store.records import StudyRecord, TrialRecord


def completed(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Complete trials with objective values, in trial-number order (whatever the input order)."""
    return sorted((r for r in records if r.status == "complete" and r.values is not None), key=lambda r: r.number)


def diverged(record: TrialRecord) -> str | None:
    """Why a complete trial's run counts as diverged, in a few words; None when it does not
    (or the trial is not complete).

    A verified point (``autopeft.search.analysis.trust.verified_records``) is judged by its
    verification, not by its proxy run: None. Verification keeps a configuration with a
    diverged seed and flags it where it is shown (``Verified.diverged``), so the verified
    front and picks are taken over every verified point.
    """
    if record.status != "complete":
        return None
    if record.verified:
        return None
    # The diagnostics (predicted classes, majority rate) are read as the trial process reported them.
    return divergence(record.metrics or {}, record.diagnostics, record.curve or [])


def eligible(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials a front or a pick may contain: complete, with objective values, and not
    diverged; in trial-number order."""
    return [r for r in completed(records) if diverged(r) is None]


def _nothing_to_pick(records: Sequence[TrialRecord]) -> ExportError:
    """The error for a pick without an eligible trial: none completed, or all diverged."""
    done = completed(records)
    if not done:
        return ExportError("the study has no completed trial to pick from")
    first = done[0]
    return ExportError(f"all completed trials diverged ({len(done)}; trial {first.number}: {diverged(first)}), "
                       "so there is nothing to pick; a diverged trial can still be exported by number (--trial N)")


def _losses(records: Sequence[TrialRecord], objectives) -> np.ndarray:
    """Objective values turned into losses (smaller is better) of shape (n, m), each on its
    comparison scale (``autopeft.search.scales``: log10 for trainable parameters)."""
    sign = np.array([-1.0 if d == "max" else 1.0 for _, d in objectives])
    values = [scaled(objectives, r.values) for r in records]
    return np.array(values, dtype=float).reshape(len(records), len(objectives)) * sign


def non_dominated(losses: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``losses`` (n, m) that no other row dominates.

    Duplicated points are all kept (each is optimal)."""
    n = len(losses)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated_by = np.all(losses <= losses[i], axis=1) & np.any(losses < losses[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask


def pareto_front(records: Sequence[TrialRecord], objectives) -> list[TrialRecord]:
    """The Pareto-optimal eligible trials (complete, not diverged), in trial-number order."""
    done = eligible(records)
    if not done:
        return []
    mask = non_dominated(_losses(done, objectives))
    return [r for r, keep in zip(done, mask) if keep]


def knee(records: Sequence[TrialRecord], objectives) -> TrialRecord:
    """The front point nearest the ideal point after normalising each objective.

    Each objective (on its comparison scale: log10 for trainable parameters, so halving
    the parameters counts the same at 5k as at 500k) is rescaled over the front to [0, 1]
    with 0 = its best value; the knee
    is the point with the smallest Euclidean distance to (0, ..., 0). Ties go to the lower
    trial number. An objective constant over the front does not influence the pick.
    """
    front = pareto_front(records, objectives)
    if not front:
        raise _nothing_to_pick(records)
    losses = _losses(front, objectives)
    low, high = losses.min(axis=0), losses.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    distance = np.linalg.norm((losses - low) / span, axis=1)
    return front[int(np.argmin(distance))]


def best(records: Sequence[TrialRecord], objectives, name: str) -> TrialRecord:
    """The eligible trial with the best value of objective ``name`` (ties: lower number)."""
    names = [n for n, _ in objectives]
    if name not in names:
        raise ExportError(f"'{name}' is not an objective of this study; objectives: {', '.join(names)}")
    done = eligible(records)
    if not done:
        raise _nothing_to_pick(records)
    i = names.index(name)
    direction = objectives[i][1]
    key = (lambda r: (-r.values[i], r.number)) if direction == "max" else (lambda r: (r.values[i], r.number))
    return min(done, key=key)


def within_budget(records: Sequence[TrialRecord], objectives, max_params: int) -> TrialRecord:
    """The best task-metric eligible trial training at most ``max_params`` parameters."""
    from autopeft.space.schema import TASK_METRICS

    metric, direction = next((name, d) for name, d in objectives if name in TASK_METRICS)

    def fits(r: TrialRecord) -> bool:
        return r.trainable_params is not None and r.trainable_params <= max_params

    within = [r for r in completed(records) if fits(r)]
    if not within:
        raise ExportError(f"no completed trial trains at most {max_params:,} parameters")
    done = [r for r in within if diverged(r) is None]
    if not done:
        if not eligible(records):
            raise _nothing_to_pick(records)
        raise ExportError(f"no completed trial trains at most {max_params:,} parameters without diverging "
                          f"({len(within)} diverged trial(s) within it are left out)")
    i = [n for n, _ in objectives].index(metric)
    sign = -1.0 if direction == "max" else 1.0
    return min(done, key=lambda r: (sign * r.values[i], r.trainable_params, r.number))


def pick(study: StudyRecord, records: Sequence[TrialRecord], how: str) -> TrialRecord:
    """Pick a trial by ``knee``, ``best:OBJECTIVE`` or ``budget:PARAMS`` (e.g. ``budget:50k``)."""
    objectives = study.objectives
    if how == "knee":
        return knee(records, objectives)
    kind, _, arg = how.partition(":")
    if kind == "best" and arg:
        return best(records, objectives, arg)
    if kind == "budget" and arg:
        return within_budget(records, objectives, parse_count(arg))
    raise ExportError(f"unknown pick '{how}'; expected knee, best:OBJECTIVE or budget:PARAMS")


def parse_count(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise ExportError(f"expected a parameter count such as 50000, 50k or 1.2M, got '{text}'")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}[m.group(2)])


def trial_by_number(records: Sequence[TrialRecord], number: int) -> TrialRecord:
    for r in records:
        if r.number == number:
            return r
    raise ExportError(f"the study has no trial {number}")
