"""Workers: processes on any machine that join studies in a shared database and run trials.

A worker holds no state of its own: the study's space YAML, trial budget and trial ledger
all live in the database, so any number of workers can join or leave a study at any time.
Each worker rebuilds the search from the stored YAML and keeps one
:class:`~autopeft.search.session.SearchSession` per study; serving a study is calling its
``step()`` until the budget (counted across every process) is met. A study whose stored YAML
now compiles to another space than it was created with (:func:`stored_space`) is refused
before anything is prepared: by ``autopeft worker STUDY`` in one line, and skipped with one
logged line by a worker serving every study.

Verification runs: ``autopeft verify`` queues rows in ``autopeft_verifications`` (with
``--enqueue-only`` it trains none itself). A worker serves them before new trials, oldest
first (of its study, or of every study without one): it claims a row atomically
(``Verifications.claim``), trains it through ``autopeft.search.runs.run_one`` — the code path
``verify`` uses — on the study's full-fidelity preparation (made once per study and kept), and
records it ``complete`` or ``failed`` with the reason. A ``running`` row older than
``runs.STALE_AFTER`` belonged to a dead process and is queued again.

Stopping: SIGTERM (or SIGINT) during a trial kills the trial process, records the trial as
failed ("interrupted"), queues its point again for any worker (so the interruption costs
the budget nothing) and ends the worker with 128 + the signal; between trials it just ends.

Dying: every trial beats a heartbeat from ask to tell (the ledger's). A trial whose heartbeat
is older than ``grace`` seconds belonged to a process that died (kill -9, a lost machine):
any process reaps it, its point is queued again (up to ``retries`` times), its record says
"worker lost" and links to the retry, and only the retry counts against the budget.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import zlib
from dataclasses import dataclass
from typing import Callable

from autopeft.errors import AutoPeftError
from autopeft.search.ledger.budget import trained_count
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.ledger.ledger import Ledger
from autopeft.search.scheduler import Scheduler
from autopeft.search.session import Runner, SearchSession
from autopeft.search.signals import StopSignals
from autopeft.store import Store, StudyRecord, TrialRecord

Log = Callable[[str], None]


@dataclass(frozen=True)
class WorkerOutcome:
    """What one worker did.

    Attributes:
        trials: Trials this worker trained to an end (complete or failed).
        studies: Names of the studies it served, in the order first served.
        signal: The signal number that stopped it (None when it ended on its own).
        verified: Verification runs it trained to an end (complete or failed).
    """

    trials: int
    studies: tuple[str, ...]
    signal: int | None = None
    verified: int = 0

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal (143 for SIGTERM, 130 for SIGINT), as shells expect."""
        return 0 if self.signal is None else 128 + self.signal


class Worker:
    """Runs trials of the studies in ``store`` until their budgets are met or it is told to stop.

    Args:
        store: The shared database.
        max_trials: Stop after training this many trials (None: no limit; verification runs
            do not count).
        timeout: Start no new trial or verification run after this many seconds (None: no limit).
        runner: Runs one ``TrialSpec`` (default: ``autopeft.trials.executor.run_isolated``).
        log: Where progress lines go.
        heartbeat: Seconds between heartbeats of the running trial (whole seconds, >= 1).
        grace: Seconds without a heartbeat after which a trial's worker counts as dead.
        retries: How often a dead worker's trial is re-queued (the same parameters).
        poll: Seconds between looks at the database while waiting for work or for other
            workers' last trials.
        scheduler: What each study's session runs next and whether a trial goes on at a
            rung (default: ``autopeft.search.scheduler.DefaultScheduler``).

    Raises:
        LedgerError: ``grace`` is not longer than ``heartbeat``.
    """

    def __init__(self, store: Store, *, max_trials: int | None = None, timeout: float | None = None,
                 runner: Runner | None = None, log: Log | None = None, heartbeat: float = 10.0,
                 grace: float = 60.0, retries: int = 2, poll: float = 5.0,
                 scheduler: Scheduler | None = None) -> None:
        self.settings = LedgerSettings(heartbeat=heartbeat, grace=grace, retries=retries)
        self.store = store
        self.max_trials = max_trials
        self.poll = poll
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.log = log or (lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stop = StopSignals()
        self.trained = 0
        self.served: list[str] = []
        self._runner = runner
        self._scheduler = scheduler
        self._sessions: dict[str, SearchSession] = {}
        self._ledgers: dict[str, Ledger] = {}  # studies looked at, not (yet) served: counting and reaping
        self._broken: set[str] = set()
        self.verified = 0
        self._verify_preps: dict[str, object] = {}  # study -> full-fidelity PreparedSearch
        self._verify_broken: set[str] = set()
        self._target_keys: dict[str, str | None] = {}  # study -> protocol key of its seed runs

    # ------------------------------------------------------------------ public
    def run_study(self, name: str) -> WorkerOutcome:
        """Serve one study until its budget is met (or a limit or signal stops the worker).

        The budget counts other workers' running trials, so when it looks met one of them
        may still die. Until the last of them has ended, the worker stays and watches: a
        trial whose worker died is re-queued after ``grace`` seconds and run here.
        """
        with self.stop.installed():
            try:
                study = self.store.get_study(name)  # StoreError listing the studies if missing
                session = self._session(study)
                budget = session.ledger.budget()
                self.log(f"worker {self.name}: study '{name}': {budget.trained}/{budget.target} trained")
                while not self._should_stop():
                    if self._verify_one(name):
                        continue
                    record = session.step()
                    if record is not None:
                        self._finished(name, record, seed=session.last_was_seed)
                        if session.exhausted:
                            self.log(f"worker {self.name}: study '{name}' has trials left but none could be trained")
                            break
                        continue
                    # No budget read: the scheduler answered before counting (a stop, or a policy
                    # of its own); there is no one's last trial to wait for.
                    budget = session.last_budget
                    if self._should_stop() or budget is None or not (budget.running or session.seeds_running()):
                        break  # the budget is met and nobody else is at work
                    self._sleep(self.poll)  # others' last trials: they end, or are reaped and run here
            finally:
                self._close()
        return self._outcome()

    def serve_all(self, *, poll: float = 5.0, exit_when_idle: bool = False) -> WorkerOutcome:
        """Serve every study with trials left, oldest first and taking turns trial by trial.

        With nothing left to do, wait ``poll`` seconds and look again (a study submitted
        later gets picked up), or return at once if ``exit_when_idle``.
        """
        last: str | None = None
        with self.stop.installed():
            try:
                while not self._should_stop():
                    if self._verify_one():
                        continue
                    study = self._next_study(last)
                    if study is None:
                        if exit_when_idle:
                            break
                        self._sleep(poll)
                        continue
                    last = study.name
                    session = self._session_or_skip(study)
                    record = session.step() if session is not None and not self._should_stop() else None
                    if record is not None:
                        self._finished(study.name, record, seed=session.last_was_seed)
                        if session.exhausted:  # taking turns must not spin on a study that trains nothing
                            self.log(f"worker {self.name}: skipping study '{study.name}': "
                                     "it has trials left but none could be trained")
                            self._broken.add(study.name)
            finally:
                self._close()
        return self._outcome()

    # ------------------------------------------------------------------ internals
    def _verify_one(self, study: str | None = None) -> bool:
        """Claim and train the oldest queued verification run (of ``study``, or of any study);
        False when there is none.

        Verification runs go before new trials: a user asked for them explicitly, on points
        the search has already found, and they are a fixed, small queue, while the search's
        budget goes on after them (at most one run's wait per trial). Trials first would
        leave verifications waiting behind a whole search budget — hours — for no gain.
        """
        from autopeft.search.runs import STALE_AFTER, run_one
        from autopeft.store.verifications import Verifications

        runs = Verifications(self.store)
        runs.requeue_stale(study, STALE_AFTER)
        names = [n for n in runs.pending_studies() if study is None or n == study]
        for name in names:
            if self._should_stop():
                return False
            prep = self._verify_prep(name)
            if prep is None:
                continue
            # A study's seed runs at its target are the search's own work (SearchSession.step).
            record = runs.claim(name, self.name, besides=self._target_key(name))
            if record is None:
                continue  # another worker took the last one, or only seed runs are left
            if name not in self.served:
                self.served.append(name)
            self.log(f"worker {self.name}: study '{name}' verification {record.subject} seed {record.seed} started "
                     f"({record.protocol['steps']} steps)")
            try:
                done = run_one(runs, record, prep, interruptible=self.stop.interruptible)
            except KeyboardInterrupt:  # SIGTERM/SIGINT: run_one put the row back for any worker
                self.log(f"worker {self.name}: study '{name}' verification {record.subject} seed {record.seed} "
                         "interrupted (queued again)")
                return True
            self.verified += 1
            # The metrics, not the per-example outcomes the paired comparison keeps (up to 2,000 characters).
            shown = {k: round(v, 4) for k, v in done.test_metrics.items() if isinstance(v, (int, float))}
            detail = f"test {shown}" if done.status == "complete" else (done.error or "")
            self.log(f"worker {self.name}: study '{name}' verification {record.subject} seed {record.seed} "
                     f"{done.status} {detail}")
            return True
        return False

    def _target_key(self, name: str) -> str | None:
        from autopeft.search.seeds import study_target_key
        from autopeft.store.verifications import Verifications

        if name not in self._target_keys:
            self._target_keys[name] = study_target_key(Verifications(self.store), self.store.get_study(name))
        return self._target_keys[name]

    def _verify_prep(self, name: str):
        """The study's full-fidelity preparation for verification runs, made once; None (logged,
        and the study's runs left to other processes) when this machine cannot prepare it."""
        if name in self._verify_broken:
            return None
        if name not in self._verify_preps:
            from autopeft.search.verify import full_fidelity

            self.log(f"worker {self.name}: preparing study '{name}' for verification ...")
            try:
                self._verify_preps[name] = full_fidelity(self.store.get_study(name))
            except AutoPeftError as e:
                self.log(f"worker {self.name}: skipping the verification runs of study '{name}': {e}")
                self._verify_broken.add(name)
                return None
        return self._verify_preps[name]

    def _next_study(self, last: str | None) -> StudyRecord | None:
        """The first study after ``last`` (cyclically, oldest first) that has trials left."""
        studies = [s for s in self.store.studies() if s.name not in self._broken]
        names = [s.name for s in studies]
        start = names.index(last) + 1 if last in names else 0
        for study in studies[start:] + studies[:start]:
            if self._ledger(study).budget(reap=True).left > 0 or self._seeds_pending(study.name):
                return study
        return None

    def _ledger(self, study: StudyRecord) -> Ledger:
        if study.name in self._sessions:
            return self._sessions[study.name].ledger
        if study.name not in self._ledgers:
            self._ledgers[study.name] = Ledger(self.store, study, settings=self.settings)
        return self._ledgers[study.name]

    def _session_or_skip(self, study: StudyRecord) -> SearchSession | None:
        try:
            return self._session(study)
        except AutoPeftError as e:  # serving all studies: one broken study must not stop the others
            self.log(f"worker {self.name}: skipping study '{study.name}': {e}")
            self._broken.add(study.name)
            return None

    def _session(self, study: StudyRecord) -> SearchSession:
        """The study's session, opened once from the YAML stored with it."""
        if study.name not in self._sessions:
            from autopeft.search.prepare import prepare_search

            space = stored_space(study)  # before anything is prepared: a refused study costs nothing
            self.log(f"worker {self.name}: preparing study '{study.name}' ...")
            prep = prepare_search(space)
            # trials=study.trials_target: the study's own target, never the YAML's default
            # (``autopeft search --trials`` may have raised it).
            self._sessions[study.name] = SearchSession(
                prep, self.store, trials=study.trials_target, sampler=self._sampler(prep), runner=self._runner,
                events=_Events(self, study.name), settings=self.settings, stop=self.stop, poll=self.poll,
                scheduler=self._scheduler)
            self._ledgers.pop(study.name, None)
        if study.name not in self.served:
            self.served.append(study.name)
        return self._sessions[study.name]

    def _sampler(self, prep):
        """A sampler for the study, seeded apart from other workers'.

        Every worker seeded with the study's seed would propose the very same points; a
        fresh sampler per trial would repeat its first point. One per study for the
        worker's lifetime, seeded from the study seed, the host and the process id.
        """
        from autopeft.search.sampling.samplers import make_sampler

        search = prep.space.search
        seed = zlib.crc32(f"{search.seed}:{self.name}".encode()) % (2**31)
        return make_sampler(dataclasses.replace(search, seed=seed), prep.encoding)

    def _seeds_pending(self, name: str) -> bool:
        """Whether study ``name`` has seed runs at its target waiting (its budget may be met)."""
        from autopeft.store.verifications import Verifications

        key = self._target_key(name)
        return key is not None and Verifications(self.store).count(name, key, ("pending",)) > 0

    def _finished(self, study: str, record: TrialRecord, seed: bool = False) -> None:
        if seed:  # a seed run at the target: the trial's record now holds the mean over its seeds
            t = record.target
            self.log(f"worker {self.name}: study '{study}' trial {record.number} seed run done: "
                     f"{len(t.seeds) if t else 0}/{t.of if t else '?'} seeds, values {record.values}")
            return
        if trained_count([record]):
            self.trained += 1
        detail = f"values {record.values}" if record.values else (record.error or "")
        self.log(f"worker {self.name}: study '{study}' trial {record.number} {record.status} {detail}")

    def _should_stop(self) -> bool:
        if self.stop.requested:
            return True
        if self.max_trials is not None and self.trained >= self.max_trials:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._should_stop():
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _close(self) -> None:
        for session in self._sessions.values():
            session.ledger.close()

    def _outcome(self) -> WorkerOutcome:
        return WorkerOutcome(self.trained, tuple(self.served), self.stop.signal, self.verified)


def stored_space(study: StudyRecord):
    """The study's search space, rebuilt from the YAML stored with it.

    Raises:
        StoreError: the YAML now compiles to another space than the study was created with
            (its ``space_hash`` differs: e.g. a default of the space changed since, such as the
            built-in learning-rate bands an omitted ``space.learning_rate`` stands for). Its
            trials were searched in the old space; continuing them in the new one would mix
            two searches in one study, so ``autopeft search`` refuses it too.
    """
    from autopeft.errors import StoreError
    from autopeft.space import space_hash
    from autopeft.space.stored import study_space

    space = study_space(study)
    digest = space_hash(space)
    if digest != study.space_hash:
        raise StoreError(
            f"study '{study.name}' was created with another search space than its stored YAML now compiles to "
            f"(space hash {study.space_hash}, now {digest}; e.g. a default changed since it was created), so its "
            "trials cannot be continued here: start a new study from the same YAML (autopeft search SPACE --set "
            "study=NEW_NAME)")
    return space


class _Events:
    """Progress lines of one study's trials."""

    def __init__(self, worker: Worker, study: str) -> None:
        self.worker = worker
        self.study = study

    def started(self, study, done, target): ...

    def trial_started(self, number, candidate):
        self.worker.log(f"worker {self.worker.name}: study '{self.study}' trial {number} started ({candidate.method})")

    def trial_finished(self, record, records): ...
