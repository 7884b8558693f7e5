"""One trial as optuna and autopeft each hold it: what a record takes from optuna's trial, and
what optuna is told of a record.

:class:`~autopeft.search.ledger.ledger.Ledger` orders the writes that keep the two in step;
these say what each write holds. From optuna's trial, a record takes its role (an enqueued
reference's :data:`ROLE`) and the trial it retries (:func:`started_record`), and a finished
optuna trial whose process died before its record existed gets the record it would have started
as (:func:`orphan_record`). Of a record, optuna is told what was trained (its user attributes:
:func:`annotate`), its state (:func:`told_state`) and, for an untrained candidate, the worst
values seen so far as stand-ins (:func:`stand_ins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from autopeft.candidate import Candidate
from autopeft.errors import AutoPeftError, LedgerError
from autopeft.search.ledger.reaper import local_aware
from autopeft.store import TrialRecord, trial_extras, utcnow
from autopeft.store.retry import retried_optuna

#: optuna user attribute of an enqueued reference trial (``autopeft.search.sampling.baseline``): its
#: role, which the trial's record keeps as ``extras["baseline"]``.
ROLE = "autopeft:baseline"


@dataclass(frozen=True)
class Ticket:
    """An asked trial.

    Attributes:
        trial: optuna's live ``Trial`` (for ``set_constraint`` and user attributes).
        candidate: What ``suggest`` made of it.
        record: The record it started as (status ``running``).
    """

    trial: Any
    candidate: Candidate
    record: TrialRecord

    @property
    def number(self) -> int:
        return self.record.number


def started_record(study: str, trial, candidate, storage, *, sampler_time: float) -> TrialRecord:
    """The ``running`` record of optuna's just-asked ``trial``, of which ``suggest`` made
    ``candidate``: a retry links to the trial it retries, a reference keeps its role."""
    history = system_attrs(storage, trial).get("retry_history") or []
    return TrialRecord(
        study=study, number=trial.number, status="running", candidate=candidate,
        params=dict(trial.params), started_at=utcnow(), sampler_time=sampler_time,
        extras={**trial_extras.retry_extras(history[-1] if history else None), **role_extras(trial.user_attrs)},
    )


def orphan_record(study: str, frozen, describe: Callable[[dict], Candidate]) -> TrialRecord | None:
    """The ``running`` record that finished optuna trial ``frozen`` would have started as, its
    candidate from ``describe`` (None: its parameters were drawn in part, so there is nothing to describe)."""
    try:
        candidate = describe(dict(frozen.params))
    except (KeyError, ValueError, AutoPeftError):
        return None
    return TrialRecord(study=study, number=frozen.number, status="running", candidate=candidate,
                       params=dict(frozen.params), started_at=local_aware(frozen.datetime_start) or utcnow(),
                       extras=role_extras(frozen.user_attrs))


def role_extras(user_attrs: dict) -> dict:
    """The role of an enqueued reference trial, as its record keeps it (a retry of one keeps the role)."""
    return trial_extras.role_extras(user_attrs.get(ROLE))


def system_attrs(storage, trial) -> dict:
    """The system attributes optuna read when it made ``trial`` (asking again costs a query)."""
    frozen = getattr(trial, "_cached_frozen_trial", None)  # optuna >= 3.0 keeps it; private, so a fallback
    return frozen.system_attrs if frozen is not None else storage.get_trial_system_attrs(trial._trial_id)


def annotate(storage, trial_id: int, record: TrialRecord) -> None:
    """What was trained, as optuna user attributes (``optuna_view.trial_user_attrs``):
    written before the tell, since optuna refuses to update a finished trial."""
    from autopeft.search.optuna_view import trial_user_attrs

    for key, value in trial_user_attrs(record).items():
        retried_optuna(lambda: storage.set_trial_user_attr(trial_id, key, value))


def told_state(record: TrialRecord, told):
    from optuna.trial import TrialState

    if record.status == "complete":
        if told is None:
            raise LedgerError(f"trial {record.number} is complete: optuna must be told its objective values")
        return TrialState.COMPLETE
    if record.status == "infeasible":
        return TrialState.FAIL if told is None else TrialState.COMPLETE
    if record.status == "failed":
        return TrialState.FAIL
    if record.status == "pruned":
        return TrialState.PRUNED
    raise LedgerError(f"trial {record.number}: cannot finish a trial as '{record.status}'")


def stand_ins(objectives: Sequence, done: Sequence[Sequence[float]], trainable_params: int | None) -> list[float]:
    """The values an untrained candidate is told as infeasible, in each objective's own units:
    per objective the worst of ``done`` (the complete trials' values), but its own
    trainable-parameter count when it has one."""
    imputed = []
    for i, (name, direction) in enumerate(objectives):
        if name == "trainable_params" and trainable_params is not None:
            imputed.append(float(trainable_params))
        else:
            column = [v[i] for v in done]
            imputed.append(min(column) if direction == "max" else max(column))
    return imputed
