"""``--log-to mlflow``: every trial an MLflow run in a local file store, through the loop's
events (the trainer is faked: what is under test is what reaches MLflow)."""

from __future__ import annotations

import json

import pytest

mlflow = pytest.importorskip("mlflow")

from autopeft.errors import AutoPeftError  # noqa: E402
from autopeft.events import Tee, log_to_events  # noqa: E402
from autopeft.mlflow_log import MlflowEvents  # noqa: E402
from autopeft.search.loop import run_search  # noqa: E402
from autopeft.search.prepare import prepare_search  # noqa: E402
from autopeft.space import load_space_text  # noqa: E402
from autopeft.store import Store  # noqa: E402
from autopeft.trials.spec import TrialResult  # noqa: E402

SPACE = """
study: logged
model: minilm-l6
task: {dataset: tweet-sentiment}
budget: {max_trainable_params: 1%}
space:
  method: [lora, ia3]
  rank: [2, 4]
  targets: [[query, value]]
  layers: {top_k: [1, 2]}
  learning_rate: {log: [1.0e-4, 1.0e-2]}
proxy: {train_examples: 40, eval_examples: 20, steps: 3, max_length: 16}
search: {sampler: random, trials: 4, seed: 3}
"""


def fake_runner(spec):
    if spec.trial == 1:
        return TrialResult.failed("out of memory: simulated", [[1, 2.0]])
    return TrialResult(status="complete", metrics={"accuracy": 0.5 + 0.01 * spec.trial, "eval_loss": 0.9},
                       curve=[[1, 1.1], [2, 1.0], [3, 0.9]], train_time=0.1, wall_time=0.2, peak_rss_mb=100.0,
                       peak_memory_mb=100.0)


@pytest.fixture(scope="module")
def prep():
    return prepare_search(load_space_text(SPACE, "logged.yaml"))


@pytest.fixture(params=["sqlite", "file"])
def tracking(request, tmp_path, monkeypatch):
    """A local tracking store: SQLite (MLflow 3's local default) or the ./mlruns file store,
    which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true (see test_refused_store_...)."""
    monkeypatch.chdir(tmp_path)  # the SQLite store puts artifacts under ./mlruns
    if request.param == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return f"file://{tmp_path}/mlruns"
    return f"sqlite:///{tmp_path}/mlflow.db"


def _runs(uri: str, study: str = "logged"):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, {int(r.data.tags["autopeft.trial"]): r for r in runs}


def test_every_trial_is_a_run_with_config_metrics_curve_and_peft_config(prep, tracking, tmp_path):
    logger = MlflowEvents(tracking)
    outcome = run_search(prep, Store(f"sqlite:///{tmp_path}/s.db"), runner=fake_runner, events=Tee(logger))
    client, runs = _runs(tracking)
    assert set(runs) == {r.number for r in outcome.records}
    for record in outcome.records:
        run = runs[record.number]
        assert run.info.run_name == f"logged-trial-{record.number}"
        assert run.data.tags["autopeft.status"] == record.status
        assert run.data.params["method"] == record.candidate.method
        # only the fields the method uses: IA3 has no rank
        assert ("rank" in run.data.params) == (record.candidate.method == "lora")
        assert float(run.data.params["learning_rate"]) == pytest.approx(record.candidate.learning_rate)
        if record.status == "complete":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["accuracy"] == pytest.approx(record.metrics["accuracy"])
            assert run.data.metrics["trainable_params"] == record.trainable_params
            history = client.get_metric_history(run.info.run_id, "train_loss")
            assert sorted((m.step, m.value) for m in history) == [(1, 1.1), (2, 1.0), (3, 0.9)]
            path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="peft_config.json",
                                                       tracking_uri=tracking, dst_path=str(tmp_path / f"a{record.number}"))
            assert json.loads(open(path).read()) == record.peft_config
        elif record.status == "failed":
            assert run.info.status == "FAILED" and run.data.tags["autopeft.reason"] == "out of memory: simulated"
        else:  # infeasible: never trained
            assert run.info.status == "KILLED"


def test_logging_again_is_idempotent(prep, tracking, tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    outcome = run_search(prep, Store(url), runner=fake_runner, events=MlflowEvents(tracking))
    again = MlflowEvents(tracking)
    assert again.log_records(outcome.study, outcome.records) == 0  # e.g. after --workers, or a resume
    _, runs = _runs(tracking)
    assert len(runs) == len(outcome.records)


def test_an_unreachable_tracking_server_never_stops_the_search(prep, tracking, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    warnings = []
    logger = MlflowEvents(tracking, warn=warnings.append)

    def boom(*a, **k):
        raise MlflowException("connection refused")

    monkeypatch.setattr(logger.client, "create_run", boom)
    outcome = run_search(prep, Store(f"sqlite:///{tmp_path}/s.db"), runner=fake_runner, events=logger)
    assert len([r for r in outcome.records if r.status in ("complete", "failed")]) == 4
    assert warnings and all("not logged: connection refused" in w and "\n" not in w for w in warnings)


def test_cli_log_to_flag(prep, tracking, tmp_path, monkeypatch, capsys):
    import functools

    from autopeft.cli import main
    from autopeft.search import loop

    monkeypatch.setattr(loop, "run_search", functools.partial(loop.run_search, runner=fake_runner))
    space = tmp_path / "logged.yaml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["search", str(space), "--storage", url, "--trials", "2", "--log-to", f"mlflow:{tracking}"]) == 0
    assert f"trials logged to MLflow at {tracking}" in capsys.readouterr().out
    _, runs = _runs(tracking)
    assert len(runs) == len(Store(url).trials("logged"))
    assert main(["search", str(space), "--storage", url, "--log-to", "tensorboard"]) == 2
    assert "expected mlflow or mlflow:TRACKING_URI" in capsys.readouterr().err
    assert main(["search", str(space), "--storage", url, "--submit-only", "--log-to", "mlflow"]) == 2


def test_missing_mlflow_is_a_one_line_error(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(AutoPeftError, match=r"pip install 'autopeft\[mlflow\]'"):
        log_to_events("mlflow")


def test_a_refused_tracking_store_is_said_before_any_trial(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(AutoPeftError, match="cannot use the tracking URI") as e:
        MlflowEvents(f"file://{tmp_path}/mlruns")
    assert "\n" not in str(e.value)


def test_python_api_log_to(tmp_path, monkeypatch):
    import functools

    from autopeft import run_study
    from autopeft.search import loop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "run_search", functools.partial(loop.run_search, runner=fake_runner))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    space = tmp_path / "logged.yaml"
    space.write_text(SPACE)
    result = run_study(str(space), storage=f"sqlite:///{tmp_path}/api.db", trials=2, log_to=f"mlflow:{uri}")
    _, runs = _runs(uri)
    assert set(runs) == {r.number for r in result.records}
