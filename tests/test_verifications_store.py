"""The verification rows on SQLite and PostgreSQL: created once, claimed by one process, resumable."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from autopeft.store import Store
from autopeft.store.verifications import VerificationRecord, Verifications
from test_store_contract import BACKENDS, CANDIDATE, backend_url, study_record

PROTOCOL = {"steps": 120, "batch_size": 16, "train_examples": 2000}


@pytest.fixture(params=BACKENDS)
def runs(request, tmp_path):
    with backend_url(request.param, tmp_path, "verify") as url:
        store = Store(url)
        store.add_study(study_record("s"))
        yield Verifications(store)
        store.close()


def job(subject: str, seed: int, protocol=PROTOCOL) -> VerificationRecord:
    number = int(subject.split(":")[1]) if subject.startswith("trial:") else None
    return VerificationRecord(study="s", subject=subject, seed=seed, protocol=protocol,
                              candidate=CANDIDATE, trial_number=number)


def test_creating_the_same_runs_twice_is_a_no_op(runs):
    jobs = [job("trial:3", s) for s in range(3)] + [job("baseline", 0)]
    assert runs.add(jobs) == 4
    assert runs.add(jobs) == 0
    assert runs.add([job("trial:3", 0, {**PROTOCOL, "steps": 240})]) == 1  # another protocol is another run
    assert [r.status for r in runs.of("s")] == ["pending"] * 5


def test_claims_go_oldest_first_and_never_twice(runs):
    runs.add([job(f"trial:{n}", 0) for n in range(6)])
    claimed, lock = [], threading.Lock()

    def claimer(name):
        while (r := runs.claim("s", name)) is not None:
            with lock:
                claimed.append(r.subject)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"trial:{n}" for n in range(6))  # each exactly once
    assert all(r.status == "running" and r.worker for r in runs.of("s"))


def test_a_finished_run_keeps_both_splits_and_a_dead_one_is_queued_again(runs):
    runs.add([job("trial:1", 0), job("trial:1", 1)])
    first = runs.claim("s", "me")
    runs.finish(dataclasses.replace(first, status="complete", metrics={"accuracy": 0.7}, test_metrics={"accuracy": 0.68},
                                    trainable_params=5000))
    runs.claim("s", "dies")  # its process is killed: the row stays running
    assert runs.requeue_stale("s", grace=3600) == 0  # not stale yet
    assert runs.requeue_stale("s", grace=-1) == 1
    done, again = runs.of("s")
    assert done.status == "complete" and done.test_metrics == {"accuracy": 0.68} and done.metrics == {"accuracy": 0.7}
    assert again.status == "pending" and again.worker is None
    failed = runs.claim("s", "me")
    runs.finish(dataclasses.replace(failed, status="failed", error="out of memory"))
    assert runs.retry_failed("s") == 1 and runs.of("s")[1].status == "pending"


def test_pending_studies_oldest_run_first_and_a_released_run_is_pending_again(runs):
    runs.store.add_study(study_record("t"))
    runs.add([dataclasses.replace(job("trial:1", 0), study="t")])
    runs.add([job("trial:2", 0)])
    assert runs.pending_studies() == ["t", "s"]  # t's run was queued first
    claimed = runs.claim("t", "w")
    assert runs.pending_studies() == ["s"]
    assert runs.release(claimed) and runs.get(claimed.id).status == "pending" and runs.get(claimed.id).worker is None
    assert not runs.release(claimed)  # only a running row goes back
    runs.claim("t", "dies")
    runs.claim("s", "dies")
    assert runs.requeue_stale(None, grace=-1) == 2  # None: every study's dead runs


def test_a_beating_run_is_never_requeued_and_a_silent_one_is(runs):
    """Stale means no heartbeat for the grace period, not a long run: a run that has trained
    for hours but beats stays claimed; one whose process died goes back within the grace."""
    import time

    runs.add([job("trial:1", 0), job("trial:2", 0)])
    alive, dead = runs.claim("s", "w1"), runs.claim("s", "w2")
    time.sleep(1.2)
    assert runs.beat(alive.id)
    assert runs.requeue_stale("s", grace=1.0) == 1
    assert runs.get(alive.id).status == "running" and runs.get(dead.id).status == "pending"
    assert not runs.beat(dead.id)  # a reaped run's late beat changes nothing


def test_claims_can_be_kept_to_one_protocol_or_away_from_it(runs):
    other = {**PROTOCOL, "steps": 240}
    runs.add([job("trial:1", 0), job("trial:1", 0, other), job("trial:2", 0)])
    key = job("trial:1", 0, other).protocol_key
    assert runs.claim("s", "w", besides=key).protocol == PROTOCOL
    assert runs.claim("s", "w", only=key).protocol == other
    assert runs.claim("s", "w", only=key) is None
    assert runs.count("s", key, ("running",)) == 1 and runs.count("s", key, ("pending",)) == 0
