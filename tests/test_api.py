"""The Python API (``from autopeft import run_study, load_study``) on a tiny real search:
2 trials of 2 steps, random sampler, the bundled model and data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autopeft import AutoPeftError, load_study, run_study
from autopeft.errors import ExportError, SpaceError, StoreError

SPACE = {
    "study": "api",
    "model": "minilm-l6",
    "task": {"dataset": "tweet-sentiment", "metric": "accuracy"},
    "objectives": {"accuracy": "max", "trainable_params": "min"},
    "space": {"method": ["lora", "ia3"], "rank": [2, 4], "targets": [["query", "value"]],
              "layers": {"top_k": [1, 2], "by": "top"}, "learning_rate": {"log": [1.0e-3, 5.0e-3]}},
    "proxy": {"train_examples": 32, "eval_examples": 32, "steps": 4, "batch_size": 8, "max_length": 16,
              "log_every": 1, "seed": 0, "threads": 1},
    "search": {"sampler": "random", "trials": 5, "seed": 0},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('api')}/api.db"
    lines: list[str] = []
    # overrides as Python values: 2 trials of 2 steps instead of the space's 5 of 4
    result = run_study(SPACE, storage=url, trials=2, overrides={"proxy.steps": 2}, progress=lines.append)
    return url, result, lines


def test_import_autopeft_stays_light():
    code = ("import sys, autopeft; from autopeft import run_study, load_study, StudyResult; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'pandas', 'optuna', 'botorch') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import autopeft

    assert {"run_study", "load_study", "StudyResult", "AutoPeftError"} <= set(autopeft.__all__)
    import autopeft.search  # the search's package, a plain one: the function is run_study

    assert not callable(autopeft.search) and "search" not in autopeft.__all__


@pytest.mark.slow
def test_search_returns_frames_and_reports_one_plain_line_per_trial(searched):
    url, result, lines = searched
    assert not result.interrupted and result.name == "api" and result.study.trials_target == 2
    trials = result.trials
    trained = trials[trials["status"].isin(["complete", "failed"])]
    assert len(trained) == 2, trials[["status", "error"]]
    assert set(trials.columns) >= {"number", "status", "method", "rank", "targets", "layers", "learning_rate",
                                   "accuracy", "trainable_params", "peak_memory_mib", "pareto", "error"}
    # Only the fields a method uses: IA3 has no rank (a missing value, not a misleading number).
    for _, row in trials.iterrows():
        assert (row["rank"] is pd_na()) == (row["method"] == "ia3")
    assert "alpha" in trials.columns  # LoRA's: the column exists, missing for IA3 rows
    front = result.front
    # the Pareto-optimal trials that did not diverge (a 2-step proxy may leave none)
    from autopeft.search.analysis.pareto import pareto_front

    assert front["number"].tolist() == [r.number for r in pareto_front(result.records, result.study.objectives)]
    assert front["pareto"].all() and (front["status"] == "complete").all() and front["diverged"].isna().all()
    # plain text, one line at the start and one per trial, no terminal control codes
    assert lines[0].startswith("study api: 0/2") and sum(line.startswith("trial ") for line in lines) == 2
    assert all("\x1b" not in line for line in lines)
    assert "proxy" not in "".join(lines) and "trained 2/2" in lines[-1]
    # the stored space has the override
    assert "steps: 2" in result.study.space_yaml


@pytest.mark.slow
def test_pick_and_export_reuse_the_cli_logic(searched, tmp_path):
    from peft import PeftConfig

    from autopeft.search.analysis.pareto import eligible, knee

    url, result, _ = searched
    if eligible(result.records):
        assert result.pick("knee") == knee(result.records, result.study.objectives)
        assert result.pick("best:accuracy").values[0] == max(result.front["accuracy"])
        how = "best:accuracy"
    else:  # a 2-step proxy can collapse every trial: no pick lands on a diverged one, a number still does
        for way in ("knee", "best:accuracy"):
            with pytest.raises(ExportError, match="all completed trials diverged"):
                result.pick(way)
        how = f"trial:{next(r.number for r in result.records if r.status == 'complete')}"
    assert result.pick(f"trial:{result.records[0].number}") == result.records[0]
    with pytest.raises(ExportError, match="at most 1 parameters"):
        result.pick("budget:1")
    with pytest.raises(ExportError, match="unknown pick"):
        result.pick("nearest")
    out = result.export(tmp_path / "adapter", pick=how)
    provenance = json.loads((out / "autopeft.json").read_text())
    assert provenance["picked_by"] == how and provenance["study"] == "api"
    assert PeftConfig.from_pretrained(str(out)).base_model_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.slow
def test_export_with_train_hands_retrain_the_arguments_it_takes(searched, tmp_path, monkeypatch):
    """``export(train=True)`` is ``export --train``: the training itself is not under test here,
    the call is (it once passed ``records=``, which ``retrain`` no longer takes)."""
    import inspect

    import autopeft.retrain

    takes, calls = inspect.signature(autopeft.retrain.retrain), []
    monkeypatch.setattr(autopeft.retrain, "retrain", lambda *a, **kw: calls.append(takes.bind(*a, **kw).arguments))
    monkeypatch.setattr("autopeft.export.make_portable", lambda *a, **kw: None)
    _, result, _ = searched
    number = next(r.number for r in result.records if r.status == "complete")
    result.export(tmp_path / "trained", pick=f"trial:{number}", train=True, seeds=2, steps=3, baseline=True)
    assert [(c["record"].number, c["seeds"], c["steps"], c["baseline"]) for c in calls] == [(number, 2, 3, True)]


@pytest.mark.slow
def test_load_study_reads_what_search_stored(searched):
    url, result, _ = searched
    loaded = load_study("api", url)
    assert loaded.records == result.records and loaded.study == result.study
    assert loaded.trials.equals(result.trials)
    assert "sqlite" not in repr(loaded)  # the URL (a password, for PostgreSQL) stays out of repr


@pytest.mark.slow
def test_search_again_resumes_from_a_yaml_file(searched, tmp_path):
    import yaml

    url, result, _ = searched
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    again = run_study(str(path), storage=url, trials=3, overrides=["proxy.steps=2"])  # --set style strings
    trained = [r for r in again.records if r.status in ("complete", "failed")]
    assert len(trained) == 3
    before = {r.number: r for r in result.records}
    assert all(r == before[r.number] for r in again.records if r.number in before)


def test_errors_are_autopeft_errors_naming_the_key(tmp_path):
    url = f"sqlite:///{tmp_path}/e.db"
    with pytest.raises(SpaceError, match=r"^overrides: proxy\.steps: ") as e:
        run_study(SPACE, storage=url, overrides={"proxy.steps": "many"})
    assert "\n" not in str(e.value)
    with pytest.raises(SpaceError, match=r"<dict>: space\.rnak: unknown key"):
        run_study({**SPACE, "space": {**SPACE["space"], "rnak": [2]}}, storage=url)
    with pytest.raises(SpaceError, match="no such file"):
        run_study(str(tmp_path / "missing.yaml"), storage=url)
    with pytest.raises(AutoPeftError, match="expected mlflow"):
        run_study(SPACE, storage=url, log_to="wandb")
    with pytest.raises(StoreError, match="does not exist"):
        load_study("api", f"sqlite:///{tmp_path}/nothing.db")
    assert not (tmp_path / "nothing.db").exists()
    from autopeft.store import Store

    Store(url).close()
    with pytest.raises(StoreError, match="no study 'api'"):
        load_study("api", url)


def pd_na():
    import pandas as pd

    return pd.NA


@pytest.mark.slow
def test_repr_is_a_summary(searched):
    _, result, _ = searched
    text = repr(result)
    assert text.startswith("StudyResult('api': 2 trials (") and "front " in text and "peft_type" not in text


def test_the_api_and_the_dashboard_report_the_same_peak_memory():
    """Both tables name it ``peak_memory_mib``: the device's own figure when measured (a GPU's
    allocated peak), else the trial process's resident peak."""
    from datetime import datetime, timezone

    from autopeft.api import trials_frame
    from autopeft.dashboard import data
    from autopeft.store import StudyRecord, TrialRecord

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    study = StudyRecord(name="m", created_at=t0, space_yaml="", space_hash="0" * 32,
                        objectives=(("accuracy", "max"), ("trainable_params", "min")), trials_target=3,
                        model="minilm-l6", model_fingerprint="x", dataset="d", data_fingerprint="y")
    cand = {"method": "lora", "rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["query"], "layers": [5],
            "learning_rate": 1e-3, "dora": False, "rslora": False}
    resources = [{"peak_rss_mb": 900.0, "peak_memory_mb": 120.0, "memory_kind": "cuda"}, {"peak_rss_mb": 800.0}, {}]
    records = [TrialRecord(study="m", number=n, status="complete", candidate=cand, params={}, started_at=t0,
                           trainable_params=1000, metrics={"accuracy": 0.5}, values=[0.5, 1000.0], resources=res)
               for n, res in enumerate(resources)]
    api, dashboard = trials_frame(study, records), data.trials_frame(study, records)
    assert "peak_rss_mb" not in dashboard.columns
    for frame in (api, dashboard):
        assert frame["peak_memory_mib"].tolist()[:2] == [120.0, 800.0] and frame["peak_memory_mib"].isna().tolist()[2]
