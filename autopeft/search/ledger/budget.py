"""A study's budget: how many of its trials count against its target, and how many still may start.

Every process counts it before every trial, for every way a study is run (one ``autopeft
search``, two of them at once, N workers), from light reads only (record summaries and
optuna's live trials): N processes overshoot the target by at most N - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from autopeft.store import LiveTrial, TrialRecord, TrialSummary

#: Statuses that count against the budget once trained to an end.
TRAINED = ("complete", "failed", "pruned")


def trained_count(records: Sequence[TrialRecord | TrialSummary]) -> int:
    """Trials that count against the study's budget: trained to an end (complete, failed, pruned).

    A trial whose process died (no heartbeat) or was interrupted, and whose point was
    queued again, is recorded as failed with ``retried_as`` set: its retry counts
    instead, so that a killed worker or a Ctrl-C costs the study nothing.
    """
    return sum(1 for r in records if r.status in TRAINED and r.retried_as is None)




@dataclass(frozen=True)
class Budget:
    """Where a study stands against its target (read at one moment; other processes move it).

    Attributes:
        target: Trials the study asks for.
        trained: Trials trained to an end (:func:`trained_count`).
        running: Trials being trained now by any process: optuna holds them RUNNING (alive,
            or dead but not yet ``grace`` seconds silent), whether their record says
            ``running`` yet or not (it is written just after the ask).
    """

    target: int
    trained: int
    running: int

    @property
    def left(self) -> int:
        """Trials still to start; 0 or less: the budget is met or will be by those running."""
        return self.target - self.trained - self.running


def count_budget(target: int, summaries: Sequence[TrialSummary], live: Sequence[LiveTrial]) -> Budget:
    """The budget of a study, from its records and optuna's RUNNING and WAITING trials.

    Args:
        target: The study's target number of trials.
        summaries: Its records (``Store.trial_summaries``).
        live: optuna's RUNNING and WAITING trials of it (``Store.live_optuna_trials``).
    """
    finished = {r.number for r in summaries if r.status != "running"}
    # A trial asked a moment ago has no record yet: it counts from the ask on, which
    # narrows the window in which N processes all see one trial left to N asks.
    running = sum(1 for t in live if t.state == "RUNNING" and t.number not in finished)
    return Budget(target, trained_count(summaries), running)
