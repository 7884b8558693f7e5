"""Rungs after learning has begun, judged on a signal with its noise (``autopeft.search.fidelity``)."""

from __future__ import annotations

import math

import pytest

from autopeft.errors import SpaceError
from autopeft.search.fidelity.placement import Ladder, ladder_from, learned_at, place, probe_steps
from autopeft.search.fidelity.promotion import indistinguishable, promote
from autopeft.search.fidelity.signals import Reading, RungSignal
from autopeft.space import load_space_text
from autopeft.store import TrialRecord
from test_store_contract import CANDIDATE

LOSS = RungSignal("eval_loss", "min")
OBJ = [("accuracy", "max"), ("trainable_params", "min")]


def _flat_then_falling(start_learning: int, steps=range(15, 150, 15), se=0.03):
    """A validation loss at ln 3 (chance, 3 classes) until ``start_learning``, then falling."""
    return [(s, Reading(math.log(3) + 0.01 - max(0, s - start_learning + 15) * 0.003, se)) for s in steps]


def test_learning_is_where_the_signal_first_moves_beyond_two_standard_errors():
    probes = _flat_then_falling(60)
    # 60: 0.045 below the start, under 2 se; 75: 0.09 below.
    assert learned_at(LOSS, probes) == 75
    assert learned_at(LOSS, probes[:4]) is None  # not yet
    # A classifier's start is the loss of answering the label frequencies when that is lower:
    # a run whose first probe sits above it (a fresh head) has learned only once below it.
    assert learned_at(LOSS, probes, prior_loss=math.log(3) - 0.05) == 90


def test_without_a_standard_error_nothing_counts_as_learning():
    probes = [(s, Reading(r.value, 0.0)) for s, r in _flat_then_falling(30)]
    assert learned_at(LOSS, probes) is None


def test_later_rungs_are_eta_apart_on_the_probe_grid_below_the_target():
    assert probe_steps(150) == tuple(range(15, 150, 15))
    assert ladder_from(45, 150, 3) == (45,)  # 135 would leave the target less than eta times the rung
    assert ladder_from(15, 150, 3) == (15, 45)
    assert ladder_from(60, 150, 3) == (60,)  # the first rung stands even above target / eta
    assert ladder_from(40, 150, 2) == (45, 75)  # 40 -> 45 on the grid, 80 -> 75 = target / eta
    assert ladder_from(15, 150, 2) == (15, 30, 60)  # 120 > 75


def test_the_ladder_says_where_it_fell_and_why():
    ladder = place(LOSS, _flat_then_falling(60), target_steps=150, eta=3, reference=0, finished=False)
    assert ladder.rungs == (75,)
    assert "first rung at 75 steps" in ladder.why() and "validation loss" in ladder.why()
    assert Ladder.from_json(ladder.to_json()) == ladder
    assert place(LOSS, _flat_then_falling(60)[:3], target_steps=150, eta=3, reference=0, finished=False) is None
    never = place(LOSS, _flat_then_falling(1000), target_steps=150, eta=3, reference=2, finished=True)
    assert never.rungs == () and "no rungs" in never.why() and "trial 2" in never.why()


def _at_rung(number: int, loss: float, se: float, params: int, step: int = 30) -> TrialRecord:
    return TrialRecord(study="s", number=number, status="pruned", candidate=CANDIDATE, params={}, started_at=None,
                       trainable_params=params, extras={"rungs": [[step, 0.34, loss, se]]})


def test_a_rung_whose_runs_are_all_within_noise_promotes_them_all():
    others = [_at_rung(i, 1.10 + 0.01 * i, 0.03, 1000 * (i + 1)) for i in range(6)]
    # Worst of all (largest loss, most parameters), but nobody is told apart from anybody: it goes on.
    assert promote(others, OBJ, 9, 30, 0.34, 10**6, eta=3, signal=LOSS, reading=Reading(1.12, 0.03))
    # With small standard errors the same losses are told apart, and it is cut.
    tight = [_at_rung(i, 1.10 + 0.01 * i, 0.001, 1000 * (i + 1)) for i in range(6)]
    assert not promote(tight, OBJ, 9, 30, 0.34, 10**6, eta=3, signal=LOSS, reading=Reading(1.12, 0.001))
    # One run far ahead: the rung can tell, and it ranks on the loss, not on accuracy.
    assert promote(others, OBJ, 9, 30, 0.34, 10**6, eta=3, signal=LOSS, reading=Reading(0.70, 0.03))


def test_indistinguishable_needs_two_readings_with_noise():
    assert not indistinguishable([Reading(1.0, 0.1)])
    assert not indistinguishable([Reading(1.0, 0.0), Reading(1.0, 0.0)])
    assert indistinguishable([Reading(1.0, 0.05), Reading(1.1, 0.05)])
    assert not indistinguishable([Reading(1.0, 0.01), Reading(1.1, 0.01)])


SPACE = """
study: auto
model: minilm-l6
task: {dataset: tweet-sentiment}
space:
  method: [lora, ia3]
  rank: [2, 8]
  layers: {top_k: [1, 6], by: top}
  learning_rate: {lora: {log: [1.0e-4, 1.0e-2]}, ia3: {log: [1.0e-3, 1.0e-1]}}
proxy: {train_examples: 64, eval_examples: 32, batch_size: 8, max_length: 16, eta: 3, rungs: auto}
target: {steps: 100, seeds: 1}
search: {sampler: random, trials: 8, startup_trials: 2, seed: 0}
"""


@pytest.mark.parametrize("change,path,words", [
    (("rungs: auto", "rungs: automatic"), "proxy.rungs", "'auto' or a list"),
    (("rungs: auto", "rungs: auto, signal: choice_accuracy"), "proxy.signal", "eval_loss"),
    (("rungs: auto", "rungs: auto, runner: 'mypkg.train:run'"), "proxy.rungs", "proxy.runner"),
    (("eta: 3", "eta: 1"), "proxy.eta", ">= 2"),
])
def test_rung_settings_that_cannot_be_met_name_their_key(change, path, words):
    with pytest.raises(SpaceError) as e:
        load_space_text(SPACE.replace(*change), "auto.yaml")
    assert e.value.path == path and words in str(e.value)


def test_auto_rungs_leave_the_ladder_to_the_study():
    sp = load_space_text(SPACE, "auto.yaml")
    assert sp.proxy.auto_rungs and sp.proxy.rungs == () and sp.proxy.steps == 100 and sp.proxy.signal == "eval_loss"
    # `--set target=null`: the proxy is the target, and a run of it has nothing to place rungs on the way to.
    flat = load_space_text(SPACE.replace("target: {steps: 100, seeds: 1}\n", ""), "auto.yaml")
    assert flat.target is None and flat.proxy.rungs == ()
    # With rungs placed while the study runs there is no lowest rung: a target under the default
    # proxy.steps (30) is a target, not an error.
    short = load_space_text(SPACE.replace("steps: 100", "steps: 12"), "auto.yaml")
    assert short.target.steps == 12 and short.proxy.steps == 12 and short.proxy.rungs == ()
    # Listed rungs still must stand below the target.
    with pytest.raises(SpaceError) as e:
        load_space_text(SPACE.replace("steps: 100", "steps: 12").replace("rungs: auto", "rungs: [10, 20]"), "auto.yaml")
    assert e.value.path == "target.steps"


def test_with_a_target_rungs_are_placed_automatically_unless_placed_by_hand():
    bare = SPACE.replace(", rungs: auto}", "}")
    assert load_space_text(bare, "auto.yaml").proxy.auto_rungs  # neither rungs nor steps: auto
    by_steps = load_space_text(bare.replace("eta: 3}", "eta: 3, steps: 20}"), "auto.yaml").proxy
    assert not by_steps.auto_rungs and by_steps.rungs == (20, 60)  # the lowest rung given: geometric from it
    listed = load_space_text(bare.replace("eta: 3}", "eta: 3, rungs: [30]}"), "auto.yaml").proxy
    assert not listed.auto_rungs and listed.rungs == (30,)
    flat = load_space_text(bare.replace("target: {steps: 100, seeds: 1}\n", ""), "auto.yaml").proxy
    assert not flat.auto_rungs and flat.rungs == () and flat.steps == 30  # no target: the proxy is the run


class LearningRunner:
    """Trains nothing. Every run's validation loss sits at ln 3 until step 40, then falls
    (faster at a better rate); it records the rungs it was asked to report at."""

    def __init__(self):
        self.specs = []

    def __call__(self, spec, on_rung=None):
        from autopeft.trials.spec import TrialResult

        self.specs.append(spec)
        speed = 0.004 / (1 + abs(math.log10(spec.learning_rate / 1e-3)))

        def metrics(step):
            loss = math.log(3) - max(0, step - 40) * speed
            return {"accuracy": 0.34 + (math.log(3) - loss), "eval_loss": loss, "eval_loss_se": 0.025,
                    "eval_examples": 32, "eval_prior_loss": math.log(3)}

        for step in spec.proxy.rungs:
            if on_rung is not None and not on_rung(step, metrics(step)):
                return TrialResult(status="pruned", metrics=metrics(step), trainable_params=None,
                                   extras={"fidelity": step})
        return TrialResult(status="complete", metrics=metrics(spec.proxy.steps), trainable_params=None, train_time=1.0,
                           test_metrics={"accuracy": 0.5})


@pytest.mark.slow
def test_a_search_probes_the_reference_then_judges_every_trial_at_the_placed_rungs(tmp_path):
    from autopeft.search.fidelity.placement import read_ladder
    from autopeft.space.default_lora import DEFAULT_LORA
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.store import Store

    runner = LearningRunner()
    store = Store(f"sqlite:///{tmp_path / 'auto.db'}")
    out = run_search(prepare_search(load_space_text(SPACE, "auto.yaml")), store, runner=runner)
    ladder = read_ladder(store.optuna_storage, "auto")
    # The first reference (default LoRA's middle rate) was probed every 10 steps; its loss sat at
    # ln 3 to step 40 and first fell by more than 2 se (0.05) at step 60: the first rung is there.
    first = runner.specs[0]
    assert first.proxy.rungs == tuple(range(10, 100, 10))
    assert ladder is not None and ladder.rungs == (60,) and ladder.reference == 0
    # Every trial after it is judged at the ladder only.
    assert all(s.proxy.rungs == (60,) for s in runner.specs[1:] if s.proxy.rungs)
    refs = [r for r in out.records if r.extras.get("baseline") == DEFAULT_LORA]
    assert [p[0] for p in refs[0].extras["probes"]] == list(range(10, 100, 10))
    assert all(len(entry) == 4 for r in out.records for entry in r.extras.get("rungs", []))  # signal and its se
