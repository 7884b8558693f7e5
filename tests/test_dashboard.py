"""The dashboard's pages under Streamlit's AppTest (the real script, no browser).

Three kinds of database: (a) a real SQLite study made by a real tiny search (built once per
session), (b) a synthetic 1,000-trial study, (c) the empty and failure cases: no studies, a
study with no trials, only failed trials, a missing file, a malformed or unreachable URL.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from autopeft.dashboard import launch
from test_store_contract import CANDIDATE

ROOT = Path(__file__).resolve().parent.parent
APP = str(launch.APP)  # the file `autopeft dashboard` runs
PAGES = ["Studies", "Pareto front", "Hypervolume", "Trials", "Importance", "Compare", "Export", "New search"]

TINY_SPACE = """
study: tiny
model: minilm-l6
task: {dataset: tweet-sentiment, text: text, label: label, metric: accuracy}
objectives: {accuracy: max, trainable_params: min}
space:
  method: [lora, adalora]
  rank: [2, 4]
  targets: [[query, value]]
  layers: {top_k: [1, 2], by: top}
  learning_rate: {log: [1.0e-3, 5.0e-3]}
proxy: {train_examples: 64, eval_examples: 32, steps: 4, batch_size: 8, max_length: 32, log_every: 1, seed: 0}
search: {sampler: random, trials: 3, seed: 0}
"""


def _bench():
    spec = importlib.util.spec_from_file_location("dashboard_render", ROOT / "benchmarks" / "dashboard_render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def real_url(tmp_path_factory):
    """A real study from a real tiny search (3 trials of 4 steps on 64 examples)."""
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space.loader import load_space_text
    from autopeft.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('dash-real')}/real.db"
    store = Store(url)
    outcome = run_search(prepare_search(load_space_text(TINY_SPACE)), store)
    assert any(r.status == "complete" for r in outcome.records), [r.error for r in outcome.records]
    store.close()
    return url


@pytest.fixture(scope="session")
def synthetic_url(tmp_path_factory):
    """Two synthetic studies of 1,000 and 50 trials written straight into the store."""
    from autopeft.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('dash-synth')}/synth.db"
    store = Store(url)
    bench = _bench()
    bench.synthetic_study(store, "synthetic", 1000)
    bench.synthetic_study(store, "small", 50, seed=3)
    bench.synthetic_study(store, "three", 60, seed=4,
                          objectives=(("accuracy", "max"), ("trainable_params", "min"), ("peak_memory", "min")))
    store.close()
    return url


@pytest.fixture(scope="session")
def edge_url(tmp_path_factory):
    """No-trial, failed-only and infeasible-only studies."""
    from autopeft.store import Store, StudyRecord, TrialRecord, utcnow

    url = f"sqlite:///{tmp_path_factory.mktemp('dash-edge')}/edge.db"
    store = Store(url)
    for name in ("no-trials", "only-failed"):
        store.add_study(StudyRecord(name=name, created_at=utcnow(), space_yaml="", space_hash="0" * 32,
                                    objectives=(("accuracy", "max"), ("trainable_params", "min")), trials_target=3,
                                    model="minilm-l6", model_fingerprint="x", dataset="d", data_fingerprint="y"))
    store.add_study(StudyRecord(name="with-map", created_at=utcnow(), space_yaml="", space_hash="0" * 32,
                                objectives=(("accuracy", "max"),), trials_target=3, model="minilm-l6",
                                model_fingerprint="x", dataset="d", data_fingerprint="y",
                                importance={"kind": "spt", "modules": ["query", "value"],
                                            "scores": [[0.1, 0.2], [0.3, None]], "note": "gradient norm"}))
    for n in range(3):
        store.save_trial(TrialRecord(study="only-failed", number=n, status="failed" if n < 2 else "infeasible",
                                     candidate={**CANDIDATE, "targets": ["query"], "layers": [5]},
                                     params={}, started_at=utcnow(), error=f"boom {n}: CUDA out of memory"))
    store.close()
    return url


@pytest.fixture
def app(monkeypatch):
    """``app(url, page, study=None, read_only=False)`` -> an AppTest that has run once."""
    from streamlit.testing.v1 import AppTest

    def run(url: str, page: str, study: str | None = None, read_only: bool = False):
        monkeypatch.setenv("AUTOPEFT_DASHBOARD_STORAGE", url)
        monkeypatch.setenv("AUTOPEFT_DASHBOARD_READ_ONLY", "1" if read_only else "0")
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["page"] = page
        if study:
            at.session_state["study"] = study
        return at.run()

    return run


def _ok(at):
    """No exception and no error element (but a failed trial's own error text): rendered cleanly."""
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error if not e.value.startswith(("failed: ", "infeasible: "))]
    assert not errors, errors
    return at


def _text(at) -> str:
    parts = [e.value for kind in ("markdown", "info", "error", "warning", "success", "caption", "header", "code")
             for e in at.get(kind)]
    return "\n".join(map(str, parts))


def _charts(at) -> int:
    return len(at.get("plotly_chart"))


# ---------------------------------------------------------------------- (a) real tiny search
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_the_real_study(app, real_url, page):
    at = _ok(app(real_url, page))
    if page in ("Pareto front", "Hypervolume"):
        assert _charts(at) >= 1
    if page == "Studies":
        frame = at.dataframe[0].value
        assert list(frame["study"]) == ["tiny"] and frame["complete"].iloc[0] >= 1


def test_real_trial_detail_shows_candidate_config_and_curve(app, real_url):
    at = _ok(app(real_url, "Trials"))
    assert at.selectbox(key="trial_number").value is not None
    assert len(at.json) >= 2  # candidate and peft config
    assert _charts(at) >= 1  # learning curve


def test_real_export_is_peft_adapter_config(app, real_url, tmp_path):
    from peft import PeftConfig

    at = _ok(app(real_url, "Export"))
    code = [c.value for c in at.code]
    assert any(c.startswith("autopeft export tiny") and "--pick knee" in c for c in code)
    config = json.loads(code[-1])
    (tmp_path / "adapter_config.json").write_text(code[-1])
    assert PeftConfig.from_pretrained(str(tmp_path)).peft_type.value == config["peft_type"]
    at.radio(key="export_how").set_value("trial number").run()
    _ok(at)
    assert any("--trial" in c.value for c in at.code)


# ---------------------------------------------------------------------- (b) synthetic 1,000 trials
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_1000_trials(app, synthetic_url, page):
    at = _ok(app(synthetic_url, page, "synthetic"))
    if page in ("Pareto front", "Hypervolume", "Importance", "Compare"):
        assert _charts(at) >= 1, page


def test_pareto_figure_marks_front_and_baseline(app, synthetic_url):
    from autopeft.dashboard import data, render
    from autopeft.store import Store

    store = Store(synthetic_url)
    sd = data.load_study(store, "synthetic")
    frame = data.trials_frame(sd.study, sd.records)
    points = data.pair_front(frame, "trainable_params", "accuracy", {"accuracy": "max", "trainable_params": "min"})
    fig = render.pareto_figure(points, "trainable_params", "accuracy")
    names = [t.name for t in fig.data]
    assert "Pareto front" in names and any("default LoRA" in n for n in names)
    assert points["front_xy"].sum() == frame["pareto"].sum()  # two objectives: the pair front is the front


def test_trials_filters(app, synthetic_url):
    at = app(synthetic_url, "Trials", "synthetic")
    at.multiselect(key="filter_state").set_value(["failed"]).run()
    assert not at.exception
    assert set(at.dataframe[0].value["status"]) == {"failed"}
    assert "non-finite loss" in at.error[0].value  # the detail of a failed trial shows its error
    at.multiselect(key="filter_state").set_value([]).run()
    at.toggle(key="filter_front").set_value(True).run()
    assert _ok(at).dataframe[0].value["pareto"].all()


def test_pareto_switches_axes_and_compare_overlays(app, synthetic_url):
    at = _ok(app(synthetic_url, "Compare", "synthetic"))
    assert set(at.multiselect(key="compare_studies").value) == {"synthetic", "small", "three"}
    assert len(at.get("plotly_chart")) == 1
    at = _ok(app(synthetic_url, "Pareto front", "synthetic"))
    at.selectbox(key="pareto_x").set_value("accuracy").run()
    assert _ok(at).selectbox(key="pareto_y").value == "trainable_params"


def test_three_objectives_draw_in_3d_and_in_pairs(app, synthetic_url):
    at = _ok(app(synthetic_url, "Pareto front", "three"))
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in spec["data"]} == {"scatter3d"}
    at.toggle(key="pareto_3d").set_value(False).run()
    spec = json.loads(_ok(at).get("plotly_chart")[0].proto.spec)
    assert any(t.get("name") == "Pareto front" for t in spec["data"])
    _ok(app(synthetic_url, "Hypervolume", "three"))


def test_live_refresh_and_open_from_studies(app, synthetic_url):
    at = app(synthetic_url, "Trials", "small")
    at.sidebar.toggle(key="live").set_value(True).run()
    assert _ok(at).dataframe[0].value["number"].max() == 49
    # A click on a Studies row stores where to go; the next run opens that study's front.
    at = app(synthetic_url, "Studies")
    at.session_state["_goto"] = ("Pareto front", "small")
    at.run()
    assert at.sidebar.radio(key="page").value == "Pareto front" and at.sidebar.selectbox(key="study").value == "small"
    assert "Pareto front - small" in _text(_ok(at))


def test_export_budget_pick_and_impossible_budget(app, synthetic_url):
    at = app(synthetic_url, "Export", "synthetic")
    at.radio(key="export_how").set_value("budget").run()
    at.text_input(key="export_budget").set_value("1").run()
    assert not at.exception and "no completed trial trains at most 1 parameters" in _text(at)
    at.text_input(key="export_budget").set_value("100k").run()
    assert any("--pick budget:100k" in c.value for c in _ok(at).code)


# ---------------------------------------------------------------------- (c) empty and failure cases
@pytest.mark.parametrize("page", PAGES)
def test_empty_database(app, tmp_path, page):
    from autopeft.store import Store

    url = f"sqlite:///{tmp_path}/empty.db"
    Store(url).close()
    at = _ok(app(url, page))
    if page != "New search":
        assert "No studies" in _text(at)


@pytest.mark.parametrize("study", ["no-trials", "only-failed"])
@pytest.mark.parametrize("page", PAGES)
def test_studies_without_completed_trials(app, edge_url, study, page):
    at = _ok(app(edge_url, page, study))
    if page in ("Pareto front", "Hypervolume", "Export"):
        expected = {"no-trials": "has no trials yet", "only-failed": "has no completed trial yet"}[study]
        assert expected in _text(at)
    if page == "Importance":
        assert "No importance recorded" in _text(at)


def test_stored_importance_map_is_drawn(app, edge_url):
    at = _ok(app(edge_url, "Importance", "with-map"))
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "spt" in fig["layout"]["title"]["text"] and fig["data"][0]["x"] == ["query", "value"]


def test_failed_trial_detail_shows_error(app, edge_url):
    at = app(edge_url, "Trials", "only-failed")
    assert not at.exception
    assert "CUDA out of memory" in "\n".join(e.value for e in at.error)


@pytest.mark.parametrize("url, expected", [
    ("sqlite:////no/such/dir/x.db", "does not exist"),
    ("not a url", "is not a database URL"),
    ("postgresql+psycopg://user:s3cret@127.0.0.1:1/db", "cannot"),
])
def test_bad_storage_urls_are_messages(app, url, expected):
    at = app(url, "Pareto front")
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert expected in errors
    assert "s3cret" not in _text(at) + errors + "\n".join(str(m.value) for m in at.sidebar.get("markdown"))


def test_missing_sqlite_file_is_not_created(app, tmp_path):
    at = app(f"sqlite:///{tmp_path}/missing.db", "Studies")
    assert not at.exception and "does not exist yet" in "\n".join(e.value for e in at.error)
    assert not (tmp_path / "missing.db").exists()


# ---------------------------------------------------------------------- new search / read-only
def test_read_only_hides_new_search(app, synthetic_url):
    at = _ok(app(synthetic_url, "New search", "synthetic", read_only=True))
    assert "New search" not in at.sidebar.radio(key="page").options
    assert at.sidebar.radio(key="page").value == "Studies"


def test_new_search_validates_live_and_creates_a_study(app, tmp_path):
    from autopeft.store import Store

    url = f"sqlite:///{tmp_path}/new.db"
    at = _ok(app(url, "New search"))
    at.text_area(key="space_yaml").set_value(TINY_SPACE.replace("rank: [2, 4]", "rank: [two]")).run()
    errors = "\n".join(e.value for e in at.error)
    assert "space.rank" in errors and at.button(key="space_submit").disabled
    at.text_area(key="space_yaml").set_value(TINY_SPACE.replace("study: tiny", "study: from-ui")).run()
    _ok(at).button(key="space_submit").click().run()
    _ok(at)
    store = Store(url)
    created = store.get_study("from-ui")
    assert created.trials_target == 3 and store.trials("from-ui") == []
    # Submitting again must not touch the existing study.
    at.button(key="space_submit").click().run()
    assert "already exists" in "\n".join(e.value for e in at.error)
    assert store.get_study("from-ui") == created


def test_new_search_starts_from_a_bundled_space(app, tmp_path):
    at = _ok(app(f"sqlite:///{tmp_path}/b.db", "New search"))
    assert "study: quickstart" in at.text_area(key="space_yaml").value
    assert "Valid: study **quickstart**" in _text(at)


# ---------------------------------------------------------------------- launch and hypervolume
def test_launch_binds_localhost_and_never_prints_the_password(monkeypatch, capsys):
    import subprocess

    seen = {}

    class FakeProc:
        def __init__(self, cmd, env):
            seen.update(cmd=cmd, env=env)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeProc)
    url = "postgresql+psycopg://me:s3cret@db.example:5432/autopeft"
    assert launch.launch(url, port=8599, read_only=True) == 0
    out = capsys.readouterr().out
    assert "http://localhost:8599" in out and "s3cret" not in out and "***" in out
    cmd = seen["cmd"]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[-1] == "--read-only"
    assert "s3cret" not in " ".join(cmd) and seen["env"]["AUTOPEFT_DASHBOARD_STORAGE"] == url


def test_hypervolume_matches_botorch_and_never_decreases(synthetic_url):
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    from autopeft.search.analysis.hypervolume import hypervolume_report
    from autopeft.search.analysis.pareto import completed
    from autopeft.store import Store

    store = Store(synthetic_url)
    study, records = store.get_study("synthetic"), store.trials("synthetic")
    report = hypervolume_report(records, study.objectives)
    values = [v for _, v in report.history]
    assert all(b >= a for a, b in zip(values, values[1:])) and 0 < report.value <= 1
    # Independent check: botorch on the same normalised points (it maximises; parameters
    # are compared on log10, autopeft.search.scales).
    done = completed(records)
    pts = np.array([[r.values[0], -np.log10(r.values[1])] for r in done])
    ideal = np.array([report.ideal[0], -np.log10(report.ideal[1])])
    ref = np.array([report.reference[0], -np.log10(report.reference[1])])
    scaled = (pts - ref) / (ideal - ref)
    expected = Hypervolume(ref_point=torch.zeros(2, dtype=torch.double)).compute(torch.tensor(scaled[(scaled > 0).all(1)]))
    assert report.value == pytest.approx(float(expected), rel=1e-9)


def test_hypervolume_of_known_points():
    from autopeft.search.analysis.hypervolume import hypervolume_report
    from autopeft.store import TrialRecord, utcnow

    objectives = (("accuracy", "max"), ("trainable_params", "min"))
    recs = [TrialRecord(study="s", number=i, status="complete", candidate=CANDIDATE, params={}, started_at=utcnow(), values=v)
            for i, v in enumerate([[0.5, 100.0], [1.0, 200.0], [0.5, 200.0]])]
    report = hypervolume_report(recs, objectives)
    # Losses scaled to the box [ideal, ideal + 1.1 * range]: points (1/1.1, 0) and (0, 1/1.1).
    expected = 1 - (1 / 1.1) ** 2
    assert report.value == pytest.approx(expected)
    # The reference point lies 10 % of the range beyond the worst value, parameters on log10.
    assert report.reference == pytest.approx((0.45, 10 ** (np.log10(200) + 0.1 * np.log10(2))))
    assert [v for _, v in report.history][0] == pytest.approx(0.1 / 1.1)


# ---------------------------------------------------------------------- reading polish
def _display(element):
    """The text each cell of an ``st.dataframe`` shows (the Styler's display values)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return convert_arrow_bytes_to_pandas_df(element.proto.arrow_data.styler.display_values)


def test_tables_show_three_significant_digits_and_dash_for_unused_fields(app, synthetic_url):
    at = _ok(app(synthetic_url, "Trials", "synthetic"))
    element = at.dataframe[0]
    values, shown = element.value, _display(element)
    assert len(values) == len(shown) == 1000
    # the values stay numbers (sorting by learning rate is numeric); only the text is rounded
    assert values["learning_rate"].dtype.kind == "f"
    for raw, text in zip(values["learning_rate"], shown["learning_rate"]):
        assert text == f"{raw:.3g}" and float(text) == pytest.approx(raw, rel=5e-3)
    done = values["accuracy"].notna()
    assert all(t == f"{v:.3g}" for v, t in zip(values["accuracy"][done], shown["accuracy"][done]))
    assert (shown["accuracy"][~done] == "-").all()
    # IA3 uses no rank: '-' as in `autopeft show`; the other methods show theirs
    ia3 = values["method"] == "ia3"
    assert ia3.any() and (shown["rank"][ia3] == "-").all() and values["rank"][ia3].isna().all()
    assert element.proto.placeholder == "-"  # how the grid draws a missing value (else "None")
    assert shown["rank"][~ia3].isin(["2", "4", "8", "16"]).all()
    assert all(t == (f"{int(v):,}" if v == v else "-") for v, t in zip(values["trainable_params"], shown["trainable_params"]))
    assert values["trainable_params"][values["status"] == "infeasible"].notna().all()  # counted, never trained
    # the Pareto front table and the Studies table too
    at = _ok(app(synthetic_url, "Pareto front", "synthetic"))
    shown = _display(at.dataframe[0])
    assert shown["learning_rate"].str.fullmatch(r"[0-9.e+-]+").all() and shown["learning_rate"].str.len().max() <= 9
    assert at.dataframe[0].proto.placeholder == "-"
    at = _ok(app(synthetic_url, "Studies"))
    shown = _display(at.dataframe[0])
    assert shown["best accuracy"].str.fullmatch(r"0\.\d{1,3}").all()


def test_hover_labels_are_rounded_and_dash_for_unused_fields(synthetic_url):
    from autopeft.dashboard import data, render
    from autopeft.store import Store

    sd = data.load_study(Store(synthetic_url), "synthetic")
    frame = data.trials_frame(sd.study, sd.records)
    custom, template = render._hover(frame, ["accuracy", "learning_rate"])
    cols = ["number", "method", "rank", "layers", "targets", "trainable_params", "accuracy", "learning_rate"]
    rows = [dict(zip(cols, row)) for row in custom]
    assert all(r["rank"] == "-" for r in rows if r["method"] == "ia3")
    assert all(len(r["learning_rate"].replace("0.", "").lstrip("0")) <= 3 for r in rows)


@pytest.mark.parametrize("query, page", [
    ({"page": "pareto", "study": "small"}, "Pareto front"),
    ({"page": "Pareto front", "study": "small"}, "Pareto front"),  # the page's title works too
    ({"page": "trials", "study": "small"}, "Trials"),
    ({"page": "no-such-page", "study": "small"}, "Studies"),
])
def test_pages_open_from_the_url(synthetic_url, monkeypatch, query, page):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUTOPEFT_DASHBOARD_STORAGE", synthetic_url)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    _ok(at.run())
    assert at.sidebar.radio(key="page").value == page and at.sidebar.selectbox(key="study").value == "small"
    assert at.query_params == {"page": {"Pareto front": "pareto", "Trials": "trials", "Studies": "studies"}[page],
                               "study": "small"}


def test_navigation_writes_the_url(synthetic_url, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUTOPEFT_DASHBOARD_STORAGE", synthetic_url)
    at = _ok(AppTest.from_file(APP, default_timeout=120).run())
    assert at.query_params == {"page": "studies", "study": "three"}  # the newest study by default
    at.sidebar.radio(key="page").set_value("Hypervolume").run()
    assert _ok(at).query_params == {"page": "hypervolume", "study": "three"}
    at.sidebar.selectbox(key="study").set_value("small").run()
    assert _ok(at).query_params == {"page": "hypervolume", "study": "small"}
    assert "Hypervolume vs trials - small" in _text(at)
    at.sidebar.radio(key="page").set_value("New search").run()
    assert _ok(at).query_params == {"page": "new"}
    # A Studies row click opens that study's front, and the URL says so.
    at.sidebar.radio(key="page").set_value("Studies").run()
    at.session_state["_goto"] = ("Pareto front", "synthetic")
    at.run()
    assert _ok(at).query_params == {"page": "pareto", "study": "synthetic"}


def test_launcher_hides_streamlits_deploy_toolbar():
    from streamlit import config

    cmd = launch.command()
    i = cmd.index("--client.toolbarMode")
    assert cmd[i + 1] == "minimal" and i < cmd.index("--")  # a streamlit flag, not an app argument
    option = config._config_options["client.toolbarMode"]  # a real option of the installed Streamlit
    assert '"minimal"' in option.description and "deploy" in option.description.lower()


def test_the_pareto_page_shows_proxy_vs_verified_with_fidelity_and_a_diverged_baseline(app, tmp_path):
    import dataclasses

    from autopeft.search.analysis.pareto import pareto_front
    from autopeft.store import Store
    from autopeft.store.verifications import VerificationRecord, Verifications

    url = f"sqlite:///{tmp_path / 'verified.db'}"
    store = Store(url)
    _bench().synthetic_study(store, "vs", 40, seed=5)
    study, records = store.get_study("vs"), store.trials("vs")
    front = pareto_front(records, study.objectives)
    runs = Verifications(store)
    protocol = {"steps": 100}
    jobs = [VerificationRecord("vs", f"trial:{r.number}", s, protocol, r.candidate, r.number) for r in front for s in (0, 1)]
    jobs += [VerificationRecord("vs", "baseline", s, protocol, CANDIDATE) for s in (0, 1)]
    runs.add(jobs)
    while (job := runs.claim("vs", "test")) is not None:  # stored results of a verification (written, not trained)
        base = job.subject == "baseline"
        acc = 0.42 if base else 0.5 + 0.01 * job.seed + 0.001 * (job.trial_number or 0)
        runs.finish(dataclasses.replace(job, status="complete", metrics={"accuracy": acc}, test_metrics={"accuracy": acc},
                                        trainable_params=75_000 if base else 5_000,
                                        extras={"predicted_classes": 1 if base else 3, "majority_rate": 0.42}))
    at = _ok(app(url, "Pareto front", "vs"))
    assert "Proxy vs verified" in [h.value for h in at.subheader]
    assert any("proxy fidelity" in c.value for c in at.caption)
    assert any("Default LoRA diverged" in w.value and "not a comparison" in w.value for w in at.warning)
    assert at.dataframe[-1].value["number"].tolist() == sorted(r.number for r in front)
