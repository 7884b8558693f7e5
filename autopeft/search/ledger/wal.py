"""The write-ahead finish log: a trial's final record, kept in optuna before optuna is told.

Finishing a trial is two writes in two sets of tables (optuna's tell, then autopeft's
record), so two transactions: a process can die between them. Before the tell, the final
record and the state it is told as ride in the optuna trial's system attributes
(:data:`PENDING`); whoever later finds the trial finished in optuna with a record still
``running`` (:mod:`autopeft.search.ledger.reaper`, or the same ledger repeating a finish) replays
that copy instead of guessing the outcome.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from autopeft.store import TrialRecord
from autopeft.store.retry import retried_optuna

#: optuna system attribute holding the final record while it is being told (write-ahead copy).
PENDING = "autopeft:record"


def write_ahead(storage, trial_id: int, record: TrialRecord, state) -> None:
    """Keep ``record``, to be told as optuna ``state``, in the system attributes of trial ``trial_id``."""
    retried_optuna(lambda: storage.set_trial_system_attr(trial_id, PENDING, dump(record, state)))


def replayed(frozen) -> TrialRecord | None:
    """The record written ahead for optuna's ``frozen`` trial, if it was told as the copy says.

    None when there is no copy of its own, or when optuna holds it in another state than the
    copy was written for (a reaper failed it between the copy and the tell).
    """
    pending = load(frozen.system_attrs.get(PENDING), frozen.number)
    if pending is not None and pending[1] == frozen.state.name:
        return pending[0]
    return None


def without_copy(system_attrs: dict) -> dict:
    """``system_attrs`` without the write-ahead copy: what a retry of the trial may inherit."""
    return {k: v for k, v in system_attrs.items() if k != PENDING}


def dump(record: TrialRecord, state) -> str:
    """The write-ahead copy: the final record and the optuna state it is told as."""
    data = dataclasses.asdict(record)
    data["candidate"] = record.candidate.to_json()
    for key in ("started_at", "finished_at"):
        data[key] = data[key].isoformat() if data[key] is not None else None
    return json.dumps({"state": state.name, "record": data})


def load(text, number: int) -> tuple[TrialRecord, str] | None:
    """(record, optuna state name) written ahead for trial ``number``; None when absent, or
    when it is a retry's copy of its original's (optuna copies system attributes to a retry)."""
    if not text:
        return None
    pending = json.loads(text)
    data = pending["record"]
    if data.get("number") != number:
        return None
    for key in ("started_at", "finished_at"):
        data[key] = datetime.fromisoformat(data[key]) if data[key] else None
    return TrialRecord(**data), pending["state"]
