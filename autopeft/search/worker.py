"""Workers: processes on any machine that join studies in a shared database and run trials.

A worker holds no state of its own: the study's space YAML, trial budget and trial ledger
all live in the database, so any number of workers can join or leave a study at any time.
Each worker rebuilds the search from the stored YAML, runs the same ask/tell loop as
``autopeft search`` (``run_search`` with ``count_running=True``, so the budget counts
trials other workers are training right now), and stops when the study's budget is met.

Stopping: SIGTERM (or SIGINT) during a trial kills the trial process, records the trial as
failed ("interrupted") and ends the worker; between trials it just ends the worker.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
import zlib
from dataclasses import dataclass
from typing import Callable

from autopeft.errors import AutoPeftError
from autopeft.search.loop import Runner, run_search, running_count, trained_count
from autopeft.store import Store, StudyRecord, TrialRecord

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
        ostudy = optuna.load_study(study_name=name, storage=store.optuna_storage)
    except KeyError:  # no optuna study yet: nobody has asked for a trial
        return 0
    return running_count(records, ostudy)


def _open_optuna_storage(store: Store, attempts: int = 5) -> None:
    """Open optuna's storage, retrying while another process is creating its tables.

    Workers started together on a fresh database all find optuna's tables missing and all
    create them; on PostgreSQL the losers of that race fail with a duplicate-key error
    (``pg_type_typname_nsp_index``). The tables exist once the winner commits, so a retry
    after a short pause opens them normally.
    """
    from autopeft.errors import StoreError

    for attempt in range(1, attempts + 1):
        try:
            store.optuna_storage
            return
        except StoreError:
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


class Worker:
    """Runs trials of the studies in ``store`` until their budgets are met or it is told to stop.

    Args:
        store: The shared database.
        max_trials: Stop after training this many trials (None: no limit).
        timeout: Start no new trial after this many seconds (None: no limit).
        runner: Runs one ``TrialSpec`` (default: ``trials.executor.run_isolated``).
        log: Where progress lines go.
    """

    def __init__(self, store: Store, *, max_trials: int | None = None, timeout: float | None = None,
                 runner: Runner | None = None, log: Log | None = None) -> None:
        self.store = store
        self.max_trials = max_trials
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.log = log or (lambda line: print(line, flush=True))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.trained = 0
        self.served: list[str] = []
        self.stop_signal: int | None = None
        self._training = False
        self._prepared: dict = {}
        self._samplers: dict = {}
        self._broken: set[str] = set()
        if runner is None:
            from trials.executor import run_isolated as runner
        self._runner = runner
        _open_optuna_storage(store)

    # ------------------------------------------------------------------ public
    def run_study(self, name: str) -> WorkerOutcome:
        """Serve one study until its budget is met (or a limit or signal stops the worker)."""
        with self._signals():
            study = self.store.get_study(name)  # StoreError listing the studies if missing
            self._serve(study, one_trial=False)
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
        if outcome.interrupted and self.stop_signal is None:
            self.stop_signal = signal.SIGINT  # a KeyboardInterrupt not raised by our handler

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
            self._samplers[name] = make_sampler(dataclasses.replace(search, seed=seed))
        return self._samplers[name]

    def _guarded_runner(self, spec):
        if self._should_stop():
            # Stop was requested while the trial was being asked: record it as interrupted
            # through the loop's own path rather than train it.
            raise KeyboardInterrupt
        self._training = True
        try:
            return self._runner(spec)
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
        if record.status in ("complete", "failed"):
            self.worker.trained += 1
        detail = f"values {record.values}" if record.values else (record.error or "")
        self.worker.log(f"worker {self.worker.name}: study '{self.study}' trial {record.number} {record.status} {detail}")
        if self.one_trial or self.worker._should_stop():
            raise _Yield
