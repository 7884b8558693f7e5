"""What a trial tells the study: its objective values, the budget constraint, its importance map.

The session trains a trial and records it; these say what of its result counts. The sampler
sees the budget as an optuna constraint (``autopeft.search.sampling.samplers``), and the objective
values in study order (on the sampler's scale: ``autopeft.search.scales``).
"""

from __future__ import annotations

import math
import warnings

from autopeft.search.prepare import PreparedSearch
from autopeft.store import StudyRecord
from autopeft.trials.spec import TrialResult

#: The optuna constraint of the parameter budget: feasible when <= 0.
BUDGET_CONSTRAINT = "trainable_params_over_budget"


def constrain(trial, value: float) -> None:
    """Set the budget constraint of optuna trial ``trial`` (``(count - limit) / limit``; 1.0: not buildable)."""
    with warnings.catch_warnings():
        # A re-queued trial carries its original's constraint; the same value is set again.
        warnings.filterwarnings("ignore", message="The constraint value is ignored because this constraint")
        trial.set_constraint(BUDGET_CONSTRAINT, value)


def objective_values(study: StudyRecord, result: TrialResult, trainable_params: int) -> list[float] | None:
    """The result's objective values in study order (None if one is missing or not finite)."""
    source = {
        "trainable_params": trainable_params,
        "peak_memory": result.peak_memory_mb or result.peak_rss_mb,  # the device's own figure
        "train_time": result.train_time,
        **result.metrics,
    }
    values = [source.get(name) for name, _ in study.objectives]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return [float(v) for v in values]


def with_importance(extras: dict, prep: PreparedSearch, method: str) -> dict:
    """Add the trial's ``ImportanceMap`` when its method measured one (``Method.importance_map``:
    AdaLoRA's final ranks)."""
    if "importance" in extras:
        return extras
    from autopeft.methods import get_method
    from autopeft.store.trial_extras import rank_allocation

    imap = get_method(method).importance_map(rank_allocation(extras), prep.arch)
    return extras if imap is None else {**extras, "importance": imap.to_json()}
