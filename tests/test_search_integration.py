"""The walking skeleton end to end: YAML -> BoTorch -> real proxy trials -> SQLite -> peft export.

Real model, real peft, real data, real database; tiny proxies so it runs in about a minute.
"""

from __future__ import annotations

import json

import pytest

from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.search.sampling.samplers import make_sampler
from autopeft.space import load_space_text
from autopeft.store import Store

TINY = """
study: tiny
model: minilm-l6
task: {dataset: bbc-news, metric: accuracy}
objectives: {accuracy: max, trainable_params: min}
budget: {max_trainable_params: 1%}
space:
  method: [lora, ia3, adalora]
  rank: [2, 4, 8]
  targets: [[query, value], all-linear]
  layers: {top_k: [1, 6]}
  learning_rate: {log: [5.0e-4, 5.0e-3]}
proxy: {train_examples: 160, eval_examples: 64, steps: 10, batch_size: 16, max_length: 32, log_every: 5}
search: {sampler: botorch, trials: 4, startup_trials: 1, seed: 0}
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real 4-trial BoTorch search (2 reference trials, 1 random start-up trial, then one BO proposal)."""
    root = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{root / 'study.db'}"
    prep = prepare_search(load_space_text(TINY, "tiny.yaml"))
    sampler = make_sampler(prep.space.search, prep.encoding)
    outcome = run_search(prep, Store(url), sampler=sampler)
    return url, prep, outcome, sampler


@pytest.mark.slow
def test_search_records_every_trial_in_both_ledgers(searched):
    url, prep, outcome, sampler = searched
    trained = [r for r in outcome.records if r.status in ("complete", "failed")]
    assert len(trained) == 4
    assert not outcome.interrupted
    import math

    import optuna

    from autopeft.search.scales import scaled

    ostudy = optuna.load_study(study_name="tiny", storage=url)
    by_number = {t.number: t for t in ostudy.trials}
    for r in outcome.records:
        assert r.number in by_number
        if r.status == "complete":
            assert 0.0 <= r.metrics["accuracy"] <= 1.0
            # optuna holds what the sampler was told: trainable parameters on log10 (autopeft.search.scales)
            assert scaled(outcome.study.objectives, r.values) == pytest.approx(list(by_number[r.number].values))
            assert r.values[1] == r.trainable_params
            assert by_number[r.number].values[1] == pytest.approx(math.log10(r.trainable_params))
            assert r.resources.eval_time > 0 and r.resources.setup_time > 0
            assert r.curve and r.curve[-1][0] == prep.space.proxy.steps
            assert r.resources.train_time > 0 and r.resources.peak_rss_mb > 0
            assert r.trainable_params <= prep.budget_limit
    # The first two trials are the study's references (default LoRA as the space has it:
    # r=8 on query/value of every layer at 1e-3; then the cheapest point), the third its random
    # start-up trial; the fourth came from BoTorch's model.
    roles = {r.number: r.extras.get("baseline") for r in outcome.records}
    assert (roles[0], roles[1], roles[2], roles[3]) == ("default LoRA", "cheapest", None, None)
    default = next(r for r in outcome.records if r.number == 0).candidate
    assert (default.method, default.rank, default.targets.modules, default.layers, default.learning_rate) \
        == ("lora", 8, ("query", "value"), (0, 1, 2, 3, 4, 5), 1e-3)
    assert sampler.origins == {3: "model"}
    assert outcome.records[-1].sampler_time > 0


@pytest.mark.slow
def test_export_loads_in_peft_with_the_trial_trainable_count(searched, tmp_path):
    url, prep, outcome, _ = searched
    from autopeft.cli import main

    out = tmp_path / "adapter"
    assert main(["export", "tiny", "--storage", url, "--pick", "knee", "--out", str(out)]) == 0
    provenance = json.loads((out / "autopeft.json").read_text())
    record = next(r for r in outcome.records if r.number == provenance["trial"])

    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(out))
    base = AutoModelForSequenceClassification.from_pretrained(prep.model.location, num_labels=prep.data.num_labels)
    model = get_peft_model(base, config)
    assert model.get_nb_trainable_parameters()[0] == record.trainable_params
    assert provenance["metrics"]["accuracy"] == record.metrics["accuracy"]


@pytest.mark.slow
def test_rerunning_resumes_the_study_and_keeps_what_is_stored(searched):
    url, prep, outcome, _ = searched
    before = {r.number: r for r in outcome.records}
    again = run_search(prep, Store(url), trials=5)
    trained = [r for r in again.records if r.status in ("complete", "failed")]
    assert len(trained) == 5
    for r in again.records:
        if r.number in before:
            assert r == before[r.number]


@pytest.mark.slow
def test_export_train_saves_the_best_seed_whose_weights_reproduce_its_metric(searched, tmp_path):
    url, prep, outcome, _ = searched
    from autopeft.cli import main

    out = tmp_path / "trained"
    args = ["export", "tiny", "--storage", url, "--pick", "best:accuracy", "--out", str(out),
            "--train", "--seeds", "2", "--steps", "4", "--train-examples", "48", "--baseline"]
    assert main(args) == 0
    card = (out / "README.md").read_text()
    # "| chosen |", or "| chosen **diverged** |" when a seed collapsed (4 steps on 48 rows)
    assert "| chosen " in card and "| baseline " in card and "± " in card
    assert (out / "adapter_model.safetensors").exists()

    # The saved adapter is the best seed's: evaluating it gives that seed's accuracy again.
    import dataclasses

    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from autopeft.assets.datasets import prepare_data
    from autopeft.trials.data import load_split
    from autopeft.trials.evaluation import evaluate

    proxy = dataclasses.replace(prep.space.proxy, train_examples=48)
    # The same three-way split export --train used (its test split carved out first).
    data = prepare_data(prep.model, prep.dataset, prep.space.task, proxy, prep.space.verify.test_examples,
                        prep.space.verify.max_test_examples)
    base = AutoModelForSequenceClassification.from_pretrained(prep.model.location, num_labels=data.num_labels)
    model = PeftModel.from_pretrained(base, str(out))
    with torch.no_grad():
        accuracy = evaluate(model, load_split(data.path)["eval"], data.num_labels)["accuracy"]
    chosen_row = next(line for line in card.splitlines() if line.startswith("| chosen "))
    per_seed = [float(v) for v in chosen_row.rstrip(" |").split("|")[-1].split(",")]
    assert accuracy == pytest.approx(max(per_seed), abs=1e-4)
