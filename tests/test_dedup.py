"""Samplers never spend a trial re-proposing a configuration the study already has."""

from __future__ import annotations

import optuna
import pytest

from autopeft.errors import MethodError
from autopeft.search.sampling.dedup import Deduplicated, configuration_key
from autopeft.search.sampling.samplers import make_sampler, sampler_names
from autopeft.space import parse_space
from autopeft.space.encoding import SpaceEncoding
from autopeft.space.schema import SearchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def encoding():
    space = parse_space({
        "study": "dedup", "model": "minilm-l6", "task": {"dataset": "tweet-sentiment"},
        "space": {"method": ["lora", "ia3"], "rank": [2, 4, 8], "targets": [["query", "value"], "all-linear"],
                  "layers": {"top_k": [1, 6]}, "learning_rate": {"log": [1.0e-4, 1.0e-2]}},
    }).space
    return SpaceEncoding(space, 6)


class Stubborn(optuna.samplers.RandomSampler):
    """A "model-based" sampler whose model is sure of one point: it proposes it every time."""

    def __init__(self, point: dict, seed: int = 0):
        super().__init__(seed)
        self.point = point

    def infer_relative_search_space(self, study, trial):
        return encoding().distributions

    def sample_relative(self, study, trial, search_space):
        return dict(self.point)


POINT = {"method": "lora", "rank": 1, "targets": "query+value", "top_k": 3, "learning_rate": 1e-3}


def run(sampler, enc, n):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    keys = []
    for _ in range(n):
        trial = study.ask()
        enc.suggest(trial)
        keys.append(configuration_key(enc)(trial.params))
        study.tell(trial, [0.5, 1.0])
    return keys


def test_a_repeated_proposal_is_redrawn_so_every_trial_is_a_new_configuration():
    enc = encoding()
    sampler = Deduplicated(Stubborn(POINT), configuration_key(enc))
    keys = run(sampler, enc, 6)
    assert keys[0] == configuration_key(enc)(POINT)  # the proposal is used while it is new
    assert len(set(keys)) == 6
    assert sampler.duplicates == 5


def test_without_the_wrapper_the_same_sampler_repeats_itself():
    # The failure the wrapper exists for (what BoTorch did on the tabular benchmark).
    enc = encoding()
    assert len(set(run(Stubborn(POINT), enc, 4))) == 1


def test_a_failed_or_running_trial_counts_as_tried():
    enc = encoding()
    sampler = Deduplicated(Stubborn(POINT), configuration_key(enc))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    first = study.ask()
    enc.suggest(first)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    running = study.ask()
    enc.suggest(running)  # FAIL counted: redrawn
    assert sampler.duplicates == 1
    third = study.ask()
    enc.suggest(third)
    assert configuration_key(enc)(third.params) != configuration_key(enc)(POINT)


def test_configuration_key_ignores_what_the_method_ignores_and_tiny_learning_rate_differences():
    key = configuration_key(encoding())
    ia3 = {**POINT, "method": "ia3"}
    assert key({**ia3, "rank": 0}) == key({**ia3, "rank": 2})  # IA3 has no rank
    assert key({**POINT, "rank": 0}) != key({**POINT, "rank": 2})  # LoRA's rank matters
    assert key({**POINT, "learning_rate": 1.00e-3}) == key({**POINT, "learning_rate": 1.04e-3})
    assert key({**POINT, "learning_rate": 1.0e-3}) != key({**POINT, "learning_rate": 2.0e-3})
    assert key({**POINT, "top_k": 2}) != key(POINT)


# The GP-based samplers fit models on every ask: the slow lane runs them.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("botorch", "mf-botorch") else n
                                  for n in sampler_names()])
def test_every_registered_sampler_comes_deduplicated(name):
    sampler = make_sampler(SearchSpec(sampler=name, trials=5, startup_trials=2, seed=0), encoding())
    assert isinstance(sampler, Deduplicated)
    keys = run(sampler, encoding(), 6)  # the start-up phase: real draws through the wrapper
    assert len(set(keys)) == 6  # six trials, six configurations
    assert None not in keys


def test_a_partial_parameter_set_is_compared_raw_and_a_broken_full_one_raises():
    from autopeft.search.sampling.dedup import key_of

    key = configuration_key(encoding())
    partial = {"method": "lora", "rank": 1}
    assert key(partial) is None
    assert key_of(partial, key) == (("method", "lora"), ("rank", 1))
    with pytest.raises(MethodError):  # a full set that does not decode is a bug, not a miss
        key_of({**POINT, "method": "no-such-method"}, key)


def test_botorch_answers_the_best_untried_configuration_itself():
    # 4 x 2 = 8 configurations, 7 already told: the only new one is the answer, found by
    # ranking acquisition values over rounded points, not by the wrapper's random redraw.
    sampler = make_sampler(SearchSpec(sampler="botorch", trials=9, startup_trials=7, seed=0))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    grid = [(i, c) for i in range(4) for c in ("a", "b")]
    for i, c in grid[:7]:
        study.enqueue_trial({"i": i, "c": c})
    for _ in range(8):
        trial = study.ask()
        i, c = trial.suggest_int("i", 0, 3), trial.suggest_categorical("c", ["a", "b"])
        study.tell(trial, [i + (c == "b"), float(i)])
        if trial.number == 7:
            assert (i, c) == grid[7]
    assert sampler.duplicates == 0


def test_near_duplicates_are_one_structure_at_a_rate_within_the_factor_of_an_earlier_one():
    from autopeft.search.sampling.dedup import near_duplicates
    from autopeft.space.encoding import Candidate

    enc = encoding()
    lora = enc.decode(POINT).to_json()

    def at(lr, **change):
        return Candidate.from_json({**lora, **change, "learning_rate": lr}).to_json()

    ia3 = {**at(1e-3), "method": "ia3"}
    tried = [at(1e-3), at(1.4e-3), at(3e-3), at(1e-3, rank=8 if lora["rank"] != 8 else 2), ia3,
             {**ia3, "rank": 8 if lora["rank"] != 8 else 2, "learning_rate": 1.2e-3}]
    tried = [Candidate.from_json(c) for c in tried]
    # 1.4e-3 is within x1.5 of 1e-3; 3e-3 is not; another rank is another structure for LoRA;
    # IA3 ignores the rank, so the last one repeats IA3 at a rate 1.2x away.
    assert near_duplicates(tried) == [1, 5]
    assert near_duplicates(tried, factor=1.1) == [], "a factor below 1.2 tells them apart"
