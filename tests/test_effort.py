"""A study's spending line: CPU seconds over the processes that trained, and near-duplicates
among the trials that were probes of their own (a re-queued trial's retry is the same point)."""

from __future__ import annotations

from datetime import timedelta

from autopeft.search.analysis.effort import effort
from autopeft.store import TrialRecord, utcnow
from autopeft.store.verifications import VerificationRecord

LORA = {"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"], "layers": [5],
        "learning_rate": 1e-3, "dora": False, "rslora": False}


def _trial(number, status="complete", lr=1e-3, cpu=10.0, **extras):
    return TrialRecord(study="e", number=number, status=status, candidate={**LORA, "learning_rate": lr}, params={},
                       started_at=utcnow() + timedelta(seconds=number),
                       resources={} if cpu is None else {"cpu_time": cpu}, extras=extras)


def test_cpu_seconds_count_every_process_once_and_near_duplicates_skip_retries():
    records = [
        _trial(0, lr=1e-3),
        _trial(1, "failed", lr=2e-3, cpu=5.0, retried_as=2),  # interrupted: its point queued again
        _trial(2, lr=2e-3),                                   # the retry: the same point, by design
        _trial(3, "pruned", lr=1.2e-3, cpu=None),             # a near-duplicate of 0, stored without CPU time
        _trial(4, "infeasible", lr=9e-3),                     # never trained
        _trial(5, "running", lr=1e-3),
    ]
    seed = dict(study="e", subject="trial:0", protocol={}, candidate=LORA, trial_number=0)
    runs = [VerificationRecord(**seed, seed=0, status="complete", extras={"trial_run": True}),  # the trial's own run
            VerificationRecord(**seed, seed=1, status="complete", extras={"cpu_time": 7.0}),
            VerificationRecord(**seed, seed=2, status="pending")]
    e = effort(records, runs)
    assert (e.trials, e.runs, e.cpu_seconds, e.unrecorded) == (4, 1, 10 + 5 + 10 + 7, 1)
    # 3 repeats 0 at x1.2; 2 is x2 from 0, and 3 is x1.67 from 2: not near
    assert e.near == (3,) and e.considered == 3
    line = e.describe(1.5)
    assert line.startswith("spent: 32 CPU-seconds in 4 trial(s) and 1 seed/verification run(s) (1 without a CPU time); ")
    assert line.endswith("near-duplicates: 1 of 3 trained trials repeat an earlier one's structure at a learning "
                         "rate within x1.5 of it (trials 3)")
