"""Trial writes retried after a lost answer: the commit went through, then the connection failed.

A claim retried after its own insert committed must still be the claim (not "taken by
another process", which would abandon the trial); a save retried likewise writes the same row.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError

from autopeft.candidate import Candidate
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.ledger.ledger import Ledger
from autopeft.store import Store
from test_store_contract import CANDIDATE, study_record, trial_record

FAST = LedgerSettings(heartbeat=1, grace=2, retries=2)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/store.db")
    s.add_study(study_record("s1", trials_target=4))
    yield s
    s.close()


def drop_after_next_commit(monkeypatch, store: Store) -> list:
    """The next transaction commits, then its connection fails as a dropped one does."""
    begin, dropped = store._begin, []

    @contextmanager
    def committed_then_dropped():
        with begin() as c:
            yield c
        if not dropped:
            dropped.append(True)
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("server closed the connection unexpectedly"))

    monkeypatch.setattr(store, "_begin", lambda: committed_then_dropped() if not dropped else begin())
    return dropped


def test_a_claim_whose_commit_lost_its_answer_is_still_the_claim(store, monkeypatch):
    dropped = drop_after_next_commit(monkeypatch, store)
    record = trial_record(sampler_time=0.25)
    assert store.claim_trial(record) is True
    assert dropped and store.trial("s1", 0) == record


def test_another_process_claim_of_the_same_trial_is_still_refused(store):
    mine = trial_record(sampler_time=0.25)
    theirs = dataclasses.replace(mine, started_at=mine.started_at + timedelta(microseconds=1), sampler_time=0.3)
    assert store.claim_trial(mine) is True
    assert store.claim_trial(theirs) is False
    assert store.trial("s1", 0) == mine


def test_the_ledger_keeps_a_trial_whose_claim_was_retried(store, monkeypatch):
    ledger = Ledger(store, store.get_study("s1"), settings=FAST)
    try:
        dropped = drop_after_next_commit(monkeypatch, store)
        ticket = ledger.ask(lambda trial: Candidate.from_json({**CANDIDATE, "rank": trial.suggest_int("x", 0, 9)}))
        assert dropped
        assert ticket.number == 0  # trained here, not abandoned for another trial
        assert ledger._beats[0]._thread.is_alive()
        assert [r.number for r in store.trials("s1")] == [0]
    finally:
        for beat in list(ledger._beats.values()):
            beat.stop()


def test_a_save_whose_commit_lost_its_answer_is_retried(store, monkeypatch):
    record = trial_record()
    store.save_trial(record)
    dropped = drop_after_next_commit(monkeypatch, store)
    done = dataclasses.replace(record, status="complete", metrics={"accuracy": 0.5}, values=[0.5, 10.0])
    store.save_trial(done)
    assert dropped and store.trial("s1", 0) == done
