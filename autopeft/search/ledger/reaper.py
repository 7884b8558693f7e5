"""Reaping: the trials of dead processes failed, their points queued again, records brought in line.

A RUNNING optuna trial without a heartbeat for ``grace`` seconds belongs to a dead process:
``optuna.storages.fail_stale_trials`` fails it, and its callback queues the point again (up
to ``retries`` times). optuna only calls a trial stale once it has beaten at all, so a
never-beaten RUNNING trial (its process died inside ``ask``) is given a first beat: it goes
stale ``grace`` seconds later unless its owner beats.

Records then follow optuna. A record ``running`` whose optuna trial has finished gets its
final state: the write-ahead copy (:mod:`autopeft.search.ledger.wal`) if its process told it, else
"worker lost". A failed record whose point was queued again links to the retry
(``extras["retried_as"]``), so that only the retry counts against the budget. A trial
failed as dead while alive (its heartbeat could not reach the database for ``grace``
seconds) keeps what it measured when it ends, and its record says it was retried.

Any process may reap, at any time: every write here is the same whoever makes it, and one
the store already holds is not made again.
"""

from __future__ import annotations

import dataclasses
import warnings
from datetime import datetime
from typing import Callable, Container, Sequence

from autopeft.errors import LedgerError
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.ledger.wal import replayed, without_copy
from autopeft.store import LiveTrial, Store, StudyRecord, TrialRecord, TrialSummary, trial_extras, utcnow
from autopeft.store.retry import retried_optuna


class Reaper:
    """Fails the trials of one study's dead processes and brings its records in line with optuna.

    Args:
        store: The database.
        study: The study.
        storage: optuna's storage with heartbeats (``Store.optuna_storage_with_heartbeat``).
        ostudy: optuna's study, opened on ``storage``.
        study_id: optuna's id of that study.
        settings: The grace after which a silent trial is dead, and how often a point is retried.
    """

    def __init__(self, store: Store, study: StudyRecord, storage, ostudy, study_id: int,
                 settings: LedgerSettings) -> None:
        self.store = store
        self.study = study
        self.name = study.name
        self.storage = storage
        self.ostudy = ostudy
        self.study_id = study_id
        self.settings = settings

    def trial_id(self, number: int) -> int:
        """optuna's trial id of trial ``number``.

        Raises:
            LedgerError: optuna has no such trial in this study.
        """
        try:
            return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        except KeyError:
            raise LedgerError(f"study '{self.name}' has no trial {number} in {self.store.display_url}") from None

    def scan(self, beating: Container[int]) -> list[LiveTrial]:
        """optuna's RUNNING and WAITING trials, after failing those whose process died.

        optuna is asked to fail trials only when one looks stale, so that the usual step
        costs one light query.

        Args:
            beating: Numbers of the trials this process beats itself (they are not adopted).
        """
        import optuna

        live = self.store.live_optuna_trials(self.name)
        for t in live:
            if t.state == "RUNNING" and t.heartbeat_age is None and t.number not in beating:
                retried_optuna(lambda: self.storage.record_heartbeat(t.trial_id))
        grace = max(1, round(self.settings.grace))  # what the storage compares with
        if any(t.state == "RUNNING" and t.heartbeat_age is not None and t.heartbeat_age > grace for t in live):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retried_optuna(lambda: optuna.storages.fail_stale_trials(self.ostudy))
            live = self.store.live_optuna_trials(self.name)
        return live

    def reconcile(self, summaries: list[TrialSummary], live: list[LiveTrial],
                  open_here: Container[int]) -> tuple[int, list[TrialSummary]]:
        """Write the records that optuna's states call for.

        Args:
            summaries: The study's records (``Store.trial_summaries``).
            live: optuna's RUNNING and WAITING trials (:meth:`scan`).
            open_here: Numbers of the trials this process has asked and not yet finished
                (their records are its own to write).

        Returns:
            (records written, the summaries as they now are).
        """
        numbers = {t.number for t in live}
        links = _links(summaries, live)
        # Running here, finished in optuna: its process died between its tell and its record
        # (or is writing it right now: then both write the same record).
        running = [r.number for r in summaries if r.status == "running" and r.number not in open_here
                   and r.number not in numbers]
        # Failed, and its point re-run by a trial queued after the record was written.
        unlinked = [r.number for r in summaries if r.status == "failed" and r.retried_as is None and r.number in links
                    and (r.error or "").startswith(("interrupted", "worker lost"))]
        fixed: dict[int, TrialRecord] = {}
        for number in running:
            final = self.settle(self.store.trial(self.name, number),
                                self.storage.get_trial(self.trial_id(number)), links, may_wait=True)
            if final is not None:
                fixed[number] = final
        for number in unlinked:
            record, new = self.store.trial(self.name, number), links[number]
            fixed[number] = dataclasses.replace(record, error=f"{record.error.split(';')[0]}; retried as trial {new}",
                                                extras=trial_extras.with_retried_as(record.extras, new))
        for record in fixed.values():
            self.write(record)
        summary = {n: TrialSummary(n, r.status, r.error, r.retried_as, r.retry_of)
                   for n, r in fixed.items()}
        return len(fixed), [summary.get(r.number, r) for r in summaries]

    def record_orphans(self, stub: Callable[..., TrialRecord | None]) -> int:
        """Write records for finished optuna trials that have none (their process died between
        drawing the parameters and writing the record).

        Args:
            stub: ``optuna FrozenTrial -> TrialRecord``: the ``running`` record the trial
                would have started as (None: it cannot be described).

        Returns:
            How many records were written.
        """
        records = self.store.trials(self.name)
        known = {r.number for r in records}
        every = retried_optuna(lambda: self.ostudy.get_trials(deepcopy=False))
        retries = _retry_links(every, records)
        written = 0
        for t in every:
            if t.number in known or not t.state.is_finished() or not t.params:
                continue
            record = stub(t)
            if record is None:
                continue
            final = self.settle(record, t, retries, may_wait=True)
            if final is not None:
                self.write(final)
                written += 1
        return written

    def settle(self, record: TrialRecord, frozen, links: dict[int, int] | None = None, *,
               may_wait: bool = False) -> TrialRecord | None:
        """What the record of ``frozen`` must say, given the state optuna holds it in.

        Args:
            record: Its record as it stands (or the outcome its process is finishing it with).
            frozen: optuna's ``FrozenTrial`` of it, finished.
            links: ``{failed trial number: number of its retry}`` (None: read now).
            may_wait: None while a dead trial's retry is still due from the process that
                failed it (it queues the retry just after the FAIL, in another transaction):
                writing "no retries left" in that moment would lose the point's re-run.
        """
        from optuna.trial import TrialState

        from autopeft.search.scales import unscaled

        replay = replayed(frozen)
        if replay is not None:
            return replay  # finished through a ledger: that first outcome stands
        finished_at = record.finished_at or local_aware(frozen.datetime_complete) or utcnow()
        if frozen.state == TrialState.COMPLETE:  # told by a writer that kept no outcome copy (optuna tools, older ledgers)
            values = unscaled(self.study.objectives, frozen.values)
            return dataclasses.replace(record, status="complete", values=values, finished_at=finished_at)
        if frozen.state == TrialState.PRUNED:
            return dataclasses.replace(record, status="pruned", finished_at=finished_at)
        # FAIL with no outcome of ours: a reaper failed it (no heartbeat for grace seconds).
        if links is None:
            links = _links(self.store.trial_summaries(self.name), self.store.live_optuna_trials(self.name))
        new = links.get(frozen.number)
        due = len(frozen.system_attrs.get("retry_history", [])) < self.settings.retries
        if new is None and due and may_wait and _age(frozen.datetime_complete) < max(300.0, 4 * self.settings.grace):
            return None
        error = f"worker lost: no heartbeat for {self.settings.grace:g} s"
        if new is not None:
            error += f"; retried as trial {new}"
        elif not due:
            error += "; no retries left"
        if record.status != "running" and record.metrics:  # it trained on, unaware: keep what it measured
            error += f" (it ended {record.status} after that; its results are kept here)"
        extras = trial_extras.with_retried_as(record.extras, new) if new is not None else record.extras
        return dataclasses.replace(record, status="failed", values=None, error=error, finished_at=finished_at,
                                   extras=extras)

    def requeue(self, number: int, trial_id: int) -> int | None:
        """Queue the point of failed trial ``number`` again, at most ``retries`` times per point.

        Args:
            number: The trial's number.
            trial_id: optuna's id of it.

        Returns:
            The number of the queued trial (None if out of retries, or not failed).
        """
        import optuna
        from optuna.trial import TrialState

        frozen = self.storage.get_trial(trial_id)
        record = self.store.trial(self.name, number)
        if frozen.state != TrialState.FAIL or record is None or record.retried_as is not None:
            return None
        history = [*frozen.system_attrs.get("retry_history", []), number]
        if len(history) > self.settings.retries:
            self.write(dataclasses.replace(record, error=f"{record.error}; no retries left"))
            return None
        system_attrs = without_copy(frozen.system_attrs)
        system_attrs.update(failed_trial=frozen.system_attrs.get("failed_trial", number), retry_history=history)
        template = optuna.trial.create_trial(state=TrialState.WAITING, params=frozen.params,
                                             distributions=frozen.distributions, user_attrs=frozen.user_attrs,
                                             system_attrs=system_attrs)
        new = self.storage.get_trial_number_from_id(self.storage.create_new_trial(self.study_id, template_trial=template))
        self.write(dataclasses.replace(record, error=f"{record.error}; retried as trial {new}",
                                       extras=trial_extras.with_retried_as(record.extras, new)))
        return new

    def write(self, record: TrialRecord) -> None:
        """Save ``record`` unless the store already holds exactly it (so repeats write nothing)."""
        if self.store.trial(self.name, record.number) != record:
            self.store.save_trial(record)


def local_aware(value: datetime | None) -> datetime | None:
    """optuna stamps trials with the local naive time of the process that wrote them."""
    return None if value is None else value.astimezone() if value.tzinfo is None else value


def _links(summaries: Sequence[TrialSummary], live: Sequence[LiveTrial]) -> dict[int, int]:
    """``{failed trial number: number of its retry}`` from records and optuna's live trials (light reads)."""
    links = {r.retry_of: r.number for r in summaries if r.retry_of is not None}
    for t in live:
        if t.retry_of is not None:
            links.setdefault(t.retry_of, t.number)
    return links


def _age(stamp: datetime | None) -> float:
    """Seconds since optuna's local, naive ``stamp`` (infinite when there is none)."""
    return float("inf") if stamp is None else (datetime.now() - stamp.replace(tzinfo=None)).total_seconds()


def _retry_links(trials, records: Sequence[TrialRecord]) -> dict[int, int]:
    """``{failed trial number: number of its retry}``, from optuna's retry histories and records."""
    links = {r.retry_of: r.number for r in records if r.retry_of is not None}
    for t in trials:
        history = t.system_attrs.get("retry_history")
        if history:
            links.setdefault(history[-1], t.number)  # the history ends with the trial it replaces
    return links
