"""Workers: processes on any machine that join studies in a shared database and run trials.

A worker holds no state of its own: the study's space YAML, trial budget and trial ledger
all live in the database, so any number of workers can join or leave a study at any time.
Each worker rebuilds the search from the stored YAML, runs the same ask/tell loop as
``autopeft search`` (``run_search`` with ``count_running=True``, so the budget counts
trials other workers are training right now), and stops when the study's budget is met.

Stopping: SIGTERM (or SIGINT) during a trial kills the trial process, records the trial as
failed ("interrupted"), queues its parameters again for any worker (so the interruption
costs the budget nothing) and ends the worker; between trials it just ends the worker.

Dying: while a trial trains, the worker records a heartbeat in optuna's ledger every
``heartbeat`` seconds. A trial whose heartbeat is older than ``grace`` seconds belonged to a
worker that died (kill -9, a lost machine): any worker fails it and optuna's
``RetryHeartbeatStaleTrialCallback`` queues the same parameters again (up to ``retries``
times). autopeft records the dead trial as failed, "worker lost", linked both ways to its
retry (``extras["retried_as"]`` / ``extras["retry_of"]``), and only the retry counts
against the budget.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from autopeft.errors import AutoPeftError
from autopeft.search.loop import Runner, run_search, running_count, trained_count
from autopeft.store import Store, StudyRecord, TrialRecord, utcnow

Log = Callable[[str], None]


@dataclass(frozen=True)
class WorkerOutcome:
    """What one worker did.

    Attributes:
        trials: Trials this worker trained to an end (complete or failed).
        studies: Names of the studies it served, in the order first served.
        signal: The signal number that stopped it (None when it ended on its own).
    """

    trials: int
    studies: tuple[str, ...]
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal (143 for SIGTERM, 130 for SIGINT), as shells expect."""
        return 0 if self.signal is None else 128 + self.signal


class _Yield(Exception):
    """Leave ``run_search`` between two trials (limits reached, stop requested, next study)."""


def trials_left(store: Store, study: StudyRecord) -> int:
    """Trials the study still needs: its target minus trained and live running trials."""
    records = store.trials(study.name)
    return study.trials_target - trained_count(records) - _running(store, study.name, records)


def _running(store: Store, name: str, records: list[TrialRecord]) -> int:
    if not any(r.status == "running" for r in records):
        return 0
    import optuna

    try:
        ostudy = optuna.load_study(study_name=name, storage=store.optuna_storage,
                                   sampler=optuna.samplers.RandomSampler())
    except KeyError:  # no optuna study yet: nobody has asked for a trial
        return 0
    return running_count(records, ostudy)


def _open_optuna_storage(store: Store, *, heartbeat: float, grace: float, retries: int, attempts: int = 5) -> None:
    """Give ``store`` an optuna storage with heartbeats and retries of stale trials.

    Retries while another process is creating optuna's tables: workers started together on
    a fresh database all find them missing and all create them, and on PostgreSQL the
    losers fail with a duplicate-key error (``pg_type_typname_nsp_index``). Once the winner
    commits, the tables exist and a retry opens them normally.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from autopeft.errors import StoreError
    from autopeft.store.store import _engine_kwargs, _first_line

    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    store.url, engine_kwargs=_engine_kwargs(store.url),
                    heartbeat_interval=max(1, round(heartbeat)), grace_period=max(1, round(grace)),
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
                )
            break
        except Exception as e:
            if attempt == attempts:
                raise StoreError(f"cannot open optuna's tables in {store.display_url}: {_first_line(e)}") from None
            time.sleep(0.5 * attempt)
    # Store has no heartbeat option of its own (yet): hand it this storage, which every
    # optuna call of the loop then uses through ``store.optuna_storage``.
    store._optuna_storage = storage


class _Heartbeat:
    """Records a trial's heartbeat every ``interval`` s from a background thread.

    The trial trains in a child process, so this process is idle and the beat is steady;
    it stops (and so the trial goes stale) only when the trial is told or the worker dies.
    """

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self.trial_id = trial_id
        self.storage = storage
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a database blip: the next beat (well within grace) may succeed
                pass
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        self.storage.record_heartbeat(self.trial_id)  # stale-checkable from the first second
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def _beat_while_asked(sampler, storage, interval: float):
    """Make ``sampler`` keep a heartbeat for every trial from ask to tell.

    ``Study.ask`` calls ``sampler.before_trial`` right after creating (or popping) the trial,
    and ``Study.tell`` calls ``sampler.after_trial``: beating between the two covers the
    whole trial, including building its peft config before training (the first build in a
    fresh process imports peft, seconds on a busy machine). Beating only around training
    would leave that stretch either unbeaten (a worker killed there leaves a RUNNING trial
    that optuna never calls stale, blocking the budget for good) or stale-looking.
    """
    beats: dict[int, _Heartbeat] = {}
    before, after = sampler.before_trial, sampler.after_trial

    def before_trial(study, trial):
        beats[trial._trial_id] = _Heartbeat(storage, trial._trial_id, interval).__enter__()
        before(study, trial)

    def after_trial(study, trial, state, values):
        try:
            after(study, trial, state, values)
        finally:
            beat = beats.pop(trial._trial_id, None)
            if beat is not None:
                beat.__exit__()

    sampler.before_trial, sampler.after_trial = before_trial, after_trial
    return sampler


def reap_stale_trials(store: Store, name: str, grace: float) -> int:
    """Fail trials of dead workers (optuna re-queues them) and link autopeft's records.

    Returns:
        How many records were relabelled "worker lost".
    """
    import optuna
    from optuna.trial import TrialState

    try:
        ostudy = optuna.load_study(study_name=name, storage=store.optuna_storage,
                                   sampler=optuna.samplers.RandomSampler())
    except KeyError:  # nobody has asked for a trial yet
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(ostudy)
    trials = {t.number: t for t in ostudy.get_trials(deepcopy=False)}
    # retry_history ends with the trial a retry replaces (the original comes first).
    retry_of = {t.number: t.system_attrs["retry_history"][-1] for t in trials.values()
                if t.system_attrs.get("retry_history")}
    retried_as = {old: new for new, old in retry_of.items()}
    lost = 0
    now = utcnow()
    for r in store.trials(name):
        t = trials.get(r.number)
        if t is None:
            continue
        if r.number in retry_of and r.extras.get("retry_of") is None:
            store.save_trial(dataclasses.replace(r, extras={**r.extras, "retry_of": retry_of[r.number]}))
        if r.status != "running" or t.state != TrialState.FAIL:
            continue
        new = retried_as.get(r.number)
        # Without a retry, make sure the FAIL is not a fresh "interrupted" that its own
        # worker is about to record: optuna failed it at least ``grace`` seconds ago.
        finished = t.datetime_complete
        # (optuna stamps it with the failing process's naive local time)
        if new is None and finished is not None and (datetime.now() - finished).total_seconds() < grace:
            continue
        error = f"worker lost: no heartbeat for {grace:g} s; " + (f"retried as trial {new}" if new is not None
                                                                    else "no retries left")
        extras = {**r.extras, "retried_as": new} if new is not None else r.extras
        store.save_trial(dataclasses.replace(r, status="failed", error=error, finished_at=now, extras=extras))
        lost += 1
    return lost


def requeue_interrupted(store: Store, name: str, number: int, retries: int) -> int | None:
    """Queue an interrupted trial's parameters again, so that a SIGTERM costs the study nothing.

    The interrupted record (failed, "interrupted") is linked to the new trial through
    ``extras["retried_as"]`` and so no longer counts against the budget; the retry carries
    optuna's ``retry_history`` like a heartbeat retry. Bounded by ``retries`` per point.

    Returns:
        The number of the queued trial (None if the trial was not interrupted or is out of retries).
    """
    import optuna
    from optuna.trial import TrialState

    record = next((r for r in store.trials(name) if r.number == number), None)
    if record is None or record.status != "failed" or record.error != "interrupted":
        return None
    ostudy = optuna.load_study(study_name=name, storage=store.optuna_storage, sampler=optuna.samplers.RandomSampler())
    trial = next((t for t in ostudy.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL:
        return None
    history = [*trial.system_attrs.get("retry_history", []), number]
    if len(history) > retries:
        return None
    system_attrs = {**trial.system_attrs, "failed_trial": trial.system_attrs.get("failed_trial", number),
                    "retry_history": history}
    ostudy.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=trial.params,
                                               distributions=trial.distributions, user_attrs=trial.user_attrs,
                                               system_attrs=system_attrs))
    new = max(t.number for t in ostudy.get_trials(deepcopy=False)
              if t.system_attrs.get("retry_history") == history)
    store.save_trial(dataclasses.replace(record, error=f"interrupted; retried as trial {new}",
                                         extras={**record.extras, "retried_as": new}))
    return new


class Worker:
    """Runs trials of the studies in ``store`` until their budgets are met or it is told to stop.

    Args:
        store: The shared database.
        max_trials: Stop after training this many trials (None: no limit).
        timeout: Start no new trial after this many seconds (None: no limit).
        runner: Runs one ``TrialSpec`` (default: ``autopeft.trials.executor.run_isolated``).
        log: Where progress lines go.
        heartbeat: Seconds between heartbeats of the running trial (whole seconds, >= 1).
        grace: Seconds without a heartbeat after which a trial's worker counts as dead.
        retries: How often a dead worker's trial is re-queued (the same parameters).
        poll: Seconds between looks at the database while waiting for work or for other
            workers' last trials.
    """

    def __init__(self, store: Store, *, max_trials: int | None = None, timeout: float | None = None,
                 runner: Runner | None = None, log: Log | None = None, heartbeat: float = 10.0,
                 grace: float = 60.0, retries: int = 2, poll: float = 5.0) -> None:
        if grace <= heartbeat:
            raise AutoPeftError(f"--grace ({grace:g} s) must be longer than --heartbeat ({heartbeat:g} s), "
                                "or live workers' trials would be failed as dead")
        self.store = store
        self.max_trials = max_trials
        self.heartbeat = heartbeat
        self.grace = grace
        self.retries = retries
        self._current: tuple[str, int] | None = None  # (study, number) of the trial training now
        self.poll = poll
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.log = log or (lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.trained = 0
        self.served: list[str] = []
        self.stop_signal: int | None = None
        self._training = False
        self._prepared: dict = {}
        self._samplers: dict = {}
        self._broken: set[str] = set()
        if runner is None:
            from autopeft.trials.executor import run_isolated as runner
        self._runner = runner
        _open_optuna_storage(store, heartbeat=heartbeat, grace=grace, retries=retries)
        # optuna expects heartbeats with Study.optimize and warns at every ask(); the loop
        # uses ask/tell and this worker beats for the trial itself (``_Heartbeat``).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        # A re-queued trial carries its original's constraint; the loop sets the same value again.
        warnings.filterwarnings("ignore", message="The constraint value is ignored because this constraint")

    # ------------------------------------------------------------------ public
    def run_study(self, name: str) -> WorkerOutcome:
        """Serve one study until its budget is met (or a limit or signal stops the worker).

        The budget counts other workers' running trials, so when it looks met one of them
        may still die. Until the last of them has ended, the worker stays and watches: a
        trial whose worker died is re-queued after ``grace`` seconds and run here.
        """
        with self._signals():
            study = self.store.get_study(name)  # StoreError listing the studies if missing
            idle_rounds = 0
            while not self._should_stop():
                before = self.trained
                self._serve(study, one_trial=False)
                if self._should_stop():
                    break
                reap_stale_trials(self.store, name, self.grace)
                study = self.store.get_study(name)  # its target may have been raised meanwhile
                if trials_left(self.store, study) > 0:
                    # Trials left (a re-queued retry, a raised target): go again. A space
                    # whose candidates are all over budget trains nothing however often it
                    # is asked: give up on it after a few rounds in a row without progress.
                    idle_rounds = 0 if self.trained > before else idle_rounds + 1
                    if idle_rounds < 3:
                        continue
                    self.log(f"worker {self.name}: study '{name}' has trials left but none could be trained")
                    break
                if not _running(self.store, name, self.store.trials(name)):
                    break  # nothing left and nobody else at work: the budget is met
                idle_rounds = 0  # waiting on others' trials is not a lack of progress
                self._sleep(self.poll)
        return self._outcome()

    def serve_all(self, *, poll: float = 5.0, exit_when_idle: bool = False) -> WorkerOutcome:
        """Serve every study with trials left, oldest first and taking turns trial by trial.

        With nothing left to do, wait ``poll`` seconds and look again (a study submitted
        later gets picked up), or return at once if ``exit_when_idle``.
        """
        last: str | None = None
        with self._signals():
            while not self._should_stop():
                study = self._next_study(last)
                if study is None:
                    if exit_when_idle:
                        break
                    self._sleep(poll)
                    continue
                last = study.name
                self._serve(study, one_trial=True)
        return self._outcome()

    # ------------------------------------------------------------------ internals
    def _next_study(self, last: str | None) -> StudyRecord | None:
        """The first study after ``last`` (cyclically, oldest first) that has trials left."""
        studies = [s for s in self.store.studies() if s.name not in self._broken]
        names = [s.name for s in studies]
        start = names.index(last) + 1 if last in names else 0
        for study in studies[start:] + studies[:start]:
            reap_stale_trials(self.store, study.name, self.grace)
            if trials_left(self.store, study) > 0:
                return study
        return None

    def _serve(self, study: StudyRecord, *, one_trial: bool) -> None:
        if self._should_stop():
            return
        try:
            prep = self._prepare(study)
        except AutoPeftError as e:
            if one_trial:  # serving all studies: one broken study must not stop the others
                self.log(f"worker {self.name}: skipping study '{study.name}': {e}")
                self._broken.add(study.name)
                return
            raise
        if study.name not in self.served:
            self.served.append(study.name)
        events = _Events(self, study.name, one_trial)
        try:
            # trials=study.trials_target: the study's own target, never the YAML's default
            # (``autopeft search --trials`` may have raised it).
            outcome = run_search(prep, self.store, trials=study.trials_target, runner=self._guarded_runner,
                                 events=events, sampler=self._sampler(study.name, prep), count_running=True)
        except _Yield:
            return
        if outcome.interrupted:
            if self.stop_signal is None:
                self.stop_signal = signal.SIGINT  # a KeyboardInterrupt not raised by our handler
            if self._current is not None and self._current[0] == study.name:
                new = requeue_interrupted(self.store, study.name, self._current[1], self.retries)
                if new is not None:
                    self.log(f"worker {self.name}: study '{study.name}' trial {self._current[1]} interrupted; "
                             f"queued again as trial {new}")

    def _prepare(self, study: StudyRecord):
        """The study's PreparedSearch, rebuilt once from the YAML stored with it."""
        if study.name not in self._prepared:
            from autopeft.search.prepare import prepare_search
            from autopeft.space import load_space_text

            self.log(f"worker {self.name}: preparing study '{study.name}' ...")
            space = load_space_text(study.space_yaml, f"study '{study.name}' (stored space)")
            self._prepared[study.name] = prepare_search(space)
        return self._prepared[study.name]

    def _sampler(self, name: str, prep):
        """One sampler per study for the worker's lifetime, seeded apart from other workers'.

        Every worker seeded with the study's seed would propose the very same points; a
        fresh sampler per call would repeat its first point. Kept per study, seeded from
        the study seed, the host and the process id.
        """
        if name not in self._samplers:
            from autopeft.search.samplers import make_sampler

            search = prep.space.search
            seed = zlib.crc32(f"{search.seed}:{self.name}".encode()) % (2**31)
            sampler = make_sampler(dataclasses.replace(search, seed=seed), prep.encoding)
            self._samplers[name] = _beat_while_asked(sampler, self.store.optuna_storage, self.heartbeat)
        return self._samplers[name]

    def _guarded_runner(self, spec, **kwargs):  # kwargs: on_rung for multi-fidelity studies
        self._current = (spec.study, spec.trial)
        if self._should_stop():
            # Stop was requested while the trial was being asked: record it as interrupted
            # through the loop's own path rather than train it.
            raise KeyboardInterrupt
        self._training = True
        try:
            return self._runner(spec, **kwargs)  # the sampler keeps the trial's heartbeat (_beat_while_asked)
        finally:
            self._training = False

    def _should_stop(self) -> bool:
        if self.stop_signal is not None:
            return True
        if self.max_trials is not None and self.trained >= self.max_trials:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._should_stop():
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _signals(self):
        worker = self

        class _Handlers:
            def __enter__(self):
                self.previous = {}
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self.previous[sig] = signal.signal(sig, self.handle)

            def handle(self, signum, _frame):
                worker.stop_signal = signum
                # Mid-trial: unwind through the loop, which kills the trial process and
                # records the trial as failed ("interrupted"). Otherwise stop at the next check.
                if worker._training:
                    raise KeyboardInterrupt

            def __exit__(self, *exc):
                for sig, handler in self.previous.items():
                    signal.signal(sig, handler)

        return _Handlers()

    def _outcome(self) -> WorkerOutcome:
        return WorkerOutcome(self.trained, tuple(self.served), self.stop_signal)


class _Events:
    """Progress lines, the worker's own trial count, and the points where it may stop."""

    def __init__(self, worker: Worker, study: str, one_trial: bool) -> None:
        self.worker = worker
        self.study = study
        self.one_trial = one_trial

    def started(self, study, done, target):
        if self.worker._should_stop():
            raise _Yield
        if not self.one_trial:
            self.worker.log(f"worker {self.worker.name}: study '{study.name}': {done}/{target} trained")

    def trial_started(self, number, candidate):
        self.worker.log(f"worker {self.worker.name}: study '{self.study}' trial {number} started ({candidate['method']})")

    def trial_finished(self, record: TrialRecord, records):
        if record.status in ("complete", "failed", "pruned"):
            self.worker.trained += 1
        # Before the loop counts the budget again: fail and re-queue dead workers' trials.
        reap_stale_trials(self.worker.store, self.study, self.worker.grace)
        detail = f"values {record.values}" if record.values else (record.error or "")
        self.worker.log(f"worker {self.worker.name}: study '{self.study}' trial {record.number} {record.status} {detail}")
        if self.one_trial or self.worker._should_stop():
            raise _Yield
