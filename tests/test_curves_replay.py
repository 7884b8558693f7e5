"""The learning-curve replay's harness (``benchmarks/curves``) on a tiny synthetic table: no training.

The HV of the table's own front is 1.0, steps are charged as a search trains them (a run
stopped at a rung costs its steps, a run that goes on only its extra steps), and a
configuration the table lacks is answered by its nearest table configuration.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

CURVES = Path(__file__).resolve().parents[1] / "benchmarks" / "curves"
sys.path.insert(0, str(CURVES))

from table import Charger, Config, Event, Table, Trace, hv_at, hypervolume, steps_to  # noqa: E402

RATES = {"lora": (5e-4, math.sqrt(5e-4 * 5e-3), 5e-3), "ia3": (3e-3, math.sqrt(3e-3 * 3e-2), 3e-2)}


def row(method, rank, targets, top_k, lr, acc, params, seed=0):
    """A table row whose accuracy climbs linearly to ``acc`` at step 150 and whose losses fall."""
    evals = [[s, round(acc * s / 150, 5), round(acc * s / 300, 5), round(2.0 - acc * s / 150, 5)]
             for s in range(15, 151, 15)]
    curve = [[s, round(2.5 - acc * s / 150, 5)] for s in range(5, 151, 5)]
    return {"point": {"method": method, "rank": rank, "targets": targets, "top_k": top_k, "lr": lr}, "seed": seed,
            "rank": (2, 4, 8, 16)[rank], "learning_rate": RATES[method][lr], "status": "complete",
            "trainable_params": params, "evals": evals, "curve": curve, "cpu_time": 1.0, "wall_time": 1.0,
            "error": None}


def tiny_rows():
    return [
        row("lora", 0, "query+value", 2, 0, 0.60, 1_000),
        row("lora", 0, "query+value", 2, 0, 0.70, 1_000, seed=1),  # seed mean 0.65
        row("lora", 3, "query+value", 6, 2, 0.80, 50_000),
        row("lora", 1, "all-linear", 6, 1, 0.75, 200_000),  # dominated by the rank-16 row
        row("ia3", 0, "query+value", 2, 1, 0.50, 300),
        row("ia3", 0, "all-linear", 6, 2, 0.40, 5_000),  # the worst accuracy: the reference
        {**row("lora", 2, "query+value", 2, 0, 0.9, 10), "status": "failed"},  # failed runs are not answers
    ]


@pytest.fixture()
def table(tmp_path):
    path = tmp_path / "curves.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in tiny_rows()) + "\n")
    return Table.load(path)


def test_the_whole_tables_front_has_hv_one_and_seed_means_score(table):
    assert len(table.rows) == 5 and table.runs == 6
    assert table.normalised_hv(table.rows) == pytest.approx(1.0)
    lora = table.rows[Config("lora", 0, "query+value", 2, 0)]
    assert lora.accuracy == pytest.approx(0.65) and lora.seeds == 2
    assert lora.metrics_at(150)["accuracy"] == pytest.approx(0.60)  # what a trial sees: seed 0
    # The reference point is the worst accuracy and the largest count: that row adds nothing.
    assert table.worst_accuracy == pytest.approx(0.40) and table.largest == 200_000
    front = [Config("ia3", 0, "query+value", 2, 1), Config("lora", 0, "query+value", 2, 0),
             Config("lora", 3, "query+value", 6, 2)]
    assert table.normalised_hv(front) == pytest.approx(1.0)
    assert table.normalised_hv(front[:2]) < 1.0
    assert table.normalised_hv([]) == 0.0


def test_hypervolume_of_two_points_by_hand():
    # Two points of a staircase under the reference (2, 2): 2 + 2 - 1 overlapping.
    assert hypervolume([(0.0, 1.0), (1.0, 0.0)], (2.0, 2.0)) == pytest.approx(3.0)
    assert hypervolume([(2.0, 0.0)], (2.0, 2.0)) == 0.0  # on the reference: no volume


def test_steps_are_charged_as_trained():
    c = Charger()
    a, b = Config("lora", 0, "query+value", 2, 0), Config("ia3", 0, "all-linear", 6, 2)
    c.reach(0, a, 30)  # stopped at the first rung: 30
    c.reach(1, b, 30)
    c.reach(1, b, 90)  # promoted: only 60 more
    c.reach(1, b, 150)  # to the target: 60 more
    c.reach(1, b, 90)  # a report below what was trained costs nothing
    assert [e.spent for e in c.events] == [30, 60, 120, 180, 180]


def test_hv_counts_only_runs_at_the_target_in_step_order(table):
    best = Config("lora", 3, "query+value", 6, 2)
    events = (Event(0, best, 30, 30), Event(1, Config("ia3", 0, "query+value", 2, 1), 150, 180),
              Event(0, best, 150, 300))
    curve = table.hv_curve(Trace("x", 0, 1000, events))
    assert [s for s, _ in curve] == [180, 300]
    assert hv_at(curve, 179) == 0.0 and 0 < hv_at(curve, 200) < hv_at(curve, 300)
    assert steps_to(curve, hv_at(curve, 300)) == 300 and steps_to(curve, 2.0) is None
    again = Trace.from_json(json.loads(json.dumps(Trace("x", 0, 1000, events).to_json())))
    assert again.events == events


def test_a_configuration_the_table_lacks_gets_its_nearest(table):
    # Exact.
    assert table.nearest("lora", 16, "query+value", 6, 5e-3).config == Config("lora", 3, "query+value", 6, 2)
    # top_k 5 -> 6 (nearest placement), rank 8 -> the nearest rank there (16), a rate near the top.
    assert table.nearest("lora", 8, "query+value", 5, 4e-3).config == Config("lora", 3, "query+value", 6, 2)
    # top_k 4 is as near 2 as 6: the smaller; there the only row (rank 2, the lowest rate).
    assert table.nearest("lora", 4, "query+value", 4, 4e-3).config == Config("lora", 0, "query+value", 2, 0)
    # Targets the table lacks for a method: any targets of the method, then the nearest placement.
    assert table.nearest("ia3", 2, "query+key+value", 2, 1e-2).config == Config("ia3", 0, "query+value", 2, 1)
    # IA3 has no rank: whatever rank is asked for, the row of that placement.
    assert table.nearest("ia3", 16, "all-linear", 6, 3e-3).config == Config("ia3", 0, "all-linear", 6, 2)
    # The failed row is never an answer.
    assert table.nearest("lora", 8, "query+value", 2, 5e-4).config == Config("lora", 0, "query+value", 2, 0)
    # A method the table has no run of yet (a table being built): the nearest row of any method.
    assert table.nearest("adalora", 16, "query+value", 6, 5e-3).config == Config("lora", 3, "query+value", 6, 2)


def test_the_runner_orients_a_loss_signal_for_a_metric_maximised(table):
    from replay import TableRunner

    runner = TableRunner(table, store=None, signal="eval_loss", orient=True)
    r = table.rows[Config("lora", 3, "query+value", 6, 2)]
    m = runner.metrics(r, 30, "accuracy")
    assert m["accuracy"] == pytest.approx(-m["eval_loss"]) and m["eval_loss"] == pytest.approx(2.0 - 0.8 * 30 / 150)
    plain = TableRunner(table, store=None, signal="eval_loss", orient=False).metrics(r, 30, "accuracy")
    assert plain["accuracy"] == pytest.approx(0.8 * 30 / 150)
    # Between two evaluation steps a rung sees the last evaluation; the training loss its curve.
    assert r.metrics_at(40)["accuracy"] == r.metrics_at(30)["accuracy"]
    assert r.metrics_at(40)["train_loss"] == pytest.approx(2.5 - 0.8 * 40 / 150, abs=1e-5)


def test_the_registry_refuses_a_name_twice_and_builds_overrides():
    from strategies import STRATEGIES, AutopeftStrategy, register

    with pytest.raises(ValueError):
        register(AutopeftStrategy("random", "again", "random"))
    with pytest.raises(ValueError):
        AutopeftStrategy("x", "bad signal", "tpe", signal="f1")
    assert STRATEGIES["random"].space_overrides(150)[-3:] == ["proxy.steps=150", "proxy.rungs=[]",
                                                             "search.baseline=false"]
    assert "proxy.rungs=[30, 90]" in STRATEGIES["botorch"].space_overrides(150)
    assert "proxy.rungs=auto" in STRATEGIES["new"].space_overrides(150)


def test_rows_with_the_loss_error_and_the_reported_training_loss(tmp_path):
    r = row("lora", 0, "query+value", 2, 0, 0.6, 1_000)
    r["evals"] = [[s, a, f, l, 0.05, 1.5 if s < 150 else None] for s, a, f, l in r["evals"]]
    path = tmp_path / "curves.jsonl"
    path.write_text(json.dumps(r) + "\n")
    only = Table.load(path).rows[Config("lora", 0, "query+value", 2, 0)]
    assert only.metrics_at(30)["eval_loss_se"] == 0.05 and only.metrics_at(30)["train_loss"] == 1.5
    # At the target the run reported no training loss: the curve's last point stands in.
    assert only.metrics_at(150)["train_loss"] == pytest.approx(2.5 - 0.6)
