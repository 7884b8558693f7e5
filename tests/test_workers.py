"""Real ``autopeft worker`` processes sharing one study, on SQLite and PostgreSQL.

Tiny proxies (4 steps of 8 examples, one thread) keep each trial to a few seconds; what is
real is everything around them: separate processes, the shared database, the budget.
One method (IA3, the cheapest): the worker machinery is under test here, not the methods,
which have their own contract tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopeft.search.loop import open_study
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store
from test_store_contract import BACKENDS, backend_url

SPACE = """
study: {study}
model: minilm-l6
task: {{dataset: tweet-sentiment, metric: accuracy}}
objectives: {{accuracy: max, trainable_params: min}}
space:
  method: [ia3]
  rank: [2, 4]
  targets: [[query, value]]
  learning_rate: {{log: [1.0e-4, 1.0e-2]}}
proxy: {{train_examples: 64, eval_examples: 32, steps: {steps}, batch_size: 8, max_length: 32, threads: 1}}
search: {{sampler: random, trials: {trials}, seed: 0}}
"""

# The console script's own entry point (``autopeft.cli:run``), no reliance on PATH.
CLI = [sys.executable, "-c", "from autopeft.cli import run; run()"]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with backend_url(request.param, tmp_path, "workers") as u:
        yield u


def create_study(url: str, study: str = "workers", trials: int = 4, steps: int = 4) -> None:
    """Create the study the way a submitter would, without training anything."""
    store = Store(url)
    try:
        open_study(store, prepare_search(load_space_text(SPACE.format(study=study, trials=trials, steps=steps)),
                                         with_data=False))
    finally:
        store.close()


def start_worker(url: str, tmp_path: Path, tag: str, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"worker-{tag}.log"
    with open(log, "wb") as out:
        # One torch thread per process: the machine is shared, and so is the test runner.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.Popen([*CLI, "worker", *args, "--storage", url], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"worker did not finish in {timeout} s:\n{log.read_text()}")
    return code, log.read_text()


def ledgers(url: str, study: str):
    """(autopeft records, optuna trials) of ``study``."""
    import optuna

    store = Store(url)
    try:
        records = store.trials(study)
        trials = optuna.load_study(study_name=study, storage=store.optuna_storage).get_trials(deepcopy=False)
    finally:
        store.close()
    return records, trials


def assert_ledgers_agree(records, trials) -> None:
    """Every optuna trial has its autopeft record in the matching state; nothing left running."""
    from optuna.trial import TrialState

    state = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL}
    by_number = {t.number: t for t in trials}
    assert sorted(by_number) == [r.number for r in records], "a trial is missing from one ledger"
    for r in records:
        assert r.status in state, f"trial {r.number} left {r.status}"
        assert by_number[r.number].state == state[r.status], r.number


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_overshooting(url, tmp_path):
    target, workers = 4, 2
    create_study(url, trials=target)
    procs = [start_worker(url, tmp_path, str(i), "workers") for i in range(workers)]
    outputs = []
    for proc, log in procs:
        code, text = finish(proc, log)
        assert code == 0, text
        outputs.append(text)

    records, trials = ledgers(url, "workers")
    assert_ledgers_agree(records, trials)
    trained = [r for r in records if r.status in ("complete", "failed")]
    # Each worker checks the budget (trained + running anywhere) before it asks for a
    # trial; two can pass that check at once, never more: at most N - 1 beyond the target.
    assert target <= len(trained) <= target + workers - 1, [r.number for r in trained]
    assert all(r.status == "complete" for r in trained), [(r.number, r.error) for r in trained]
    # None lost: what the workers say they trained is exactly what the database holds.
    said = sum(int(text.rsplit("trained ", 1)[1].split(" ", 1)[0]) for text in outputs)
    assert said == len(trained), outputs
    # Seeded apart: two random samplers with the study's one seed would propose the same points.
    assert len({repr(sorted(r.params.items())) for r in trained}) > 1


@pytest.mark.slow
def test_trials_and_timeout_limits_and_a_late_worker_trains_nothing(url, tmp_path):
    create_study(url, trials=2)
    code, text = finish(*start_worker(url, tmp_path, "timeout", "workers", "--timeout", "0"))
    assert code == 0 and "trained 0 trial(s)" in text, text  # no new trial after 0 s
    code, text = finish(*start_worker(url, tmp_path, "one", "workers", "--trials", "1"))
    assert code == 0 and "trained 1 trial(s)" in text, text
    code, text = finish(*start_worker(url, tmp_path, "rest", "workers"))
    assert code == 0 and "trained 1 trial(s)" in text, text  # the one the budget had left
    code, text = finish(*start_worker(url, tmp_path, "late", "workers"))
    assert code == 0 and "trained 0 trial(s)" in text, text
    records, trials = ledgers(url, "workers")
    assert [r.status for r in records] == ["complete", "complete"]
    assert_ledgers_agree(records, trials)


@pytest.mark.slow
def test_a_worker_without_a_study_serves_every_study_with_trials_left(tmp_path):
    url = f"sqlite:///{tmp_path}/all.db"
    create_study(url, "first", trials=1)
    create_study(url, "second", trials=2)
    code, text = finish(*start_worker(url, tmp_path, "all", "--exit-when-idle"))
    assert code == 0, text
    assert text.index("study 'first' trial") < text.index("study 'second' trial"), "oldest first"
    for study, n in (("first", 1), ("second", 2)):
        records, trials = ledgers(url, study)
        assert [r.status for r in records] == ["complete"] * n
        assert_ledgers_agree(records, trials)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_mid_trial_records_it_as_interrupted_and_exits_143(backend, tmp_path):
    with backend_url(backend, tmp_path, "sigterm") as url:
        # Long enough a trial (a few hundred steps) to be caught in the middle of it.
        create_study(url, trials=2, steps=400)
        proc, log = start_worker(url, tmp_path, "term", "workers")
        deadline = time.monotonic() + 300
        while "trial 0 started" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        code, text = finish(proc, log, timeout=120)
        assert code == 143, text
        records, trials = ledgers(url, "workers")
        from optuna.trial import TrialState

        from autopeft.search.loop import trained_count

        # The interrupted trial is recorded, and its point queued again for any worker: the
        # interruption costs the budget nothing.
        retry = records[0].extras["retried_as"]  # queued behind what the study enqueued at creation
        assert [(r.number, r.status, r.error) for r in records] == [(0, "failed", f"interrupted; retried as trial {retry}")], text
        assert trained_count(records) == 0
        assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL)] + [
            (n, TrialState.WAITING) for n in range(1, retry + 1)]
        assert trials[retry].params == trials[0].params and trials[retry].system_attrs["retry_history"] == [0]


def test_joining_a_missing_study_names_the_studies_there_are(tmp_path):
    url = f"sqlite:///{tmp_path}/none.db"
    result = subprocess.run([*CLI, "worker", "ghost", "--storage", url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no study 'ghost'" in result.stderr and "no studies yet" in result.stderr


def wait_for_trial_start(proc: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    """Block until the worker logs its first trial start; that trial's number."""
    deadline = time.monotonic() + timeout
    while " started (" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return int(log.read_text().split(" started (")[0].rsplit("trial ", 1)[1])


def assert_every_lost_trial_was_rerun(records) -> list:
    """Each "worker lost" record links to its retry, and the chain ends in a completed trial."""
    by_number = {r.number: r for r in records}
    lost = [r for r in records if r.error and r.error.startswith("worker lost")]
    for r in lost:
        assert r.status == "failed"
        retry = by_number[r.extras["retried_as"]]
        assert retry.extras["retry_of"] == r.number and retry.params == r.params  # the same point, re-run
        while retry.extras.get("retried_as") is not None:
            retry = by_number[retry.extras["retried_as"]]
        assert retry.status == "complete", (r.number, retry.number, retry.status, retry.error)
    return lost


@pytest.mark.slow
def test_kill_9_of_a_worker_mid_trial_is_retried_and_nothing_is_lost(tmp_path):
    """SQLite: a worker killed with SIGKILL mid-trial (with its trial process): its trial goes
    stale, the other worker fails it, optuna re-queues the same point, and the retry completes."""
    from autopeft.search.loop import trained_count

    target = 2
    fast = ("--heartbeat", "1", "--grace", "4", "--poll", "1")
    with backend_url("sqlite", tmp_path, "kill") as url:
        create_study(url, trials=target, steps=30)  # a trial of several seconds, to be killed in
        victim, victim_log = start_worker(url, tmp_path, "victim", "workers", *fast)
        survivor, survivor_log = start_worker(url, tmp_path, "survivor", "workers", *fast)
        killed = wait_for_trial_start(victim, victim_log)
        time.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)  # the worker, its forkserver and its trial process
        victim.wait()
        code, text = finish(survivor, survivor_log)
        assert code == 0, text

        records, trials = ledgers(url, "workers")
        assert_ledgers_agree(records, trials)
        lost = assert_every_lost_trial_was_rerun(records)
        assert [r.number for r in lost] == [killed], text
        # The killed trial costs the budget nothing; the retry counts in its place.
        assert target <= trained_count(records) <= target + 1
        assert sum(r.status == "complete" for r in records) == trained_count(records)


@pytest.mark.slow
@pytest.mark.postgres
def test_repeated_kill_9_in_a_two_worker_postgres_study_loses_nothing(tmp_path):
    """PostgreSQL, two workers, one of them killed mid-trial again and again (a new one takes
    its place each time): every trial of the budget completes, each killed one is re-run."""
    from autopeft.search.loop import trained_count

    target, kills = 6, 3
    fast = ("--heartbeat", "1", "--grace", "4", "--poll", "1", "--retries", "5")
    with backend_url("postgres", tmp_path, "kills") as url:
        create_study(url, trials=target, steps=30)
        survivor, survivor_log = start_worker(url, tmp_path, "survivor", "workers", *fast)
        killed = []
        for round_ in range(kills):
            victim, victim_log = start_worker(url, tmp_path, f"victim{round_}", "workers", *fast)
            deadline = time.monotonic() + 300
            while " started (" not in victim_log.read_text() and victim.poll() is None:
                assert time.monotonic() < deadline, victim_log.read_text()
                time.sleep(0.2)
            if victim.poll() is not None:  # a fast machine: the budget was met before it got a trial
                break
            killed.append(wait_for_trial_start(victim, victim_log))
            time.sleep(1.0)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
        assert len(killed) >= 2, "the study ended before two workers could be killed: raise its target"
        code, text = finish(survivor, survivor_log)
        assert code == 0, text

        records, trials = ledgers(url, "workers")
        assert_ledgers_agree(records, trials)
        lost = assert_every_lost_trial_was_rerun(records)
        assert sorted(r.number for r in lost) == sorted(killed), text
        completed = sum(r.status == "complete" for r in records)
        assert completed == trained_count(records)  # nothing failed but the killed
        # The victims only ever held one trial each, so with the survivor at most two ran
        # at once: at most one beyond the target.
        assert target <= completed <= target + 1, text
