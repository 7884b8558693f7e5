"""A method the model cannot take is refused before any training, in peft's own words.

Whether peft can apply a method to a model depends on the installed releases (prefix tuning
on BERT stopped working with transformers 5.24 + peft 0.21), so the tests do not hard-code
which methods fail: they hold the check to what a real forward pass on the real model does,
and test both outcomes — a refusal (validate exits 2 / the method is dropped from the
encoding) and a method that works (it trains).
"""

from __future__ import annotations

import pytest

from test_cli import autopeft, one_line_error
from autopeft.methods import BuildContext, get_method, method_names
from autopeft.methods.capability import Refusal, installed_versions, refusals
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets

SPACE = """
study: capability
model: {model}
task: {{dataset: tweet-sentiment, text: text, label: label, metric: accuracy}}
objectives: {{accuracy: max, trainable_params: min}}
space:
  method: {methods}
  rank: [2, 4]
proxy: {{train_examples: 32, eval_examples: 16, steps: 2, batch_size: 8, max_length: 16}}
"""


def cand(method):
    return Candidate(method, 2, 4.0, 0.0, Targets(()), (0, 1), 1e-3, False, False)


def real_forward_error(name, model_ref, model_info, base_model) -> str | None:
    """What a real forward pass (real weights, a real padded batch) of ``name`` raises, if anything."""
    import torch
    from transformers import AutoTokenizer

    method = get_method(name)
    c = Candidate(name, 2, 4.0, 0.0, Targets(("query", "value")), (4, 5), 1e-3, False, False)
    config = method.config_json(method.build(c, BuildContext(model_info, 10)))
    tokenizer = AutoTokenizer.from_pretrained(model_ref.location)
    batch = tokenizer(["great game", "awful service, never again"], padding=True, return_tensors="pt")
    try:
        with torch.no_grad():
            method.wrap(base_model, config)(**batch, labels=torch.tensor([0, 2]))
    except Exception as e:  # noqa: BLE001 - whatever peft raises is what the check must predict
        return str(e).splitlines()[0]
    return None


@pytest.mark.parametrize("name", method_names())
def test_the_check_predicts_a_real_forward_pass_on_the_bundled_model(name, model_ref, model_info, base_model,
                                                                     refused_on_bundled):
    assert real_forward_error(name, model_ref, model_info, base_model) == refused_on_bundled.get(name)


LM_SPACE = """
study: capability-lm
model: {root}/model
task: {{type: causal_lm, dataset: {root}/data.jsonl, text: [prompt, completion], metric: eval_loss}}
objectives: {{eval_loss: min, trainable_params: min}}
space:
  method: [prefix, lora]
  rank: [2, 4]
  targets: [c_attn]
proxy: {{train_examples: 32, eval_examples: 16, steps: 2, batch_size: 8, max_length: 24, log_every: 1}}
"""


@pytest.fixture(scope="module")
def lm_prep(tiny_random_gpt2):
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space_text

    return prepare_search(load_space_text(LM_SPACE.format(root=tiny_random_gpt2), "lm.yaml"))


def test_prefix_trains_one_step_on_a_model_that_supports_it(lm_prep):
    import torch
    from transformers import AutoModelForCausalLM

    assert lm_prep.dropped == ()  # prefix tuning is not refused on a causal LM
    assert lm_prep.encoding.distributions["method"].choices == ("prefix", "lora")
    method = get_method("prefix")
    ctx = BuildContext(lm_prep.arch, 2)
    config = method.config_json(method.build(cand("prefix"), ctx))
    torch.manual_seed(0)
    model = method.wrap(AutoModelForCausalLM.from_pretrained(lm_prep.model.location), config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == method.count_trainable(cand("prefix"), ctx)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(5, 100, (4, 12))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable


@pytest.mark.slow
def test_a_real_proxy_trial_of_prefix_completes_where_peft_supports_it(lm_prep):
    from autopeft.trials.executor import run_isolated
    from autopeft.trials.spec import ProxySpec, TrialSpec

    method = get_method("prefix")
    config = method.config_json(method.build(cand("prefix"), BuildContext(lm_prep.arch, 2)))
    spec = TrialSpec(study="capability", trial=0, method="prefix", model=lm_prep.model.location, num_labels=0,
                     data_path=lm_prep.data.path, peft_config=config, learning_rate=1e-3,
                     proxy=ProxySpec(steps=2, batch_size=8, log_every=1, timeout=180, threads=1),
                     metric="eval_loss", task="causal_lm")
    result = run_isolated(spec)
    assert result.status == "complete", result.error
    assert [p[0] for p in result.curve] == [1, 2]


class _Refusing:
    """A method whose adapter peft would refuse, and one that only the meta device cannot run."""

    uses = frozenset({"rank"})

    def __init__(self, name, error):
        self.name, self.error = name, error

    def build(self, cand, ctx):
        return {"peft_type": "NONE"}

    def config_json(self, config):
        return dict(config)

    def count_trainable(self, cand, ctx):
        return 1000

    def wrap(self, model, config):
        raise self.error


def test_refusals_keep_the_libraries_words_and_ignore_meta_device_limits(model_ref, model_info, monkeypatch):
    import autopeft.methods as registry

    monkeypatch.setitem(registry._REGISTRY, "nope", _Refusing("nope", ValueError("Model does not support X.\nmore")))
    monkeypatch.setitem(registry._REGISTRY, "metaonly",
                        _Refusing("metaonly", RuntimeError("Tensor.item() cannot be called on meta tensors")))
    got = refusals(model_ref, model_info, {"nope": cand("nope"), "metaonly": cand("metaonly"), "lora": cand("lora")}, 10)
    assert got == (Refusal("nope", "Model does not support X."),)


def first_refused(refused_on_bundled):
    if not refused_on_bundled:  # not a skip: the refusal branch must be exercised somewhere
        pytest.fail("minilm-l6 takes every method under these releases: give these tests a model that refuses one")
    return next(iter(refused_on_bundled.items()))


def test_validate_refuses_a_space_whose_only_method_the_model_cannot_take(refused_on_bundled, tmp_path):
    name, reason = first_refused(refused_on_bundled)
    path = tmp_path / "only.yaml"
    path.write_text(SPACE.format(model="minilm-l6", methods=f"[{name}]"))
    line = one_line_error(autopeft("validate", path, cwd=tmp_path))
    assert f"{path}: space.method: model 'minilm-l6' (bert)" in line
    assert f"{name}: {reason.rstrip('.')}" in line


def test_a_refused_method_is_dropped_with_one_warning_and_never_proposed(refused_on_bundled, tmp_path):
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space_text

    name, _ = first_refused(refused_on_bundled)
    path = tmp_path / "mixed.yaml"
    path.write_text(SPACE.format(model="minilm-l6", methods=f"[lora, {name}, ia3]"))
    prep = prepare_search(load_space_text(path.read_text(), str(path)), with_data=False)
    assert [r.method for r in prep.dropped] == [name]
    assert prep.encoding.distributions["method"].choices == ("lora", "ia3")
    result = autopeft("validate", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"warning: {path}: space.method: dropped '{name}': model 'minilm-l6' (bert) cannot take it under "
        f"{installed_versions()}: {refused_on_bundled[name]}"]
