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
from autopeft.trials.batches import trim as _trim
from autopeft.trials.data import load_split
from autopeft.trials.model import forward, use_prefix_cache
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
    split = load_split(data.path)
    batch = _trim({k: v[:8] for k, v in split["eval"].items()})
    with torch.no_grad():
        expected = net(**batch)
    spec = TrialSpec("t", 0, method, model.location, data.num_labels, data.path, {}, 1e-3,
                     ProxySpec(steps=1, batch_size=8))
    skip = use_prefix_cache(net, spec, split)
    assert skip is not None, "adapters from layer 3 up: layers 0-2 can be skipped"
    net.eval()
    cached_batch = _trim({k: v[:8] for k, v in split["eval"].items()})
    with torch.no_grad():
        got = forward(net, cached_batch, skip)
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)
    assert abs(float(got.loss) - float(expected.loss)) < 1e-5


def test_the_cache_is_refused_where_it_would_change_the_model(setup):
    assert skippable_prefix(wrapped(setup, "lora", (0, 5))) is None  # an adapter in layer 0
    assert skippable_prefix(wrapped(setup, "lora", (2, 4)))[1] == 2
    if "prefix" in method_names():  # prefix tuning steers every layer: nothing to skip
        assert skippable_prefix(wrapped(setup, "prefix", (5,))) is None


@pytest.mark.parametrize("n, batch, steps", [(50, 8, 3), (50, 8, 20), (5, 8, 4), (48, 8, 6), (35_558, 16, 150)])
def test_a_run_cut_to_the_rows_it_draws_sees_the_same_batches(n, batch, steps):
    """The train split cut to ``drawn_rows`` gives, step by step, the batches of the endless
    stream over the whole split: same examples, same order (one epoch, several, n < batch)."""
    import torch

    from autopeft.trials.batches import batches, drawn_rows, scheduled_batches

    split = {"input_ids": torch.arange(n * 3).reshape(n, 3), "attention_mask": torch.ones(n, 3, dtype=torch.long),
             "labels": torch.arange(n)}
    rows, schedule = drawn_rows(n, batch, steps, seed=7)
    cut = {k: v[rows] for k, v in split.items()}
    stream = batches(split, batch, torch.Generator().manual_seed(7))
    for step, got in enumerate(scheduled_batches(cut, schedule)):
        want = next(stream)
        assert all(torch.equal(got[k], want[k]) for k in want), f"step {step}"
    assert len(schedule) == steps
    assert len(rows) <= min(n, steps * batch) and torch.equal(rows, torch.unique(rows))


def test_the_prefix_cache_holds_only_the_rows_a_run_draws(setup):
    """States are computed for the drawn rows, and a run drawing other rows gets another file."""
    import torch

    from autopeft.trials.batches import drawn_rows
    from autopeft.trials.prefix_cache import cache_path

    model, data, arch, base = setup
    split = load_split(data.path)
    n = len(split["train"]["labels"])
    rows, _ = drawn_rows(n, 4, 2, seed=0)
    assert len(rows) == 8 < n
    split["train"] = {k: v[rows] for k, v in split["train"].items()}
    spec = TrialSpec("t", 0, "lora", model.location, data.num_labels, data.path, {}, 1e-3, ProxySpec(steps=2, batch_size=4))
    net = wrapped(setup, "lora", (3, 5))
    assert use_prefix_cache(net, spec, split, train_rows=rows) is not None
    assert split["train"]["prefix_hidden"].shape[0] == 8
    other, _ = drawn_rows(n, 4, 2, seed=1)
    assert not torch.equal(other, rows)
    assert cache_path(model.location, data.path, 3, ("train", "eval"), rows) != cache_path(
        model.location, data.path, 3, ("train", "eval"), other)
    assert cache_path(model.location, data.path, 3, ("train", "eval"), rows).exists()
