"""The ledger: the one owner of the pairing of an optuna trial with its autopeft record.

optuna's tables say which trials exist and in which state (the samplers read them);
``autopeft_trials`` holds what autopeft knows of each (candidate, peft config, metrics,
curve, error). Every write that keeps the two in step goes through :class:`Ledger`:

- :meth:`Ledger.ask`: optuna's ask, the trial's heartbeat started, its record ``running``.
- :meth:`Ledger.finish` (and :meth:`~Ledger.infeasible`, :meth:`~Ledger.interrupt`): optuna's
  tell and the final record, as one operation that is safe to repeat. It is idempotent on
  the trial number: the first outcome told wins, and a repeat is a no-op (never a second
  record, never an exception).
- :meth:`Ledger.budget`: trained trials plus trials being trained right now by any process,
  against the study's target (counted by :mod:`autopeft.search.ledger.budget`).
- :meth:`Ledger.reap`: trials whose process died (no heartbeat for ``grace`` seconds) are
  failed, their points queued again, and records are brought in line with optuna
  (:mod:`autopeft.search.ledger.reaper`).

Crash safety. The two writes of a finish are two transactions in two sets of tables, so
``finish`` writes ahead (:mod:`autopeft.search.ledger.wal`): the final record rides in the optuna
trial's system attributes before the tell. A process that dies between the tell and its own
record write leaves a record ``running`` whose optuna trial is finished; the next
:meth:`~Ledger.reap`, by any process, writes the final record from that copy. A process that
dies before the tell leaves a RUNNING trial without heartbeat: reaped after ``grace``.

Heartbeats. A :class:`~autopeft.search.ledger.heartbeat.Heartbeat` beats from a background thread
from ask to finish, in a single ``autopeft search`` as in a worker.

The ledger orders the writes; what each says of one trial on either side (the ticket of an asked
trial, the state and stand-in values optuna is told, the role a record keeps) is
:mod:`autopeft.search.ledger.pairing`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import warnings
from typing import Any, Callable, Sequence

from autopeft.candidate import Candidate
from autopeft.errors import LedgerError
from autopeft.search.ledger.budget import Budget, count_budget
from autopeft.search.ledger.heartbeat import Heartbeat, LedgerSettings
from autopeft.search.ledger.pairing import Ticket, annotate, orphan_record, stand_ins, started_record, told_state
from autopeft.search.ledger.reaper import Reaper
from autopeft.search.ledger.wal import write_ahead
from autopeft.search.optuna_setup import open_optuna_study
from autopeft.store import Store, StudyRecord, TrialRecord, utcnow
from autopeft.store.retry import retried_optuna

log = logging.getLogger("autopeft")


def _ledger_call(method):
    """Count the time spent in ledger calls (the coordination overhead of a trial)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._depth:
            return method(self, *args, **kwargs)
        self._depth += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._depth -= 1
            self._spent += time.perf_counter() - t0
            self._spent_cpu += time.thread_time() - c0
            if self._finished is not None:  # a trial ended in this call: its overhead is complete
                self.last_overhead = (self._spent, self._spent_cpu)
                self._spent = self._spent_cpu = 0.0
                log.debug("study '%s' trial %d: %.1f ms in ledger calls (%.1f ms CPU)", self.name, self._finished,
                          1e3 * self.last_overhead[0], 1e3 * self.last_overhead[1])
                self._finished = None

    return wrapper


class Ledger:
    """The trials of one study, as optuna and autopeft each record them, kept in step.

    Args:
        store: The database (optuna's tables and autopeft's).
        study: The study, already in the store (``open_study``).
        sampler: The optuna sampler ``ask`` uses (None: random; enough for a ledger that
            only counts, reaps and reconciles).
        settings: Heartbeat, grace and retries.
        describe: ``params -> Candidate``, to write a record for a trial whose process
            died after its parameters were drawn but before its record existed (None: such
            trials keep no record; their point is retried all the same).

    Raises:
        StoreError: optuna's tables cannot be opened.
    """

    def __init__(self, store: Store, study: StudyRecord, *, sampler=None, settings: LedgerSettings | None = None,
                 describe: Callable[[dict], Candidate] | None = None) -> None:
        self.store = store
        self.study = study
        self.name = study.name
        self.settings = settings or LedgerSettings()
        self.describe = describe
        self.storage = store.optuna_storage_with_heartbeat(self.settings.heartbeat, self.settings.grace,
                                                           self.settings.retries)
        self._sampler = sampler
        self._ostudy = None
        self._study_id: int | None = None
        self._beats: dict[int, Heartbeat] = {}
        self._open: dict[int, TrialRecord] = {}  # trials asked here and not yet finished: their latest record
        self._asked: dict[int, Any] = {}         # their optuna Trial objects (tell by object: one query fewer)
        self._records: list[TrialRecord] | None = None  # full records, read on demand after a budget()
        self._depth = 0
        self._spent = 0.0                        # seconds in ledger calls since the last finish
        self._spent_cpu = 0.0                    # and this thread's CPU seconds in them
        self._finished: int | None = None        # set by finish() for the timing wrapper
        #: (wall, CPU) seconds in ledger calls for the last finished trial, from the budget
        #: check before its ask to its tell; the sampler's time in ask is not counted.
        self.last_overhead: tuple[float, float] | None = None
        self.ostudy  # noqa: B018 - opened now, once: a setup cost, not a per-trial one; errors surface here
        self._reaper = Reaper(store, study, self.storage, self._ostudy, self._study_id, self.settings)

    # ------------------------------------------------------------------ optuna
    @property
    def ostudy(self):
        """optuna's study (created on first use, or loaded: every process opens the same one)."""
        if self._ostudy is None:
            self._ostudy = retried_optuna(lambda: open_optuna_study(self.name, self.storage, self.study.objectives,
                                                                    self._sampler))
            self._study_id = self.storage.get_study_id_from_name(self.name)
            self._name_metrics()
        return self._ostudy

    def _name_metrics(self) -> None:
        """optuna metric names that say each objective's scale (``trainable_params_log10``), so
        optuna-dashboard reads the study without ``autopeft db annotate``; written once."""
        import optuna

        from autopeft.search.optuna_view import metric_names

        names = metric_names(self.study.objectives)
        with warnings.catch_warnings():  # experimental since optuna 3.2; the way optuna-dashboard reads names
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if self._ostudy.metric_names != names:
                retried_optuna(lambda: self._ostudy.set_metric_names(names))

    def _trial_id(self, number: int) -> int:
        if number in self._asked:
            return self._asked[number]._trial_id
        return self._reaper.trial_id(number)

    # ------------------------------------------------------------------ one trial
    @_ledger_call
    def ask(self, suggest: Callable[[Any], Any]) -> Ticket:
        """Ask optuna for a trial (a queued retry first), start its heartbeat, record it ``running``.

        Args:
            suggest: ``optuna.Trial -> Candidate``; the only code that draws parameters.
                Its time (the sampler's) is the record's ``sampler_time``, not ledger time.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        lost = 0
        while True:
            try:
                return self._ask(suggest)
            except _TakenElsewhere as e:
                log.info("study '%s': %s; asking again", self.name, e)
                continue
            except UpdateFinishedTrialError as e:
                lost += 1
                if lost == 3:
                    break
                # Failed as dead while it was being asked: this process could not beat for
                # ``grace`` seconds (a starved machine). Its point is queued again; ask anew.
                log.warning("study '%s': a trial was failed as lost while it was being asked (%s); asking again",
                            self.name, e)
        raise LedgerError(f"study '{self.name}': three trials in a row were failed as lost while being asked; "
                          f"this process cannot keep a heartbeat within --grace {self.settings.grace:g} s")

    def _ask(self, suggest: Callable[[Any], Any]) -> Ticket:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # optuna expects heartbeats with Study.optimize; ask/tell with our own beat is fine.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = retried_optuna(self.ostudy.ask)
        beat = Heartbeat(self.storage, trial._trial_id, f"study '{self.name}' trial {trial.number}",
                         self.settings.heartbeat, self.settings.grace).start()
        self._beats[trial.number] = beat
        try:
            t1, c1 = time.perf_counter(), time.thread_time()
            candidate = suggest(trial)
            t2 = time.perf_counter()
            self._spent -= t2 - t1  # the sampler's time, not the ledger's
            self._spent_cpu -= time.thread_time() - c1
            record = started_record(self.name, trial, candidate, self.storage, sampler_time=t2 - t0)
            if not self.store.claim_trial(record):
                # optuna hands a waiting (enqueued or re-queued) trial to whoever pops it first,
                # guarded by SELECT ... FOR UPDATE, which SQLite ignores: two processes can pop
                # the same one. The first to record it trains it; the other asks again.
                raise _TakenElsewhere(f"trial {trial.number} was taken by another process")
        except _TakenElsewhere:
            self._stop_beat(trial.number)  # the owner beats it
            raise
        except BaseException:
            # Not recorded: stop beating so that the trial goes stale and its point is retried.
            self._stop_beat(trial.number)
            raise
        self._open[trial.number] = record
        self._asked[trial.number] = trial
        return Ticket(trial, candidate, record)

    @_ledger_call
    def update(self, record: TrialRecord) -> TrialRecord:
        """Save a running trial's record again (its peft config, its rungs so far)."""
        if record.status != "running":
            raise LedgerError(f"update() saves running trials; trial {record.number} is {record.status}: use finish()")
        self.store.save_trial(record)
        self._open[record.number] = record
        return record

    def current(self, number: int) -> TrialRecord:
        """The latest record of a trial asked here and not yet finished."""
        try:
            return self._open[number]
        except KeyError:
            raise LedgerError(f"trial {number} of study '{self.name}' is not open in this process") from None

    @_ledger_call
    def finish(self, record: TrialRecord, told: Sequence[float] | None = None) -> TrialRecord:
        """Tell optuna the trial's outcome and write its final record, as one operation.

        Idempotent on ``record.number``: if the trial was already finished through a
        ledger, that first outcome stands and is returned (nothing is written twice). If
        optuna already holds it as FAIL without an outcome of ours, a reaper failed it as
        lost; the record then says so, keeping this outcome's metrics as data.

        Args:
            record: The final record: complete, failed, pruned or infeasible.
            told: The values optuna is told, on the sampler's scale (required when
                complete; for an infeasible trial, imputed values, or None to tell FAIL).

        Returns:
            The record as stored.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        state = told_state(record, told)
        trial_id = self._trial_id(record.number)
        try:
            # Write-ahead: if this process dies after the tell, reap() writes this record.
            write_ahead(self.storage, trial_id, record, state)
            if record.error and record.status in ("failed", "infeasible"):
                key = "infeasible" if record.status == "infeasible" else "error"
                retried_optuna(lambda: self.storage.set_trial_user_attr(trial_id, key, record.error))
            annotate(self.storage, trial_id, record)
            # skip_if_finished: a reaper may fail it between the copy and the tell; settled below.
            frozen = retried_optuna(lambda: self.ostudy.tell(self._asked.get(record.number, record.number),
                                                             None if told is None else list(told), state=state,
                                                             skip_if_finished=True))
            told_here = True
        except UpdateFinishedTrialError:  # finished already: a repeat, or a reaper got there first
            frozen = retried_optuna(lambda: self.storage.get_trial(trial_id))
            told_here = False
        self._stop_beat(record.number)
        self._open.pop(record.number, None)
        self._asked.pop(record.number, None)
        final = self._reaper.settle(record, frozen)  # a reaper may have failed it as lost meanwhile
        if told_here and final == record:
            self.store.save_trial(final)  # the usual case: the store holds the running record
        else:
            self._reaper.write(final)  # compares first, so that a repeat writes nothing
        self._finished = record.number
        return final

    @_ledger_call
    def infeasible(self, record: TrialRecord) -> TrialRecord:
        """Finish an untrained candidate (over budget, or not buildable) as infeasible.

        optuna is told the worst values seen so far as stand-ins, so that the
        constraint-aware samplers learn where the budget boundary is. Before any trial has
        completed there is nothing to impute from: it is told as FAIL (samplers skip it).
        """
        from autopeft.search.scales import scaled

        done = [r.values for r in self.records() if r.status == "complete" and r.values]
        record = dataclasses.replace(record, status="infeasible", finished_at=utcnow())
        if not done:
            return self.finish(record)
        return self.finish(record, scaled(self.study.objectives,
                                          stand_ins(self.study.objectives, done, record.trainable_params)))

    @_ledger_call
    def interrupt(self, number: int) -> TrialRecord:
        """Finish an open trial as failed ("interrupted") and queue its point again.

        The interruption (Ctrl-C, SIGTERM) then costs the study nothing: the record links to
        the retry (``extras["retried_as"]``) and no longer counts against the budget.
        """
        current = self._open.get(number) or self.store.trial(self.name, number)
        if current is None:
            raise LedgerError(f"study '{self.name}' has no record of trial {number}")
        if current.status != "running":  # finished already (a repeat, or the stop came during the tell)
            return current
        final = self.finish(dataclasses.replace(current, status="failed", error="interrupted", finished_at=utcnow()))
        if final.status == "failed" and final.error == "interrupted":
            self.requeue(number)
            final = self.store.trial(self.name, number) or final
        return final

    @_ledger_call
    def requeue(self, number: int) -> int | None:
        """Queue the point of failed trial ``number`` again, at most ``retries`` times per point.

        Returns:
            The number of the queued trial (None if out of retries, or not failed).
        """
        return self._reaper.requeue(number, self._trial_id(number))

    # ------------------------------------------------------------------ the study
    @_ledger_call
    def budget(self, *, reap: bool = False) -> Budget:
        """The study's target, its trained trials and the trials being trained now (any process).

        Args:
            reap: First do what :meth:`reap` does (one read serves both): what a search
                does before it asks for a trial.
        """
        live = self._reaper.scan(self._beats) if reap else self.store.live_optuna_trials(self.name)
        target = self.store.get_study(self.name).trials_target  # `search --trials` may have raised it
        summaries = self.store.trial_summaries(self.name)
        if reap:
            summaries = self._reaper.reconcile(summaries, live, self._open)[1]
        self._records = None
        return count_budget(target, summaries, live)

    def trials_left(self) -> int:
        """Trials the study still needs: its target minus trained and live running trials
        (0 or less: met, or will be by the trials running now)."""
        return self.budget().left

    def records(self) -> list[TrialRecord]:
        """The study's records (read once after each :meth:`budget`, then reused)."""
        if self._records is None:
            self._records = self.store.trials(self.name)
        return list(self._records)

    @_ledger_call
    def reap(self) -> int:
        """Fail trials of dead processes (their points are queued again) and reconcile records.

        Returns:
            How many records were brought in line with optuna (lost, or finished elsewhere).
        """
        live = self._reaper.scan(self._beats)
        return self._reaper.reconcile(self.store.trial_summaries(self.name), live, self._open)[0]

    @_ledger_call
    def reconcile(self, *, full: bool = False) -> int:
        """Bring records in line with optuna's states.

        A record ``running`` whose optuna trial has finished gets its final state: the
        write-ahead copy if its process told it, else "worker lost" (failed by a reaper). A
        failed, interrupted record whose point was queued again is linked to the retry.
        With ``full``, also write records for finished optuna trials that have none (their
        process died between drawing the parameters and writing the record).

        Returns:
            How many records were written.
        """
        written = self._reaper.reconcile(self.store.trial_summaries(self.name),
                                         self.store.live_optuna_trials(self.name), self._open)[0]
        if not (full and self.describe is not None):
            return written
        return written + self._reaper.record_orphans(functools.partial(orphan_record, self.name,
                                                                       describe=self.describe))

    # ------------------------------------------------------------------ internals
    def _stop_beat(self, number: int) -> None:
        beat = self._beats.pop(number, None)
        if beat is not None:
            beat.stop()

    def close(self) -> None:
        """Stop every heartbeat this ledger runs (their trials then go stale and are retried)."""
        for number in list(self._beats):
            self._stop_beat(number)


class _TakenElsewhere(Exception):
    """The trial optuna handed out was recorded by another process first."""
