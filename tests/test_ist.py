"""IST: only the sampled layers train each step; probes learn a layer-importance vector."""

from __future__ import annotations


import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.importance import ImportanceMap
from autopeft.methods import BuildContext, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import IstSpec, ModelSpec, ProxySpec, TaskSpec, Targets
from autopeft.trials.executor import run_isolated
from autopeft.trials.spec import TrialSpec


@pytest.fixture(scope="module")
def spec():
    model = resolve_model(ModelSpec("minilm-l6"))
    proxy = ProxySpec(train_examples=64, eval_examples=24, max_length=24)
    data = prepare_data(model, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"), proxy)
    arch = inspect_model(model, data.num_labels)
    cand = Candidate("lora", 4, 8.0, 0.0, Targets(("query", "value")), tuple(range(6)), 2e-3, False, False)
    m = get_method("lora")
    return TrialSpec(study="t", trial=0, method="lora", model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=m.config_json(m.build(cand, BuildContext(arch, 8))),
                     learning_rate=2e-3, proxy=ProxySpec(steps=8, batch_size=8, log_every=2, threads=1,
                                                         ist=IstSpec(active_fraction=0.34, every=4)))


def test_ist_trains_a_sampled_fraction_of_layers_and_records_their_importance(spec):
    result = run_isolated(spec)
    assert result.status == "complete", result.error
    active = {int(k): v for k, v in result.extras["ist_active_steps"].items()}
    assert sum(active.values()) == spec.proxy.steps * 2  # round(0.34 * 6) = 2 layers per step
    imap = ImportanceMap.from_json(result.extras["importance"])
    assert imap.kind == "ist" and imap.num_layers == 6
    assert all(row[0] is not None for row in imap.scores)


def test_ist_selects_layers_by_requires_grad(spec):
    import torch
    from transformers import AutoModelForSequenceClassification

    from autopeft.trials.ist import IST
    from autopeft.trials.batches import trim as _trim
    from autopeft.trials.data import load_split

    base = AutoModelForSequenceClassification.from_pretrained(spec.model, num_labels=spec.num_labels)
    model = get_method("lora").wrap(base, spec.peft_config)
    probe = _trim({k: v[:4] for k, v in load_split(spec.data_path)["train"].items()})
    with torch.no_grad():  # LoRA starts as a no-op (B = 0): give the adapters something to lose
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    ist = IST(model, "bert.encoder.layer", 0.34, 2, probe)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    ist.before_step(1, lambda batch: model(**batch))
    trainable_layers = {int(n.split("layer.")[1].split(".")[0]) for n, p in model.named_parameters() if "lora_" in n and p.requires_grad}
    assert len(trainable_layers) == 2
    after = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert all(torch.equal(before[n], after[n]) for n in before), "probes restore the adapters they suppress"
    assert any(v != 0.0 for v in ist.scores.values()), "the probe credited some layer"
    ist.finish()
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


@pytest.mark.slow
def test_a_method_ist_cannot_switch_off_trains_in_full_under_an_ist_proxy(spec):
    import dataclasses

    from autopeft.methods import method_names

    assert {n for n in method_names() if get_method(n).supports_ist} >= {"lora", "adalora"}
    assert not get_method("ia3").supports_ist  # scaling vectors at zero silence a layer instead of skipping it
    ia3 = get_method("ia3")
    arch = inspect_model(resolve_model(ModelSpec("minilm-l6")), spec.num_labels)
    cand = Candidate("ia3", 4, 8.0, 0.0, Targets(("query", "value")), tuple(range(6)), 2e-3, False, False)
    result = run_isolated(dataclasses.replace(spec, method="ia3", peft_config=ia3.config_json(ia3.build(cand, BuildContext(arch, 8)))))
    assert result.status == "complete", result.error
    assert "ist_active_steps" not in result.extras and "importance" not in result.extras
