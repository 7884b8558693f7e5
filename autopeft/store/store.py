"""The store: optuna's RDBStorage as the trial ledger, plus autopeft's tables, one database.

SQLite (a file, the default) or PostgreSQL (many workers on many machines). Opening a store
brings autopeft's tables to the newest alembic revision (optuna manages its own), unless
it is opened with ``migrate=False`` — a read-only viewer never changes a schema; it checks
the revision and says how to upgrade.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from autopeft.errors import StoreError
from autopeft.store.records import StudyRecord, TrialRecord
from autopeft.store.retry import is_transient, retried
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
_MIGRATIONS = Path(__file__).parent / "migrations"
#: Where autopeft's alembic revision lives (``migrations/env.py`` says the same); optuna's
#: own revision stays in ``alembic_version``.
VERSION_TABLE = "autopeft_alembic_version"


def _created_meanwhile(e: BaseException) -> bool:
    text = str(getattr(e, "orig", None) or e).lower()
    return "already exists" in text or "duplicate key" in text or "unique constraint" in text


def _missing_table(e: BaseException) -> bool:
    text = str(getattr(e, "orig", None) or e).lower()
    return "no such table" in text or "does not exist" in text


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
                raise StoreError(f"{self.display_url} stayed busy over {attempts} attempts: {_first_line(e)}") from None
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
        self.engine = _engine(url, self.display_url)
        self._optuna_storage = None
        self._heartbeat_storages: dict[tuple[int, int, int], object] = {}
        self._study_ids: dict[str, int] = {}
        if migrate:
            self.upgrade()
        else:
            self._require_current_schema()

    # ------------------------------------------------------------------ schema
    def upgrade(self) -> None:
        """Bring autopeft's tables to the newest revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        from alembic.util.exc import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        def upgrade() -> None:
            with self.engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")

        try:
            # Processes opening a fresh database together (two searches, N workers) all find
            # no tables and all create them; the losers fail (table exists, duplicate key,
            # locked). Once the winner has committed, a retry finds them at head.
            retried(upgrade, attempts=6,
                    retry_if=lambda e: isinstance(e, (SQLAlchemyError, CommandError))
                    and (is_transient(e) or _created_meanwhile(e)),
                    pause=lambda n: random.uniform(0.1, 0.3) * n)
        except (SQLAlchemyError, CommandError) as e:  # unreachable server, no permission, a foreign schema
            raise StoreError(f"cannot prepare the database {self.display_url}: {_first_line(e)}") from e

    def revision(self) -> str | None:
        """The alembic revision of autopeft's tables (None: not created), read without changing anything."""
        return _read_revision(self.engine, self.display_url)

    def _require_current_schema(self) -> None:
        current, head = self.revision(), head_revision()
        if current != head:
            state = "do not exist yet" if current is None else f"are at revision {current}"
            raise StoreError(f"autopeft's tables in {self.display_url} {state}; this autopeft reads revision {head}. "
                             f"Opened read-only, nothing was changed: run `autopeft db upgrade --storage URL` first")

    @property
    def optuna_storage(self):
        """optuna's ``RDBStorage`` on the same database (created on first use)."""
        if self._optuna_storage is None:
            import optuna
            from sqlalchemy.exc import SQLAlchemyError

            try:
                self._optuna_storage = optuna.storages.RDBStorage(self.url, engine_kwargs=_engine_kwargs(self.url))
            except (SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError) as e:
                # RuntimeError: optuna's "incompatible schema version" check
                raise StoreError(f"cannot open optuna's tables in {self.display_url}: {_first_line(e)}") from e
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
            self._heartbeat_storages[key] = self._open_heartbeat_storage(*key)
        return self._heartbeat_storages[key]

    def _open_heartbeat_storage(self, heartbeat: int, grace: int, retries: int, attempts: int = 5):
        import warnings

        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
        from sqlalchemy.exc import SQLAlchemyError

        def open_storage():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    self.url, engine_kwargs=_engine_kwargs(self.url), heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
                )

        failures = (SQLAlchemyError, optuna.exceptions.StorageInternalError)
        try:
            # Processes started together on a fresh database all find optuna's tables missing
            # and all create them; on PostgreSQL the losers fail with a duplicate key
            # (pg_type_typname_nsp_index). Once the winner commits, a retry opens them.
            return retried(open_storage, attempts=attempts, retry_if=lambda e: isinstance(e, failures),
                           pause=lambda n: 0.5 * n)
        except failures as e:
            raise StoreError(f"cannot open optuna's tables in {self.display_url}: {_first_line(e)}") from e

    @_transient_retried
    def live_optuna_trials(self, study: str) -> list[LiveTrial]:
        """optuna's RUNNING and WAITING trials of ``study``: heartbeat age, and what they retry.

        One light query, made before every trial by every process (the ledger counts the
        budget and looks for dead trials with it); optuna's own ``get_trials`` reads
        parameters, values and attributes too, several queries each time. Ages are measured
        on the database's clock, as optuna measures staleness. Reads optuna's schema
        (``studies``, ``trials``, ``trial_heartbeats``, ``trial_system_attributes``: unchanged
        since optuna 2.9).
        """
        from sqlalchemy import func, select, text

        query = text(
            "SELECT t.trial_id, t.number, t.state, h.heartbeat, a.value_json FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "LEFT JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'retry_history' "
            "WHERE s.study_name = :name AND t.state IN ('RUNNING', 'WAITING')"
        )
        with self._connect() as c:
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

        query = (
            select(trials.c.number, trials.c.status, trials.c.error, trials.c.extras["retried_as"],
                   trials.c.extras["retry_of"])
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
            raise StoreError(f"cannot connect to {self.display_url}: {_first_line(e)}") from e

    def _begin(self):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.engine.begin()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot connect to {self.display_url}: {_first_line(e)}") from e

    def close(self) -> None:
        self.engine.dispose()
        for storage in [self._optuna_storage, *self._heartbeat_storages.values()]:
            if storage is not None:
                storage.remove_session()
                storage.engine.dispose()


def _aware(value):
    """SQLite keeps no time zone; autopeft writes UTC, so say so (PostgreSQL already does)."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def _naive(value) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=None)


def _trial(row) -> TrialRecord:
    names = {f.name for f in dataclasses.fields(TrialRecord)}
    return TrialRecord(**{k: _aware(v) for k, v in row.items() if k in names})


def _trial_row(record: TrialRecord) -> dict:
    """The row of a record: its fields, the resources as the JSON of what was measured."""
    row = dataclasses.asdict(record)
    row["resources"] = record.resources.to_json()
    return row


def _study(row) -> StudyRecord:
    names = {f.name for f in dataclasses.fields(StudyRecord)}
    data = {k: _aware(v) for k, v in row.items() if k in names}
    data["objectives"] = tuple(tuple(o) for o in data["objectives"])
    return StudyRecord(**data)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several processes share one SQLite file: wait for locks instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _engine(url: str, display: str):
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"'{display}' is not a database URL; expected e.g. sqlite:///autopeft.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"SQLite database {display}: the directory {parent} does not exist")
    try:
        engine = create_engine(url, **_engine_kwargs(url))
    except NoSuchModuleError:
        raise StoreError(f"'{display}': unknown database dialect or driver; use sqlite:/// or postgresql+psycopg://") from None
    except ModuleNotFoundError as e:
        raise StoreError(f"'{display}' needs the Python package '{e.name}': pip install 'psycopg[binary]' for PostgreSQL") from None
    if parsed.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # readers never block the writer; workers share the file
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    return engine


def _first_line(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def head_revision() -> str:
    """The newest revision of autopeft's tables this code knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def schema_revision(url: str) -> str | None:
    """The revision of autopeft's tables at ``url`` (None: not created), without opening a Store."""
    display = mask_url(url)
    engine = _engine(url, display)
    try:
        return _read_revision(engine, display)
    finally:
        engine.dispose()


def _read_revision(engine, display_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except SQLAlchemyError as e:
        raise StoreError(f"cannot read {display_url}: {_first_line(e)}") from e
