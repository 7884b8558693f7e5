"""A search step as a plain method: sampler proposes, method builds, budget gates, runner trains.

:class:`SearchSession` searches one study from this process. :meth:`SearchSession.step` runs
one trial (or answers None when the study's budget is met) and :meth:`SearchSession.run`
steps until the target is reached. ``autopeft search`` runs one session; a worker keeps one
per study it serves and calls ``step()`` on whichever it serves next. Every write that
pairs an optuna trial with its record goes through :class:`~autopeft.search.ledger.ledger.Ledger`.
What a step runs (a pending seed run, a new trial, nothing) and whether a trial goes on past a
rung are the :class:`~autopeft.search.scheduler.Scheduler`'s to decide; the session is where
they run (optuna's ask and tell, the ledger, the runner).

Failures are data: a trial that crashes, times out, runs out of memory or hits a
non-finite loss is told to the study as FAIL and recorded with its reason, and the search
goes on. Over-budget candidates are never trained: they are told as *infeasible* through
an optuna constraint, with imputed objective values (the worst seen so far) so that the
constraint-aware samplers learn where the budget boundary is.

A study with a ``target:`` trains each trial towards the target with successive halving at
its rungs (``autopeft.search.fidelity``), checkpointed at each rung so that a re-run of a
dead process's trial resumes (``autopeft.search.fidelity.checkpoints``); a trial that reaches the
target is trained over more seeds, and those seed runs come before new trials
(``autopeft.search.seeds``): the study's answer is decided on them.

Stopping: SIGTERM or SIGINT (Ctrl-C) during a trial kills the trial process, records the
trial as failed ("interrupted") and queues its point again, so the interruption costs the
study nothing; between trials it just stops (:class:`~autopeft.search.signals.StopSignals`).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from typing import TYPE_CHECKING

from autopeft.candidate import Candidate
from autopeft.errors import MethodError
from autopeft.search.ledger.budget import TRAINED, Budget
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.ledger.ledger import Ledger
from autopeft.search.ledger.pairing import Ticket
from autopeft.search.objectives import constrain, objective_values, with_importance
from autopeft.search.prepare import PreparedSearch, trial_spec
from autopeft.search.reports import SearchEvents, SearchOutcome, Silent
from autopeft.search.scales import scaled
from autopeft.search.scheduler import DefaultScheduler, NewTrial, RunningTrial, Scheduler, SeedRun, SessionParts
from autopeft.search.signals import StopSignals
from autopeft.search.studies import open_study, study_importance
from autopeft.store import Resources, Store, TrialRecord, trial_extras, utcnow
from autopeft.trials.spec import Runner

if TYPE_CHECKING:
    from autopeft.store.trial_extras import Rung
    from autopeft.store.verifications import VerificationRecord

log = logging.getLogger("autopeft")


class SearchSession:
    """Searches one study from this process, one trial per :meth:`step`.

    Opening a session creates the study (or resumes it: same space, new target), computes
    its importance map once, and opens its optuna study through a :class:`Ledger`.

    Args:
        prep: The prepared search.
        store: The database.
        trials: The study's target of trained trials (None: the space's ``search.trials``).
        sampler: A ready optuna sampler instead of ``make_sampler(space.search, encoding)``
            (workers seed theirs apart, so that they do not propose the same points).
        runner: Runs one ``TrialSpec`` (default: ``autopeft.trials.executor.run_isolated``).
        events: Progress reports.
        settings: Heartbeat, grace and retries of the ledger.
        stop: Where stop requests land (shared with a worker serving many studies).
        poll: Seconds between looks at the database while other processes' trials run
            (default: the heartbeat, at most 5 s).
        scheduler: What runs next and whether a trial goes on past a rung
            (default: :class:`~autopeft.search.scheduler.DefaultScheduler`, seed runs first).
    """

    def __init__(self, prep: PreparedSearch, store: Store, *, trials: int | None = None, sampler=None,
                 runner: Runner | None = None, events: SearchEvents | None = None,
                 settings: LedgerSettings | None = None, stop: StopSignals | None = None,
                 poll: float | None = None, scheduler: Scheduler | None = None) -> None:
        from autopeft.search.sampling.samplers import make_sampler

        if runner is None:
            from autopeft.trials.executor import run_isolated as runner
        self.store = store
        self.runner = runner
        self.events = events or Silent()
        self.stop = stop or StopSignals()
        self.study = open_study(store, prep, trials)
        self.prep = prep.with_importance(study_importance(store, self.study, prep)) \
            if prep.space.importance != "none" else prep
        self.sampler = sampler if sampler is not None else make_sampler(self.prep.space.search, self.prep.encoding)
        self.ledger = Ledger(store, self.study, sampler=self.sampler, settings=settings, describe=self._describe)
        self.poll = poll if poll is not None else min(5.0, self.ledger.settings.heartbeat)
        self._say_target_steps()
        from autopeft.search.seeds import study_target_protocol
        from autopeft.store.verifications import Verifications

        self.runs = Verifications(store)
        protocol = study_target_protocol(self.runs, self.study.name, self.prep.space)
        #: The protocol key of this study's seed runs at its target (None: no target).
        self.target_key = protocol.key() if protocol is not None else None
        #: The budget as the last step saw it.
        self.last_budget: Budget | None = None
        self._dry = 0  # trials asked in a row that trained nothing (infeasible)
        #: Whether the last step trained a seed run at the target rather than a trial.
        self.last_was_seed = False
        #: Decides what each step runs and whether a trial goes on at a rung; this session is
        #: its backend (optuna's ask and tell, the ledger, the runner).
        self.scheduler: Scheduler = scheduler if scheduler is not None else DefaultScheduler()
        self.parts = SessionParts(store=store, study=self.study, prep=self.prep, ledger=self.ledger, runs=self.runs,
                                  target_key=self.target_key, stopped=lambda: self.stop.requested)

    # ------------------------------------------------------------------ public
    @property
    def exhausted(self) -> bool:
        """Many candidates in a row were infeasible: a space (almost) wholly over budget must still end."""
        target = self.last_budget.target if self.last_budget else self.study.trials_target
        return self._dry >= 5 * target + 20

    def step(self) -> TrialRecord | None:
        """Run one trial; None when there is none to run.

        What runs is the scheduler's answer. The default's: before asking, dead processes'
        trials are reaped (and their points queued again) and the budget is counted across
        every process: trained trials plus trials being trained right now. None when that meets
        the target (or a stop was requested); the trials others are training may still end as
        lost, so :meth:`run` then waits.

        Returns:
            The trial's final record: complete, failed, pruned, infeasible, or failed
            "interrupted" (a stop arrived while it trained; its point is queued again).
            With a target, a step may instead train a pending seed run (those go first) and
            return the record of the trial it folded into (``last_was_seed`` says so).
        """
        if self.stop.requested:
            return None
        self.last_was_seed = False
        work = self.scheduler.next(self.parts)
        if isinstance(work, SeedRun):
            record = self._seed_step(work.row)
            self.last_was_seed = record is not None
            return record
        if work.budget is not None:
            self.last_budget = work.budget
        if not isinstance(work, NewTrial):
            return None
        from optuna.exceptions import UpdateFinishedTrialError

        ticket = self.ledger.ask(self.prep.encoding.suggest)
        try:
            record = self._train(ticket)
        except KeyboardInterrupt:
            self.stop.request(signal.SIGINT)  # keeps the signal our handler saw; else Ctrl-C
            record = self.ledger.interrupt(ticket.number)
        except UpdateFinishedTrialError:
            # Another process failed the trial as dead (this one could not beat for `grace`
            # seconds) and queued its point again: the ledger records it as lost; go on.
            record = self.ledger.finish(dataclasses.replace(self.ledger.current(ticket.number), status="failed",
                                                            error="lost", finished_at=utcnow()))
        except Exception as e:
            self._fail_and_reraise(ticket, e)
        self._dry = 0 if record.status in TRAINED else self._dry + 1
        return record

    def run(self) -> SearchOutcome:
        """Step until the study's target is reached, nothing can be trained, or a stop.

        With the budget met by counting trials other processes are training, wait for
        them (polling every ``poll`` s): their processes may have died, and a dead
        process's trial is reaped after ``grace`` seconds and run again here.
        """
        try:
            with self.stop.installed():
                self.ledger.reconcile(full=True)
                budget = self.ledger.budget()
                self.events.started(self.study, budget.trained, budget.target)
                while not self.stop.requested and not self.exhausted:
                    record = self.step()
                    if record is not None:
                        if not self.stop.requested and not self.last_was_seed:
                            records = [r for r in self.ledger.records() if r.number != record.number] + [record]
                            self.events.trial_finished(record, records)
                        continue
                    if self.stop.requested or self.last_budget is None or (
                            self.last_budget.running == 0 and not self.seeds_running()):
                        break
                    self._sleep(self.poll)
            if self.target_key is not None:
                from autopeft.search.seeds import fold_all

                fold_all(self.store, self.study, self.prep.space)  # settles folds that two processes raced on
        finally:
            self.ledger.close()
        return SearchOutcome(self.study, self.store.trials(self.study.name), self.stop.requested, self.stop.signal)

    # ------------------------------------------------------------------ one trial
    def _train(self, ticket: Ticket) -> TrialRecord:
        from autopeft.methods import BuildContext, get_method

        prep, trial, candidate, base = self.prep, ticket.trial, ticket.candidate, ticket.record
        method = get_method(candidate.method)
        ctx = BuildContext(prep.arch, prep.space.proxy.steps, base_model=prep.model.location)
        try:
            config = method.build(candidate, ctx)
            count = method.count_trainable(candidate, ctx)
        except MethodError as e:  # e.g. per-layer bits that switch every layer off
            constrain(trial, 1.0)
            return self.ledger.infeasible(dataclasses.replace(base, error=str(e)))
        limit = prep.budget_limit
        constrain(trial, (count - limit) / limit if limit else -1.0)
        peft_config = method.config_json(config)
        if limit is not None and count > limit:
            reason = f"over budget: {count:,} trainable parameters > {limit:,}"
            return self.ledger.infeasible(dataclasses.replace(base, peft_config=peft_config, trainable_params=count,
                                                              error=reason))

        running = self.ledger.update(dataclasses.replace(base, peft_config=peft_config, trainable_params=count))
        self.events.trial_started(trial.number, candidate)
        overrides, rungs = self._towards_target(method, running)
        if overrides.get("checkpoint_dir"):
            running = self.ledger.update(dataclasses.replace(
                running, extras={**running.extras, **trial_extras.checkpoint_extras(overrides["checkpoint_dir"]),
                                 **trial_extras.rung_extras(rungs)}))

        def save(extras: dict) -> None:
            nonlocal running
            running = self.ledger.update(dataclasses.replace(running, extras={**running.extras, **extras}))

        judge = self.scheduler.judge(self.parts, RunningTrial(number=trial.number, params=count, role=base.role,
                                                              rungs=tuple(rungs), save=save))
        if prep.space.proxy.auto_rungs:
            overrides["rungs"] = judge.planned()
        spec = trial_spec(prep, candidate, peft_config, study=self.study.name, trial=trial.number, **overrides)
        with self.stop.interruptible():
            result = self.runner(spec, on_rung=judge) if spec.proxy.rungs else self.runner(spec)
        if result.status == "complete":
            judge.finished(result.metrics)
        # The run is over in this process (a killed one never gets here): nothing will resume it.
        from autopeft.search.fidelity.checkpoints import remove

        remove(overrides.get("checkpoint_dir"))
        trainable = result.trainable_params or count
        values = objective_values(self.study, result, trainable) if result.status == "complete" else None
        if result.status == "pruned":
            status = "pruned"  # told PRUNED: see autopeft.search.fidelity
        elif values is not None:
            status = "complete"
        else:
            status = "failed"
        record = dataclasses.replace(
            running,
            status=status,
            trainable_params=trainable,
            metrics=result.metrics,
            values=values,
            curve=result.curve,
            resources=Resources.of(result),
            extras={**running.extras, **with_importance(result.extras, prep, running.candidate.method), **judge.extras()},
            error=result.error if status == "failed" else None,
            finished_at=utcnow(),
        )
        # The sampler models log10 parameters (autopeft.search.scales); the record keeps counts.
        record = self.ledger.finish(record, scaled(self.study.objectives, values) if values is not None else None)
        if self.target_key is not None and record.status == "complete":
            record = self._queue_seeds(record, result.test_metrics)
        return record

    # ------------------------------------------------------------------ the study's attributes
    def _say_target_steps(self) -> None:
        """Tell optuna's study the steps a trial trains to: the fidelity a multi-fidelity sampler
        proposes for (``autopeft.search.sampling.multi_fidelity``), readable by every worker."""
        from autopeft.search.optuna_view import TARGET_STEPS
        from autopeft.store.retry import retried_optuna

        steps = self.prep.space.proxy.steps
        ostudy = self.ledger.ostudy
        if ostudy.user_attrs.get(TARGET_STEPS) != steps:
            retried_optuna(lambda: ostudy.set_user_attr(TARGET_STEPS, steps))

    # ------------------------------------------------------------------ the target
    def _towards_target(self, method, running: TrialRecord) -> tuple[dict, list[Rung]]:
        """``trial_spec`` overrides of a trial towards the study's target, and the rungs it
        has passed already (a re-run that resumes its predecessor's checkpoint)."""
        from autopeft.search.fidelity import checkpoints

        space = self.prep.space
        if space.target is None:
            return {}, []
        overrides: dict = {"test_split": True}  # the target's own run is its first seed: scored on test too
        if not (space.proxy.rungs or space.proxy.auto_rungs) or not checkpoints.resumable(method, space.proxy):
            return overrides, []
        before = running.retry_of
        previous = self.store.trial(self.study.name, before) if before is not None else None
        folder = checkpoints.folder_for(self.store, self.study.name, running, previous)
        overrides["checkpoint_dir"] = str(folder)
        found = checkpoints.newest(folder) if previous is not None else None
        if found is None:
            return overrides, []
        step, path = found
        overrides["resume_from"] = str(path)
        log.info("study '%s': trial %d resumes trial %d from step %d", self.study.name, running.number, before, step)
        return overrides, [r for r in previous.rungs if r.step <= step]

    def _queue_seeds(self, record: TrialRecord, test_metrics: dict) -> TrialRecord:
        """A trial complete at the target: its run is seed one; queue the others (not for a
        diverged run: more seeds of a collapse measure nothing)."""
        from autopeft.search import seeds
        from autopeft.search.analysis.pareto import diverged

        if diverged(record):
            return record
        seeds.queue(self.runs, self.study, self.prep.space, record, test_metrics)
        return seeds.fold(self.store, self.study, self.prep.space, record,
                          seeds.rows_of(self.runs, self.study, self.prep.space))

    def _seed_step(self, row: VerificationRecord) -> TrialRecord | None:
        """Train ``row``, a seed run of this study at its target the scheduler claimed, fold it
        into its trial's record and return that record; None when a stop interrupted it."""
        from autopeft.search import seeds
        from autopeft.search.runs import run_one

        try:
            finished = run_one(self.runs, row, self.prep, interruptible=self.stop.interruptible, runner=self.runner)
        except KeyboardInterrupt:  # run_one put the row back: any process trains it later
            self.stop.request(signal.SIGINT)
            return None
        trial = self.store.trial(self.study.name, row.trial_number)
        record = seeds.fold(self.store, self.study, self.prep.space, trial,
                            seeds.rows_of(self.runs, self.study, self.prep.space))
        told = getattr(self.events, "seed_finished", None)
        if told is not None:
            told(finished, record)
        return record

    def seeds_running(self) -> bool:
        """Whether another process is training a seed run of this study (the search waits for it)."""
        return self.target_key is not None and self.runs.count(self.study.name, self.target_key, ("running",)) > 0

    def _fail_and_reraise(self, ticket: Ticket, error: Exception):
        """A bug or a lost database escaped the trial: record it failed (nothing left running), re-raise."""
        try:
            current = self.ledger.current(ticket.number)
            self.ledger.finish(dataclasses.replace(current, status="failed", finished_at=utcnow(),
                                                   error=f"{type(error).__name__}: {error}"[:500]))
        except Exception as second:  # noqa: BLE001 - the first error is the one to report
            log.warning("could not record trial %d as failed (%s); it will be reaped as lost", ticket.number, second)
        raise error

    def _describe(self, params: dict) -> Candidate:
        return self.prep.encoding.decode(params)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop.requested:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
