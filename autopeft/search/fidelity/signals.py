"""Rung signals: what a trial is judged by at a rung, with how noisy that reading is.

A rung decides on a measurement taken part-way through training. Accuracy is a step function
that sits at chance until a run has learned; the validation loss moves earlier, and so does
the smoothed training loss. Which of them ranks runs as the finished runs will rank is a
measured question (``benchmarks/curves``); ``proxy.signal`` names the one a study uses, the
validation loss by default.

Every reading carries its standard error, so that a rung can tell "worse" from "within
noise" (``autopeft.search.fidelity.promotion``) and rung placement can tell "has learned" from
"has not yet" (``autopeft.search.fidelity.placement``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Metrics that are a rate over validation examples (their standard error is binomial).
_RATES = ("accuracy", "choice_accuracy", "exact_match", "macro_f1")


@dataclass(frozen=True)
class Reading:
    """One signal at one rung.

    Attributes:
        value: The signal, in its own units (a loss in nats, an accuracy in [0, 1]).
        se: Its standard error over validation examples (0 when the trial did not report one).
    """

    value: float
    se: float = 0.0


@dataclass(frozen=True)
class RungSignal:
    """A named rung signal and its direction (``"min"``: smaller is better)."""

    name: str
    direction: str

    def read(self, metrics: dict) -> Reading | None:
        """The reading in a trial's rung metrics (``autopeft.trials.proxy``); None when absent or not finite."""
        value = metrics.get(self.name)
        if value is None or not math.isfinite(float(value)):
            return None
        value = float(value)
        return Reading(value, _standard_error(self.name, value, metrics))

    def oriented(self, value: float) -> float:
        """``value`` as a loss (smaller is better), whatever the direction."""
        return value if self.direction == "min" else -value


def rung_signal(space) -> RungSignal:
    """The rung signal of a ``SearchSpace`` (its ``proxy.signal``; ``autopeft.tasks.rung_signals``
    says which a task reports)."""
    from autopeft.tasks import rung_signals

    name = space.proxy.signal
    return RungSignal(name, rung_signals(space.task.type, space.task.metric)[name])


def _standard_error(name: str, value: float, metrics: dict) -> float:
    n = metrics.get("eval_examples") or 0
    if name == "eval_loss":
        return float(metrics.get("eval_loss_se") or 0.0)
    if name == "perplexity":  # exp(loss): the delta method
        return value * float(metrics.get("eval_loss_se") or 0.0)
    if name in _RATES and n > 1:
        p = min(max(value, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / n)
    return 0.0
