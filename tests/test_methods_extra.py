"""The method contract for loha, lokr, vera, prefix and bottleneck, through the method
protocol the trial itself uses (``build`` -> ``config_json`` -> ``wrap`` / ``export``), on the
real bundled MiniLM with a 3-class head:

1. ``count_trainable`` == the parameters with ``requires_grad`` in the wrapped model;
2. one AdamW step changes trainable parameters only (and the adapter, not just the head);
3. the config is plain JSON and survives ``export`` and reload;
4. a real proxy trial runs to completion in its own process (``slow``).
Plus what is particular to each: LoKr's factorisation equals peft's, VeRA takes mixed shapes,
prefix tuning ignores placement, bottleneck adapters start at the base model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import pytest

from autopeft.errors import MethodError
from autopeft.methods import BuildContext, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets

NEW = ("loha", "lokr", "vera", "prefix", "bottleneck")
STEPS = 10
ALL = "all"

#: (id, rank, targets (() = all-linear), layers)
SHAPES = [
    (f"{tid}-{lid}-r{rank}", rank, targets, layers)
    for tid, targets in (("qv", ("query", "value")), ("all-linear", ()))
    for lid, layers in (("l45", (4, 5)), ("all", ALL))
    for rank in (2, 8)
]


def candidate(method, rank, targets, layers, num_layers=6):
    layers = tuple(range(num_layers)) if layers == ALL else tuple(layers)
    return Candidate(method, rank, 2.0 * rank, 0.0, Targets(tuple(targets)), layers, 1e-3, False, False)


@pytest.fixture(scope="module")
def ctx(model_info, model_ref):
    return BuildContext(model_info, STEPS, base_model=model_ref.location)


def wrapped(name, cand, ctx, base_model):
    method = get_method(name)
    config = method.config_json(method.build(cand, ctx))
    return method, config, method.wrap(base_model, config)


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def batch(model_ref):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_ref.location)
    out = tokenizer(["great game today", "awful service, never again", "the bus is at nine", "love it"],
                    padding=True, return_tensors="pt")
    out["labels"] = torch.tensor([2, 0, 1, 2])
    return dict(out)


def test_the_new_methods_are_registered():
    from autopeft.methods import method_names

    assert set(NEW) <= set(method_names())


# ------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("name", NEW)
def test_analytic_count_equals_the_wrapped_models_count(name, shape, ctx, base_model, model_info):
    cand = candidate(name, *shape[1:])
    analytic = get_method(name).count_trainable(cand, ctx)
    _, _, model = wrapped(name, cand, ctx, base_model)
    assert analytic == n_trainable(model)
    assert model_info.head_params < analytic < model_info.total_params


@pytest.mark.parametrize("name", NEW)
def test_per_layer_ranks_are_counted_as_wrapped(name, ctx, base_model):
    # rank = the largest per-layer rank; 16 makes LoKr's W2 full in that layer only
    cand = candidate(name, 16, ("query", "output.dense"), (1, 3, 5))
    cand = dataclasses.replace(cand, layer_ranks=(2, 16, 4))
    method = get_method(name)
    analytic = method.count_trainable(cand, ctx)
    _, config, model = wrapped(name, cand, ctx, base_model)
    assert analytic == n_trainable(model)
    if name in ("loha", "lokr", "bottleneck"):  # the ranks really differ per layer
        uniform = method.count_trainable(dataclasses.replace(cand, layer_ranks=None), ctx)
        assert analytic < uniform
        assert json.loads(json.dumps(config)) == config


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[-1]], ids=[SHAPES[0][0], SHAPES[-1][0]])
@pytest.mark.parametrize("name", NEW)
def test_one_training_step_changes_only_trainable_parameters(name, shape, ctx, base_model, batch, model_info,
                                                            refused_on_bundled):
    import torch

    torch.manual_seed(0)
    method, _, model = wrapped(name, candidate(name, *shape[1:]), ctx, base_model)
    if name in refused_on_bundled:  # the installed releases refuse it (tests/test_capability.py trains it elsewhere)
        with pytest.raises(Exception, match=re.escape(refused_on_bundled[name])):
            model(**batch)
        return
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    method.on_step(model, 1)
    optimizer.zero_grad(set_to_none=True)

    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    assert any(not any(h in n for h in model_info.head_modules) for n in changed), "the adapter must learn"


@pytest.mark.parametrize("name", NEW)
def test_config_is_json_and_survives_export_and_reload(name, ctx, base_model, tmp_path):
    cand = candidate(name, 4, ("query", "value"), (4, 5))
    method = get_method(name)
    config = method.config_json(method.build(cand, ctx))
    assert json.loads(json.dumps(config)) == config
    files = method.export(config, str(tmp_path))
    assert files and all((tmp_path / f).is_file() for f in files)
    if name == "bottleneck":
        from autopeft.methods.bottleneck import BottleneckConfig, apply

        data = json.loads((tmp_path / "bottleneck_config.json").read_text())
        assert BottleneckConfig.from_json(data).to_json() == config
        model = apply(base_model, data)  # the documented way to load it
    else:
        from peft import PeftConfig, get_peft_model

        from autopeft.methods import config_to_json

        loaded = PeftConfig.from_pretrained(str(tmp_path))
        assert config_to_json(loaded) == config
        model = get_peft_model(base_model, loaded)  # plain peft, nothing from autopeft
    assert n_trainable(model) == method.count_trainable(cand, ctx)


# ------------------------------------------------------------------------- per method


def test_lokr_factorisation_is_peft_s():
    from peft.tuners.lokr.layer import factorization as peft_factorization

    from autopeft.methods.lokr import factorization

    for dim in list(range(1, 1100)) + [1536, 2048, 3072, 4096, 5120, 11008]:
        assert factorization(dim) == peft_factorization(dim), dim


def test_lokr_count_stops_growing_once_w2_is_full(ctx):
    lokr = get_method("lokr")
    counts = [lokr.count_trainable(candidate("lokr", r, ("query",), (5,)), ctx) for r in (2, 8, 12, 32)]
    assert counts[0] < counts[1] < counts[2] == counts[3]  # 384 = 16 x 24: W2 is full from r = 12


def test_vera_takes_modules_of_different_shapes(ctx, base_model):
    # all-linear on BERT mixes 384x384, 384->1536 and 1536->384; peft 0.21 sizes the shared
    # projections to the largest and slices them, so VeRA must build and run.
    import torch

    cand = candidate("vera", 4, (), ALL)
    _, _, model = wrapped("vera", cand, ctx, base_model)
    shared = [b for n, b in model.named_buffers() if "vera_A" in n or "vera_B" in n]
    assert {tuple(b.shape) for b in shared} == {(4, 1536), (1536, 4)}
    assert not any(p.requires_grad for n, p in model.named_parameters() if "vera_A" in n or "vera_B" in n)
    with torch.no_grad():
        model(input_ids=torch.tensor([[101, 2204, 102]]))


def test_prefix_ignores_targets_and_layers(ctx):
    prefix = get_method("prefix")
    a = candidate("prefix", 4, ("query",), (5,))
    b = candidate("prefix", 4, (), ALL)
    assert prefix.config_json(prefix.build(a, ctx)) == prefix.config_json(prefix.build(b, ctx))
    assert prefix.count_trainable(a, ctx) == prefix.count_trainable(b, ctx)
    assert "targets" not in prefix.uses and "layers" not in prefix.uses


def test_bottleneck_starts_at_the_base_model(ctx, base_model, batch):
    import torch

    base = copy.deepcopy(base_model).eval()
    _, _, model = wrapped("bottleneck", candidate("bottleneck", 8, (), ALL), ctx, base_model)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base(**inputs).logits)
    # base parameter names are unchanged; adapters are children of the adapted modules
    names = {n for n, _ in model.named_parameters()}
    assert {n for n, _ in base.named_parameters()} <= names
    assert "bert.encoder.layer.5.output.dense.bottleneck.up.weight" in names
    assert n_trainable(copy.deepcopy(model)) == n_trainable(model)  # survives deepcopy, hooks too
    import pickle

    clone = pickle.loads(pickle.dumps(model)).eval()  # and pickling (module-level hooks)
    with torch.no_grad():
        assert torch.equal(clone(**inputs).logits, base(**inputs).logits)
    assert clone.bert.encoder.layer[5].output.dense._forward_hooks


def test_bottleneck_parallel_placement_is_counted_and_starts_at_the_base(model_info, base_model, batch):
    import torch

    from autopeft.methods.bottleneck import BottleneckConfig, apply, params_per_module

    cfg = BottleneckConfig(rank=4, targets=("intermediate.dense",), layers=(0, 3), layers_path=model_info.layers_path,
                           head_modules=model_info.head_modules, placement="parallel", activation="gelu")
    base = copy.deepcopy(base_model).eval()
    model = apply(base_model, cfg.to_json()).eval()
    spec = model_info.linear("intermediate.dense")
    assert n_trainable(model) == 2 * params_per_module(spec.in_features, spec.out_features, 4, "parallel") + model_info.head_params
    assert model.bert.encoder.layer[0].intermediate.dense.bottleneck.down.in_features == spec.in_features
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base(**inputs).logits)


def test_bottleneck_refuses_bad_configs(model_info, base_model):
    from autopeft.methods.bottleneck import BottleneckConfig, apply

    good = BottleneckConfig(rank=2, targets=("attention.self.query",), layers=(5,), layers_path=model_info.layers_path,
                            head_modules=model_info.head_modules).to_json()
    with pytest.raises(MethodError, match="unknown keys"):
        BottleneckConfig.from_json({**good, "dropout": 0.1})
    with pytest.raises(MethodError, match="placement"):
        BottleneckConfig.from_json({**good, "placement": "sideways"})
    with pytest.raises(MethodError, match="no module 'gate_proj'"):
        apply(copy.deepcopy(base_model), {**good, "targets": ["gate_proj"]})
    with pytest.raises(MethodError, match="out of range"):
        apply(copy.deepcopy(base_model), {**good, "layers": [6]})
    model = apply(base_model, good)
    with pytest.raises(MethodError, match="already has an adapter"):
        apply(model, good)


def test_bottleneck_trained_weights_save_and_load(ctx, base_model, batch, tmp_path):
    import torch
    from safetensors.torch import load_file

    from autopeft.methods.bottleneck import apply

    fresh = copy.deepcopy(base_model)
    method, _, model = wrapped("bottleneck", candidate("bottleneck", 4, ("query", "value"), (4, 5)), ctx, base_model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**batch).loss.backward()
    optimizer.step()
    method.save_weights(model, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bottleneck_config.json", "bottleneck_model.safetensors"]
    # the documented way to load it
    loaded = apply(fresh, json.loads((tmp_path / "bottleneck_config.json").read_text()))
    missing, unexpected = loaded.load_state_dict(load_file(str(tmp_path / "bottleneck_model.safetensors")), strict=False)
    assert not unexpected and not any(".bottleneck." in k or "classifier" in k for k in missing)
    model.eval(), loaded.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_adalora_converts_to_lora_and_maps_its_final_ranks(model_info):
    """AdaLoRA's hooks: ``export --as lora`` and the importance map a finished trial stores."""
    from types import SimpleNamespace

    from autopeft.search.objectives import with_importance

    adalora = get_method("adalora")
    layers = model_info.layers_path
    extras = {"rank_allocation": {f"{layers}.5.attention.self.query.lora_E": 2,
                                  f"{layers}.4.attention.self.value.lora_E": 0}}
    config = {"peft_type": "ADALORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 4.0, "target_modules": ["query"]}
    lora = adalora.export_as("lora", config, extras["rank_allocation"])
    assert lora["peft_type"] == "LORA" and lora["r"] == 2
    assert lora["target_modules"] == re.escape(f"{layers}.5.attention.self.query"), "rank 0 is left out"
    for target, recorded in (("ia3", extras), ("lora", {})):
        with pytest.raises(MethodError):
            adalora.export_as(target, config, recorded.get("rank_allocation", {}))

    imap = adalora.importance_map(extras["rank_allocation"], model_info)
    assert imap.kind == "adalora"
    scores = {(i, m): v for i, row in enumerate(imap.scores) for m, v in zip(imap.modules, row) if v is not None}
    assert scores == {(5, "attention.self.query"): 2, (4, "attention.self.value"): 0}
    prep = SimpleNamespace(arch=model_info)
    assert with_importance(extras, prep, "adalora")["importance"] == imap.to_json()
    assert with_importance(extras, prep, "lora") == extras, "only a method that measures a map adds one"
    assert with_importance({}, prep, "adalora") == {}


@pytest.mark.parametrize("name", ["loha", "lokr", "vera", "bottleneck"])
def test_a_target_the_model_lacks_is_a_method_error(name, ctx):
    cand = candidate(name, 4, ("gate_proj",), (0,))
    with pytest.raises(MethodError, match="gate_proj"):
        get_method(name).count_trainable(cand, ctx)
    with pytest.raises(MethodError, match="gate_proj"):
        get_method(name).build(cand, ctx)


# ------------------------------------------------------------------------- real trials


@pytest.fixture(scope="module")
def trial_data(model_ref):
    from autopeft.assets.datasets import prepare_data, resolve_dataset
    from autopeft.space.schema import ProxySpec, TaskSpec

    proxy = ProxySpec(train_examples=24, eval_examples=16, steps=3, batch_size=8, max_length=16)
    return prepare_data(model_ref, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"), proxy)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_a_real_proxy_trial_completes(name, model_ref, trial_data, refused_on_bundled):
    from autopeft.assets.architecture import inspect_model
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.spec import ProxySpec, TrialSpec

    arch = inspect_model(model_ref, trial_data.num_labels)
    cand = candidate(name, 4, ("query", "value"), (4, 5))
    method = get_method(name)
    config = method.config_json(method.build(cand, BuildContext(arch, 3)))
    spec = TrialSpec(study="extra", trial=0, method=name, model=model_ref.location, num_labels=trial_data.num_labels,
                     data_path=trial_data.path, peft_config=config, learning_rate=1e-3,
                     proxy=ProxySpec(steps=3, batch_size=8, log_every=1, timeout=180, threads=1))
    result = run_isolated(spec)
    if name in refused_on_bundled:  # what the capability check spares a search: a trial that can only fail
        assert result.status == "failed" and refused_on_bundled[name] in result.error
        return
    assert result.status == "complete", result.error
    assert [p[0] for p in result.curve] == [1, 2, 3]
    assert result.trainable_params == method.count_trainable(cand, BuildContext(arch, 3))
