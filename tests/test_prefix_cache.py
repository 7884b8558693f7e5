"""The frozen-prefix cache computes what the uncached model computes, and only where it may."""

from __future__ import annotations

import copy

import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.methods import BuildContext, get_method, method_names
from autopeft.space.encoding import Candidate
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
from autopeft.trials.prefix_cache import skippable_prefix
from autopeft.trials.proxy import _forward, _load_split, _trim, _use_prefix_cache
from autopeft.trials.spec import TrialSpec


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os

    os.environ["AUTOPEFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from transformers import AutoModelForSequenceClassification

    model = resolve_model(ModelSpec("minilm-l6"))
    proxy = ProxySpec(train_examples=24, eval_examples=16, max_length=24)
    data = prepare_data(model, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"), proxy)
    arch = inspect_model(model, data.num_labels)
    base = AutoModelForSequenceClassification.from_pretrained(model.location, num_labels=data.num_labels)
    return model, data, arch, base


def wrapped(setup, method: str, layers: tuple[int, ...]):
    model, data, arch, base = setup
    cand = Candidate(method, 4, 8.0, 0.0, Targets(("query", "value")), layers, 1e-3, False, False)
    m = get_method(method)
    return m.wrap(copy.deepcopy(base), m.config_json(m.build(cand, BuildContext(arch, 10))))


@pytest.mark.parametrize("method", ["lora", "ia3", "adalora"])
def test_cached_loss_and_logits_equal_the_uncached_eval_mode_model(setup, method):
    model, data, arch, base = setup
    import torch

    net = wrapped(setup, method, (3, 5))
    net.eval()
    split = _load_split(data.path)
    batch = _trim({k: v[:8] for k, v in split["eval"].items()})
    with torch.no_grad():
        expected = net(**batch)
    spec = TrialSpec("t", 0, method, model.location, data.num_labels, data.path, {}, 1e-3,
                     ProxySpec(steps=1, batch_size=8))
    skip = _use_prefix_cache(net, spec, split)
    assert skip is not None, "adapters from layer 3 up: layers 0-2 can be skipped"
    net.eval()
    cached_batch = _trim({k: v[:8] for k, v in split["eval"].items()})
    with torch.no_grad():
        got = _forward(net, cached_batch, skip)
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)
    assert abs(float(got.loss) - float(expected.loss)) < 1e-5


def test_the_cache_is_refused_where_it_would_change_the_model(setup):
    assert skippable_prefix(wrapped(setup, "lora", (0, 5))) is None  # an adapter in layer 0
    assert skippable_prefix(wrapped(setup, "lora", (2, 4)))[1] == 2
    if "prefix" in method_names():  # prefix tuning steers every layer: nothing to skip
        assert skippable_prefix(wrapped(setup, "prefix", (5,))) is None
