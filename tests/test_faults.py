"""Faults of a single `autopeft search`, end to end: real CLI, real trial processes, SQLite.

- kill -9 of the search mid-trial, then the same command again: the killed trial is reaped
  after --grace and re-run, the study reaches its target, no record is left running.
- SIGTERM (what Slurm and Kubernetes send) mid-trial: like Ctrl-C, the trial is recorded
  interrupted and its point queued again, exit 143, and no trial process outlives it.
- kill -9 of the process that runs an isolated trial: the trial process goes too.

Tiny proxies (IA3 on a few examples, one thread) keep a trial to seconds; the trial
processes, the forkserver and the database are real. Reads /proc: Linux only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopeft.search.ledger.budget import trained_count
from autopeft.store import Store
from test_executor import base_spec, with_  # noqa: F401 - base_spec is a fixture
from test_workers import CLI, SPACE, assert_ledgers_agree, ledgers

# One learning-curve report per trial, at its end: a trial process only notices a dead
# parent when it reports to it, so with reports every few steps even an unguarded one dies
# soon. Reporting only at the end, only the guard (autopeft.trials.executor.die_with_parent) ends it.
QUIET_SPACE = SPACE.replace("threads: 1}", "threads: 1, log_every: {steps}}")
assert QUIET_SPACE != SPACE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")]
FAST = ("--heartbeat", "1", "--grace", "3")


# --------------------------------------------------------------------------- processes
def tagged(tag: str) -> dict[int, int]:
    """{pid: parent pid} of live (non-zombie) processes whose environment carries ``tag``.

    Every process a test starts carries the tag in its environment, and so does every
    process those start (the forkserver, each trial): orphans included, whoever adopted them.
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state != "Z" and f"AUTOPEFT_TEST_TAG={tag}".encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = int(ppid)
        except OSError:  # gone meanwhile
            continue
    return found


def trial_processes(tag: str) -> set[int]:
    """Processes forked by the forkserver (they keep its command line): the trials."""
    procs = tagged(tag)
    forkservers = {p for p in procs if b"multiprocessing.forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()}
    return {p for p in forkservers if procs[p] in forkservers}


def wait_until_gone(tag: str, timeout: float = 10.0) -> set[int]:
    """Wait for every tagged process to end; those still alive after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return set(tagged(tag))


def tag_env(tag: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "AUTOPEFT_TEST_TAG": tag}


# --------------------------------------------------------------------------- the CLI
def write_space(tmp_path: Path, steps: int, trials: int = 2) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(QUIET_SPACE.format(study="faults", trials=trials, steps=steps))
    return path


def start_search(space: Path, url: str, tmp_path: Path, tag: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"search-{tag}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "search", str(space), "--storage", url, *FAST], stdout=out,
                                stderr=subprocess.STDOUT, env=tag_env(tag), start_new_session=True)
    return proc, log


def wait_for_training(proc: subprocess.Popen, log: Path, url: str, tag: str, timeout: float = 300) -> int:
    """Block until a trial trains: its record says so and its process exists. Its number."""
    deadline = time.monotonic() + timeout
    store = Store(url)
    try:
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            if store.find_study("faults") is not None and trial_processes(tag):
                training = [r for r in store.trials("faults") if r.status == "running" and r.peft_config]
                if training:
                    return training[0].number
            time.sleep(0.1)
    finally:
        store.close()


def cleanup(proc: subprocess.Popen, tag: str) -> None:
    """Whatever happened, leave no process of the test behind (a failed guard leaves orphans)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_9_of_a_search_then_the_same_command_reaches_the_target_with_nothing_left_running(tmp_path):
    url = f"sqlite:///{tmp_path / 'fault6.db'}"
    space = write_space(tmp_path, steps=30)
    tag = f"fault6-{os.getpid()}-{time.monotonic_ns()}"
    proc, log = start_search(space, url, tmp_path, tag)
    try:
        killed = wait_for_training(proc, log, url, tag)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)  # the search only: its trial process must follow by itself
        proc.wait()
        assert not wait_until_gone(tag), "processes outlived the killed search (a trial trains on for nobody)"
    finally:
        cleanup(proc, tag)
    records, _ = ledgers(url, "faults")
    # Nothing could record it.
    assert [r.status for r in records if r.number == killed] == ["running"], (log.read_text(), records)

    again = subprocess.run([*CLI, "search", str(space), "--storage", url, *FAST], capture_output=True, text=True,
                           env=tag_env(tag + "-again"), timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not wait_until_gone(tag + "-again"), "a finished search left processes behind"

    records, trials = ledgers(url, "faults")
    summary = [(r.number, r.status, r.error) for r in records], [(t.number, t.state.name) for t in trials]
    assert_ledgers_agree(records, trials)  # no record left running; optuna agrees on every trial
    assert trained_count(records) == 2, summary
    lost = next(r for r in records if r.number == killed)
    assert lost.status == "failed" and lost.error.startswith("worker lost: no heartbeat for 3 s; retried as trial")
    retry = next(r for r in records if r.number == lost.extras["retried_as"])
    assert retry.status == "complete" and retry.params == lost.params and retry.extras["retry_of"] == killed


def test_sigterm_on_search_is_ctrl_c_exit_143_trial_requeued_and_no_orphan(tmp_path):
    from optuna.trial import TrialState

    url = f"sqlite:///{tmp_path / 'term.db'}"
    space = write_space(tmp_path, steps=400)  # long enough a trial to be caught in the middle
    tag = f"term-{os.getpid()}-{time.monotonic_ns()}"
    proc, log = start_search(space, url, tmp_path, tag)
    try:
        number = wait_for_training(proc, log, url, tag)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)  # the search only, as `kill -TERM PID` or Kubernetes would
        code = proc.wait(timeout=120)
        text = log.read_text()
        assert code == 143, text
        assert not wait_until_gone(tag), "processes outlived the search"
    finally:
        cleanup(proc, tag)
    assert "Traceback" not in text and "BrokenPipeError" not in text, text
    records, trials = ledgers(url, "faults")
    retry = records[0].extras["retried_as"]  # queued behind what the study enqueued at creation
    assert [(r.number, r.status, r.error) for r in records] == [(number, "failed", f"interrupted; retried as trial {retry}")]
    assert trained_count(records) == 0  # the interruption costs the study nothing
    states = {t.number: t.state for t in trials}
    assert states.pop(number) == TrialState.FAIL and set(states.values()) == {TrialState.WAITING} and retry in states
    assert trials[retry].params == trials[number].params


CHILD = """
import sys
from {executor} import run_isolated
from {spec} import TrialSpec
run_isolated(TrialSpec.from_json(open(sys.argv[1]).read()))
"""


def test_kill_9_of_the_parent_ends_its_isolated_trial(base_spec, tmp_path):  # noqa: F811 - the fixture
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.spec import TrialSpec

    # Trains for many minutes unless stopped, and never reports before its end (see QUIET_SPACE).
    spec = with_(base_spec, steps=100_000, log_every=100_000, timeout=900)
    (tmp_path / "spec.json").write_text(spec.to_json())
    script = CHILD.format(executor=run_isolated.__module__, spec=TrialSpec.__module__)
    tag = f"executor-{os.getpid()}-{time.monotonic_ns()}"
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "spec.json")], env=tag_env(tag),
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not trial_processes(tag):  # parent -> forkserver -> trial
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(2.0)  # into its training
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert not wait_until_gone(tag, timeout=5.0), "the trial (or its forkserver) outlived its parent"
    finally:
        cleanup(parent, tag)


TARGET_SPACE = SPACE.replace("steps: {steps}, batch_size: 8", "steps: 6, batch_size: 8, eta: 4").replace(
    "search: {{", "target: {{steps: {steps}, seeds: 1}}\nsearch: {{baseline: false, ")


def _checkpointed(url: str, number: int) -> Path | None:
    """The newest checkpoint folder trial ``number`` has written, once it has one."""
    from autopeft.search.fidelity import checkpoints

    store = Store(url)
    try:
        record = store.trial("faults", number)
    finally:
        store.close()
    folder = record.extras.get("checkpoints") if record else None
    found = checkpoints.newest(Path(folder)) if folder else None
    return found[1] if found else None


def _training(url: str, after: int = -1) -> int | None:
    """The number of a trial after ``after`` being trained (its record running with its config), if any."""
    store = Store(url)
    try:
        if store.find_study("faults") is None:
            return None
        return next((r.number for r in store.trials("faults")
                     if r.number > after and r.status == "running" and r.peft_config), None)
    finally:
        store.close()


def _wait_for(condition, proc, log, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while (found := condition()) is None or found is False or found == set():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return found


def test_kill_9_mid_resume_loses_nothing_and_the_trial_resumes_from_its_rung(tmp_path):
    """Killed after its first rung's checkpoint, the trial's re-run resumes from it; killed
    again mid-resume, the next re-run resumes from the same checkpoint (nothing deleted, nothing
    half-written under its name), and the trial ends complete at the target, its rungs kept."""
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    space = tmp_path / "space.yaml"
    space.write_text(TARGET_SPACE.format(study="faults", trials=1, steps=96))
    tag = f"resume-{os.getpid()}-{time.monotonic_ns()}"
    killed = []
    for attempt in range(2):
        proc, log = start_search(space, url, tmp_path, f"{tag}-{attempt}")
        try:
            number = _wait_for(lambda: _training(url, after=killed[-1] if killed else -1), proc, log)
            if attempt == 0:  # after the rung at step 6 saved its state
                checkpoint = _wait_for(lambda: _checkpointed(url, number), proc, log)
            else:  # mid-resume: the re-run's process trains on from that checkpoint
                _wait_for(lambda: trial_processes(f"{tag}-{attempt}") or None, proc, log)
                time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed.append(number)
        finally:
            cleanup(proc, f"{tag}-{attempt}")
        assert checkpoint.is_dir() and (checkpoint / "state.json").is_file()  # still there for the next re-run
    again = subprocess.run([*CLI, "search", str(space), "--storage", url, *FAST], capture_output=True, text=True,
                           env=tag_env(tag + "-done"), timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    records, trials = ledgers(url, "faults")
    assert_ledgers_agree(records, trials)
    first, second = (next(r for r in records if r.number == n) for n in killed)
    assert first.status == "failed" and first.extras["retried_as"] == second.number
    assert second.status == "failed" and second.extras["retry_of"] == first.number
    final = next(r for r in records if r.number == second.extras["retried_as"])
    assert final.status == "complete" and final.params == first.params
    assert final.extras["resumed_from"] == 6 and final.extras["rungs"][0][0] == 6  # never trained steps 1-6 again
    assert final.curve[-1][0] == 96 and not Path(final.extras["checkpoints"]).exists()  # removed once it ended
