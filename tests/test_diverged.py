"""A diverged trial (``autopeft.search.analysis.divergence``) is never Pareto-optimal and never picked,
wherever a front or a pick is made; it stays in every trial table, labelled as diverged.

The study: a classification task whose majority class is 80 % of the validation split. Its
cheapest trial (a VeRA-sized 772 parameters) collapsed to (nearly) always answering that
class, so its accuracy 0.80 is no better than the majority class: on parameters alone it would sit on the
front, and be the ``best:trainable_params`` and the only ``budget:1k`` pick.
"""

from __future__ import annotations

import io
import warnings
from datetime import timedelta

import pytest

from autopeft.errors import ExportError
from autopeft.search.analysis.pareto import best, diverged, eligible, knee, pareto_front, pick, within_budget
from autopeft.store import Store, StudyRecord, TrialRecord, utcnow

OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))
LAYERS = list(range(6))
HEALTHY = {"predicted_classes": 3, "majority_rate": 0.80}
COLLAPSED = {"predicted_classes": 2, "majority_rate": 0.80}
DIVERGED = 1  # the cheapest trial's number


def _study(name="div"):
    return StudyRecord(name=name, created_at=utcnow(), space_yaml="", space_hash="0" * 32, objectives=OBJECTIVES,
                       trials_target=5, model="minilm-l6", model_fingerprint="x", dataset="d", data_fingerprint="y")


def _trial(study, number, accuracy, params, extras, *, method="lora", rank=4, targets=("query", "value"),
           layers=LAYERS, status="complete"):
    start = utcnow() + timedelta(seconds=number)
    done = status == "complete"
    return TrialRecord(
        study=study, number=number, status=status,
        candidate={"method": method, "rank": rank, "alpha": 2.0 * rank, "dropout": 0.0, "targets": list(targets),
                   "layers": list(layers), "learning_rate": 1e-3, "dora": False, "rslora": False},
        params={}, started_at=start, peft_config={"peft_type": "LORA", "r": rank},
        trainable_params=params, metrics={"accuracy": accuracy} if done else {},
        values=[accuracy, float(params)] if done else None,
        curve=[[0, 0.7], [10, 0.5]] if done else [], extras=dict(extras) if done else {},
        error=None if done else "non-finite loss at step 3", finished_at=start + timedelta(seconds=1),
    )


def _records(study="div"):
    return [
        _trial(study, 0, 0.86, 75_000, {**HEALTHY, "baseline": "default LoRA"}, rank=8),
        _trial(study, DIVERGED, 0.80, 772, {**COLLAPSED, "baseline": "cheapest"}, method="vera", layers=[5]),
        _trial(study, 2, 0.83, 5_000, HEALTHY, rank=2, layers=[4, 5]),
        _trial(study, 3, 0.88, 200_000, HEALTHY, rank=16),
        _trial(study, 4, None, 9_000, {}, status="failed"),
    ]


RECORDS = _records()
HEALTHY_RECORDS = [r for r in RECORDS if r.number != DIVERGED]


@pytest.fixture
def url(tmp_path):
    """The study in a real SQLite store, written through the store's own API."""
    url = f"sqlite:///{tmp_path / 'div.db'}"
    store = Store(url)
    store.add_study(_study())
    for r in _records():
        store.save_trial(r)
    store.close()
    return url


def numbers(records):
    return [r.number for r in records]


# ---------------------------------------------------------------------- pareto.py
def test_the_collapsed_trial_is_diverged_and_the_others_are_not():
    assert "no better than the majority class" in diverged(RECORDS[DIVERGED])
    assert [diverged(r) for r in HEALTHY_RECORDS] == [None] * 4
    assert numbers(eligible(RECORDS)) == [0, 2, 3]


def test_front_leaves_out_the_diverged_cheapest_point():
    assert numbers(pareto_front(RECORDS, OBJECTIVES)) == [0, 2, 3]


def test_knee_is_taken_over_the_front_without_the_diverged_point():
    assert knee(RECORDS, OBJECTIVES).number == knee(HEALTHY_RECORDS, OBJECTIVES).number == 0


def test_best_and_budget_picks_never_land_on_the_diverged_trial():
    assert best(RECORDS, OBJECTIVES, "trainable_params").number == 2
    assert within_budget(RECORDS, OBJECTIVES, 10_000).number == 2
    with pytest.raises(ExportError, match="1 diverged trial"):
        within_budget(RECORDS, OBJECTIVES, 1_000)
    study = _study()
    assert pick(study, RECORDS, "best:trainable_params").number == 2
    assert pick(study, RECORDS, "budget:10k").number == 2
    with pytest.raises(ExportError, match="no completed trial trains at most 1,000 parameters"):
        pick(study, RECORDS, "budget:1k")


@pytest.mark.parametrize("how", ["knee", "best:accuracy", "best:trainable_params", "budget:1M"])
def test_every_pick_says_when_all_completed_trials_diverged(how):
    only = [RECORDS[DIVERGED], RECORDS[4]]
    with pytest.raises(ExportError, match="all completed trials diverged"):
        pick(_study(), only, how)
    assert pareto_front(only, OBJECTIVES) == []


# ---------------------------------------------------------------------- hypervolume
def test_hypervolume_ignores_the_diverged_trial():
    from autopeft.search.analysis.hypervolume import hypervolume_report

    with_it, without = hypervolume_report(RECORDS, OBJECTIVES), hypervolume_report(HEALTHY_RECORDS, OBJECTIVES)
    assert with_it.value == pytest.approx(without.value)
    assert with_it.ideal == pytest.approx(without.ideal)  # 5,000 parameters, not 772
    assert with_it.reference == pytest.approx(without.reference)
    history = dict(with_it.history)
    assert history[DIVERGED] == history[0]  # the diverged trial added no volume
    assert hypervolume_report([RECORDS[DIVERGED]], OBJECTIVES) is None


# ---------------------------------------------------------------------- progress and events
def test_event_lines_and_the_progress_bar_count_the_front_without_it():
    from rich.console import Console

    from autopeft.events import LineEvents
    from autopeft.progress import RichEvents

    lines = []
    events = LineEvents(lines.append)
    events.started(_study(), 0, 5)
    events.trial_finished(RECORDS[DIVERGED], RECORDS)
    assert "| diverged: accuracy 0.800" in lines[-1] and lines[-1].endswith("front 3")

    bar = RichEvents(Console(file=io.StringIO()))
    bar.started(_study(), 0, 5)
    bar.trial_finished(RECORDS[DIVERGED], RECORDS)
    status = bar.progress.tasks[0].fields["status"]
    assert "front 3" in status and "best trainable_params 5,000" in status
    assert "diverged" in bar.console.file.getvalue()


def test_a_search_written_to_a_log_ends_with_one_plain_line_not_a_squeezed_bar():
    from rich.console import Console

    from autopeft.progress import RichEvents

    log = io.StringIO()  # not a terminal, as a redirected search's stderr
    with RichEvents(Console(file=log, width=80)) as bar:
        bar.started(_study(), 0, 5)
        bar.trial_finished(RECORDS[DIVERGED], RECORDS)
    last = log.getvalue().splitlines()[-1]
    assert last.startswith("trials ") and " in " in last and last.endswith("front 3")
    assert "best trainable_params 5,000" in last and "…" not in log.getvalue() and "━" not in log.getvalue()


# ---------------------------------------------------------------------- Python API
def test_api_front_and_pick_leave_it_out_and_trials_label_it(url):
    import pandas as pd

    from autopeft import load_study

    result = load_study("div", storage=url)
    assert result.front["number"].tolist() == [0, 2, 3]
    assert result.pick("best:trainable_params").number == 2
    assert result.pick("knee").number == 0
    assert "front 3" in repr(result)
    trials = result.trials.set_index("number")
    assert DIVERGED in trials.index and not trials.loc[DIVERGED, "pareto"]
    assert "majority class" in trials.loc[DIVERGED, "diverged"]
    assert pd.isna(trials.loc[0, "diverged"])
    with pytest.warns(UserWarning, match="trial 1 diverged"):
        assert result.pick("trial:1").number == DIVERGED
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert result.pick("trial:2").number == 2  # a healthy trial: no warning


# ---------------------------------------------------------------------- dashboard data
def test_dashboard_front_column_pair_front_and_studies_leave_it_out(url):
    from autopeft.dashboard import data

    store = Store(url)
    try:
        sd = data.load_study(store, "div")
        frame = data.trials_frame(sd.study, sd.records).set_index("number")
        assert frame.index.tolist() == [0, 1, 2, 3, 4]  # still in the table ...
        assert not frame.loc[DIVERGED, "pareto"] and frame["pareto"].sum() == 3
        assert "majority class" in frame.loc[DIVERGED, "diverged"]  # ... labelled
        assert (frame.drop(index=DIVERGED)["diverged"] == "").all()
        points = data.pair_front(frame.reset_index(), "trainable_params", "accuracy",
                                 {"accuracy": "max", "trainable_params": "min"})
        assert DIVERGED in points["number"].tolist()
        assert sorted(points[points["front_xy"]]["number"]) == [0, 2, 3]
        row = data.studies_frame([sd]).iloc[0]
        assert row["front"] == 3 and row["best trainable_params"] == 5_000
    finally:
        store.close()


def test_pareto_chart_draws_diverged_trials_apart():
    from autopeft.dashboard import data, render

    frame = data.trials_frame(_study(), RECORDS)
    points = data.pair_front(frame, "trainable_params", "accuracy", {"accuracy": "max", "trainable_params": "min"})
    fig = render.pareto_figure(points, "trainable_params", "accuracy", metrics=["accuracy"])
    crosses = [t for t in fig.data if t.name == "diverged"]
    assert len(crosses) == 1 and crosses[0].marker.symbol == "x" and list(crosses[0].x) == [772]
    method_traces = [t for t in fig.data if t.name.startswith(("vera", "lora"))]
    assert all(772 not in list(t.x) for t in method_traces)
    assert 772 not in list(next(t for t in fig.data if t.name == "Pareto front").x)


# ---------------------------------------------------------------------- command line
def _cli(*args):
    from autopeft.cli import main

    return main(list(map(str, args)))


def test_show_lists_the_diverged_trial_without_a_star(url, capsys):
    assert _cli("show", "div", "--storage", url, "--wide") == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "vera" in line)
    assert "diverged:" in row and "★" not in row
    assert sum("★" in line for line in out.splitlines() if "complete" in line) == 3


def test_printed_front_leaves_it_out_and_says_when_everything_diverged():
    from rich.console import Console

    from autopeft.cli.trial_table import print_front

    console = Console(file=io.StringIO(), width=200)
    print_front(console, _study(), RECORDS, wide=True)
    out = console.file.getvalue()
    rows = [line for line in out.splitlines() if "complete" in line]
    assert len(rows) == 3 and all("★" in line for line in rows) and "vera" not in out
    console = Console(file=io.StringIO(), width=200)
    print_front(console, _study(), [RECORDS[DIVERGED]])
    assert "every completed trial diverged" in console.file.getvalue()


def test_export_of_a_diverged_trial_by_number_warns_and_succeeds(url, tmp_path, monkeypatch, capsys):
    import autopeft.cli.study as cli_study
    import autopeft.export as export

    written = []
    monkeypatch.setattr(export, "export_trial", lambda s, r, out, **kw: written.append(r.number) or tmp_path)
    monkeypatch.setattr(cli_study, "_load_snippet", lambda *a, **kw: "")
    assert _cli("export", "div", "--storage", url, "--trial", DIVERGED, "--out", tmp_path / "a") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: trial 1 diverged (accuracy 0.800"), err
    assert _cli("export", "div", "--storage", url, "--trial", 2, "--out", tmp_path / "b") == 0
    assert capsys.readouterr().err == ""
    assert _cli("export", "div", "--storage", url, "--pick", "best:trainable_params", "--out", tmp_path / "c") == 0
    assert written == [DIVERGED, 2, 2]
