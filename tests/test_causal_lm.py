"""Causal-LM tasks, end to end, on a tiny *randomly initialised* GPT-2-style model.

There is no pretrained decoder on this machine (no hub access), so the model is built from
a config in the test: 2 layers, width 32, the bundled MiniLM tokenizer's vocabulary. The
numbers mean nothing; what is tested is that the decoder path is real: peft configs for a
CAUSAL_LM model with Conv1D projections, prompt-masked labels, loss/perplexity objectives
minimised, counts equal to peft's, export that loads with AutoModelForCausalLM.
"""

from __future__ import annotations

import math

import pytest

from autopeft.search.loop import run_search
from autopeft.search.analysis.pareto import diverged, pareto_front
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store


def space_yaml(root) -> str:
    return f"""
study: lm
model: {root / 'model'}
task: {{type: causal_lm, dataset: {root / 'data.jsonl'}, text: [prompt, completion], metric: eval_loss}}
objectives: {{eval_loss: min, trainable_params: min}}
space:
  method: [lora, ia3]
  rank: [2, 4]
  targets: [[c_attn], all-linear]
  layers: {{top_k: [1, 2]}}
  learning_rate: {{log: [2.0e-2, 5.0e-2]}}   # a random 32-wide model: brisk rates, or its loss never falls
proxy: {{train_examples: 64, eval_examples: 32, steps: 16, batch_size: 8, max_length: 24, log_every: 4}}
search: {{sampler: random, trials: 3, seed: 1}}
"""


@pytest.mark.slow
def test_tiny_random_gpt2_search_minimises_loss_and_exports_a_loadable_lm_adapter(tiny_random_gpt2, tmp_path):
    root = tiny_random_gpt2
    prep = prepare_search(load_space_text(space_yaml(root), "lm.yaml"))
    assert prep.arch.task == "causal_lm" and prep.arch.head_params == 0
    assert prep.arch.layers_path == "transformer.h" and prep.arch.num_layers == 2
    url = f"sqlite:///{tmp_path / 'lm.db'}"
    outcome = run_search(prep, Store(url))
    done = [r for r in outcome.records if r.status == "complete"]
    assert len(done) == 3, [r.error for r in outcome.records]
    for r in done:
        assert math.isfinite(r.metrics["eval_loss"]) and r.metrics["perplexity"] == pytest.approx(math.exp(r.metrics["eval_loss"]))
    front = pareto_front(outcome.records, outcome.study.objectives)
    healthy = [r for r in done if diverged(r) is None]
    assert healthy, [diverged(r) for r in done]
    lowest = min(healthy, key=lambda r: r.metrics["eval_loss"])
    assert lowest in front  # eval_loss is minimised: the lowest loss of a run that learned is Pareto-optimal
    assert not [r for r in front if diverged(r)]  # a run whose loss did not fall never is

    from autopeft.cli import main

    out = tmp_path / "adapter"
    assert main(["export", "lm", "--storage", url, "--trial", str(lowest.number), "--out", str(out)]) == 0
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = PeftConfig.from_pretrained(str(out))
    assert config.task_type == "CAUSAL_LM"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(root / "model")), config)
    assert model.get_nb_trainable_parameters()[0] == lowest.trainable_params


def test_prompt_tokens_are_not_targets(tiny_random_gpt2):
    from autopeft.assets.datasets import load_tokenizer
    from autopeft.assets.instruct import pack, render
    from autopeft.assets.models import resolve_model
    from autopeft.space.schema import ModelSpec

    tokenizer = load_tokenizer(resolve_model(ModelSpec(str(tiny_random_gpt2 / "model"))))
    ids, mask, labels, prompt_len, kept = pack(render(tokenizer, "plain", ["the film was"], [" good"]), 16, 0)
    n_prompt = len(tokenizer("the film was")["input_ids"])
    assert kept == [0] and prompt_len[0] == n_prompt
    n_total = int(mask[0].sum())
    assert (labels[0, :n_prompt] == -100).all()
    assert (labels[0, n_prompt:n_total] == ids[0, n_prompt:n_total]).all()
    assert (labels[0, n_total:] == -100).all()


def test_a_classification_metric_on_an_lm_task_names_the_key(tiny_random_gpt2):
    from autopeft.errors import SpaceError

    bad = space_yaml(tiny_random_gpt2).replace("metric: eval_loss", "metric: accuracy")
    with pytest.raises(SpaceError, match=r"task\.metric.*eval_loss"):
        load_space_text(bad, "lm.yaml")


@pytest.mark.parametrize("method", ["lora", "ia3", "adalora", "loha", "lokr", "vera", "prefix", "bottleneck"])
def test_analytic_counts_equal_peft_on_the_tiny_random_gpt2(tiny_random_gpt2, method):
    from transformers import AutoModelForCausalLM

    from autopeft.assets.architecture import inspect_model
    from autopeft.assets.models import resolve_model
    from autopeft.methods import BuildContext, get_method, method_names
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import ModelSpec, Targets

    if method not in method_names():
        pytest.skip(f"{method} is not registered")
    ref = resolve_model(ModelSpec(str(tiny_random_gpt2 / "model")))
    arch = inspect_model(ref, 0, "causal_lm")
    m = get_method(method)
    cand = Candidate(method, 2, 4.0, 0.0, Targets(()), (1,), 1e-3, False, False)
    if method in ("loha", "lokr"):  # peft adapts nn.Linear only there; GPT-2 projections are Conv1D
        from autopeft.errors import MethodError

        with pytest.raises(MethodError, match="Conv1D"):
            m.build(cand, BuildContext(arch, 10))
        return
    model = m.wrap(AutoModelForCausalLM.from_pretrained(ref.location), m.config_json(m.build(cand, BuildContext(arch, 10))))
    assert m.count_trainable(cand, BuildContext(arch, 10)) == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_a_choice_scored_trial_records_what_divergence_needs(tiny_random_gpt2, tmp_path):
    """A real choice-accuracy trial reports how many answers it gives and the most frequent
    answer's rate, so a run that answers one thing is judged diverged, not Pareto-optimal."""
    from autopeft.search.analysis.divergence import divergence

    yaml = space_yaml(tiny_random_gpt2).replace("metric: eval_loss", "metric: choice_accuracy").replace(
        "eval_loss: min", "choice_accuracy: max").replace("trials: 3", "trials: 1")
    outcome = run_search(prepare_search(load_space_text(yaml, "lm.yaml")), Store(f"sqlite:///{tmp_path / 'c.db'}"))
    (record,) = [r for r in outcome.records if r.status == "complete"]
    assert record.extras["predicted_classes"] in (1, 2) and 0.5 <= record.extras["majority_rate"] <= 1.0
    why = divergence(record.metrics, record.diagnostics, record.curve)
    if record.extras["predicted_classes"] == 1:
        assert why == "predicts a single answer"


def test_the_lm_loss_is_the_models_own_token_weighted_loss_with_a_standard_error(tiny_random_gpt2):
    import torch
    from transformers import AutoModelForCausalLM

    from autopeft.trials.evaluation import evaluate

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_random_gpt2 / "model")).eval()
    ids = torch.randint(5, 200, (6, 12))
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt that is not a target
    labels[0, 8:] = -100  # and an example with fewer target tokens than the others
    mask = torch.ones_like(ids)
    with torch.no_grad():  # the model's own loss over the whole split in one batch: a mean over target tokens
        own = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    got = evaluate(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, 0, batch_size=4)
    assert got["eval_loss"] == pytest.approx(own, rel=1e-5)
    assert got["eval_examples"] == 6 and got["eval_loss_se"] > 0
    assert got["perplexity"] == pytest.approx(math.exp(own), rel=1e-5)
