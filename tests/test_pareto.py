"""Pareto fronts, the knee and the other picks, on hand-made trials with known answers,
and the front checked against optuna's own ``study.best_trials``."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import numpy as np
import optuna
import pytest

from autopeft.errors import ExportError
from autopeft.search.analysis.pareto import (
    best,
    knee,
    non_dominated,
    parse_count,
    pareto_front,
    pick,
    trial_by_number,
    within_budget,
)
from autopeft.store.records import StudyRecord, TrialRecord
from test_store_contract import CANDIDATE

optuna.logging.set_verbosity(optuna.logging.WARNING)

ACC_PARAMS = (("accuracy", "max"), ("trainable_params", "min"))
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def rec(number, values=None, status="complete", params=None, objectives=ACC_PARAMS):
    """A trial record; ``trainable_params`` defaults to the trainable_params objective."""
    if params is None and values is not None and "trainable_params" in dict(objectives):
        params = values[[n for n, _ in objectives].index("trainable_params")]
    return TrialRecord(
        study="s", number=number, status=status, candidate=CANDIDATE, params={},
        started_at=T0, values=list(values) if values is not None else None, trainable_params=params,
    )


def study_record(objectives=ACC_PARAMS):
    return StudyRecord(
        name="s", created_at=T0, space_yaml="", space_hash="", objectives=tuple(objectives), trials_target=10,
        model="m", model_fingerprint="", dataset="d", data_fingerprint="",
    )


# (accuracy, trainable_params)
A = rec(0, (0.80, 1000))
B = rec(1, (0.85, 5000))
C = rec(2, (0.78, 3000))   # dominated by A: lower accuracy AND more parameters
D = rec(3, (0.90, 20000))
E = rec(4, None, status="failed")
F = rec(5, (0.99, 10), status="infeasible")  # looks best on both, but was never a result
G = rec(6, (0.85, 6000))   # dominated by B: same accuracy, more parameters
RECORDS = [A, B, C, D, E, F, G]


def numbers(records):
    return [r.number for r in records]


# ------------------------------------------------------------------------------ non_dominated


def test_non_dominated_mask_on_losses():
    losses = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0], [0.5, 3.0]])
    # row 2 (2,2) is dominated by row 0 (1,2); rows 0 and 3 are duplicates: both optimal;
    # row 4 trades a worse second loss for a better first one.
    assert non_dominated(losses).tolist() == [True, True, False, True, True]


def test_non_dominated_single_and_identical_points():
    assert non_dominated(np.array([[3.0, 3.0]])).tolist() == [True]
    assert non_dominated(np.array([[1.0, 1.0]] * 3)).tolist() == [True, True, True]


def test_front_excludes_dominated_failed_and_infeasible_trials():
    # C is dominated by A, G by B (a tie on one objective, worse on the other);
    # E failed and F is infeasible: neither is a result, whatever values it carries.
    assert numbers(pareto_front(RECORDS, ACC_PARAMS)) == [0, 1, 3]


def test_front_respects_directions():
    # The same points with accuracy minimised (a silly study, but the maths must follow):
    # now the front is the low-accuracy, low-param corner: A (0.80, 1000) dominates B, D, G;
    # C (0.78, 3000) has the lowest accuracy, so it survives too.
    flipped = (("accuracy", "min"), ("trainable_params", "min"))
    assert numbers(pareto_front(RECORDS, flipped)) == [0, 2]


def test_front_of_nothing_is_empty():
    assert pareto_front([], ACC_PARAMS) == []
    assert pareto_front([E, F], ACC_PARAMS) == []


# ------------------------------------------------------------------------------ knee


def test_knee_of_a_symmetric_three_point_front_is_the_middle():
    # Normalised (parameters on log10), the points sit at (1,0), (.5,.5), (0,1): the middle is nearest (0,0).
    front = [rec(0, (0.6, 100)), rec(1, (0.7, 1000)), rec(2, (0.8, 10000))]
    assert knee(front, ACC_PARAMS).number == 1


def test_knee_is_where_the_front_bends():
    # accuracy 0.50 0.70 0.88 0.90 -> normalised loss 1.00 0.50 0.05 0.00
    # params    100  200  300 1000 -> log10 normalised 0.00 0.30 0.48 1.00
    # distances to the ideal: 1.00, 0.58, 0.48, 1.00 -> trial 2.
    front = [rec(0, (0.50, 100)), rec(1, (0.70, 200)), rec(2, (0.88, 300)), rec(3, (0.90, 1000))]
    assert knee(front, ACC_PARAMS).number == 2


def test_knee_ignores_dominated_points_and_an_objective_constant_over_the_front():
    objectives = ACC_PARAMS + (("peak_memory", "min"),)
    # peak_memory is the same on every front point, so it cannot move the pick (the answer
    # is the 2-objective one above). Trial 9 is dominated by trial 2 on all three.
    points = [rec(0, (0.50, 100, 64), objectives=objectives), rec(1, (0.70, 200, 64), objectives=objectives),
              rec(2, (0.88, 300, 64), objectives=objectives), rec(3, (0.90, 1000, 64), objectives=objectives),
              rec(9, (0.87, 310, 900), objectives=objectives)]
    assert numbers(pareto_front(points, objectives)) == [0, 1, 2, 3]
    assert knee(points, objectives).number == 2


def test_knee_weighs_parameters_as_ratios():
    # A (0.60, 1k)  B (0.65, 3k)  D (0.69, 30k)  C (0.70, 100k). On a linear parameter axis
    # D looks almost free (0.29 of the range) and would be the knee; on log10 it costs 74 %
    # of the front's span, and B (a tenth of D's parameters for 4 points less) is picked.
    front = [rec(0, (0.60, 1_000)), rec(1, (0.65, 3_000)), rec(2, (0.69, 30_000)), rec(3, (0.70, 100_000))]
    assert knee(front, ACC_PARAMS).number == 1


def test_knee_tie_goes_to_the_lower_trial_number():
    # (0, 0) and (1, 100) normalise to (1, 0) and (0, 1): equally far from the ideal.
    front = [rec(3, (0.0, 0)), rec(7, (1.0, 100))]
    assert knee(front, ACC_PARAMS).number == 3


def test_front_order_and_knee_ties_do_not_depend_on_input_order():
    front = [rec(7, (1.0, 100)), rec(3, (0.0, 0))]
    assert numbers(pareto_front(front, ACC_PARAMS)) == [3, 7]
    assert knee(front, ACC_PARAMS).number == 3


def test_knee_of_one_point_and_of_nothing():
    assert knee([A], ACC_PARAMS) is A
    with pytest.raises(ExportError, match="no completed trial"):
        knee([E, F], ACC_PARAMS)


# ------------------------------------------------------------------------------ best / budget / pick


def test_best_per_objective():
    assert best(RECORDS, ACC_PARAMS, "accuracy").number == 3          # D: 0.90 (F is infeasible)
    assert best(RECORDS, ACC_PARAMS, "trainable_params").number == 0  # A: 1000


def test_best_tie_goes_to_the_lower_trial_number():
    assert best([G, B], ACC_PARAMS, "accuracy").number == 1  # both 0.85


def test_best_of_an_unknown_objective():
    with pytest.raises(ExportError) as info:
        best(RECORDS, ACC_PARAMS, "f1")
    assert "accuracy" in str(info.value) and "trainable_params" in str(info.value)


def test_within_budget_is_inclusive_and_picks_the_best_metric():
    assert within_budget(RECORDS, ACC_PARAMS, 5000).number == 1   # B: 5000 <= 5000, 0.85
    assert within_budget(RECORDS, ACC_PARAMS, 4999).number == 0   # only A (and C) fit; A is better
    assert within_budget(RECORDS, ACC_PARAMS, 4000).number == 0   # A (0.80) beats C (0.78, more params)
    assert within_budget(RECORDS, ACC_PARAMS, 10**9).number == 3  # everything fits: D
    with pytest.raises(ExportError, match="999"):
        within_budget(RECORDS, ACC_PARAMS, 999)


def test_within_budget_tie_on_metric_prefers_fewer_parameters():
    assert within_budget([G, B], ACC_PARAMS, 10_000).number == 1  # both 0.85; B trains fewer


def test_within_budget_finds_the_metric_whatever_the_objective_order():
    params_first = (("trainable_params", "min"), ("accuracy", "max"))
    swapped = [rec(r.number, None if r.values is None else r.values[::-1], r.status, r.trainable_params,
                   objectives=params_first) for r in RECORDS]
    assert within_budget(swapped, params_first, 4000).number == 0  # A (0.80) beats C (0.78, 3000)
    assert within_budget(swapped, params_first, 6000).number == 1  # B beats G: same 0.85, fewer params


def test_pick_dispatches():
    s = study_record()
    assert pick(s, RECORDS, "knee") is knee(RECORDS, ACC_PARAMS)
    assert pick(s, RECORDS, "best:accuracy").number == 3
    assert pick(s, RECORDS, "budget:5k").number == 1
    for bad in ("median", "best:", "budget:", "budget:lots"):
        with pytest.raises(ExportError):
            pick(s, RECORDS, bad)


@pytest.mark.parametrize("text, count", [("50000", 50000), ("50k", 50000), ("1.2M", 1_200_000), (" 2K ", 2000)])
def test_parse_count(text, count):
    assert parse_count(text) == count


def test_trial_by_number():
    assert trial_by_number(RECORDS, 3) is D
    with pytest.raises(ExportError, match="no trial 42"):
        trial_by_number(RECORDS, 42)


# ------------------------------------------------------------------------------ against optuna


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("directions", [("maximize", "minimize"), ("maximize", "minimize", "minimize")])
def test_front_equals_optuna_best_trials(seed, directions):
    rng = random.Random(seed)
    study = optuna.create_study(directions=list(directions))
    records = []
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for number in range(80):
        # Coarse values make ties on single objectives common (the tricky case).
        values = [rng.randint(0, 12) / 4 for _ in directions]
        failed = rng.random() < 0.1
        state = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            state=state, values=None if failed else values, params={"x": rng.random()}, distributions=dist,
        ))
        records.append(rec(number, None if failed else values, status="failed" if failed else "complete",
                           params=0, objectives=()))
    objectives = tuple((f"o{i}", "max" if d == "maximize" else "min") for i, d in enumerate(directions))
    ours = {r.number for r in pareto_front(records, objectives)}
    theirs = {t.number for t in study.best_trials}
    assert ours == theirs
    assert 0 < len(ours) < 80
