"""The multi-fidelity sampler: it models stopped trials, counts start-up over trials trained,
and proposes for the target from evidence gathered at lower fidelities."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from autopeft.search.optuna_view import OBSERVATIONS, TARGET_STEPS, observations
from autopeft.search.sampling.multi_fidelity import MultiFidelitySampler
from autopeft.store import TrialRecord
from test_store_contract import CANDIDATE

DISTS = {"x": FloatDistribution(0.0, 1.0), "kind": CategoricalDistribution(("small", "large"))}
TARGET = 150


def quality(x: float, kind: str) -> float:
    """Accuracy at the target: best at x = 0.8, a bit better for 'large'."""
    return 0.9 - (x - 0.8) ** 2 - (0.0 if kind == "large" else 0.05)


def _study(sampler) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.set_metric_names(["accuracy", "trainable_params_log10"])
    study.set_user_attr(TARGET_STEPS, TARGET)
    return study


def _stopped(x: float, kind: str, steps=(15, 30, 45)):
    """A trial stopped at its last rung: its curve rises towards quality(x) as it trains."""
    params = 10 ** (4 if kind == "small" else 5)
    curve = [[s, 0.33 + (quality(x, kind) - 0.33) * (1 - math.exp(-s / 40))] for s in steps]
    return create_trial(state=TrialState.PRUNED, params={"x": x, "kind": kind}, distributions=DISTS,
                        user_attrs={OBSERVATIONS: curve, "trainable_params": params, "status": "pruned"})


def _complete(x: float, kind: str):
    params = 10 ** (4 if kind == "small" else 5)
    return create_trial(state=TrialState.COMPLETE, params={"x": x, "kind": kind}, distributions=DISTS,
                        values=[quality(x, kind), math.log10(params)],
                        user_attrs={OBSERVATIONS: [[45, quality(x, kind) - 0.1]], "trainable_params": params,
                                    "status": "complete"})


def test_stopped_trials_count_towards_the_start_and_are_modelled():
    sampler = MultiFidelitySampler(startup_trials=4, seed=0)
    study = _study(sampler)
    for x in (0.1, 0.3, 0.5):
        study.add_trial(_stopped(x, "small"))
    study.ask(DISTS)  # three trained: still the random start
    assert sampler.modelled == 0
    study.add_trial(_stopped(0.9, "large"))
    study.ask(DISTS)  # four trained, none complete: the model proposes
    assert sampler.modelled == 1


def test_botorch_of_optuna_integration_would_still_draw_at_random_there():
    """The behaviour this sampler replaces: optuna-integration counts COMPLETE trials only."""
    from optuna_integration import BoTorchSampler

    calls = []
    sampler = BoTorchSampler(candidates_func=lambda *a: calls.append(a), n_startup_trials=4, seed=0)
    study = _study(sampler)
    for x in (0.1, 0.3, 0.5, 0.9):
        study.add_trial(_stopped(x, "small"))
    study.ask(DISTS)
    assert calls == []


@pytest.mark.slow
def test_it_proposes_near_the_optimum_from_low_fidelity_evidence():
    sampler = MultiFidelitySampler(startup_trials=4, seed=0)
    study = _study(sampler)
    for x, kind in [(0.05, "small"), (0.2, "large"), (0.35, "small"), (0.5, "large"), (0.65, "small"),
                    (0.95, "large"), (0.1, "large")]:
        study.add_trial(_stopped(x, kind))
    study.add_trial(_complete(0.5, "large"))
    trial = study.ask(DISTS)
    assert sampler.modelled == 1
    # The model saw x = 0.65 and 0.95 rising furthest (only at 45 steps): it asks between them, not at random.
    assert abs(trial.params["x"] - 0.8) < 0.25, trial.params


def test_a_proposal_is_a_configuration_the_study_has_not_tried():
    key = lambda p: (round(p["x"], 1), p["kind"])  # noqa: E731 - coarse: many proposals collide
    sampler = MultiFidelitySampler(startup_trials=2, seed=0, key=key)
    study = _study(sampler)
    tried = [(x / 10, kind) for x in range(0, 11) for kind in ("small", "large") if not (x == 8 and kind == "large")]
    for x, kind in tried:
        study.add_trial(_stopped(x, kind, steps=(15,)))
    trial = study.ask(DISTS)
    assert key(trial.params) == (0.8, "large")  # the one configuration left


def test_infeasible_trials_inform_the_constraint_only():
    from autopeft.search.sampling.observations import gather

    bad = create_trial(state=TrialState.COMPLETE, params={"x": 0.5, "kind": "large"}, distributions=DISTS,
                       values=[0.0, 9.0], user_attrs={"status": "infeasible"},
                       system_attrs={"constraints:trainable_params_over_budget": 3.0})
    good = _stopped(0.2, "small")
    study = _study(None)
    data = gather([bad, good], DISTS, metric_index=0, directions=study.directions,
                  metric_names=["accuracy", "trainable_params_log10"], target_steps=TARGET)
    assert data.trained == 1 and len(data.metric_y) == 3  # the stopped trial's three rungs
    assert data.constraint is not None and list(data.constraint[1]) == [3.0]
    assert data.objectives[0][1].tolist() == [-4.0]  # log10 parameters, known though it was stopped; minimised


def test_a_records_probes_and_rungs_become_its_observations():
    record = TrialRecord(study="s", number=1, status="pruned", candidate=CANDIDATE, params={}, started_at=None,
                         extras={"probes": [[15, 0.4, 1.1, 0.03], [30, 0.5, 1.0, 0.03]],
                                 "rungs": [[30, 0.5, 1.0, 0.03], [45, None]]})
    assert observations(record) == [[15, 0.4], [30, 0.5]]


def test_each_fit_starts_from_the_previous_fits_hyperparameters(monkeypatch):
    """A warm start: the second ask's GPs begin where the first ask's ended, parameter by parameter."""
    from autopeft.search.sampling import models as gp

    sampler = MultiFidelitySampler(startup_trials=4, seed=0)
    study = _study(sampler)
    for x, kind in ((0.1, "small"), (0.3, "small"), (0.5, "large"), (0.9, "large")):
        study.add_trial(_stopped(x, kind))
    study.ask(DISTS)
    first = sampler._hyperparameters
    assert first is not None and len(first) == 2  # the metric's GP and the parameter count's
    started = []
    original = gp._warm_start
    monkeypatch.setattr(gp, "_warm_start", lambda model, params: (
        original(model, params), started.append({k: v.clone() for k, v in model.named_parameters()}))[0])
    study.add_trial(_stopped(0.7, "small"))
    study.ask(DISTS)
    assert len(started) == 2
    for before, after in zip(first, started):
        assert before.keys() == after.keys()
        assert all(bool((before[k] == after[k]).all()) for k in before)


def test_a_warm_start_skips_parameters_of_another_shape():
    import torch

    from autopeft.search.sampling.models import _warm_start

    layer = torch.nn.Linear(3, 1)
    assert not _warm_start(layer, {"weight": torch.full((1, 3), 7.0), "bias": torch.zeros(2)})  # not every one
    assert bool((layer.weight == 7.0).all())
    assert layer.bias.shape == (1,)
    assert _warm_start(layer, {"weight": torch.zeros(1, 3), "bias": torch.ones(1)})
