"""The ledger's contract, run against every backend (SQLite file, PostgreSQL).

ask/tell pairs optuna's trial with autopeft's record as one operation, safe to repeat; a
crash between the two writes is repaired by the next reap; a process that died mid-trial
(no heartbeat) is reaped and its point re-run; the budget is shared by every process on a
study. A fake candidate and fake runners stand in for the model: the ledger is under test.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autopeft.candidate import Candidate
from autopeft.errors import AutoPeftError, LedgerError
from autopeft.search.ledger.budget import trained_count
from autopeft.search.ledger.heartbeat import Heartbeat, LedgerSettings
from autopeft.search.ledger.ledger import Ledger
from autopeft.store import Store, utcnow
from test_store_contract import BACKENDS, CANDIDATE, backend_url, study_record

REPO = Path(__file__).resolve().parents[1]
#: Fast enough to watch a trial go stale inside a test. optuna compares heartbeats in whole
#: seconds (SQLite's CURRENT_TIMESTAMP), so a trial is stale between grace and grace + 2 s.
FAST = LedgerSettings(heartbeat=1, grace=2, retries=2)
STALE = FAST.grace + 2.5


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with backend_url(request.param, tmp_path, "ledger") as u:
        yield u


@pytest.fixture
def store(url):
    s = Store(url)
    s.add_study(study_record("s1", trials_target=4))
    yield s
    s.close()


def point(x: int) -> Candidate:
    """The candidate of the one integer parameter the fake space has: its rank."""
    return Candidate.from_json({**CANDIDATE, "rank": x})


def suggest(trial) -> Candidate:
    return point(trial.suggest_int("x", 0, 10_000))


def ledger_of(store: Store, **kw) -> Ledger:
    return Ledger(store, store.get_study("s1"), settings=kw.pop("settings", FAST), **kw)


def completed(ticket, accuracy: float = 0.75):
    """The final record of a trial that trained to the end, and what optuna is told."""
    record = dataclasses.replace(ticket.record, status="complete", metrics={"accuracy": accuracy},
                                 values=[accuracy, 1000.0], trainable_params=1000, finished_at=utcnow())
    return record, [accuracy, 3.0]


def optuna_trials(ledger: Ledger):
    return {t.number: t for t in ledger.ostudy.get_trials(deepcopy=False)}


def count_writes(monkeypatch, store: Store) -> list:
    writes = []
    save = store.save_trial
    monkeypatch.setattr(store, "save_trial", lambda record: (writes.append(record), save(record))[1])
    return writes


# --------------------------------------------------------------------------- ask and finish
def test_ask_records_the_trial_running_and_beats(store):
    ledger = ledger_of(store)
    ticket = ledger.ask(suggest)
    record = store.trial("s1", ticket.number)
    assert record.status == "running" and record.params == {"x": ticket.candidate.rank}
    assert record.candidate == ticket.candidate and record.sampler_time >= 0
    assert ledger.budget().running == 1  # counted against the budget by every process
    beat = ledger._beats[ticket.number]
    assert beat._thread.is_alive()
    ledger.finish(*completed(ticket))
    assert not beat._thread.is_alive() and ledger.budget().running == 0


def test_a_waiting_trial_popped_by_two_processes_is_trained_by_the_first_to_record_it(store):
    """optuna guards popping an enqueued (or re-queued) trial with SELECT ... FOR UPDATE, which
    SQLite ignores, so two workers can both get it (seen in CI: two workers trained the study's
    enqueued reference trial twice). Replayed here: A pops and records trial 0; its state is put
    back to WAITING, as B saw it in that window; B pops it too, finds it recorded, asks again."""
    from optuna.trial import TrialState

    a, b = ledger_of(store), ledger_of(store)
    a.ostudy.enqueue_trial({"x": 7})
    first = a.ask(suggest)
    assert (first.number, first.candidate.rank) == (0, 7)
    store.optuna_storage.set_trial_state_values(a._trial_id(0), TrialState.WAITING)  # B's view of the race
    second = b.ask(suggest)
    assert second.number == 1  # not the trial A owns
    assert store.trial("s1", 0) == first.record and store.trial("s1", 1).status == "running"
    assert 0 not in b._beats and 1 in b._beats  # B beats only its own trial
    a.finish(*completed(first))
    b.finish(*completed(second))
    assert [r.status for r in store.trials("s1")] == ["complete", "complete"]


def test_finish_is_idempotent_on_the_trial_number(store, monkeypatch):
    from optuna.trial import TrialState

    ledger = ledger_of(store)
    ticket = ledger.ask(suggest)
    record, told = completed(ticket)
    first = ledger.finish(record, told)
    assert first == record and store.trials("s1") == [record]

    writes = count_writes(monkeypatch, store)
    assert ledger.finish(record, told) == first  # the same outcome again: nothing written
    # Another outcome for the same trial: the first one told stands, and no exception.
    assert ledger.finish(dataclasses.replace(record, status="failed", values=None, error="late")) == first
    # The same repeated by another process's ledger.
    assert ledger_of(store).finish(record, told) == first
    assert writes == []
    assert store.trials("s1") == [record]
    (trial,) = optuna_trials(ledger).values()
    assert trial.state == TrialState.COMPLETE and trial.values == told


def test_finish_refuses_what_cannot_be_told(store):
    ledger = ledger_of(store)
    ticket = ledger.ask(suggest)
    with pytest.raises(LedgerError, match="objective values"):
        ledger.finish(dataclasses.replace(ticket.record, status="complete"))
    with pytest.raises(LedgerError, match="running"):
        ledger.finish(ticket.record)
    with pytest.raises(LedgerError, match="no trial 99"):
        ledger.finish(dataclasses.replace(ticket.record, number=99, status="failed"))
    ledger.close()
    assert isinstance(LedgerError("x"), AutoPeftError)


def test_infeasible_is_told_fail_before_anything_completed_then_the_worst_values(store):
    from optuna.trial import TrialState

    ledger = ledger_of(store)
    ledger.budget()
    first = ledger.ask(suggest)
    ledger.infeasible(dataclasses.replace(first.record, trainable_params=10**7, error="over budget"))
    done = ledger.ask(suggest)
    ledger.finish(*completed(done, accuracy=0.6))
    ledger.budget()  # infeasible() imputes from what the budget read last
    late = ledger.ask(suggest)
    record = ledger.infeasible(dataclasses.replace(late.record, trainable_params=10**7, error="over budget"))
    trials = optuna_trials(ledger)
    assert trials[first.number].state == TrialState.FAIL
    assert trials[late.number].state == TrialState.COMPLETE and trials[late.number].values == [0.6, 7.0]
    assert record.status == "infeasible" and trials[late.number].user_attrs["infeasible"] == "over budget"
    assert ledger.budget().trained == 1  # infeasible trials never count


def test_interrupt_queues_the_point_again_within_the_retries(store):
    from optuna.trial import TrialState

    ledger = ledger_of(store, settings=LedgerSettings(heartbeat=1, grace=2, retries=1))
    ticket = ledger.ask(suggest)
    stopped = ledger.interrupt(ticket.number)
    assert (stopped.status, stopped.error, stopped.extras["retried_as"]) == ("failed", "interrupted; retried as trial 1", 1)
    trials = optuna_trials(ledger)
    assert trials[0].state == TrialState.FAIL and trials[1].state == TrialState.WAITING
    assert trials[1].params == trials[0].params and trials[1].system_attrs["retry_history"] == [0]
    assert ledger.budget().trained == 0  # the interruption costs the study nothing

    retry = ledger.ask(suggest)  # the queued point comes first
    assert retry.number == 1 and retry.record.params == ticket.record.params and retry.record.extras == {"retry_of": 0}
    again = ledger.interrupt(retry.number)
    assert again.error == "interrupted; no retries left" and "retried_as" not in again.extras
    assert ledger.interrupt(retry.number) == again  # a repeat changes nothing


# --------------------------------------------------------------------------- crashes and dead processes
class Crash(BaseException):
    """The process dying at this point (nothing after it runs)."""


def test_a_crash_between_tell_and_record_is_reconciled_by_the_next_reap(store, url, monkeypatch):
    from optuna.trial import TrialState

    ledger = ledger_of(store)
    ticket = ledger.ask(suggest)
    record, told = completed(ticket)
    save = store.save_trial

    def dies_after_the_tell(r):
        if r.status != "running":
            raise Crash
        save(r)

    monkeypatch.setattr(store, "save_trial", dies_after_the_tell)
    with pytest.raises(Crash):
        ledger.finish(record, told)
    ledger.close()  # the process is gone: no more heartbeats, nobody writes the record
    monkeypatch.undo()
    assert store.trial("s1", ticket.number).status == "running"
    assert optuna_trials(ledger)[ticket.number].state == TrialState.COMPLETE

    other = Store(url)  # another process (or the same command run again)
    try:
        assert ledger_of(other).reap() == 1
        assert other.trial("s1", ticket.number) == record  # the final record, metrics and all
        assert ledger_of(other).budget().trained == 1
    finally:
        other.close()


def test_a_crash_before_the_tell_is_reaped_as_lost_and_retried(store, url, monkeypatch):
    from optuna.trial import TrialState

    ledger = ledger_of(store)
    ticket = ledger.ask(suggest)
    record, told = completed(ticket)
    monkeypatch.setattr(ledger.ostudy, "tell", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        ledger.finish(record, told)  # the write-ahead copy is there, the tell never happened
    ledger.close()
    time.sleep(STALE)
    reaper = ledger_of(store)
    assert reaper.reap() == 1
    lost = store.trial("s1", ticket.number)
    assert lost.status == "failed" and lost.error == "worker lost: no heartbeat for 2 s; retried as trial 1"
    assert optuna_trials(reaper)[ticket.number].state == TrialState.FAIL
    assert reaper.ask(suggest).record.params == ticket.record.params  # the same point, re-run


def test_a_dead_single_process_trial_is_reaped_after_grace_and_its_point_rerun(store):
    dead = ledger_of(store)
    ticket = dead.ask(suggest)
    dead.close()  # kill -9: the heartbeat stops, nothing is told

    survivor = ledger_of(store)
    survivor.reap()
    assert survivor.budget().running == 1  # not yet known dead: it holds its place in the budget
    time.sleep(STALE)
    assert survivor.reap() == 1
    lost = store.trial("s1", ticket.number)
    assert lost.status == "failed" and lost.extras["retried_as"] == 1
    assert lost.error == "worker lost: no heartbeat for 2 s; retried as trial 1"
    budget = survivor.budget()
    assert (budget.trained, budget.running, budget.left) == (0, 0, 4) and survivor.trials_left() == 4
    retry = survivor.ask(suggest)
    assert (retry.number, retry.record.params, retry.record.extras) == (1, ticket.record.params, {"retry_of": 0})
    survivor.finish(*completed(retry))
    assert [r.status for r in store.trials("s1")] == ["failed", "complete"]
    assert survivor.reap() == 0  # nothing left to reconcile


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_trial_whose_retry_is_not_queued_yet_is_not_written_off(store):
    """optuna fails a stale trial and queues its retry in two transactions: a reconcile in
    between must not record "no retries left", which would lose the point's re-run."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    dead = ledger_of(store)
    ticket = dead.ask(suggest)
    dead.close()
    other = ledger_of(store)
    trial_id = other.storage.get_trial_id_from_study_id_trial_number(other._study_id, ticket.number)
    other.storage.set_trial_state_values(trial_id, TrialState.FAIL)  # a reaper's first transaction ...
    assert other.reap() == 0 and store.trial("s1", ticket.number).status == "running"
    assert other.budget().left == 4  # neither trained nor running: a retry is owed
    RetryHeartbeatStaleTrialCallback(max_retry=2)(other.ostudy, other.storage.get_trial(trial_id))  # ... its second
    assert other.reap() == 1
    lost = store.trial("s1", ticket.number)
    assert (lost.status, lost.error, lost.extras["retried_as"]) == (
        "failed", "worker lost: no heartbeat for 2 s; retried as trial 1", 1)


def test_a_trial_that_never_beat_is_adopted_then_reaped(store):
    """optuna never calls a trial stale that has no heartbeat (its process died inside ask,
    or an older autopeft ran it without one): the reaper gives it a first beat."""
    import optuna

    plain = optuna.create_study(study_name="s1", storage=store.optuna_storage, directions=["maximize", "minimize"])
    trial = plain.ask()
    trial.suggest_int("x", 0, 10_000)
    record = _running_record(trial.number, trial.params)
    store.save_trial(record)
    ledger = ledger_of(store)
    assert ledger.reap() == 0  # adopted: it has a heartbeat now, and is not yet stale
    assert [t.heartbeat_age is not None for t in store.live_optuna_trials("s1")] == [True]
    time.sleep(STALE)
    assert ledger.reap() == 1
    assert store.trial("s1", record.number).error.startswith("worker lost")


def _running_record(number: int, params: dict):
    from test_store_contract import trial_record

    return trial_record("s1", number, params=dict(params), candidate={"rank": params["x"]})


def test_a_trial_failed_as_lost_that_ends_after_all_keeps_its_results_but_not_its_place(store):
    owner = ledger_of(store)
    ticket = owner.ask(suggest)
    owner.close()  # its heartbeat cannot reach the database for longer than grace
    time.sleep(STALE)
    assert ledger_of(store).reap() == 1
    record, told = completed(ticket)
    late = owner.finish(record, told)  # the trial ends after all: no exception
    assert late.status == "failed" and late.metrics == {"accuracy": 0.75} and late.extras["retried_as"] == 1
    assert "worker lost" in late.error and "ended complete" in late.error
    assert store.trial("s1", ticket.number) == late and trained_count(store.trials("s1")) == 0


def test_heartbeat_failures_are_logged_not_swallowed(caplog):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def record_heartbeat(self, trial_id):
            self.calls += 1
            if self.calls in (2, 3):
                raise ConnectionError("server closed the connection unexpectedly")

    storage = Flaky()
    with caplog.at_level(logging.WARNING, logger="autopeft"):
        beat = Heartbeat(storage, 7, "study 's' trial 3", interval=0.05, grace=60).start()
        deadline = time.monotonic() + 5
        while storage.calls < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        beat.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("heartbeat of study 's' trial 3 failed" in m and "server closed" in m for m in messages), messages
    assert any("recovered" in m for m in messages), messages


def test_settings_that_would_fail_live_trials_are_refused():
    with pytest.raises(LedgerError, match="must be longer than --heartbeat"):
        LedgerSettings(heartbeat=10, grace=10)
    with pytest.raises(LedgerError, match="at least 1 s"):
        LedgerSettings(heartbeat=0.2, grace=5)


def test_search_refuses_a_grace_shorter_than_its_heartbeat_in_one_line(tmp_path, capsys):
    from autopeft.cli import main

    code = main(["search", str(REPO / "search_spaces" / "quickstart.yaml"), "--storage", f"sqlite:///{tmp_path}/g.db",
                 "--heartbeat", "10", "--grace", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--grace (5 s) must be longer than --heartbeat (10 s)" in err


# --------------------------------------------------------------------------- budget across processes
RUN_SEARCH = """
import random, sys, time
sys.path.insert(0, {tests!r})
from test_loop import ok_runner, prep
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.loop import run_search
from autopeft.store import Store

ok = ok_runner([])
def sleepy(spec):  # a trial without the CPU: the budget is under test, not training
    time.sleep(random.uniform(0.3, 1.2))
    return ok(spec)

out = run_search(prep(budget="100%", trials={target}, study="shared"), Store({url!r}), runner=sleepy,
                 settings=LedgerSettings(heartbeat=1, grace=30))  # nobody dies here: never reap the living
print("TRAINED-HERE", sum(1 for r in out.records if r.status == "complete"))
"""


# Two real search processes on each backend: SQLite in the fast lane, PostgreSQL in the slow one.
@pytest.mark.parametrize("backend", [pytest.param("sqlite", id="sqlite"),
                                     pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, pytest.mark.slow])])
def test_two_concurrent_searches_share_the_budget(backend, tmp_path):
    """Fault 7: two `autopeft search --trials N` on one study trained 2N (each counted its own)."""
    target = 6
    with backend_url(backend, tmp_path, "shared") as url:
        script = RUN_SEARCH.format(tests=str(REPO / "tests"), target=target, url=url)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        procs = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        store = Store(url)
        try:
            records = store.trials("shared")
            ledger = Ledger(store, store.get_study("shared"), settings=FAST)
            trials = optuna_trials(ledger)
        finally:
            store.close()
    trained = trained_count(records)
    # Both may pass the budget check at the same moment once: at most one beyond the target.
    assert target <= trained <= target + 1, [(r.number, r.status) for r in records]
    assert all(r.status == "complete" for r in records), [(r.number, r.status, r.error) for r in records]
    assert sorted(trials) == [r.number for r in records]  # one record per optuna trial, none lost


FOUR_WORKERS = """
import random, sys, time
sys.path.insert(0, {tests!r})
from test_loop import ok_runner
from autopeft.search.worker import Worker
from autopeft.store import Store

ok = ok_runner([])
def quick(spec):  # short trials: as many database writes per second as four processes make
    time.sleep(random.uniform(0.0, 0.15))
    return ok(spec)

store = Store({url!r})
outcome = Worker(store, runner=quick, heartbeat=1, grace=30, poll=0.2, log=lambda line: None).run_study("busy")
print("TRAINED-HERE", outcome.trials)
"""


@pytest.mark.slow
def test_four_workers_on_one_sqlite_file_never_show_a_locked_database(tmp_path):
    from test_loop import prep

    from autopeft.search.loop import open_study

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = Store(url)
    open_study(store, prep(budget="100%", trials=40, study="busy"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = FOUR_WORKERS.format(tests=str(REPO / "tests"), url=url)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "locked" not in (out + err).lower() and "Traceback" not in err, err[-3000:]
    records = store.trials("busy")
    assert 40 <= trained_count(records) <= 43 and all(r.status == "complete" for r in records)
    assert sum(int(out.rsplit("TRAINED-HERE", 1)[1]) for out, _ in outs) == len(records)


# --------------------------------------------------------------------------- structure
def test_the_loop_and_the_worker_do_not_import_each_other():
    def imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    search = REPO / "autopeft" / "search"
    assert not {m for m in imports(search / "loop.py") if m.endswith("worker")}
    assert not {m for m in imports(search / "worker.py") if m.endswith(".loop")}
    assert not {m for m in imports(search / "ledger" / "ledger.py") if m.endswith((".loop", ".worker", ".session"))}
    # No private store helpers borrowed, no storage swapped in from outside.
    for path in search.rglob("*.py"):
        text = path.read_text()
        assert "_optuna_storage" not in text and "_engine_kwargs" not in text and "_first_line" not in text, path


def test_the_heartbeat_thread_does_not_outlive_a_finished_search(tmp_path):
    from test_loop import ok_runner, prep

    from autopeft.search.loop import run_search

    run_search(prep(budget="100%", trials=2, study="threads"), Store(f"sqlite:///{tmp_path}/t.db"),
               runner=ok_runner([]), settings=FAST)
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-study 'threads'")]
