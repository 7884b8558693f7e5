"""Exports travel: the adapter config names the model's hub id, not a path into site-packages
or a cache, and the snippet ``autopeft export`` prints loads it here with no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store, StudyRecord, utcnow
from autopeft.trials.spec import TrialResult

SPACE = """
study: travel
model: minilm-l6
task: {dataset: tweet-sentiment}
space:
  method: [lora, bottleneck]
  rank: [2]
  targets: [[query, value]]
  layers: [5]
  learning_rate: 1.0e-3
proxy: {train_examples: 40, eval_examples: 20, steps: 3, max_length: 16}
search: {sampler: random, trials: 4, seed: 0}
"""


def _ok(spec):
    return TrialResult(status="complete", metrics={"accuracy": 0.5 + 0.01 * spec.trial}, curve=[[3, 1.0]],
                       train_time=0.1, wall_time=0.2, peak_rss_mb=100.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study with real built configs (the trainer is faked: only the export is under test)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('travel')}/t.db"
    prep = prepare_search(load_space_text(SPACE, "travel.yaml"))
    outcome = run_search(prep, Store(url), runner=_ok)
    assert {r.candidate.method for r in outcome.records if r.status == "complete"} == {"lora", "bottleneck"}
    # What the trial recorded: the machine's own path (site-packages, for the bundled model).
    assert outcome.records[0].peft_config.get("base_model_name_or_path", outcome.records[0].peft_config.get("base_model")) \
        == prep.model.location
    return url, prep, outcome


def _local_paths() -> list[str]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], os.environ["AUTOPEFT_CACHE"],
             os.path.expanduser("~/.cache")}
    return sorted(p for p in paths if p)


def _export(url, number, out, capsys):
    from autopeft.cli import main

    assert main(["export", "travel", "--storage", url, "--trial", str(number), "--out", str(out)]) == 0
    return capsys.readouterr().out


def test_exported_config_names_the_hub_id_and_autopeft_json_the_local_dir(study, tmp_path, capsys):
    url, prep, outcome = study
    lora = next(r for r in outcome.records if r.candidate.method == "lora")
    out = tmp_path / "lora"
    _export(url, lora.number, out, capsys)
    text = (out / "adapter_config.json").read_text()
    config = json.loads(text)
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    for path in _local_paths():
        assert path not in text, path
    assert "site-packages" not in text and not re.search(r'"/', text)  # no absolute path at all
    provenance = json.loads((out / "autopeft.json").read_text())
    assert provenance["model_location"] == prep.model.location and provenance["model"] == "minilm-l6"
    assert provenance["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_printed_snippet_loads_offline(study, tmp_path, capsys):
    url, _, outcome = study
    lora = next(r for r in outcome.records if r.candidate.method == "lora")
    out = tmp_path / "adapter"
    printed = _export(url, lora.number, out, capsys)
    snippet = printed.split("load it with:\n", 1)[1]
    assert "resolve_model(ModelSpec('minilm-l6'))" in snippet
    script = snippet + "\nprint('TRAINABLE', model.get_nb_trainable_parameters()[0])\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-hf-cache")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"TRAINABLE {lora.trainable_params}" in run.stdout


def test_bottleneck_export_travels_too(study, tmp_path, capsys):
    url, prep, outcome = study
    record = next(r for r in outcome.records if r.candidate.method == "bottleneck")
    out = tmp_path / "bn"
    printed = _export(url, record.number, out, capsys)
    config = json.loads((out / "bottleneck_config.json").read_text())
    assert config["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    script = printed.split("load it with:\n", 1)[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-hf-cache")}
    run = subprocess.run([sys.executable, "-c", script + "\nprint('OK', type(model).__name__)\n"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-2000:]


def test_train_export_is_rewritten_after_peft_saves_the_weights(tmp_path):
    from autopeft.export import make_portable

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "/site-packages/x"}))
    study = StudyRecord(name="s", created_at=utcnow(), space_yaml="", space_hash="0", objectives=(("accuracy", "max"),),
                        trials_target=1, model="minilm-l6", model_fingerprint="", dataset="d", data_fingerprint="")
    make_portable(tmp_path, study)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("model, expected", [
    ("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2"),
    ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("org/some-model", "org/some-model"),  # a hub id: as given
    ("/data/models/mine", "/data/models/mine"),  # the user's own directory: as given
])
def test_portable_model_id(model, expected):
    from autopeft.export import portable_model_id

    assert portable_model_id(model) == expected
