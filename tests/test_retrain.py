"""``export --train --baseline`` trains default LoRA, whatever the chosen trial was."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import REPO

from autopeft.methods import BuildContext, get_method
from autopeft.space.default_lora import baseline_candidate
from autopeft.space.encoding import Candidate, Targets


@pytest.mark.parametrize("layers, ranks", [([0, 1, 2, 3, 4, 5], [4, 4, 2, 4, 8, 8]), ([4, 5], [2, 8])],
                         ids=["all layers", "two layers"])
def test_the_baseline_drops_the_chosen_trials_per_layer_ranks(model_info, layers, ranks):
    # A trial of a `rank: {per_layer: ...}` space (search_spaces/per-layer-rank.yaml).
    chosen = {"method": "lora", "rank": max(ranks), "alpha": 4.0, "dropout": 0.1, "targets": "all-linear",
              "layers": layers, "learning_rate": 3e-3, "dora": True, "rslora": True, "layer_ranks": ranks}
    base = baseline_candidate(Candidate.from_json(chosen), model_info)
    assert (base.method, base.rank, base.alpha, base.targets.modules) == ("lora", 8, 16.0, ("query", "value"))
    assert base.layers == tuple(range(model_info.num_layers)) and base.layer_ranks is None
    assert (base.dora, base.rslora, base.learning_rate) == (False, False, 3e-3)

    default = Candidate.from_json({"method": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.1,
                                   "targets": ["query", "value"], "layers": list(range(model_info.num_layers)),
                                   "learning_rate": 3e-3, "dora": False, "rslora": False})
    lora, ctx = get_method("lora"), BuildContext(model_info, 10)
    assert lora.config_json(lora.build(base, ctx)) == lora.config_json(lora.build(default, ctx))
    assert lora.count_trainable(base, ctx) == lora.count_trainable(default, ctx)


def _trial(number, method, lr, accuracy, status="complete"):
    from datetime import datetime, timezone

    from autopeft.store import TrialRecord

    candidate = {"method": method, "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"],
                 "layers": [5], "learning_rate": lr, "dora": False, "rslora": False}
    return TrialRecord(study="s", number=number, status=status, candidate=candidate, params={},
                       started_at=datetime.now(timezone.utc), metrics={"accuracy": accuracy} if accuracy else {})


def _report(name, method, values, params, diverged=None):
    from autopeft.retrain import ConfigReport, SeedRun

    runs = tuple(SeedRun(i, {"accuracy": v}, params, 1.0, diverged if i == 0 else None) for i, v in enumerate(values))
    candidate = Candidate("lora", 4, 8.0, 0.0, Targets(("query", "value")), (5,), 1e-3, False, False)
    return ConfigReport(name, dataclasses.replace(candidate, method=method), runs)


def test_a_diverged_baseline_is_never_shown_as_beaten():
    """The case seen on a new data set: default LoRA at a borrowed rate predicted one class in
    every seed (0.503 ± 0.000) and the card read as a 25-point win for the chosen IA3 point."""
    from autopeft.retrain import comparison
    from autopeft.search.protocol import RunProtocol

    p = RunProtocol(180, 16, 64, 2000, 400, (0, 1, 2), "accuracy")
    chosen = _report("chosen", "ia3", [0.75, 0.77, 0.76], 5_000)
    broken = _report("baseline", "lora", [0.503, 0.503, 0.503], 75_000, diverged="predicts a single class")
    line = comparison(chosen, broken, "accuracy", p)
    assert line.startswith("**Baseline diverged — not a comparison**") and "better" not in line
    healthy = _report("baseline", "lora", [0.76, 0.77, 0.765], 75_000)
    assert "within one sd" in comparison(chosen, healthy, "accuracy", p)
    assert "better than default LoRA" in comparison(_report("chosen", "ia3", [0.85, 0.86, 0.85], 5_000), healthy,
                                                     "accuracy", p)


def test_divergence_is_read_from_what_the_trial_reports():
    from autopeft.search.analysis.divergence import divergence
    from autopeft.store.trial_extras import Diagnostics

    assert divergence({"accuracy": 0.5}, Diagnostics(1, 0.5), []) == "predicts a single class"
    assert "majority class" in divergence({"accuracy": 0.40}, Diagnostics(3, 0.42), [])
    assert divergence({"accuracy": 0.66}, Diagnostics(3, 0.42), []) is None
    assert "did not fall" in divergence({"eval_loss": 3.0}, Diagnostics(), [[1, 2.0], [5, 2.4]])
    assert divergence({"eval_loss": 3.0}, Diagnostics(), [[1, 2.4], [5, 2.0]]) is None


@pytest.mark.slow
def test_the_baseline_sweeps_its_own_learning_rate_and_flags_the_rate_where_it_diverges():
    import dataclasses

    from autopeft.retrain import sweep_baseline
    from autopeft.search.protocol import RunProtocol
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    space = load_space(REPO / "search_spaces" / "quickstart.yaml",
                       ["proxy.train_examples=480", "proxy.eval_examples=90", "proxy.max_length=32"])
    prep = prepare_search(space)
    protocol = RunProtocol(60, 16, 32, prep.data.n_train, prep.data.n_eval, (0,), "accuracy")
    chosen = Candidate.from_json({"method": "ia3", "rank": 8, "alpha": 16.0, "dropout": 0.0,
                                  "targets": ["query", "key", "value"], "layers": [3, 4, 5], "learning_rate": 2e-2,
                                  "dora": False, "rslora": False})
    sweep = sweep_baseline(chosen, dataclasses.replace(prep), protocol, (3e-3, 1.0))
    (good_lr, good, good_why), (bad_lr, bad, bad_why) = sweep.rows
    assert bad_why is not None, f"LoRA at learning rate 1.0 should collapse; it scored {bad}"
    assert good_why is None and sweep.chosen == 3e-3
    assert "1: " in sweep.describe("accuracy") and "(diverged)" in sweep.describe("accuracy")


def test_export_train_builds_its_trials_with_the_search_s_builder_revision_included(tmp_path, monkeypatch):
    """``export --train`` on a model pinned to a revision must retrain that revision: its
    specs come from the same ``trial_spec`` as the search's (retrain.py used to re-type the
    fields by hand and dropped ``revision``)."""
    import dataclasses

    import autopeft.retrain as retrain
    from autopeft.search.prepare import prepare_search
    from autopeft.search.protocol import RunProtocol
    from autopeft.space import load_space
    from autopeft.trials.spec import TrialResult

    space = load_space(REPO / "search_spaces" / "quickstart.yaml",
                       ["proxy.train_examples=32", "proxy.eval_examples=16", "proxy.max_length=16"])
    prep = prepare_search(space)
    prep = dataclasses.replace(prep, model=dataclasses.replace(prep.model, revision="0123abcd"))
    cand = Candidate.from_json({"method": "lora", "rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["query"],
                                "layers": [5], "learning_rate": 1e-3, "dora": False, "rslora": False})
    seen = []

    def fake_run(spec, **_):  # the runner is not under test here: what it is given is
        seen.append(spec)
        return TrialResult(status="complete", metrics={"accuracy": 0.5}, trainable_params=10)

    monkeypatch.setattr("autopeft.trials.executor.run_isolated", fake_run)
    protocol = RunProtocol(7, 8, 16, 32, 16, (0, 1), "accuracy")
    retrain._train_all("chosen", cand, prep, protocol, tmp_path / "out", keep=False, on_progress=None)
    assert [s.revision for s in seen] == ["0123abcd", "0123abcd"]
    assert [(s.proxy.steps, s.proxy.seed) for s in seen] == [(7, 0), (7, 1)]
    assert all(s.proxy.batch_size == 8 and s.model == prep.model.location for s in seen)


def test_trial_spec_carries_the_proxy_nested_and_resolves_threads(monkeypatch):
    from autopeft.search.prepare import prepare_search, trial_spec
    from autopeft.space import load_space
    from autopeft.space.encoding import Candidate
    from autopeft.trials.spec import TrialSpec

    space = load_space(REPO / "search_spaces" / "quickstart.yaml",
                       ["proxy.train_examples=32", "proxy.eval_examples=16", "proxy.max_length=16",
                        "proxy.rungs=[5, 10]", "proxy.steps=30"])
    prep = prepare_search(space)
    cand = Candidate.from_json({"method": "ia3", "rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["query"],
                                "layers": [5], "learning_rate": 3e-3, "dora": False, "rslora": False})
    monkeypatch.setenv("AUTOPEFT_THREADS", "3")
    spec = trial_spec(prep, cand, {}, study="s", trial=4, steps=8)
    assert spec.proxy.steps == 8 and spec.proxy.rungs == (5,)  # rungs at or past the steps are dropped
    assert spec.proxy.threads == 3 and spec.learning_rate == 3e-3 and spec.data_path == prep.data.path
    assert TrialSpec.from_json(spec.to_json()) == spec
    monkeypatch.delenv("AUTOPEFT_THREADS")
    assert trial_spec(prep, cand, {}, study="s", trial=4).proxy.threads is None
    with pytest.raises(TypeError, match="stepz"):
        trial_spec(prep, cand, {}, study="s", trial=4, stepz=8)


def test_show_flags_a_collapsed_proxy_trial_as_diverged():
    from autopeft.cli.trial_table import note

    collapsed = _trial(3, "lora", 1e-2, 0.42)
    collapsed.extras.update({"predicted_classes": 1, "majority_rate": 0.42})
    assert note(collapsed) == "diverged: predicts a single class"
    healthy = _trial(4, "lora", 1e-3, 0.66)
    healthy.extras.update({"predicted_classes": 3, "majority_rate": 0.42})
    assert note(healthy) == ""


def test_a_sweep_picks_the_best_healthy_rate_and_a_diverged_one_only_when_all_diverged():
    from autopeft.space.default_lora import best_rate

    # the highest score diverged (a collapse can still score well on a skewed split): not picked
    assert best_rate([(1e-4, 0.60, None), (1e-3, 0.70, None), (1e-2, 0.80, "predicts a single class")],
                     maximise=True) == 1e-3
    assert best_rate([(1e-4, 0.40, "x"), (1e-3, 0.45, "y")], maximise=True) == 1e-3  # all diverged: the best of them
    assert best_rate([(1e-4, 2.0, None), (1e-3, 1.5, None)], maximise=False) == 1e-3  # a loss: lower is better
    assert best_rate([(3e-4, 0.7, None), (1e-3, 0.7, None)], maximise=True) == 3e-4  # ties: the first tried
