"""``export --train --baseline`` trains default LoRA, whatever the chosen trial was."""

from __future__ import annotations

import pytest

from conftest import REPO

from autopeft.methods import BuildContext, get_method
from autopeft.retrain import baseline_candidate
from autopeft.space.encoding import Candidate


@pytest.mark.parametrize("layers, ranks", [([0, 1, 2, 3, 4, 5], [4, 4, 2, 4, 8, 8]), ([4, 5], [2, 8])],
                         ids=["all layers", "two layers"])
def test_the_baseline_drops_the_chosen_trials_per_layer_ranks(model_info, layers, ranks):
    # A trial of a `rank: {per_layer: ...}` space (search_spaces/per-layer-rank.yaml).
    chosen = {"method": "lora", "rank": max(ranks), "alpha": 4.0, "dropout": 0.1, "targets": "all-linear",
              "layers": layers, "learning_rate": 3e-3, "dora": True, "rslora": True, "layer_ranks": ranks}
    base = baseline_candidate(chosen, model_info)
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


def test_the_baseline_learning_rate_is_a_lora_rate_not_the_chosen_ia3_trials():
    from autopeft.retrain import baseline_learning_rate

    ia3 = _trial(4, "ia3", 2e-2, 0.89)
    records = [_trial(0, "lora", 1e-3, 0.80), ia3, _trial(2, "lora", 5e-3, 0.93), _trial(3, "lora", 9e-3, 0.93),
               _trial(5, "lora", 3e-3, None, status="failed"), _trial(6, "adalora", 7e-3, 0.95)]
    lr, why = baseline_learning_rate(ia3, records, "accuracy")
    assert lr == 5e-3 and "trial 2" in why  # the best complete LoRA trial; ties to the lower number

    chosen_lora = records[3]
    assert baseline_learning_rate(chosen_lora, records, "accuracy")[0] == 9e-3  # a LoRA pick keeps its own rate
    lr, why = baseline_learning_rate(ia3, [ia3, records[-1]], "accuracy")
    assert lr == 2e-2 and "no complete LoRA trial" in why
    # A minimised metric picks the lowest.
    lm = [_trial(0, "lora", 1e-3, None), _trial(1, "lora", 4e-3, None)]
    lm[0].metrics["eval_loss"], lm[1].metrics["eval_loss"] = 2.5, 2.1
    assert baseline_learning_rate(ia3, lm, "eval_loss")[0] == 4e-3


def test_export_train_builds_its_trials_with_the_search_s_builder_revision_included(tmp_path, monkeypatch):
    """``export --train`` on a model pinned to a revision must retrain that revision: its
    specs come from the same ``trial_spec`` as the search's (retrain.py used to re-type the
    fields by hand and dropped ``revision``)."""
    import dataclasses

    import autopeft.retrain as retrain
    from autopeft.search.prepare import prepare_search
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
    protocol = retrain.Protocol(7, 8, 16, 32, 16, (0, 1), "accuracy")
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
