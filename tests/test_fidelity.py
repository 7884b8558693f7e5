"""Multi-fidelity: successive halving by non-dominated sorting at each rung."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from autopeft.search.fidelity import promote
from autopeft.search.loop import run_search
from autopeft.search.analysis.pareto import pareto_front
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store, TrialRecord
from autopeft.trials.spec import TrialResult
from test_store_contract import CANDIDATE

OBJ = (("accuracy", "max"), ("trainable_params", "min"))
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at_rung(number, accuracy, params, step=10):
    return TrialRecord(study="s", number=number, status="pruned", candidate=CANDIDATE, params={}, started_at=NOW,
                       trainable_params=params, extras={"rungs": [[step, accuracy]]})


def test_promote_keeps_the_best_third_by_non_dominated_sorting():
    others = [at_rung(0, 0.60, 1000), at_rung(1, 0.50, 500), at_rung(2, 0.40, 2000), at_rung(3, 0.55, 3000),
              at_rung(4, 0.45, 400)]
    # Fronts: {0 (best acc), 4 (fewest params), 1 (0.50 @ 500)} then {3, 2}; n = 6 with the newcomer, keep 2.
    assert promote(others, OBJ, 9, 10, 0.70, 900, eta=3)          # dominates 0: front one, best metric
    assert not promote(others, OBJ, 9, 10, 0.30, 5000, eta=3)     # dominated by everything
    assert not promote(others, OBJ, 9, 10, 0.45, 450, eta=3)      # trial 4 dominates it (same accuracy, fewer params)
    assert promote([], OBJ, 9, 10, 0.10, 10**6, eta=3)            # alone at the rung: always goes on
    assert promote(others, OBJ, 9, 20, 0.30, 5000, eta=3)         # nobody else reached step 20


SPACE = """
study: mf
model: minilm-l6
task: {dataset: tweet-sentiment}
space: {method: [lora, ia3], rank: [2, 8], learning_rate: {log: [1.0e-4, 1.0e-2]}}
proxy: {train_examples: 40, eval_examples: 20, steps: 30, max_length: 16, rungs: [10, 20], eta: 2}
search: {sampler: tpe, trials: 8, startup_trials: 3, seed: 2}
"""


def test_stopped_trials_are_recorded_with_their_fidelity_and_kept_off_the_front(tmp_path):
    import optuna

    def runner(spec, on_rung=None):
        quality = 0.3 + 0.05 * (spec.trial % 5)  # a deterministic "learning curve" per trial
        for step in spec.proxy.rungs:
            if not on_rung(step, {"accuracy": quality * step / spec.proxy.steps}):
                return TrialResult(status="pruned", metrics={"accuracy": quality * step / spec.proxy.steps},
                                   trainable_params=None, extras={"fidelity": step})
        return TrialResult(status="complete", metrics={"accuracy": quality}, trainable_params=None,
                           train_time=1.0, peak_rss_mb=1.0)

    url = f"sqlite:///{tmp_path / 'mf.db'}"
    out = run_search(prepare_search(load_space_text(SPACE, "mf.yaml")), Store(url), runner=runner)
    pruned = [r for r in out.records if r.status == "pruned"]
    complete = [r for r in out.records if r.status == "complete"]
    assert pruned and complete and len(pruned) + len(complete) == 8
    assert all(r.extras["fidelity"] in (10, 20) and r.values is None for r in pruned)
    assert all([s for s, *_ in r.extras["rungs"]] == [10, 20] for r in complete)
    assert {r.number for r in pareto_front(out.records, out.study.objectives)} <= {r.number for r in complete}
    states = {t.number: t.state for t in optuna.load_study(study_name="mf", storage=url).trials}
    assert all(states[r.number] == optuna.trial.TrialState.PRUNED for r in pruned)


@pytest.mark.slow
@pytest.mark.parametrize("go_on", [False, True])
def test_the_trial_process_stops_at_a_rung_when_told(go_on):
    from autopeft.assets.architecture import inspect_model
    from autopeft.assets.datasets import prepare_data, resolve_dataset
    from autopeft.assets.models import resolve_model
    from autopeft.methods import BuildContext, get_method
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.spec import TrialSpec

    model = resolve_model(ModelSpec("minilm-l6"))
    proxy = ProxySpec(train_examples=32, eval_examples=16, max_length=16)
    data = prepare_data(model, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"), proxy)
    arch = inspect_model(model, data.num_labels)
    cand = Candidate("lora", 2, 4.0, 0.0, Targets(("query", "value")), (5,), 1e-3, False, False)
    m = get_method("lora")
    spec = TrialSpec(study="t", trial=0, method="lora", model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=m.config_json(m.build(cand, BuildContext(arch, 6))),
                     learning_rate=1e-3, proxy=ProxySpec(steps=6, batch_size=8, log_every=1, threads=1, rungs=(3,)))
    asked = []
    result = run_isolated(spec, on_rung=lambda step, metrics: asked.append((step, metrics)) or go_on)
    assert [step for step, _ in asked] == [3] and "accuracy" in asked[0][1]
    if go_on:
        assert result.status == "complete" and result.curve[-1][0] == 6
    else:
        assert result.status == "pruned" and result.extras["fidelity"] == 3
        assert result.metrics == asked[0][1] and result.curve[-1][0] == 3


def test_rungs_beyond_the_steps_are_an_error():
    from autopeft.errors import SpaceError

    with pytest.raises(SpaceError, match="proxy.rungs"):
        load_space_text(SPACE.replace("rungs: [10, 20]", "rungs: [10, 40]"), "mf.yaml")
    with pytest.raises(SpaceError, match="increasing"):
        load_space_text(SPACE.replace("rungs: [10, 20]", "rungs: [20, 10]"), "mf.yaml")
