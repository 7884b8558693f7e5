"""A failed verification run says why: in the log of whoever ran it and in its stored record.

The trial process is faked (no training): the real ``train`` builds the config and the spec,
then a fake runner fails the way a trial reports it, or raises the way a bug escapes.
"""

from __future__ import annotations

import dataclasses
import logging
import types

import pytest

from autopeft.search.runs import run_pending
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets
from autopeft.store import Store
from autopeft.store.verifications import VerificationRecord, Verifications
from autopeft.trials.spec import TrialResult
from test_store_contract import study_record

SPACE = """
study: vlog
model: minilm-l6
task: {dataset: tweet-sentiment}
space:
  method: [lora]
  rank: [2]
  targets: [[query, value]]
  layers: [5]
  learning_rate: 1.0e-3
proxy: {train_examples: 32, eval_examples: 16, steps: 2, max_length: 16}
"""
PROTOCOL = {"steps": 2, "batch_size": 8, "train_examples": 32, "eval_examples": 16, "test_examples": 16}


@pytest.fixture(scope="module")
def prep():
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space_text

    prep = prepare_search(load_space_text(SPACE, "vlog.yaml"), with_data=False)
    return dataclasses.replace(prep, data=types.SimpleNamespace(num_labels=3, path="unused-by-the-fake-runner"))


@pytest.fixture
def runs(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/v.db")
    store.add_study(study_record("vlog"))
    runs = Verifications(store)
    cand = Candidate("lora", 2, 4.0, 0.0, Targets(("query", "value")), (5,), 1e-3, False, False).to_json()
    runs.add([VerificationRecord(study="vlog", subject="trial:0", trial_number=0, seed=0, protocol=PROTOCOL,
                                 candidate=cand)])
    yield runs
    store.close()


def test_a_run_the_trial_failed_logs_the_reason_it_reported(runs, prep, monkeypatch):
    reason = "non-finite loss at step 2 (nan)"
    monkeypatch.setattr("autopeft.trials.executor.run_isolated", lambda spec: TrialResult.failed(reason, [[1, 2.0]]))
    lines = []
    assert run_pending(runs, "vlog", prep, log=lines.append) == 1
    (row,) = runs.of("vlog")
    assert row.status == "failed" and row.error == reason
    assert lines[-1] == f"verify vlog: trial:0 seed 0 failed: {reason}"


def test_a_run_that_raised_keeps_its_traceback_in_the_log_and_the_record(runs, prep, monkeypatch, caplog):
    def broken_runner(spec):
        return {}["peak_rss_mb"]  # a bug between the queue and the trial process

    monkeypatch.setattr("autopeft.trials.executor.run_isolated", broken_runner)
    lines = []
    with caplog.at_level(logging.ERROR, logger="autopeft"):
        run_pending(runs, "vlog", prep, log=lines.append)
    (row,) = runs.of("vlog")
    assert row.status == "failed" and row.error == "KeyError: 'peak_rss_mb'"
    trace = row.extras["traceback"]
    assert trace.startswith("Traceback") and "broken_runner" in trace and "KeyError: 'peak_rss_mb'" in trace
    assert lines[-1] == "verify vlog: trial:0 seed 0 failed: KeyError: 'peak_rss_mb'"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "verification trial:0 seed 0 failed" in logged and "broken_runner" in logged


def test_a_retried_run_does_not_keep_the_last_attempt_s_traceback(runs, prep, monkeypatch):
    monkeypatch.setattr("autopeft.trials.executor.run_isolated", lambda spec: {}["boom"])
    run_pending(runs, "vlog", prep)
    runs.retry_failed("vlog")
    monkeypatch.setattr("autopeft.trials.executor.run_isolated", lambda spec: TrialResult.failed("out of memory"))
    run_pending(runs, "vlog", prep)
    (row,) = runs.of("vlog")
    assert row.error == "out of memory" and "traceback" not in row.extras
