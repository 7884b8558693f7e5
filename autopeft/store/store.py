"""The repository: studies and trials in autopeft's tables, on optuna's database.

SQLite (a file, the default) or PostgreSQL (many workers on many machines). Opening a store
brings autopeft's tables to the newest alembic revision (optuna manages its own), unless
it is opened with ``migrate=False`` — a read-only viewer never changes a schema; it checks
the revision and says how to upgrade. The engine is made in :mod:`autopeft.store.engine`,
the revision is kept in :mod:`autopeft.store.schema`, and optuna's storage on the same
database is opened in :mod:`autopeft.store.optuna_storage`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from datetime import datetime, timezone

from autopeft.errors import StoreError
from autopeft.store.engine import first_line, make_engine
from autopeft.store.optuna_storage import LiveTrial, live_trials, open_heartbeat_storage, open_storage
from autopeft.store.records import StudyRecord, TrialRecord
from autopeft.store.retry import is_transient, retried
from autopeft.store.schema import read_revision, require_current_revision, upgrade_to_head
from autopeft.store.url import DEFAULT_URL, mask_url


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """What counting a study's budget needs of one record (no JSON columns read but one key).

    Attributes:
        number: The trial's number.
        status: Its record's status.
        error: Its error text (None when none).
        retried_as: The number of the trial that re-runs its point (None: none does).
        retry_of: The number of the trial whose point it re-runs (None: it is no retry).
    """

    number: int
    status: str
    error: str | None
    retried_as: int | None
    retry_of: int | None = None


def _transient_retried(method, attempts: int = 6):
    """Run ``method`` again (with jittered back-off) when the database answers "busy".

    Many processes share one database; with SQLite one writer at a time. A lock held
    past the busy timeout is not the caller's fault and not worth a failed trial: wait and
    retry, and only then say so as a ``StoreError`` (never a raw driver traceback).
    Only for calls that are safe to repeat (reads, and ``save_trial``'s upsert).
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return retried(lambda: method(self, *args, **kwargs), attempts=attempts,
                           retry_if=lambda e: not isinstance(e, StoreError) and is_transient(e),
                           pause=lambda n: random.uniform(0.05, 0.25) * 2 ** n)
        except StoreError:
            raise
        except Exception as e:
            if is_transient(e):  # still busy after the last attempt
                raise StoreError(f"{self.display_url} stayed busy over {attempts} attempts: {first_line(e)}") from None
            raise

    return wrapper


class Store:
    """A database holding studies and trials.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///autopeft.db`` or
            ``postgresql+psycopg://user:pass@host/db``.

        migrate: Bring autopeft's tables to the newest revision (the default). ``False``
            (read-only viewers) changes nothing and refuses a schema that is not current.

    Raises:
        StoreError: the URL is malformed, its driver missing, or the server unreachable;
            with ``migrate=False``, autopeft's tables are missing or at another revision.
    """

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True) -> None:
        self.url = url
        self.display_url = mask_url(url)
        self.engine = make_engine(url, self.display_url)
        self._optuna_storage = None
        self._heartbeat_storages: dict[tuple[int, int, int], object] = {}
        self._study_ids: dict[str, int] = {}
        if migrate:
            self.upgrade()
        else:
            require_current_revision(self.engine, self.display_url)

    # ------------------------------------------------------------------ schema
    def upgrade(self) -> None:
        """Bring autopeft's tables to the newest revision (idempotent)."""
        upgrade_to_head(self.engine, self.display_url)

    def revision(self) -> str | None:
        """The alembic revision of autopeft's tables (None: not created), read without changing anything."""
        return read_revision(self.engine, self.display_url)

    # ------------------------------------------------------------------ optuna
    @property
    def optuna_storage(self):
        """optuna's ``RDBStorage`` on the same database (created on first use)."""
        if self._optuna_storage is None:
            self._optuna_storage = open_storage(self.url, self.display_url)
        return self._optuna_storage

    def optuna_storage_with_heartbeat(self, heartbeat: float, grace: float, retries: int):
        """optuna's ``RDBStorage`` on the same database, with heartbeats and retries of stale trials.

        A trial whose heartbeat is older than ``grace`` seconds is failed by
        ``optuna.storages.fail_stale_trials`` and its parameters are queued again (up to
        ``retries`` times, optuna's ``RetryHeartbeatStaleTrialCallback``). One storage per
        setting for the store's lifetime; :meth:`close` disposes of it.

        Args:
            heartbeat: Seconds between heartbeats (optuna keeps whole seconds, at least 1).
            grace: Seconds without a heartbeat before a trial counts as dead.
            retries: How often the point of a dead trial is queued again.

        Raises:
            StoreError: optuna's tables cannot be opened or created.
        """
        key = (max(1, round(heartbeat)), max(1, round(grace)), int(retries))
        if key not in self._heartbeat_storages:
            self._heartbeat_storages[key] = open_heartbeat_storage(self.url, self.display_url, *key)
        return self._heartbeat_storages[key]

    @_transient_retried
    def live_optuna_trials(self, study: str) -> list[LiveTrial]:
        """optuna's RUNNING and WAITING trials of ``study``: heartbeat age, and what they retry.

        One light query, made before every trial by every process (the ledger counts the
        budget and looks for dead trials with it); see
        :func:`autopeft.store.optuna_storage.live_trials`.
        """
        with self._connect() as c:
            return live_trials(c, study)

    # ------------------------------------------------------------------ studies
    def add_study(self, record: StudyRecord) -> StudyRecord:
        from autopeft.store.tables import studies

        row = dataclasses.asdict(record)
        row["objectives"] = [list(o) for o in record.objectives]
        with self._begin() as c:
            c.execute(studies.insert().values(**row))
        return record

    def find_study(self, name: str) -> StudyRecord | None:
        from sqlalchemy import select

        from autopeft.store.tables import studies

        with self._connect() as c:
            row = c.execute(select(studies).where(studies.c.name == name)).mappings().first()
        return None if row is None else _study(row)

    def get_study(self, name: str) -> StudyRecord:
        """The study ``name``; ``StoreError`` listing the studies there are if it is missing."""
        found = self.find_study(name)
        if found is None:
            names = [s.name for s in self.studies()]
            hint = f"studies here: {', '.join(names)}" if names else "the database has no studies yet"
            raise StoreError(f"no study '{name}' in {self.display_url} ({hint})")
        return found

    def studies(self) -> list[StudyRecord]:
        from sqlalchemy import select

        from autopeft.store.tables import studies

        with self._connect() as c:
            rows = c.execute(select(studies).order_by(studies.c.created_at, studies.c.id)).mappings().all()
        return [_study(r) for r in rows]

    def set_importance(self, name: str, importance: dict) -> None:
        """Store the study's importance map (JSON of ``ImportanceMap``)."""
        from autopeft.store.tables import studies

        with self._begin() as c:
            c.execute(studies.update().where(studies.c.name == name).values(importance=importance))

    def set_splits(self, name: str, splits: dict) -> None:
        """Record the study's data splits (``StudyRecord.splits``)."""
        from autopeft.store.tables import studies

        with self._begin() as c:
            c.execute(studies.update().where(studies.c.name == name).values(splits=splits))

    def set_trials_target(self, name: str, trials: int) -> None:
        from autopeft.store.tables import studies

        with self._begin() as c:
            c.execute(studies.update().where(studies.c.name == name).values(trials_target=trials))

    # ------------------------------------------------------------------ trials
    @_transient_retried
    def claim_trial(self, record: TrialRecord) -> bool:
        """Insert the first record of (study, number); False when one exists already (another
        process asked the same optuna trial and recorded it first).

        Idempotent, so safe to retry: a row holding exactly ``record`` is this claim's own
        (an earlier attempt committed, then the connection failed before it could say so),
        and the claim stands. Another process's claim of the same trial differs at least in
        ``started_at`` and ``sampler_time``, its own clock readings.
        """
        from sqlalchemy.exc import IntegrityError

        from autopeft.store.tables import trials

        row = _trial_row(record)
        study_id = self._study_id(row.pop("study"))
        try:
            with self._begin() as c:
                c.execute(trials.insert().values(study_id=study_id, **row))
        except IntegrityError:
            return self.trial(record.study, record.number) == record
        return True

    # Retried: an upsert, so repeating it after a commit whose answer was lost writes the same row.
    @_transient_retried
    def save_trial(self, record: TrialRecord) -> None:
        """Insert or replace the record of (study, number); retried while the database is busy."""
        from sqlalchemy.exc import IntegrityError

        from autopeft.store.tables import trials

        row = _trial_row(record)
        study_id = self._study_id(row.pop("study"))
        where = (trials.c.study_id == study_id) & (trials.c.number == record.number)
        # Update first: every trial is saved several times and inserted once.
        with self._begin() as c:
            if c.execute(trials.update().where(where).values(**row)).rowcount:
                return
        try:
            with self._begin() as c:
                c.execute(trials.insert().values(study_id=study_id, **row))
        except IntegrityError:  # another process inserted the same trial meanwhile: replace its row
            with self._begin() as c:
                c.execute(trials.update().where(where).values(**row))

    def _study_id(self, name: str) -> int:
        """The row id of study ``name`` (cached: a study's id never changes)."""
        from sqlalchemy import select

        from autopeft.store.tables import studies

        if name not in self._study_ids:
            with self._connect() as c:
                study_id = c.execute(select(studies.c.id).where(studies.c.name == name)).scalar_one_or_none()
            if study_id is None:
                raise StoreError(f"no study '{name}' in {self.display_url}")
            self._study_ids[name] = study_id
        return self._study_ids[name]

    @_transient_retried
    def trials(self, study: str) -> list[TrialRecord]:
        from sqlalchemy import select

        from autopeft.store.tables import studies, trials

        query = (
            select(trials, studies.c.name.label("study"))
            .join(studies, studies.c.id == trials.c.study_id)
            .where(studies.c.name == study)
            .order_by(trials.c.number)
        )
        with self._connect() as c:
            rows = c.execute(query).mappings().all()
        return [_trial(r) for r in rows]

    @_transient_retried
    def trial_summaries(self, study: str) -> list[TrialSummary]:
        """Number, status, error and ``extras["retried_as"]`` of every record of ``study``.

        Every process counts the budget before every trial: this reads no curves, metrics
        or configs (``trials()`` does, and its cost grows with the study).
        """
        from sqlalchemy import select

        from autopeft.store.tables import studies, trials
        from autopeft.store.trial_extras import RETRIED_AS, RETRY_OF

        query = (
            select(trials.c.number, trials.c.status, trials.c.error, trials.c.extras[RETRIED_AS],
                   trials.c.extras[RETRY_OF])
            .join(studies, studies.c.id == trials.c.study_id)
            .where(studies.c.name == study)
            .order_by(trials.c.number)
        )
        with self._connect() as c:
            rows = c.execute(query).all()
        return [TrialSummary(number=r[0], status=r[1], error=r[2], retried_as=r[3], retry_of=r[4]) for r in rows]

    @_transient_retried
    def trial(self, study: str, number: int) -> TrialRecord | None:
        """The record of trial ``number`` of ``study`` (None: none yet)."""
        from sqlalchemy import select

        from autopeft.store.tables import studies, trials

        query = (
            select(trials, studies.c.name.label("study"))
            .join(studies, studies.c.id == trials.c.study_id)
            .where((studies.c.name == study) & (trials.c.number == number))
        )
        with self._connect() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else _trial(row)

    # ------------------------------------------------------------------ plumbing
    def _connect(self):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.engine.connect()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot connect to {self.display_url}: {first_line(e)}") from e

    def _begin(self):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.engine.begin()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot connect to {self.display_url}: {first_line(e)}") from e

    def close(self) -> None:
        self.engine.dispose()
        for storage in [self._optuna_storage, *self._heartbeat_storages.values()]:
            if storage is not None:
                storage.remove_session()
                storage.engine.dispose()


def _aware(value):
    """SQLite keeps no time zone; autopeft writes UTC, so say so (PostgreSQL already does)."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def _trial(row) -> TrialRecord:
    names = {f.name for f in dataclasses.fields(TrialRecord)}
    return TrialRecord(**{k: _aware(v) for k, v in row.items() if k in names})


def _trial_row(record: TrialRecord) -> dict:
    """The row of a record: its fields, the candidate as its JSON, the resources as the JSON of
    what was measured."""
    row = dataclasses.asdict(record)
    row["candidate"] = record.candidate.to_json()
    row["resources"] = record.resources.to_json()
    return row


def _study(row) -> StudyRecord:
    names = {f.name for f in dataclasses.fields(StudyRecord)}
    data = {k: _aware(v) for k, v in row.items() if k in names}
    data["objectives"] = tuple(tuple(o) for o in data["objectives"])
    return StudyRecord(**data)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
