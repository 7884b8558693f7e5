"""optuna's side of a store's database: its ``RDBStorage`` there, and a light read of its live trials.

:func:`open_storage` and :func:`open_heartbeat_storage` create optuna's storage on the store's
URL, with the engine settings of :func:`autopeft.store.engine.engine_kwargs`, and say a failure
as a ``StoreError``. :func:`live_trials` reads optuna's RUNNING and WAITING trials in one query
(:class:`LiveTrial`), as the ledger needs them before every trial.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from autopeft.errors import StoreError
from autopeft.store.engine import engine_kwargs, first_line
from autopeft.store.retry import retried


@dataclasses.dataclass(frozen=True)
class LiveTrial:
    """An optuna trial that is RUNNING or WAITING, as the ledger needs to see it.

    Attributes:
        trial_id: optuna's trial id (database-wide).
        number: The trial's number in its study.
        state: ``"RUNNING"`` or ``"WAITING"``.
        heartbeat_age: Seconds since its last heartbeat (None: it never had one).
        retry_of: The trial whose point it re-runs (the end of optuna's ``retry_history``).
    """

    trial_id: int
    number: int
    state: str
    heartbeat_age: float | None
    retry_of: int | None = None


def open_storage(url: str, display_url: str, attempts: int = 5):
    """optuna's ``RDBStorage`` on ``url``; ``StoreError`` when its tables cannot be opened or
    created (after ``attempts`` tries: see :func:`_first_to_create`)."""
    import optuna

    try:
        return _first_to_create(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url)), attempts)
    except RuntimeError as e:  # optuna's "incompatible schema version" check: no retry mends it
        raise StoreError(f"cannot open optuna's tables in {display_url}: {first_line(e)}") from e
    except _failures() as e:
        raise StoreError(f"cannot open optuna's tables in {display_url}: {first_line(e)}") from e


def _failures() -> tuple[type[BaseException], ...]:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError, optuna.exceptions.StorageInternalError)


def _first_to_create(open_storage, attempts: int):
    """``open_storage()``, tried again while it fails as a loser of the race to create optuna's
    tables: processes started together on a fresh database all find the tables missing and all
    create them; the losers fail with a duplicate key (PostgreSQL: pg_type_typname_nsp_index;
    SQLite: UNIQUE constraint failed: alembic_version.version_num). Once the winner commits, a
    retry opens them."""
    failures = _failures()
    return retried(open_storage, attempts=attempts, retry_if=lambda e: isinstance(e, failures),
                   pause=lambda n: 0.5 * n)


def open_heartbeat_storage(url: str, display_url: str, heartbeat: int, grace: int, retries: int, attempts: int = 5):
    """optuna's ``RDBStorage`` on ``url`` with heartbeats and retries of stale trials.

    See :meth:`autopeft.store.Store.optuna_storage_with_heartbeat`, which keeps one per setting.

    Raises:
        StoreError: optuna's tables cannot be opened or created (after ``attempts`` tries).
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    def open_storage():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
            )

    try:
        return _first_to_create(open_storage, attempts)
    except _failures() as e:
        raise StoreError(f"cannot open optuna's tables in {display_url}: {first_line(e)}") from e


def live_trials(c, study: str) -> list[LiveTrial]:
    """optuna's RUNNING and WAITING trials of ``study``, read on the open connection ``c``.

    One light query; optuna's own ``get_trials`` reads parameters, values and attributes too,
    several queries each time. Ages are measured on the database's clock, as optuna measures
    staleness. Reads optuna's schema (``studies``, ``trials``, ``trial_heartbeats``,
    ``trial_system_attributes``: unchanged since optuna 2.9).
    """
    from sqlalchemy import func, select, text

    query = text(
        "SELECT t.trial_id, t.number, t.state, h.heartbeat, a.value_json FROM trials t "
        "JOIN studies s ON s.study_id = t.study_id LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "LEFT JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'retry_history' "
        "WHERE s.study_name = :name AND t.state IN ('RUNNING', 'WAITING')"
    )
    try:
        rows = c.execute(query, {"name": study}).all()
    except Exception as e:
        if _missing_table(e):  # optuna's tables not created yet: nothing runs
            return []
        raise
    now = c.execute(select(func.now())).scalar() if any(r[3] is not None for r in rows) else None
    if now is not None:
        # as optuna does: naive on both sides (PostgreSQL answers aware, SQLite a string or naive)
        now = datetime.fromisoformat(now) if isinstance(now, str) else now
        now = now.replace(tzinfo=None)
    return [LiveTrial(trial_id=r[0], number=r[1], state=r[2],
                      heartbeat_age=None if r[3] is None else (now - _naive(r[3])).total_seconds(),
                      retry_of=(json.loads(r[4]) or [None])[-1] if r[4] else None)
            for r in rows]


def _missing_table(e: BaseException) -> bool:
    text = str(getattr(e, "orig", None) or e).lower()
    return "no such table" in text or "does not exist" in text


def _naive(value) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=None)
