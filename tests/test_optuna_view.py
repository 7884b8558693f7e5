"""An autopeft study read through optuna's own tools: metric names that say the scale, and
user attributes with what was trained — checked on the real optuna-dashboard's JSON API."""

from __future__ import annotations

import dataclasses
import json
import math
from wsgiref.util import setup_testing_defaults

import pytest

from autopeft.search.loop import run_search
from autopeft.search.optuna_view import annotate_study, metric_names, trial_user_attrs
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store, TrialRecord, utcnow
from autopeft.trials.spec import TrialResult

SPACE = """
study: view
model: minilm-l6
task: {dataset: tweet-sentiment}
objectives: {accuracy: max, trainable_params: min}
budget: {max_trainable_params: 1%}
space:
  method: [lora, ia3]
  rank: [2, 4]
  targets: [[query, value]]
  layers: {top_k: [1, 2]}
  learning_rate: {log: [1.0e-4, 1.0e-2]}
proxy: {train_examples: 40, eval_examples: 20, steps: 3, max_length: 16}
search: {sampler: random, trials: 6, seed: 3}
"""


def _runner(spec):
    if spec.trial == 1:
        return TrialResult.failed("out of memory: simulated", [[1, 2.0]])
    return TrialResult(status="complete", metrics={"accuracy": 0.5 + 0.01 * spec.trial, "macro_f1": 0.4},
                       curve=[[3, 1.0]], train_time=0.1, wall_time=0.2, peak_rss_mb=123.0, peak_memory_mb=123.0)


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    """A study whose optuna trials were told by the real loop (a fake trainer), with lora and ia3 trials."""
    url = f"sqlite:///{tmp_path_factory.mktemp('view')}/view.db"
    outcome = run_search(prepare_search(load_space_text(SPACE, "view.yaml")), Store(url), runner=_runner)
    methods = {r.candidate.method for r in outcome.records}
    assert methods == {"lora", "ia3"}, methods  # seed 3 draws both; the IA3 assertions need one
    return url


def _record(**kw) -> TrialRecord:
    base = dict(study="s", number=0, status="complete", params={}, started_at=utcnow(),
                candidate={"method": "ia3", "rank": 16, "alpha": 32.0, "dropout": 0.0, "targets": ["query", "value"],
                           "layers": [4, 5], "learning_rate": 3e-3, "dora": False, "rslora": False, "layer_ranks": None},
                peft_config={"peft_type": "IA3", "target_modules": "x"}, trainable_params=2304,
                metrics={"accuracy": 0.61, "eval_loss": float("nan")},
                resources={"peak_memory_mb": 512.0, "memory_kind": "cpu_peak_rss"})
    return TrialRecord(**{**base, **kw})


# ---------------------------------------------------------------------- pure functions
def test_metric_names_say_the_scale():
    assert metric_names((("accuracy", "max"), ("trainable_params", "min"))) == ["accuracy", "trainable_params_log10"]
    assert metric_names([("eval_loss", "min"), ("peak_memory", "min"), ("train_time", "min")]) == [
        "eval_loss", "peak_memory_mib", "train_time_s"]
    from autopeft.space import load_space_text as load

    assert metric_names(load(SPACE).objectives) == ["accuracy", "trainable_params_log10"]


def test_user_attrs_hold_only_the_fields_the_method_uses():
    attrs = trial_user_attrs(_record())
    assert attrs["method"] == "ia3" and "rank" not in attrs and "alpha" not in attrs and "dora" not in attrs
    assert attrs["targets"] == ["query", "value"] and attrs["layers"] == [4, 5] and attrs["learning_rate"] == 3e-3
    assert attrs["accuracy"] == 0.61 and attrs["eval_loss"] is None  # JSON has no NaN
    assert attrs["trainable_params"] == 2304 and attrs["peak_memory_mib"] == 512.0 and attrs["status"] == "complete"
    assert json.loads(attrs["peft_config"]) == {"peft_type": "IA3", "target_modules": "x"}
    json.dumps(attrs, allow_nan=False)  # every value is plain JSON

    lora = _record(candidate=dataclasses.replace(_record().candidate, method="lora"))
    attrs = trial_user_attrs(lora)
    assert attrs["rank"] == 16 and attrs["alpha"] == 32.0 and attrs["dora"] is False
    # The method's `uses` may be given instead of looked up (the loop has the method at hand).
    assert "rank" not in trial_user_attrs(lora, frozenset({"targets"}))


def test_user_attrs_say_why_a_trial_ended():
    failed = trial_user_attrs(_record(status="failed", error="out of memory", metrics={}, trainable_params=None))
    assert failed["status"] == "failed" and failed["reason"] == "out of memory" and "trainable_params" not in failed
    pruned = trial_user_attrs(_record(status="pruned", extras={"fidelity": 10}))
    assert "step 10" in pruned["reason"]
    infeasible = trial_user_attrs(_record(status="infeasible", error="over budget: 9 > 1", peft_config=None))
    assert infeasible["reason"].startswith("over budget") and "peft_config" not in infeasible


# ---------------------------------------------------------------------- written as the search tells
def test_a_searched_study_reads_in_optuna_without_annotating(tmp_path):
    """The ledger names the metrics when it opens the study and writes each trial's attributes
    before it tells it: the very attributes ``db annotate`` would write."""
    import optuna

    study_url = f"sqlite:///{tmp_path}/fresh.db"  # its own study: never annotated by another test
    run_search(prepare_search(load_space_text(SPACE.replace("trials: 6", "trials: 3"), "view.yaml")),
               Store(study_url), runner=_runner)
    ostudy = optuna.load_study(study_name="view", storage=study_url)
    assert ostudy.metric_names == ["accuracy", "trainable_params_log10"]
    records = {r.number: r for r in Store(study_url).trials("view")}
    assert {t.number for t in ostudy.trials} == set(records)
    for t in ostudy.trials:
        expected = json.loads(json.dumps(trial_user_attrs(records[t.number])))
        assert {k: t.user_attrs[k] for k in expected} == expected
    assert {records[t.number].status for t in ostudy.trials} >= {"complete", "failed"}


# ---------------------------------------------------------------------- annotate an existing study
def test_annotate_names_metrics_and_writes_attrs_idempotently(study_url):
    import optuna

    store = Store(study_url)
    records = {r.number: r for r in store.trials("view")}
    assert annotate_study(store, "view") == len(records)
    assert annotate_study(store, "view") == len(records)  # again: replaced, not duplicated
    ostudy = optuna.load_study(study_name="view", storage=study_url)
    assert ostudy.metric_names == ["accuracy", "trainable_params_log10"]
    for t in ostudy.trials:
        r = records[t.number]
        assert t.user_attrs["status"] == r.status and t.user_attrs["method"] == r.candidate.method
        assert ("rank" in t.user_attrs) == (r.candidate.method == "lora")
        if r.status == "complete":
            # optuna holds log10 of what user_attrs states in parameters
            assert t.values[1] == pytest.approx(math.log10(t.user_attrs["trainable_params"]))
    failed = next(t for t in ostudy.trials if records[t.number].status == "failed")
    assert failed.user_attrs["reason"] == "out of memory: simulated"
    assert failed.user_attrs["error"] == "out of memory: simulated"  # the loop's own attribute is kept
    from sqlalchemy import create_engine, text

    with create_engine(study_url).connect() as c:
        duplicates = c.execute(text("SELECT trial_id, key, COUNT(*) FROM trial_user_attributes "
                                    "GROUP BY trial_id, key HAVING COUNT(*) > 1")).fetchall()
    assert duplicates == []


def test_annotate_a_missing_or_unstarted_study_is_a_one_line_error(study_url, tmp_path):
    from autopeft.errors import StoreError
    from autopeft.search.loop import open_study

    with pytest.raises(StoreError, match="no study 'nope'"):
        annotate_study(Store(study_url), "nope")
    store = Store(f"sqlite:///{tmp_path}/submitted.db")
    open_study(store, prepare_search(load_space_text(SPACE, "view.yaml"), with_data=False))
    with pytest.raises(StoreError, match="no optuna trials") as e:
        annotate_study(store, "view")
    assert "\n" not in str(e.value)


def test_cli_db_annotate(study_url, capsys):
    from autopeft.cli import main

    assert main(["db", "annotate", "view", "--storage", study_url]) == 0
    assert "annotated" in capsys.readouterr().out
    assert main(["db", "annotate", "nope", "--storage", study_url]) == 2


# ---------------------------------------------------------------------- the real optuna-dashboard
def _get(app, path: str) -> dict:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, REQUEST_METHOD="GET")
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_serves_the_names_and_attrs(study_url):
    from optuna_dashboard import wsgi

    store = Store(study_url)
    annotate_study(store, "view")
    app = wsgi(study_url)  # the same URL a user points optuna-dashboard at
    studies = _get(app, "/api/studies")["study_summaries"]
    summary = next(s for s in studies if s["study_name"] == "view")
    detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["accuracy", "trainable_params_log10"]
    records = {r.number: r for r in store.trials("view")}
    seen_ia3 = False
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        r = records[trial["number"]]
        assert attrs["method"] == r.candidate.method and attrs["status"] == r.status
        if r.candidate.method == "ia3":
            seen_ia3 = True
            assert "rank" not in attrs
        if r.status == "complete":
            assert str(r.trainable_params) == attrs["trainable_params"]
            assert json.loads(attrs["peft_config"]) == r.peft_config
    assert seen_ia3
    keys = {a["key"] for a in detail["union_user_attrs"]}
    assert {"method", "learning_rate", "accuracy", "trainable_params", "peft_config"} <= keys
