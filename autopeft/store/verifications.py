"""Verification runs: a front point (or default LoRA) re-trained at full fidelity, per seed.

One row per (study, subject, seed, protocol): ``autopeft verify`` creates the rows it needs
as ``pending`` (creating them twice is a no-op), and whoever runs them — the ``verify``
command itself or any ``autopeft worker`` — claims one atomically (``pending`` ->
``running``, one UPDATE that only one process can win), trains it and records the
validation and test metrics. A killed run leaves a ``running`` row whose heartbeat stops; once the beat is
older than the grace period the row goes back to ``pending`` (``requeue_stale``). So a verification is
resumable and can be shared by many machines, and it never touches a trial's own record:
the proxy results stay as they were.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autopeft.candidate import Candidate
from autopeft.errors import StoreError
from autopeft.store import trial_extras
from autopeft.store.store import Store, utcnow
from autopeft.store.trial_extras import Diagnostics

STATUSES = ("pending", "running", "complete", "failed")


@dataclass(frozen=True)
class VerificationRecord:
    """One verification run.

    Attributes:
        study: The study's name.
        subject: ``trial:N`` for a searched configuration, ``baseline`` for default LoRA.
        trial_number: N for ``trial:N`` subjects.
        seed: The training seed.
        protocol: How it is trained (steps, batch size, examples, learning rate policy ...).
        candidate: The configuration trained (a dict given here, as the store's JSON is, is
            read into a :class:`Candidate`).
        status: ``pending``, ``running``, ``complete`` or ``failed``.
        metrics: Task metrics on the validation split (the one the search selected on).
        test_metrics: Task metrics on the test split (never read by the search).
        extras: What the trial reported beside metrics, as stored (JSON); code outside the
            store reads it through the typed properties below (``trial_run``, ``cpu_time``,
            ``wall_time``, ``diagnostics``; parsed in ``autopeft.store.trial_extras``).
    """

    study: str
    subject: str
    seed: int
    protocol: dict
    candidate: Candidate
    trial_number: int | None = None
    status: str = "pending"
    metrics: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    trainable_params: int | None = None
    curve: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.candidate, Candidate):  # the store's JSON
            object.__setattr__(self, "candidate", Candidate.from_json(self.candidate))

    @property
    def protocol_key(self) -> str:
        return protocol_key(self.protocol)

    # What extras holds, typed (None or False when missing or of an older shape).
    @property
    def trial_run(self) -> bool:
        """Whether the row is a trial's own run, stored as its first seed (not trained apart)."""
        return trial_extras.trial_run(self.extras)

    @property
    def cpu_time(self) -> float | None:
        """The run's CPU seconds (None before it ran, or stored by an older autopeft)."""
        return trial_extras.cpu_time(self.extras)

    @property
    def wall_time(self) -> float | None:
        """The run's wall-clock seconds."""
        return trial_extras.wall_time(self.extras)

    @property
    def diagnostics(self) -> Diagnostics:
        """What the run reported for judging whether it diverged."""
        return Diagnostics.from_extras(self.extras)


def protocol_key(protocol: dict) -> str:
    """A short stable hash of a protocol: runs of one protocol are comparable, of two are not."""
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


class Verifications:
    """The verification rows of one database (``store``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, records: list[VerificationRecord], *, claimed_by: str | None = None) -> int:
        """Create the ``pending`` rows that do not exist yet; returns how many were new.
        ``claimed_by``: create them ``running`` for that worker instead (a run this process
        already has the result of, which no other process may take in between)."""
        from sqlalchemy import select

        from autopeft.store.tables import verifications as v

        new = 0
        with self._begin() as c:
            for r in records:
                study_id = self._study_id(c, r.study)
                exists = c.execute(select(v.c.id).where(
                    (v.c.study_id == study_id) & (v.c.subject == r.subject) & (v.c.seed == r.seed)
                    & (v.c.protocol_key == r.protocol_key))).first()
                if exists is None:
                    row = self._row(r)
                    now = utcnow()
                    state = (dict(status="pending") if claimed_by is None else
                             dict(status="running", worker=claimed_by, started_at=now, heartbeat_at=now))
                    c.execute(v.insert().values(study_id=study_id, created_at=now, **{**row, **state}))
                    new += 1
        return new

    def claim(self, study: str, worker: str, *, only: str | None = None,
              besides: str | None = None) -> VerificationRecord | None:
        """The oldest ``pending`` run of ``study``, now ``running`` for ``worker``; None if none is left.

        The UPDATE only matches a row that is still ``pending``, so two processes can never
        claim the same run: the loser sees no row changed and tries the next.

        Args:
            only: Claim only rows of this protocol key (a search claims its seed runs).
            besides: Claim no row of this protocol key (verification serves the rest).
        """
        from sqlalchemy import select

        from autopeft.store.tables import verifications as v

        for _ in range(50):
            with self._begin() as c:
                study_id = self._study_id(c, study)
                where = (v.c.study_id == study_id) & (v.c.status == "pending")
                if only is not None:
                    where = where & (v.c.protocol_key == only)
                if besides is not None:
                    where = where & (v.c.protocol_key != besides)
                row = c.execute(select(v.c.id).where(where).order_by(v.c.id).limit(1)).first()
                if row is None:
                    return None
                now = utcnow()
                won = c.execute(v.update().where((v.c.id == row.id) & (v.c.status == "pending"))
                                .values(status="running", worker=worker, started_at=now, heartbeat_at=now)).rowcount
            if won:
                return self.get(row.id)
        return None

    def beat(self, run_id: int) -> bool:
        """Mark a running run alive now; False when it is no longer running (it was reaped)."""
        from autopeft.store.tables import verifications as v

        with self._begin() as c:
            return bool(c.execute(v.update().where((v.c.id == run_id) & (v.c.status == "running"))
                                  .values(heartbeat_at=utcnow())).rowcount)

    def count(self, study: str, protocol: str, statuses=("pending", "running")) -> int:
        """Runs of ``study`` under protocol key ``protocol`` in one of ``statuses``."""
        from sqlalchemy import func, select

        from autopeft.store.tables import verifications as v

        with self._connect() as c:
            study_id = self._study_id(c, study)
            return int(c.execute(select(func.count()).select_from(v).where(
                (v.c.study_id == study_id) & (v.c.protocol_key == protocol) & v.c.status.in_(statuses))).scalar_one())

    def claim_id(self, run_id: int, worker: str) -> VerificationRecord | None:
        """Run ``run_id``, now ``running`` for ``worker``, if it was still ``pending`` (else None)."""
        from autopeft.store.tables import verifications as v

        with self._begin() as c:
            won = c.execute(v.update().where((v.c.id == run_id) & (v.c.status == "pending"))
                            .values(status="running", worker=worker, started_at=utcnow(),
                                    heartbeat_at=utcnow())).rowcount
        return self.get(run_id) if won else None

    def finish(self, record: VerificationRecord) -> None:
        """Record the outcome of a claimed run (``complete`` or ``failed``)."""
        from autopeft.store.tables import verifications as v

        if record.status not in ("complete", "failed") or record.id is None:
            raise StoreError(f"a finished verification needs an id and status complete/failed, got {record.status}")
        with self._begin() as c:
            c.execute(v.update().where(v.c.id == record.id).values(
                status=record.status, metrics=record.metrics, test_metrics=record.test_metrics,
                trainable_params=record.trainable_params, curve=record.curve, extras=record.extras,
                error=record.error, finished_at=utcnow()))

    def release(self, record: VerificationRecord) -> bool:
        """Put a run this process claimed back to ``pending`` (it was interrupted, not failed:
        any process may train it again). False if the row was no longer ``running``."""
        from autopeft.store.tables import verifications as v

        with self._begin() as c:
            return bool(c.execute(v.update().where((v.c.id == record.id) & (v.c.status == "running"))
                                  .values(status="pending", worker=None, started_at=None)).rowcount)

    def requeue_stale(self, study: str | None, grace: float) -> int:
        """Put ``running`` rows whose heartbeat (else start) is more than ``grace`` seconds old
        back to ``pending``: their process died. ``study=None``: the rows of every study."""
        from sqlalchemy import func

        from autopeft.store.tables import verifications as v

        cutoff = utcnow() - timedelta(seconds=grace)
        with self._begin() as c:
            stale = (v.c.status == "running") & (func.coalesce(v.c.heartbeat_at, v.c.started_at) < cutoff)
            if study is not None:
                stale = stale & (v.c.study_id == self._study_id(c, study))
            return c.execute(v.update().where(stale).values(status="pending", worker=None, started_at=None)).rowcount

    def pending_studies(self) -> list[str]:
        """Names of the studies with ``pending`` runs, the one whose oldest pending run is
        oldest first (what a worker serving every study claims from next)."""
        from sqlalchemy import func, select

        from autopeft.store.tables import studies
        from autopeft.store.tables import verifications as v

        oldest = func.min(v.c.id)
        query = (select(studies.c.name, oldest.label("oldest")).join(studies, studies.c.id == v.c.study_id)
                 .where(v.c.status == "pending").group_by(studies.c.name).order_by(oldest))
        with self._connect() as c:
            return [row.name for row in c.execute(query).all()]

    def retry_failed(self, study: str) -> int:
        """Failed runs back to ``pending`` (a rerun of ``verify`` tries them again)."""
        from autopeft.store.tables import verifications as v

        with self._begin() as c:
            study_id = self._study_id(c, study)
            return c.execute(v.update().where((v.c.study_id == study_id) & (v.c.status == "failed"))
                             .values(status="pending", worker=None, started_at=None, error=None)).rowcount

    def of(self, study: str) -> list[VerificationRecord]:
        """Every verification run of ``study``, oldest first."""
        from sqlalchemy import select

        from autopeft.store.tables import studies
        from autopeft.store.tables import verifications as v

        query = (select(v, studies.c.name.label("study")).join(studies, studies.c.id == v.c.study_id)
                 .where(studies.c.name == study).order_by(v.c.id))
        with self._connect() as c:
            return [_record(r) for r in c.execute(query).mappings().all()]

    def get(self, run_id: int) -> VerificationRecord:
        from sqlalchemy import select

        from autopeft.store.tables import studies
        from autopeft.store.tables import verifications as v

        query = select(v, studies.c.name.label("study")).join(studies, studies.c.id == v.c.study_id).where(v.c.id == run_id)
        with self._connect() as c:
            row = c.execute(query).mappings().first()
        if row is None:
            raise StoreError(f"no verification run {run_id} in {self.store.display_url}")
        return _record(row)

    # ------------------------------------------------------------------ plumbing
    def _study_id(self, c, study: str) -> int:
        from sqlalchemy import select

        from autopeft.store.tables import studies

        found = c.execute(select(studies.c.id).where(studies.c.name == study)).scalar_one_or_none()
        if found is None:
            raise StoreError(f"no study '{study}' in {self.store.display_url}")
        return found

    @staticmethod
    def _row(r: VerificationRecord) -> dict:
        row = dataclasses.asdict(r)
        for key in ("study", "id", "status", "created_at", "started_at", "finished_at"):
            row.pop(key)
        row["protocol_key"] = r.protocol_key
        row["candidate"] = r.candidate.to_json()
        return row

    def _begin(self):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.store.engine.begin()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot connect to {self.store.display_url}: {str(e).splitlines()[0]}") from e

    def _connect(self):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.store.engine.connect()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot connect to {self.store.display_url}: {str(e).splitlines()[0]}") from e


def _record(row) -> VerificationRecord:
    from datetime import timezone

    names = {f.name for f in dataclasses.fields(VerificationRecord)}
    out = {}
    for k, value in row.items():
        if k in names:
            if isinstance(value, datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)  # SQLite drops the zone
            out[k] = value
    return VerificationRecord(**out)
