"""The Pareto page's main chart draws trials stopped at a lower rung as such: at their rung's
metric, hollow, never on the front; the front is decided by the trials that reached the target."""

from __future__ import annotations

from datetime import timedelta

from autopeft.store import StudyRecord, TrialRecord, utcnow

OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))


def _trial(number, accuracy, params, status="complete", fidelity=None, role=None):
    start = utcnow() + timedelta(seconds=number)
    return TrialRecord(
        study="rungs", number=number, status=status,
        candidate={"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"],
                   "layers": [4, 5], "learning_rate": 1e-3, "dora": False, "rslora": False},
        params={}, started_at=start, trainable_params=params, metrics={"accuracy": accuracy},
        values=[accuracy, float(params)] if status == "complete" else None, curve=[[0, 0.7], [10, 0.5]],
        extras={"predicted_classes": 3, "majority_rate": 0.4, **({"fidelity": fidelity} if fidelity else {}),
                **({"baseline": role} if role else {})},
        finished_at=start + timedelta(seconds=1))


def test_a_trial_stopped_at_a_rung_is_drawn_at_its_rung_metric_and_never_on_the_front():
    from autopeft.dashboard import data, render

    study = StudyRecord(name="rungs", created_at=utcnow(), space_yaml="", space_hash="0" * 32, objectives=OBJECTIVES,
                        trials_target=3, model="minilm-l6", model_fingerprint="x", dataset="d", data_fingerprint="y")
    # the stopped trial looks best at its rung (fewer parameters, higher accuracy): only the
    # target decides, so it must not push the completed trials off the front
    records = [_trial(0, 0.70, 75_000, role="default LoRA"), _trial(1, 0.65, 8_000),
               _trial(2, 0.90, 1_000, "pruned", fidelity=10), _trial(3, 0.60, 75_000, "pruned", 10, "default LoRA")]
    frame = data.trials_frame(study, records)
    directions = {"accuracy": "max", "trainable_params": "min"}
    assert list(data.pair_front(frame, "trainable_params", "accuracy", directions)["number"]) == [0, 1], \
        "other pages (Compare) see completed trials only"
    points = data.pair_front(frame, "trainable_params", "accuracy", directions, stopped=True)
    by_number = points.set_index("number")
    assert by_number.loc[2, "accuracy"] == 0.90 and by_number.loc[2, "rung_only"]
    assert by_number["front_xy"].to_dict() == {0: True, 1: True, 2: False, 3: False}
    assert not frame.set_index("number").loc[2, "pareto"]

    fig = render.pareto_figure(points, "trainable_params", "accuracy")
    stopped = [t for t in fig.data if t.name == "lora (stopped at a rung)"]
    assert len(stopped) == 1 and sorted(stopped[0].x) == [1_000, 75_000]
    star = [t for t in fig.data if t.name.startswith("default LoRA")]
    assert len(star) == 1 and list(star[0].y) == [0.70], "the star marks default LoRA at the target, not at a rung"
    line = next(t for t in fig.data if t.name == "Pareto front")
    assert sorted(line.x) == [8_000, 75_000]

    # without rung-only rows (a study with no rungs) nothing of the sort is drawn
    plain = data.pair_front(data.trials_frame(study, records[:2]), "trainable_params", "accuracy", directions,
                            stopped=True)
    assert not any("stopped" in t.name for t in render.pareto_figure(plain, "trainable_params", "accuracy").data)
