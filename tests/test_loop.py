"""The search loop with a fake runner: failures are data, the budget gates training,
Ctrl-C loses nothing, and a study cannot silently change its space."""

from __future__ import annotations

import pytest

from autopeft.errors import StoreError
from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.trials.spec import TrialResult

SPACE = """
study: loop
model: minilm-l6
task: {dataset: tweet-sentiment}
budget: {max_trainable_params: %s}
space:
  method: [lora, ia3]
  rank: [2, 64]
  targets: [[query, value], all-linear]
  learning_rate: {log: [1.0e-4, 1.0e-2]}
proxy: {train_examples: 40, eval_examples: 20, steps: 3, max_length: 16}
search: {sampler: tpe, trials: %d, startup_trials: 2, seed: 1}
"""


def prep(budget="1%", trials=6, study="loop"):
    return prepare_search(load_space_text(SPACE % (budget, trials), "loop.yaml", [f"study={study}"]))


def ok_runner(calls):
    def run(spec):
        calls.append(spec)
        return TrialResult(status="complete", metrics={"accuracy": 0.5 + 0.01 * spec.trial}, curve=[[3, 1.0]],
                           trainable_params=None, train_time=0.1, wall_time=0.2, peak_rss_mb=100.0)
    return run


def test_failed_trials_are_recorded_with_their_reason_and_the_search_goes_on(tmp_path):
    calls = []

    def flaky(spec):
        calls.append(spec)
        if spec.trial % 2 == 0:
            return TrialResult.failed("out of memory: simulated", [[1, 2.0]])
        return ok_runner([])(spec)

    out = run_search(prep(budget="100%", trials=4), Store(f"sqlite:///{tmp_path}/a.db"), runner=flaky)
    statuses = [r.status for r in out.records]
    assert statuses.count("failed") >= 1 and statuses.count("complete") >= 1
    assert len(calls) == 4
    failed = [r for r in out.records if r.status == "failed"]
    assert all(r.error == "out of memory: simulated" and r.curve == [[1, 2.0]] for r in failed)


def test_over_budget_candidates_are_never_trained(tmp_path):
    calls = []
    # 20k parameters: lora at rank 64, or on all linear modules, is over budget; IA3 and small LoRA fit.
    out = run_search(prep(budget="20k", trials=5, study="budget"), Store(f"sqlite:///{tmp_path}/b.db"), runner=ok_runner(calls))
    infeasible = [r for r in out.records if r.status == "infeasible"]
    trained_numbers = {s.trial for s in calls}
    assert infeasible, "default LoRA (the first reference trial) alone is over 20k"
    assert all(r.number not in trained_numbers for r in infeasible)
    assert all(r.trainable_params > 20000 and "over budget" in r.error for r in infeasible)
    assert all(r.trainable_params <= 20000 for r in out.records if r.status == "complete")
    assert len(calls) == 5


def test_interrupt_records_the_running_trial_and_keeps_the_rest(tmp_path):
    calls = []
    inner = ok_runner(calls)

    def interrupting(spec):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return inner(spec)

    url = f"sqlite:///{tmp_path}/c.db"
    out = run_search(prep(budget="100%", trials=5, study="ctrlc"), Store(url), runner=interrupting)
    assert out.interrupted
    assert [r.status for r in out.records] == ["complete", "complete", "failed"]
    stopped = out.records[-1]
    # queued behind the trials the study enqueued when it was created (references, start-up)
    retry = stopped.extras["retried_as"]
    assert stopped.error == f"interrupted; retried as trial {retry}" and retry > stopped.number
    resumed = run_search(prep(budget="100%", trials=5, study="ctrlc"), Store(url), runner=ok_runner([]))
    # The stopped trial does not count; its point is trained on resume; nothing stored is lost.
    assert sum(r.status == "complete" for r in resumed.records) == 5
    again = next(r for r in resumed.records if r.number == retry)
    assert again.params == stopped.params and again.status == "complete"
    assert resumed.records[:3] == out.records


def test_a_study_cannot_be_resumed_with_a_different_space(tmp_path):
    url = f"sqlite:///{tmp_path}/d.db"
    run_search(prep(budget="100%", trials=1, study="same"), Store(url), runner=ok_runner([]))
    with pytest.raises(StoreError, match="different search space"):
        run_search(prep(budget="50%", trials=1, study="same"), Store(url), runner=ok_runner([]))


def test_submit_only_creates_the_study_without_training(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 's.db'}"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE % ("100%", 4))
    result = subprocess.run([sys.executable, "-c", "from autopeft.cli import run; run()", "search", str(space),
                             "--storage", url, "--submit-only"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "autopeft worker loop" in result.stdout
    store = Store(url)
    assert store.get_study("loop").trials_target == 4 and store.trials("loop") == []
