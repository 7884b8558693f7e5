"""A trial runs in its own process: timeouts, OOMs, crashes and non-finite losses come back
as failed results with a reason, and the parent process lives on."""

from __future__ import annotations

import dataclasses
import math

import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.methods import BuildContext, config_to_json, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
from autopeft.trials.executor import run_isolated
from autopeft.trials.spec import TrialSpec


@pytest.fixture(scope="module")
def base_spec():
    model = resolve_model(ModelSpec("minilm-l6"))
    proxy = ProxySpec(train_examples=48, eval_examples=24, steps=4, batch_size=8, max_length=16)
    data = prepare_data(model, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"), proxy)
    arch = inspect_model(model, data.num_labels)
    cand = Candidate("lora", 4, 8.0, 0.0, Targets(("query", "value")), (4, 5), 1e-3, False, False)
    config = config_to_json(get_method("lora").build(cand, BuildContext(arch, proxy.steps)))
    return TrialSpec(study="t", trial=0, method="lora", model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=config, learning_rate=1e-3,
                     proxy=ProxySpec(steps=4, batch_size=8, log_every=1, timeout=120, threads=1))


def with_(spec: TrialSpec, **changes) -> TrialSpec:
    """``spec`` with TrialSpec fields or (nested) proxy fields replaced."""
    proxy = {k: changes.pop(k) for k in list(changes) if hasattr(spec.proxy, k)}
    return dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, **proxy), **changes)


@pytest.mark.slow
def test_a_healthy_trial_completes_with_metrics_curve_and_resources(base_spec):
    result = run_isolated(base_spec)
    assert result.status == "complete", result.error
    assert set(result.metrics) == {"accuracy", "macro_f1", "eval_loss", "eval_loss_se", "eval_examples",
                                   "eval_prior_loss"}
    # The loss's noise over the validation examples, and the loss of answering the label frequencies:
    # what a rung needs to tell a run that has learned from one at chance.
    m = result.metrics
    assert 0 < m["eval_loss_se"] < m["eval_loss"] and m["eval_examples"] > 1
    assert 0 < m["eval_prior_loss"] <= math.log(base_spec.num_labels) + 1e-9
    assert [p[0] for p in result.curve] == [1, 2, 3, 4]
    assert result.peak_rss_mb > 100 and result.train_time > 0
    assert result.cpu_time > result.train_time / 4, "the trial process's own CPU time, not the search's"


@pytest.mark.slow
def test_non_finite_loss_fails_the_trial(base_spec):
    result = run_isolated(with_(base_spec, learning_rate=1e12, steps=30, log_every=1))
    assert result.status == "failed"
    assert result.error.startswith("non-finite loss")
    assert result.curve, "the curve up to the failure is kept"
    assert result.cpu_time > 0, "a failed trial's cost is counted too"


@pytest.mark.slow
def test_out_of_memory_fails_the_trial_and_not_the_parent(base_spec):
    result = run_isolated(with_(base_spec, memory_limit_mb=40))
    assert result.status == "failed"
    assert "out of memory" in result.error


@pytest.mark.slow
def test_timeout_kills_the_trial(base_spec):
    result = run_isolated(with_(base_spec, timeout=0.5, steps=10_000))
    assert result.status == "failed"
    assert result.error.startswith("timeout")


@pytest.mark.slow
def test_a_trial_killed_at_its_timeout_still_reports_what_it_had_cost(base_spec):
    result = run_isolated(with_(base_spec, timeout=8, steps=10_000, log_every=1))
    assert result.error.startswith("timeout") and result.curve, "it trained some steps before the timeout"
    assert result.cpu_time > 0, "the CPU seconds of its last report, not nothing"


@pytest.mark.slow
def test_an_exception_in_the_trial_is_its_reason(base_spec, tmp_path):
    result = run_isolated(with_(base_spec, data_path=str(tmp_path / "missing.safetensors")))
    assert result.status == "failed"
    assert "missing.safetensors" in result.error or "No such file" in result.error
