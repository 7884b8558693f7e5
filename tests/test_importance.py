"""Importance that drives the search: SPT placement, AdaLoRA's learned ranks, one map type."""

from __future__ import annotations

import pytest

from autopeft.importance import ImportanceMap
from autopeft.search.loop import run_search, study_importance
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store

MODULES = ("attention.self.query", "attention.self.value")


def test_map_built_from_module_names_puts_each_score_in_its_cell():
    imap = ImportanceMap.from_named(
        "adalora",
        {"bert.encoder.layer.1.attention.self.value.lora_E.default": 3, "bert.encoder.layer.0.attention.self.query.lora_E.default": 1,
         "bert.pooler.dense": 99},
        "bert.encoder.layer", 3, MODULES,
    )
    assert imap.scores == ((1.0, None), (None, 3.0), (None, None))
    assert imap.layer_order() == (1, 0, 2)  # 3 > 1 > 0; the unmeasured layer last
    assert ImportanceMap.from_json(imap.to_json()) == imap
    with pytest.raises(ValueError):
        ImportanceMap("spt", MODULES, ((1.0,),))


SPACE = """
study: spt
model: minilm-l6
task: {dataset: tweet-sentiment}
importance: spt
space: {method: [lora, adalora], rank: [4, 8], layers: {top_k: [1, 3], by: importance}}
proxy: {train_examples: 96, eval_examples: 32, steps: 6, batch_size: 8, max_length: 32, log_every: 2}
search: {sampler: random, trials: 3, seed: 3}
"""


@pytest.fixture(scope="module")
def spt_study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('spt') / 's.db'}"
    prep = prepare_search(load_space_text(SPACE, "spt.yaml"))
    return url, prep, run_search(prep, Store(url))


@pytest.mark.slow
def test_spt_is_computed_once_stored_and_drives_top_k_placement(spt_study, monkeypatch):
    url, prep, outcome = spt_study
    store = Store(url)
    study = store.get_study("spt")
    imap = ImportanceMap.from_json(study.importance)
    assert imap.kind == "spt" and imap.num_layers == prep.arch.num_layers
    assert all(v is not None and v >= 0 for row in imap.scores for v in row)
    order = imap.layer_order()
    for r in outcome.records:
        k = len(r.candidate.layers)
        assert sorted(r.candidate.layers) == sorted(order[:k])  # the k most sensitive layers

    import autopeft.trials.importance

    def boom(*a, **k):
        raise AssertionError("SPT must not run again for a study that has its map")

    monkeypatch.setattr(autopeft.trials.importance, "spt_sensitivity", boom)
    assert study_importance(store, study, prep) == imap


@pytest.mark.slow
def test_adalora_trials_record_their_rank_allocation_and_export_as_lora(spt_study, tmp_path):
    url, prep, outcome = spt_study
    adalora = [r for r in outcome.records if r.candidate.method == "adalora" and r.status == "complete"]
    if not adalora:  # the seed decides the methods; make one for sure
        more = run_search(prep, Store(url), trials=len(outcome.records) + 4)
        adalora = [r for r in more.records if r.candidate.method == "adalora" and r.status == "complete"]
    record = adalora[0]
    imap = ImportanceMap.from_json(record.extras["importance"])
    assert imap.kind == "adalora"
    measured = {(i, m) for i, row in enumerate(imap.scores) for m, v in zip(imap.modules, row) if v is not None}
    assert {i for i, _ in measured} == set(record.candidate.layers)

    from autopeft.cli import main

    out = tmp_path / "as-lora"
    assert main(["export", "spt", "--storage", url, "--trial", str(record.number), "--as", "lora", "--out", str(out)]) == 0
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(out))
    assert config.peft_type.value == "LORA"
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(prep.model.location, num_labels=3), config)
    ranks = {name.rsplit(".lora_A", 1)[0]: p.shape[0] for name, p in model.named_parameters() if ".lora_A." in name}
    expected = {k.rsplit(".lora_E", 1)[0]: v for k, v in record.extras["rank_allocation"].items() if v > 0}
    assert {k.split("base_model.model.", 1)[1]: v for k, v in ranks.items()} == expected


TARGETS_BY_IMPORTANCE = """
study: tk
model: minilm-l6
task: {dataset: tweet-sentiment}
importance: spt
budget: {max_trainable_params: 1%}
space: {method: lora, rank: [4, 8], targets: {top_k: [1, 3], by: importance}}
"""


def test_targets_by_importance_are_one_integer_over_the_modules_ranked_by_the_map(model_info):
    prep = prepare_search(load_space_text(TARGETS_BY_IMPORTANCE, "tk.yaml"), with_data=False)
    assert "targets_top_k" in prep.encoding.distributions and "targets" not in prep.encoding.distributions
    modules = tuple(s.name for s in prep.arch.linears)
    # value most important, then query; the rest far behind
    scores = {"attention.self.value": 3.0, "attention.self.query": 2.0}
    imap = ImportanceMap("spt", modules, tuple(tuple(scores.get(m, 0.1) for m in modules) for _ in range(6)))
    # (no learning_rate in the space: the built-in band per method, one offset dimension)
    cand = prep.with_importance(imap).encoding.decode({"rank": 0, "targets_top_k": 2, "learning_rate_offset": 0.5})
    assert cand.targets.modules == ("attention.self.value", "attention.self.query")
    # The parameter range covers the smallest single module and the three largest.
    sizes = sorted(s.in_features + s.out_features for s in prep.arch.linears)
    assert prep.params.low == 4 * sizes[0] * 6 + prep.arch.head_params
    assert prep.params.high == 8 * sum(sizes[-3:]) * 6 + prep.arch.head_params


def test_targets_by_importance_need_an_importance_pass():
    from autopeft.errors import SpaceError

    with pytest.raises(SpaceError, match=r"space\.targets\.by"):
        load_space_text(TARGETS_BY_IMPORTANCE.replace("importance: spt\n", ""), "tk.yaml")
