"""What a search runs next, as one object the session asks: the scheduler.

A :class:`~autopeft.search.session.SearchSession` is the backend of a search: it asks optuna
for a trial and tells it the result, writes the ledger, and trains a run where the runner puts
it. What it runs, and whether a running trial goes on past a rung, it asks a :class:`Scheduler`
instead of deciding inline, so that another policy (a different order, another stopping rule)
is one object passed as ``SearchSession(..., scheduler=...)``, not an edit of the session's step.

The two questions (:class:`Scheduler`):

1. :meth:`Scheduler.next`: the next unit of work: a pending seed run at the target
   (:class:`SeedRun`), a new trial from the sampler (:class:`NewTrial`), or nothing
   (:class:`Nothing`: the budget is met, or a stop arrived; the session's ``run`` then waits
   for other processes' trials or ends).
2. :meth:`Scheduler.judge`: the judge a trial's runner calls at each evaluation, answering
   whether the trial goes on past a rung (:class:`Judge`, the shape of
   :class:`~autopeft.search.fidelity.judge.RungJudge`).

:class:`DefaultScheduler` is the policy autopeft has always had:

- seed runs at the target go before new trials: a study's answer is decided on them
  (:mod:`autopeft.search.seeds`), and a trial at the target waits on its seeds to count;
- then a new trial while the budget (counted across every process, dead ones reaped) has room.
  "New trial" means ``ledger.ask`` with the sampler: optuna's queue answers first, so the
  reference trials and the start-up trials a new study enqueued
  (:mod:`autopeft.search.sampling.baseline`, :mod:`autopeft.search.sampling.startup`) come
  before any point the sampler proposes;
- at a rung, :class:`~autopeft.search.fidelity.judge.RungJudge` decides (successive halving,
  the ladder placed from default LoRA's probes); default LoRA, enqueued at several rates
  towards a target, is judged only against its own rates.

Each call is given the session's parts (:class:`SessionParts`), so a scheduler needs no
reference to the session and a custom one can wrap the default.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Union

if TYPE_CHECKING:
    from autopeft.search.ledger.budget import Budget
    from autopeft.search.ledger.ledger import Ledger
    from autopeft.search.prepare import PreparedSearch
    from autopeft.store import Store, StudyRecord
    from autopeft.store.trial_extras import Rung
    from autopeft.store.verifications import VerificationRecord, Verifications


# ---------------------------------------------------------------------- what runs next
@dataclass(frozen=True)
class SeedRun:
    """Train this seed run at the target (already claimed: it is ``running`` for this process)."""

    row: VerificationRecord


@dataclass(frozen=True)
class NewTrial:
    """Ask the sampler for a new trial; ``budget``: the study's budget that left room for it."""

    budget: Budget


@dataclass(frozen=True)
class Nothing:
    """Run nothing now.

    Attributes:
        budget: The budget read for this answer (None: not read, e.g. a stop came first).
        why: ``"budget"`` (met, or will be by the trials running) or ``"stop"`` (requested).
    """

    budget: Budget | None
    why: str


#: The answer of :meth:`Scheduler.next`.
Work = Union[SeedRun, NewTrial, Nothing]


# ---------------------------------------------------------------------- a trial at its rungs
@dataclass(frozen=True)
class RunningTrial:
    """A trial about to be trained, as the rung decisions need it.

    Attributes:
        number: The trial's number.
        params: Its trainable parameters (the analytic count).
        role: Its role (``default LoRA``, ``cheapest``) or None.
        rungs: Rung entries already passed (a re-run resuming its predecessor's checkpoint).
        save: Persists the running trial's rung and probe entries as they come (extras to merge).
    """

    number: int
    params: int
    role: str | None
    rungs: tuple[Rung, ...]
    save: Callable[[dict], None]


class Judge(Protocol):
    """What a trial's runner calls at each evaluation, and what the session reads of it."""

    def __call__(self, step: int, metrics: dict) -> bool:
        """Go on past ``step``? (``metrics``: the trial's rung metrics there.)"""

    def planned(self) -> tuple[int, ...]:
        """The steps the trial is evaluated at (``rungs: auto``: read as the ladder is placed)."""

    def finished(self, metrics: dict) -> None:
        """The trial reached the target."""

    def extras(self) -> dict:
        """The trial record's rung entries so far."""


# ---------------------------------------------------------------------- the session's parts
@dataclass(frozen=True)
class SessionParts:
    """What a scheduler may read of the session asking it.

    Attributes:
        store: The database.
        study: The study's record.
        prep: The prepared search (with the study's importance map).
        ledger: The study's trials in the store; its budget and optuna's storage.
        runs: The verification runs (a study's seed runs at its target among them).
        target_key: The protocol key of the study's seed runs at its target (None: no target).
        stopped: Whether a stop was requested.
    """

    store: Store
    study: StudyRecord
    prep: PreparedSearch
    ledger: Ledger
    runs: Verifications
    target_key: str | None
    stopped: Callable[[], bool]


class Scheduler(Protocol):
    """Decides what a search runs next and whether a running trial goes on."""

    def next(self, parts: SessionParts) -> Work:
        """The next unit of work of this process for the study."""

    def judge(self, parts: SessionParts, trial: RunningTrial) -> Judge:
        """The judge of ``trial`` at its rungs (called once per trial, before it is trained)."""


class DefaultScheduler:
    """Seed runs first, then new trials while the budget has room; successive halving at the rungs."""

    def next(self, parts: SessionParts) -> Work:
        if parts.target_key is not None:
            row = self._claim_seed_run(parts)
            if row is not None:
                return SeedRun(row)
            if parts.stopped():  # a stop that came while the seed runs were looked at
                return Nothing(None, "stop")
        budget = parts.ledger.budget(reap=True)  # reaps dead processes' trials (their points queued again)
        if budget.left <= 0:
            return Nothing(budget, "budget")
        return NewTrial(budget)

    def judge(self, parts: SessionParts, trial: RunningTrial) -> Judge:
        from autopeft.search.fidelity.judge import RungJudge
        from autopeft.space.default_lora import DEFAULT_LORA

        space, study, store = parts.prep.space, parts.study, parts.store
        is_reference = trial.role == DEFAULT_LORA
        return RungJudge(space, parts.ledger.storage, study.name, study.objectives, number=trial.number,
                         params=trial.params, reference=DEFAULT_LORA, is_reference=is_reference, rungs=trial.rungs,
                         save=trial.save,
                         # Towards a target, default LoRA (enqueued at several rates) goes on at its best rate.
                         role=DEFAULT_LORA if space.target is not None and is_reference else None,
                         # Re-read at each decision: other workers' trials at a rung count too.
                         records=lambda: store.trials(study.name))

    @staticmethod
    def _claim_seed_run(parts: SessionParts) -> VerificationRecord | None:
        """The oldest pending seed run of the study at its target, claimed for this process
        (runs of a process silent for too long are pending again first)."""
        from autopeft.search.runs import STALE_AFTER

        parts.runs.requeue_stale(parts.study.name, STALE_AFTER)
        return parts.runs.claim(parts.study.name, f"{socket.gethostname()}:{os.getpid()}", only=parts.target_key)
