"""Hypervolume of a study's Pareto front, its history over trials, and 2-D sub-fronts.

Which implementation, and why: optuna's exact WFG algorithm
(``optuna._hypervolume.compute_hypervolume``) on numpy arrays. It is the code optuna's own
``plot_hypervolume_history`` and HSSP use, needs no torch import (the dashboard must open
fast and the history calls it once per front change), and is exact in any dimension.
botorch's ``Hypervolume`` is public but works on torch tensors and is much slower per call;
it is only the fallback should optuna ever move its private module.

Objectives live on very different scales (accuracy ~1, trainable parameters ~1e5), so
hypervolume is measured on each objective's comparison scale (``autopeft.search.scales``:
log10 for trainable parameters, the geometry the sampler models) and reported *normalised*: each objective is mapped to [0, 1] with 0 = the best
value any eligible trial reached (the ideal point) and 1 = the reference point. The
reference point is fixed per study (the worst eligible value plus a 10 % margin of the
range), so the history over trials never decreases and 1.0 would be a single point at the
ideal. The reference point is returned in the objectives' own units so it can be shown.

Eligible trials are those the front is taken over (``autopeft.search.analysis.pareto.eligible``):
complete and not diverged. A diverged trial adds nothing to the volume, nor to the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from autopeft.search.analysis.pareto import _losses, eligible, non_dominated
from autopeft.search.scales import scaled, unscaled
from autopeft.store.records import TrialRecord

#: Fraction of each objective's range added beyond the worst value to make the reference point,
#: so that the worst front points still contribute a non-zero volume.
REFERENCE_MARGIN = 0.1


def _compute(losses: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``losses`` (n, m; minimisation) and bounded by ``reference``."""
    inside = losses[np.all(losses < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    try:
        from optuna._hypervolume import compute_hypervolume
    except ImportError:  # pragma: no cover - optuna moved its private module
        import torch
        from botorch.utils.multi_objective.hypervolume import Hypervolume

        # botorch maximises: negate both the points and the reference.
        hv = Hypervolume(ref_point=-torch.as_tensor(reference, dtype=torch.double))
        return float(hv.compute(-torch.as_tensor(inside, dtype=torch.double)))
    return float(compute_hypervolume(inside, reference, assume_pareto=False))


@dataclass(frozen=True)
class HypervolumeReport:
    """A study's normalised hypervolume and how it grew.

    Attributes:
        value: Normalised hypervolume of all eligible trials (complete, not diverged), in [0, 1].
        reference: The reference point in the objectives' units (study order).
        ideal: The best value reached for each objective (study order).
        history: ``[(trial_number, hypervolume_after_it), ...]`` for every finished
            trial (complete, failed or infeasible) in trial-number order.
    """

    value: float
    reference: tuple[float, ...]
    ideal: tuple[float, ...]
    history: tuple[tuple[int, float], ...]


def reference_point(records: Sequence[TrialRecord], objectives) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ideal, reference)`` as losses (smaller is better), or None without eligible trials."""
    done = eligible(records)
    if not done:
        return None
    losses = _losses(done, objectives)
    ideal, worst = losses.min(axis=0), losses.max(axis=0)
    span = worst - ideal
    # A constant objective still needs a box of non-zero width: fall back to |value| or 1.
    span = np.where(span > 0, span, np.where(np.abs(worst) > 0, np.abs(worst), 1.0))
    return ideal, worst + REFERENCE_MARGIN * span


def hypervolume_report(records: Sequence[TrialRecord], objectives) -> HypervolumeReport | None:
    """Normalised hypervolume and its history; None when no eligible trial exists (none
    completed, or every completed trial diverged)."""
    ref = reference_point(records, objectives)
    if ref is None:
        return None
    ideal, reference = ref
    scale = reference - ideal
    sign = np.array([-1.0 if d == "max" else 1.0 for _, d in objectives])
    history: list[tuple[int, float]] = []
    front = np.empty((0, len(objectives)))
    current = 0.0
    counted = {r.number for r in eligible(records)}
    finished = sorted((r for r in records if r.status != "running"), key=lambda r: r.number)
    for r in finished:
        if r.number in counted:
            point = (np.asarray(scaled(objectives, r.values), dtype=float) * sign - ideal) / scale
            # Only a point not dominated by the current front changes the volume: most
            # trials of a long study do not, which keeps the history cheap at 1,000 trials.
            dominated = len(front) and np.any(np.all(front <= point, axis=1) & np.any(front < point, axis=1))
            if not dominated:
                front = np.vstack([front, point])
                front = front[non_dominated(front)]
                current = _compute(front, np.ones(len(objectives)))
        history.append((r.number, current))
    return HypervolumeReport(
        value=current,
        reference=tuple(unscaled(objectives, reference * sign)),
        ideal=tuple(unscaled(objectives, ideal * sign)),
        history=tuple(history),
    )


def front_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated mask of ``values`` (n, m) under ``directions`` (``"max"``/``"min"`` each).

    Used for the front of a pair of objectives (the dashboard's 2-D view of a study with
    three objectives, and the overlay of several studies' fronts).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return non_dominated(values.reshape(len(values), len(directions)) * sign)
