"""The contract every registered PEFT method is held to, on the real bundled model.

Each method goes through the same seam a trial uses: ``build`` -> ``config_json`` ->
``wrap`` (and ``export`` for the exported adapter). Then:

1. The analytic trainable-parameter count (known before training, used by the budget)
   equals the parameters with ``requires_grad`` in the wrapped model, and, for peft
   models, what peft reports (``get_nb_trainable_parameters``).
2. One AdamW step on a real batch changes trainable parameters only; every frozen
   parameter stays bit-identical; the adapter learns, not only the task head.
3. The config is plain JSON and survives ``export`` and a reload (``PeftConfig.from_pretrained``
   for peft methods), giving the same trainable count.
Adding a method adds it to ``method_names()`` and so to every test here.
"""

from __future__ import annotations

import json
import re

import pytest

from autopeft.errors import MethodError
from autopeft.methods import BuildContext, config_to_json, get_method, method_names, register_method
from autopeft.space.dimensions import default_learning_rate
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets

STEPS = 10
ALL = "all"


def candidate(method, rank, modules, layers, dora=False, rslora=False):
    return Candidate(method, rank, 2.0 * rank, 0.0, Targets(modules), layers, 1e-3, dora, rslora)


#: (id, rank, target modules (() = all-linear), layers (ALL = every layer), dora)
SHAPES = [
    ("qv-top2-r2", 2, ("query", "value"), (4, 5), False),
    ("all-linear-all-r8", 8, (), ALL, False),
    ("qv-all-r8-dora", 8, ("query", "value"), ALL, True),
    ("ffn-out-layer0-r2", 2, ("output.dense",), (0,), False),  # IA3's feed-forward path
]


def make(method, shape, model_info):
    _, rank, modules, layers, dora = shape
    layers = tuple(range(model_info.num_layers)) if layers == ALL else layers
    return candidate(method, rank, modules, layers, dora=dora and method == "lora")


def ctx(model_info, model_ref):
    return BuildContext(model_info, STEPS, base_model=model_ref.location)


def wrap(name, cand, c, base_model):
    """The model a trial trains: the method's config, as JSON, wrapped around the base."""
    method = get_method(name)
    config = method.config_json(method.build(cand, c))
    return method, config, method.wrap(base_model, config)


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_every_expected_method_is_registered():
    # The methods; more may be added, none may silently disappear.
    assert {"lora", "ia3", "adalora"} <= set(method_names())


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("name", method_names())
def test_analytic_count_equals_the_trained_count(name, shape, model_info, model_ref, base_model):
    cand = make(name, shape, model_info)
    c = ctx(model_info, model_ref)
    analytic = get_method(name).count_trainable(cand, c)
    _, _, model = wrap(name, cand, c, base_model)
    assert analytic == n_trainable(model)
    if hasattr(model, "get_nb_trainable_parameters"):  # a peft model: peft's own count agrees
        assert model.get_nb_trainable_parameters()[0] == analytic
    assert model_info.head_params < analytic < model_info.total_params


@pytest.mark.parametrize("name", method_names())
def test_count_grows_with_what_the_method_uses(name, model_info, model_ref):
    method = get_method(name)
    c = ctx(model_info, model_ref)
    one = method.count_trainable(candidate(name, 4, ("query",), (5,)), c)
    two_layers = method.count_trainable(candidate(name, 4, ("query",), (4, 5)), c)
    two_modules = method.count_trainable(candidate(name, 4, ("query", "value"), (5,)), c)
    if "layers" in method.uses:
        assert two_layers > one
        # One more layer adds exactly one layer's worth: counts are linear in the layers.
        three_layers = method.count_trainable(candidate(name, 4, ("query",), (3, 4, 5)), c)
        assert three_layers - two_layers == two_layers - one
    else:  # a method that ignores placement must not be charged for it
        assert two_layers == one
    if "targets" in method.uses:
        assert two_modules > one
    else:
        assert two_modules == one


@pytest.mark.parametrize("name", method_names())
def test_one_training_step_changes_only_trainable_parameters(name, model_info, model_ref, base_model,
                                                            refused_on_bundled):
    import torch
    from transformers import AutoTokenizer

    cand = make(name, SHAPES[0], model_info)
    torch.manual_seed(0)
    method, _, model = wrap(name, cand, ctx(model_info, model_ref), base_model)
    tokenizer = AutoTokenizer.from_pretrained(model_ref.location)
    batch = tokenizer(["great game today", "awful service, never again", "the bus is at nine", "love it"],
                      padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([2, 0, 1, 2])
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
    method.on_step(model, 1)  # e.g. AdaLoRA's update_and_allocate, on a real model
    optimizer.zero_grad(set_to_none=True)

    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed, "one step must change some trainable parameter"
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    assert any(not any(h in n for h in model_info.head_modules) for n in changed), "the adapter must learn"


@pytest.mark.parametrize("name", method_names())
def test_config_survives_export_and_reload(name, model_info, model_ref, base_model, tmp_path):
    cand = make(name, SHAPES[0], model_info)
    c = ctx(model_info, model_ref)
    method = get_method(name)
    config = method.config_json(method.build(cand, c))
    assert json.loads(json.dumps(config)) == config  # plain JSON: nothing lost on the way
    files = method.export(config, str(tmp_path))
    assert files and all((tmp_path / f).is_file() for f in files)
    if "adapter_config.json" in files:  # a peft adapter: loadable with nothing but peft
        from peft import PeftConfig, get_peft_model

        on_disk = json.loads((tmp_path / "adapter_config.json").read_text())
        loaded = PeftConfig.from_pretrained(str(tmp_path))
        assert config_to_json(loaded) == config
        # config_to_json normalises exactly as peft's own writer does
        assert {k: v for k, v in on_disk.items() if k in config} == {k: v for k, v in config.items() if k in on_disk}
        model = get_peft_model(base_model, loaded)
    else:  # a method of autopeft's own: its JSON file reloads through the method
        (only,) = [f for f in files if f.endswith(".json")]
        data = json.loads((tmp_path / only).read_text())
        assert method.config_json(data) == config
        model = method.wrap(base_model, data)
    assert n_trainable(model) == method.count_trainable(cand, c)


def test_peft_methods_export_a_peft_config(model_info, model_ref, tmp_path):
    # The three methods are peft's: their export must be peft's adapter_config.json.
    for name in ("lora", "ia3", "adalora"):
        method = get_method(name)
        config = method.config_json(method.build(make(name, SHAPES[0], model_info), ctx(model_info, model_ref)))
        out = tmp_path / name
        out.mkdir()
        assert "adapter_config.json" in method.export(config, str(out))


@pytest.mark.parametrize("name", [n for n in method_names() if "targets" in get_method(n).uses])
def test_a_target_the_model_lacks_is_a_method_error(name, model_info, model_ref):
    method = get_method(name)
    cand = candidate(name, 4, ("gate_proj",), (0,))
    with pytest.raises(MethodError, match="gate_proj"):
        method.count_trainable(cand, ctx(model_info, model_ref))
    with pytest.raises(MethodError, match="gate_proj"):
        method.build(cand, ctx(model_info, model_ref))


@pytest.mark.parametrize("name", [n for n in method_names() if {"layers", "targets"} <= get_method(n).uses])
def test_adapters_go_only_to_the_chosen_layers_and_modules(name, model_info, model_ref, base_model):
    # IA3 has no layers_to_transform; placement is a regex (or surgery). Check it hits
    # exactly the chosen (layer, module) pairs on the real model.
    layers = (1, 4)
    _, _, model = wrap(name, candidate(name, 2, ("query", "value"), layers), ctx(model_info, model_ref), base_model)
    prefix = model_info.layers_path + "."
    adapted = [
        n for n, p in model.named_parameters()
        if p.requires_grad and not any(h in n for h in model_info.head_modules)
    ]
    assert adapted
    assert all(prefix in n for n in adapted), [n for n in adapted if prefix not in n][:3]
    hit_layers = {int(n.split(prefix, 1)[1].split(".")[0]) for n in adapted}
    assert hit_layers == set(layers)
    assert all(".query." in n or ".value." in n for n in adapted)


# ------------------------------------------------------------------- what a method declares


@pytest.mark.parametrize("name", method_names())
def test_every_method_declares_a_sane_learning_rate_band(name):
    low, high = get_method(name).learning_rate_band
    assert isinstance(low, float) and isinstance(high, float)
    assert 1e-5 <= low < high <= 1e-1, "fine-tuning rates, low < high"
    assert 5 <= high / low <= 20, "a band spans about tenfold, so the search picks the rate"
    assert default_learning_rate(name) == (low, high), "a space that omits the rate takes the method's band"


@pytest.mark.parametrize("name", method_names())
def test_every_method_has_the_export_and_objective_hooks(name, model_info):
    method = get_method(name)
    assert callable(method.export_as) and callable(method.importance_map)
    assert method.importance_map({}, model_info) is None, "a trial that recorded nothing measured no map"
    with pytest.raises(MethodError):
        method.export_as("no_such_method", {}, {})


def test_method_base_defaults_are_those_of_a_plain_method(model_info):
    from autopeft.methods.base import MethodBase

    class Plain(MethodBase):
        name = "plain"

    assert Plain.learning_rate_band == (3.0e-4, 3.0e-3), "a plug-in's band is centred on 1e-3"
    assert default_learning_rate("no_such_method") == Plain.learning_rate_band
    assert Plain().importance_map({"x": 1}, model_info) is None
    with pytest.raises(MethodError, match="converts to no other method"):
        Plain().export_as("lora", {}, {})


# ------------------------------------------------------------------------------ registry


def test_registry_refuses_a_duplicate():
    original = get_method("lora")

    class Impostor:
        name = "lora"

    with pytest.raises(ValueError, match="already registered"):
        register_method(Impostor())
    assert get_method("lora") is original


@pytest.mark.parametrize("bad", ["", "LoRA", "1lora", "lo-ra", "lo ra", None])
def test_registry_refuses_bad_names(bad):
    before = method_names()

    class Bad:
        name = bad

    with pytest.raises(ValueError, match="lower_snake_case"):
        register_method(Bad())
    assert method_names() == before


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(MethodError) as info:
        get_method("lorra")
    for name in method_names():
        assert name in str(info.value)
