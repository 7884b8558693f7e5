"""Any sampler, minus repeats: a proposal the study has already tried is redrawn at random.

PEFT spaces are mostly discrete (method, rank, targets, placement). A model-based sampler
optimises its acquisition over a continuous relaxation and rounds, so once its model is
confident it rounds to the *same* configuration again and again: measured on the tabular
benchmark, BoTorch proposed one LoRA configuration on 11 of its 12 model-based trials
(seed 1), a whole search's budget spent re-training one point. (Ax and SMAC guard against
this the same way: reject the duplicate, fall back to a random draw.) Re-measuring a
noisy proxy is worth less than a new point, so a relative proposal that matches a trial
already in the study — complete, pruned, failed or running — is dropped and that trial's
parameters come from the base sampler's independent sampling (random for BoTorch and GP).

"Matches" means the same *configuration*, not the same raw parameters: with the search's
encoding, parameters a method ignores (IA3's rank) do not count, and learning rates equal
to within 12 % (a 20-per-decade log grid) are one.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Hashable

import optuna
from optuna.trial import TrialState

from autopeft.candidate import Candidate

_TRIED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)
#: Learning rates are compared on a log grid this fine (steps per decade).
_LR_STEPS_PER_DECADE = 20


def configuration_key(encoding) -> Callable[[dict], Hashable | None]:
    """Key of a full parameter set of ``encoding``: what makes two trials the same configuration.

    The key is None for a partial parameter set (a trial asked for only some dimensions
    so far, or one of a study whose space once had other dimensions): there is no
    configuration to compare, and ``key_of`` compares the raw values instead. A full set
    that does not decode is a bug and raises.
    """
    names = set(encoding.distributions)

    def key(params: dict) -> Hashable | None:
        if set(params) != names:
            return None
        data = _structure(encoding.decode(params).to_json())
        data["learning_rate"] = round(math.log10(data["learning_rate"]) * _LR_STEPS_PER_DECADE)
        return json.dumps(data, sort_keys=True)

    return key


def _structure(candidate: dict) -> dict:
    """``candidate`` (``Candidate.to_json()``) with the fields its method ignores set to None."""
    from autopeft.methods import get_method

    data = dict(candidate)
    uses = get_method(data["method"]).uses
    for name in ("rank", "alpha", "dropout", "targets", "layers", "dora", "rslora"):
        if name not in uses:
            data[name] = None
    if "rank" not in uses or "layers" not in uses:
        data["layer_ranks"] = None
    return data


#: Two rates of one structure closer than this factor count as a near-duplicate: on the
#: quickstart's proxies a rate x1.5 away moves accuracy by less than one seed's sd.
NEAR_FACTOR = 1.5


def near_duplicates(candidates: list[Candidate], factor: float = NEAR_FACTOR) -> list[int]:
    """Indices of the ``candidates`` (in the order they were tried) that repeat an earlier one's
    structure — every field the method uses but the learning rate — at a rate within
    ``factor`` of it: trials a noisy proxy cannot tell from the earlier one."""
    window = math.log(factor)
    seen: list[tuple[str, float]] = []
    out = []
    for i, c in enumerate(candidates):
        data = _structure(c.to_json())
        rate = math.log(data.pop("learning_rate"))
        shape = json.dumps(data, sort_keys=True)
        if any(s == shape and abs(r - rate) <= window for s, r in seen):
            out.append(i)
        seen.append((shape, rate))
    return out


def key_of(params: dict, key: Callable[[dict], Hashable | None] | None = None) -> Hashable:
    """``key(params)``; the raw values when there is no key or ``key`` says the set is partial (None)."""
    if key is not None:
        keyed = key(params)
        if keyed is not None:
            return keyed
    return tuple(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in params.items()))


class Deduplicated(optuna.samplers.BaseSampler):
    """Wraps ``base``; see the module docstring. ``duplicates`` counts the proposals redrawn."""

    def __init__(self, base: optuna.samplers.BaseSampler, key: Callable[[dict], Hashable] | None = None) -> None:
        self.base = base
        self._key = key
        self.duplicates = 0
        #: Trial number -> where its parameters came from: ``model`` (the base sampler's relative
        #: proposal) or ``redrawn`` (a repeat, drawn independently). Absent: independent sampling
        #: (start-up trials, enqueued points, or a base sampler without a model).
        self.origins: dict[int, str] = {}

    def key(self, params: dict) -> Hashable:
        return key_of(params, self._key)

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:
            # An enqueued point (a reference, a start-up trial with its method fixed): the rest
            # is drawn at random, not by a model whose proposal was optimised for other values.
            return {}
        params = self.base.sample_relative(study, trial, search_space)
        if not params:
            return params
        mine = self.key(params)
        for other in study.get_trials(deepcopy=False, states=_TRIED):
            if other.number != trial.number and set(other.params) >= set(params):
                if self.key({k: other.params[k] for k in params}) == mine:
                    self.duplicates += 1
                    self.origins[trial.number] = "redrawn"
                    return {}  # every parameter now comes from sample_independent
        self.origins[trial.number] = "model"
        return params

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
