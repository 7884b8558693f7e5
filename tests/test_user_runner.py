"""Bring your own training code (``proxy.runner``): the user's function trains the trial
autopeft prepared, in the same isolated process, with the same failure handling."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.methods import BuildContext, config_to_json, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
from autopeft.trials.executor import run_isolated
from autopeft.trials.spec import TrialSpec
from conftest import REPO
from test_cli import autopeft, one_line_error

EXAMPLE = "examples.hf_trainer_runner:train"


@pytest.fixture(scope="module")
def spec():
    """LoRA r=4 on the top two layers of MiniLM, 4 steps, data with a test split."""
    model = resolve_model(ModelSpec("minilm-l6"))
    proxy = ProxySpec(train_examples=48, eval_examples=24, steps=4, batch_size=8, max_length=16)
    data = prepare_data(model, resolve_dataset("tweet-sentiment"), TaskSpec("tweet-sentiment", ("text",), "label"),
                        proxy, test_examples=24)
    arch = inspect_model(model, data.num_labels)
    cand = Candidate("lora", 4, 8.0, 0.0, Targets(("query", "value")), (4, 5), 1e-3, False, False)
    config = config_to_json(get_method("lora").build(cand, BuildContext(arch, proxy.steps)))
    return TrialSpec(study="t", trial=0, method="lora", model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=config, learning_rate=1e-3,
                     proxy=ProxySpec(steps=4, batch_size=8, log_every=1, timeout=300, threads=1))


def with_runner(spec: TrialSpec, runner: str, **changes) -> TrialSpec:
    return dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, runner=runner), **changes)


def write_runner(tmp_path, monkeypatch, body: str, name: str = "my_runner") -> str:
    """A runner module in a fresh working directory (which the trial process imports from)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    return f"{name}:train"


@pytest.mark.slow
def test_the_hf_trainer_example_trains_the_trial_and_reports_curve_metrics_and_test(spec, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # the example is imported as examples.hf_trainer_runner from here
    built_in = run_isolated(dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, prefix_cache=False)))
    result = run_isolated(with_runner(spec, EXAMPLE, test_split=True, save_dir=str(tmp_path / "adapter")))
    assert result.status == "complete", result.error
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.metrics["eval_loss"] > 0
    assert set(result.test_metrics) >= {"accuracy", "macro_f1", "eval_loss"}
    assert [step for step, _ in result.curve] == [1, 2, 3, 4]  # reported by the Trainer callback
    assert result.extras["runner"] == EXAMPLE
    # autopeft built and counted the same adapter the built-in trainer trains
    assert result.trainable_params == built_in.trainable_params
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()  # the trained model, saved by autopeft


@pytest.mark.parametrize("body, reason", [
    ("def train(trial):\n    return {'macro_f1': 0.5}\n", "returned no 'accuracy' (the task metric)"),
    ("def train(trial):\n    return {'accuracy': float('nan')}\n", "metric 'accuracy' is nan"),
    ("def train(trial):\n    return 0.5\n", "returned float; expected a dict of metrics"),
    ("def train(trial):\n    raise ValueError('my loop broke')\n", "ValueError: my loop broke"),
    ("def train(trial):\n    trial.report(1, float('inf'))\n", "non-finite loss (inf) at step 1"),
    ("def train(trial):\n    return {'accuracy': 0.5}\n", "verification asks for the test split too"),
    ("import no_such_dependency\ndef train(trial):\n    pass\n", "importing 'my_runner' failed: No module named"),
])
def test_a_runner_that_breaks_its_contract_fails_the_trial_with_the_reason(spec, tmp_path, monkeypatch, body, reason):
    ref = write_runner(tmp_path, monkeypatch, body)
    result = run_isolated(with_runner(spec, ref, test_split="test split" in reason))
    assert result.status == "failed"
    assert reason in result.error


def test_a_runner_that_hangs_is_killed_at_the_timeout_keeping_its_curve(spec, tmp_path, monkeypatch):
    ref = write_runner(tmp_path, monkeypatch, """
        import time
        def train(trial):
            trial.report(1, 2.0)
            time.sleep(600)
    """)
    result = run_isolated(dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, runner=ref, timeout=20)))
    assert result.status == "failed" and result.error.startswith("timeout")
    assert result.curve == [[1, 2.0]]


def test_a_runner_gets_the_wrapped_model_tokenizer_spec_and_splits(spec, tmp_path, monkeypatch):
    """What the function receives, as seen from inside the trial process."""
    ref = write_runner(tmp_path, monkeypatch, """
        import json
        def train(trial):
            split = trial.split("train")
            facts = {
                "peft": type(trial.model).__name__,
                "trainable": sum(p.numel() for p in trial.model.parameters() if p.requires_grad),
                "tokenizer": trial.tokenizer("hello")["input_ids"][:1],
                "steps": trial.spec.proxy.steps, "lr": trial.spec.learning_rate, "device": trial.device,
                "train_rows": len(split["labels"]), "columns": sorted(split),
                "dataset_rows": len(trial.dataset("eval")), "test": trial.test_split,
            }
            open("facts.json", "w").write(json.dumps(facts))
            trial.report(1, 1.5)
            return {"accuracy": 0.25}
    """)
    result = run_isolated(with_runner(spec, ref))
    assert result.status == "complete", result.error
    facts = json.loads((tmp_path / "facts.json").read_text())  # written in the caller's working directory
    assert facts["peft"] == "PeftModelForSequenceClassification"
    assert facts["trainable"] == result.trainable_params
    assert facts["tokenizer"] == [101]  # BERT's [CLS]
    assert (facts["steps"], facts["lr"], facts["device"]) == (4, 1e-3, "cpu")
    assert facts["columns"] == ["attention_mask", "input_ids", "labels"] and facts["train_rows"] > 0
    assert facts["dataset_rows"] > 0 and facts["test"] is False
    assert result.metrics == {"accuracy": 0.25} and result.curve == [[1, 1.5]]


def _space(tmp_path, proxy: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(f"""
        study: runner
        model: minilm-l6
        task: {{dataset: tweet-sentiment, text: text, label: label}}
        space: {{method: [lora], rank: [4], targets: [[query, value]], layers: {{top_k: [1, 2], by: top}}}}
        proxy: {{train_examples: 48, eval_examples: 24, steps: 3, batch_size: 8, max_length: 16, {proxy}}}
        search: {{sampler: random, trials: 2, seed: 0}}
        verify: {{test_examples: 24}}
    """))
    return str(path)


@pytest.mark.parametrize("proxy, key, message", [
    ("runner: no_such_module:train", "proxy.runner", "cannot import module 'no_such_module'"),
    ("runner: json:no_function", "proxy.runner", "module 'json' has no 'no_function'"),
    ("runner: 'not a reference'", "proxy.runner", "expected 'package.module:function'"),
    ("runner: 'json:loads', rungs: [1]", "proxy.rungs", "needs the built-in trainer"),
])
def test_a_bad_runner_is_one_line_naming_the_key_at_validate(tmp_path, proxy, key, message):
    line = one_line_error(autopeft("validate", _space(tmp_path, proxy), cwd=tmp_path))
    assert f"{key}:" in line and message in line


@pytest.mark.slow
def test_search_with_runner_flag_trains_every_trial_with_the_users_function(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    out = autopeft("search", _space(tmp_path, "log_every: 1"), "--storage", db, "--runner", EXAMPLE, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    from autopeft.store import Store

    records = Store(db).trials("runner")
    assert [r.status for r in records] == ["complete", "complete"]
    assert all(r.extras.get("runner") == EXAMPLE and r.metrics["accuracy"] >= 0 for r in records)


def test_the_console_script_finds_a_runner_in_the_working_directory_without_sys_path_edits():
    """The installed ``autopeft`` script has its bin directory, not the working directory, on
    ``sys.path`` (``python -P`` reproduces that): the runner is still found where the user runs."""
    import os
    import subprocess
    import sys

    from test_cli import ENTRY

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = f"import sys; assert '' not in sys.path and {str(REPO)!r} not in sys.path; {ENTRY}"
    out = subprocess.run([sys.executable, "-P", "-c", code, "validate", "examples/hf-trainer.yaml"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "objectives: accuracy (max), trainable_params (min)" in out.stdout
