"""``autopeft verify --enqueue-only`` queues verification runs and ``autopeft worker`` trains them.

A real tiny study (IA3 on the bundled MiniLM, 2 proxy steps), real verification runs of
2 steps each: what is under test is the queue — who claims what, what is recorded — not the
training, which test_verify covers.
"""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.cli import main
from autopeft.store import Store
from autopeft.store.verifications import Verifications
from test_store_contract import BACKENDS, backend_url
from test_workers import SPACE, finish, start_worker


def searched(url: str, study: str) -> list:
    """A study searched by 2 real 2-step trials; returns its trials' proxy results."""
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space_text

    store = Store(url)
    try:
        space = load_space_text(SPACE.format(study=study, trials=2, steps=2) + "verify: {test_examples: 60}\n")
        outcome = run_search(prepare_search(space), store)
        assert any(r.status == "complete" for r in outcome.records)
        return snapshot(store, study)
    finally:
        store.close()


def snapshot(store: Store, study: str) -> list:
    return [(r.number, r.status, r.metrics, r.values, r.finished_at) for r in store.trials(study)]


def enqueue(capsys, url: str, study: str, seeds: int) -> str:
    code = main(["verify", study, "--storage", url, "--top", "1", "--seeds", str(seeds), "--steps", "2",
                 "--enqueue-only"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def points(out: str) -> int:
    """How many points ``verify`` said it verifies (``verifying N point(s) of ...``)."""
    import re

    return int(re.search(r"verifying (\d+) point\(s\)", out)[1])


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with backend_url(request.param, tmp_path, "vworker") as u:
        yield u


@pytest.mark.slow
def test_a_worker_trains_the_queued_runs_and_records_a_broken_one_as_failed(url, capsys):
    from autopeft.search.worker import Worker

    before = searched(url, "vw")
    out = enqueue(capsys, url, "vw", seeds=1)
    n = points(out)  # the knee, and the study's reference trials (verify always includes them)
    assert f"queued: {n} run(s) pending" in out
    store = Store(url)
    runs = Verifications(store)
    assert [r.status for r in runs.of("vw")] == ["pending"] * n  # --enqueue-only trained nothing
    # A run that cannot even start (a method this autopeft does not have) is queued first: it
    # fails with its reason, and the worker goes on with the others.
    good = runs.of("vw")[0]
    broken = dataclasses.replace(good.candidate, method="no-such-method")
    runs.add([dataclasses.replace(good, subject="broken", seed=7, candidate=broken, trial_number=None)])

    lines = []
    outcome = Worker(store, poll=0.1, log=lines.append).serve_all(poll=0.1, exit_when_idle=True)
    assert outcome.verified == n + 1 and outcome.trials == 0 and outcome.studies == ("vw",), lines
    by_subject = {(r.subject, r.seed): r for r in runs.of("vw")}
    broken = by_subject.pop(("broken", 7))
    assert broken.status == "failed" and broken.error, broken
    for r in by_subject.values():
        assert r.status == "complete", r.error
        assert 0 <= r.test_metrics["accuracy"] <= 1 and r.protocol["steps"] == 2 and r.worker
    assert snapshot(store, "vw") == before  # the study's trials are untouched
    # Nothing left: a second worker (serving the study or every study) trains nothing.
    assert Worker(store, poll=0.1, log=lines.append).run_study("vw").verified == 0
    assert Worker(store, poll=0.1, log=lines.append).serve_all(poll=0.1, exit_when_idle=True).verified == 0
    store.close()
    # What the workers verified shows up in `show` and in a rerun of `verify --enqueue-only`.
    assert main(["show", "vw", "--storage", url]) == 0
    assert "verified test" in capsys.readouterr().out
    out = enqueue(capsys, url, "vw", seeds=1)
    assert "verified at full fidelity" in out and "(0 new run(s))" in out


@pytest.mark.slow
def test_two_worker_processes_share_the_queue_and_train_each_run_once(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/two.db"
    before = searched(url, "vw2")
    n = points(enqueue(capsys, url, "vw2", seeds=2)) * 2
    procs = [start_worker(url, tmp_path, str(i), "--exit-when-idle", "--poll", "0.2") for i in range(2)]
    said = 0
    for proc, log in procs:
        code, text = finish(proc, log)
        assert code == 0, text
        said += int(text.rsplit("; ", 1)[1].split(" ", 1)[0])  # "...; N verification run(s)"
    store = Store(url)
    rows = Verifications(store).of("vw2")
    assert len(rows) == n >= 2 and all(r.status == "complete" for r in rows), [(r.status, r.error) for r in rows]
    assert said == n  # each run trained by exactly one worker: none twice, none lost
    assert snapshot(store, "vw2") == before
    store.close()


def test_run_one_records_an_exception_as_failed_and_puts_an_interrupted_run_back(tmp_path, monkeypatch):
    import autopeft.search.runs as runs_mod
    from test_store_contract import study_record
    from test_verifications_store import job

    store = Store(f"sqlite:///{tmp_path}/one.db")
    store.add_study(study_record("s"))
    runs = Verifications(store)
    runs.add([job("trial:1", 0), job("trial:1", 1)])

    def boom(record, prep, runner=None):
        raise RuntimeError("CUDA error: device-side assert\nmore lines")

    monkeypatch.setattr(runs_mod, "train", boom)
    done = runs_mod.run_one(runs, runs.claim("s", "w"), prep=None)
    assert done.status == "failed" and runs.get(done.id).error == "RuntimeError: CUDA error: device-side assert"

    def stopped(record, prep, runner=None):
        raise KeyboardInterrupt  # SIGTERM to a worker mid-run

    monkeypatch.setattr(runs_mod, "train", stopped)
    claimed = runs.claim("s", "w")
    with pytest.raises(KeyboardInterrupt):
        runs_mod.run_one(runs, claimed, prep=None)
    assert runs.get(claimed.id).status == "pending"  # any worker may train it again, now
    store.close()
