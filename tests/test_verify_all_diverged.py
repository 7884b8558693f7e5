"""``verify`` on a study whose every completed trial diverged.

A diverged trial is never on a front, so such a study has no point of its own to verify:
``verify`` says that every trial diverged (how many, the first reason, what to change) in one
line, exit 2. With ``--baseline`` and reference trials it verifies those and default LoRA at
the rate of its own sweep instead. Training is faked (``run_isolated``); the plan, the queue,
the sweep and the stored rows are real, on a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import types
from datetime import timedelta

import pytest

from autopeft.cli import main
from autopeft.search import verify
from autopeft.search.runs import run_pending
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets
from autopeft.store import Store, TrialRecord, utcnow
from autopeft.store.verifications import Verifications
from autopeft.trials.spec import TrialResult
from test_store_contract import study_record

SPACE = """
study: {study}
model: minilm-l6
task: {{dataset: tweet-sentiment}}
space:
  method: [lora, ia3]
  rank: [2, 8]
  targets: [[query, value]]
proxy: {{train_examples: 32, eval_examples: 16, steps: 2, max_length: 16}}
"""
COLLAPSED = {"predicted_classes": 1, "majority_rate": 0.45}
LAYERS = tuple(range(6))


def _trial(study, number, method, rank, params, role=None):
    start = utcnow() + timedelta(seconds=number)
    cand = Candidate(method, rank, 2.0 * rank, 0.0, Targets(("query", "value")), LAYERS, 1e-2, False, False)
    return TrialRecord(study=study, number=number, status="complete", candidate=cand.to_json(), params={},
                       started_at=start, finished_at=start + timedelta(seconds=1), trainable_params=params,
                       metrics={"accuracy": 0.45}, values=[0.45, float(params)], curve=[[1, 1.1], [2, 1.2]],
                       extras={**COLLAPSED, **({"baseline": role} if role else {})})


def _store(tmp_path, study, references: bool) -> str:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = Store(url)
    store.add_study(study_record(study, space_yaml=SPACE.format(study=study)))
    roles = ("default LoRA", "cheapest") if references else (None, None)
    for record in (_trial(study, 0, "lora", 8, 75_000, roles[0]), _trial(study, 1, "ia3", 0, 900, roles[1]),
                   _trial(study, 2, "lora", 2, 20_000)):
        store.save_trial(record)
    store.close()
    return url


@pytest.fixture(scope="module")
def prep():
    """The study's real preparation (model, methods), with the data faked: nothing trains."""
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space_text

    prep = prepare_search(load_space_text(SPACE.format(study="alldiv"), "alldiv.yaml"), with_data=False)
    data = types.SimpleNamespace(num_labels=3, path="unused-by-the-fake-runner", n_train=64, n_eval=16, n_test=30,
                                 test_source="carved")
    return dataclasses.replace(prep, data=data)


def fake_runner(calls):
    """A healthy run whose validation accuracy grows with the learning rate (the sweep picks the highest)."""
    def run(spec):
        calls.append(spec)
        accuracy = min(0.95, 0.6 + 10 * spec.learning_rate)
        return TrialResult(status="complete", metrics={"accuracy": accuracy}, test_metrics={"accuracy": accuracy - 0.01},
                           curve=[[1, 1.0], [2, 0.6]], trainable_params=75_000,
                           extras={"predicted_classes": 3, "majority_rate": 0.45})
    return run


def run(capsys, *args):
    code = main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_says_every_trial_diverged_in_one_line(tmp_path, capsys, monkeypatch):
    url = _store(tmp_path, "alldiv", references=True)
    calls = []
    monkeypatch.setattr("autopeft.trials.executor.run_isolated", fake_runner(calls))
    code, _, err = run(capsys, "verify", "alldiv", "--storage", url)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    line = lines[0]
    assert "every completed trial of study 'alldiv' diverged (3; trial 0: predicts a single class)" in line, line
    assert "no completed trial" not in line
    assert "learning rate" in line and "proxy.steps" in line and "--baseline" in line, line
    assert calls == [] and Verifications(Store(url)).of("alldiv") == []


def test_without_reference_trials_baseline_cannot_help_and_is_not_offered(tmp_path, capsys):
    url = _store(tmp_path, "alldiv", references=False)
    for args in ((), ("--baseline",)):
        code, _, err = run(capsys, "verify", "alldiv", "--storage", url, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "diverged (3;" in lines[0], err
        assert "--baseline" not in lines[0]


def test_with_baseline_the_reference_trials_and_default_lora_are_verified(tmp_path, prep, monkeypatch):
    url = _store(tmp_path, "alldiv", references=True)
    store = Store(url)
    before = [(r.number, r.status, r.metrics, r.values) for r in store.trials("alldiv")]
    calls = []
    monkeypatch.setattr("autopeft.trials.executor.run_isolated", fake_runner(calls))
    p, prep = verify.plan(store, "alldiv", seeds=2, steps=2, baseline=True, prep=prep)
    assert [r.number for r in p.trials] == [0, 1]  # the references; trial 2 diverged and is no reference
    runs = Verifications(store)
    runs.add(verify.jobs(p))
    lines = []
    runs.add(verify.baseline_jobs(p, prep, rates=(1e-4, 1e-3), log=lines.append, runs=runs))
    run_pending(runs, "alldiv", prep, log=lines.append)
    rows = runs.of("alldiv")
    assert all(r.status == "complete" for r in rows), [(r.subject, r.error) for r in rows]
    subjects = sorted(r.subject for r in rows)
    assert subjects == ["baseline", "baseline", "sweep:0.0001", "sweep:0.001", "trial:0", "trial:0", "trial:1",
                        "trial:1"], subjects
    assert {r.candidate.learning_rate for r in rows if r.subject == "baseline"} == {1e-3}  # the sweep's pick
    assert len(calls) == len(rows)
    # Verification never changes a trial's proxy record.
    assert [(r.number, r.status, r.metrics, r.values) for r in store.trials("alldiv")] == before
    store.close()
