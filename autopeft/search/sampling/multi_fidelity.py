"""A BoTorch sampler that learns from every step trained: a multi-fidelity GP over
(configuration, training step), asked for the target.

optuna's ``BoTorchSampler`` and ``GPSampler`` model COMPLETE trials only, and count only them
towards their start-up. Under successive halving most trials stop at a rung, so those samplers
see a handful of points and propose at random for most of a search. This sampler reads every
evaluation a trial made on the way — its probes and rungs (the optuna user attribute
``autopeft.search.optuna_view.OBSERVATIONS``, written by the ledger when the trial ends) and its value at the target —
whether the trial was stopped, failed later or completed:

* the task metric is modelled by ``SingleTaskMultiFidelityGP`` over the configuration's unit
  encoding (optuna's ``_SearchSpaceTransform``) plus the fraction of the target trained, with
  botorch's exponential-decay kernel on that fraction (learning curves that flatten, after
  Swersky et al.'s freeze-thaw kernel); every other objective (log10 trainable parameters) and
  the budget constraint are known from the configuration alone, and are modelled by a
  ``SingleTaskGP`` on the configuration, fed by every trial that knows them;
* the acquisition is qLogNEHVI (noisy, constraint-aware, running trials as pending points)
  with the fidelity column fixed at the target: it proposes for the run the user will train;
* the start-up counts trials *trained* (any evaluation at all), not trials completed.

The proposal is the highest-valued point, among the acquisition's optima and a Sobol pool, that
rounds to a configuration the study has not tried (``key``: ``autopeft.search.sampling.dedup``'s
configuration key); ``autopeft.search.sampling.dedup.Deduplicated`` stays the safety net.
"""

from __future__ import annotations

from typing import Callable, Hashable

from optuna.samplers import BaseSampler

from autopeft.search.optuna_view import TARGET_STEPS
from autopeft.search.sampling.observations import Observations, configuration_of, gather



#: Sobol points the acquisition ranks per ask, evaluated CHUNK at a time.
POOL, CHUNK = 256, 128


class MultiFidelitySampler(BaseSampler):
    """An optuna sampler over BoTorch; see the module doc.

    Args:
        startup_trials: Trials trained (any evaluation) before the model proposes.
        seed: Seeds the random start and the acquisition's Sobol draws.
        key: Configuration key of a full parameter dict (None: raw parameter values).
        metric: The task metric's optuna metric name (None: the first objective).
        target_steps: The target's steps (None: the study attribute ``TARGET_STEPS``,
            else the most steps any trial reached).
    """

    def __init__(self, *, startup_trials: int = 8, seed: int | None = None, key: Callable[[dict], Hashable] | None = None,
                 metric: str | None = None, target_steps: int | None = None) -> None:
        import optuna

        self.startup_trials = startup_trials
        self.seed = seed
        self.key = key
        self.metric = metric
        self.target_steps = target_steps
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._space = optuna.search_space.IntersectionSearchSpace(include_pruned=True)
        self._asks = 0
        #: Proposals the model made (tests and benchmarks read it).
        self.modelled = 0
        self._hyperparameters: list[dict] | None = None  # the last fit's, where the next starts

    # ------------------------------------------------------------------ optuna's sampler protocol
    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict:
        from optuna.distributions import CategoricalDistribution

        space = self._space.calculate(study)
        # A categorical with one choice carries nothing to model (the transform drops nothing for it).
        return {n: d for n, d in space.items() if not (isinstance(d, CategoricalDistribution) and len(d.choices) < 2)
                and not d.single()}

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        if not search_space:
            return {}
        data = self._observations(study, search_space)
        if data is None or data.trained < self.startup_trials:
            return {}
        self._asks += 1
        params = self._propose(study, search_space, data)
        if params is not None:
            self.modelled += 1
        return params or {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._random.after_trial(study, trial, state, values)

    # ------------------------------------------------------------------ data
    def _observations(self, study, search_space: dict):
        from optuna.trial import TrialState

        metric_index = self._metric_index(study)
        target = self.target_steps or study.user_attrs.get(TARGET_STEPS)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                          TrialState.RUNNING))
        return gather(trials, search_space, metric_index=metric_index, directions=study.directions,
                      metric_names=study.metric_names, target_steps=target)

    def _metric_index(self, study) -> int:
        names = study.metric_names or []
        if self.metric is not None and self.metric in names:
            return names.index(self.metric)
        from autopeft.tasks import METRIC_DIRECTIONS

        return next((i for i, n in enumerate(names) if n in METRIC_DIRECTIONS), 0)

    # ------------------------------------------------------------------ the model and the acquisition
    def _propose(self, study, search_space: dict, data) -> dict | None:
        import torch

        from autopeft.search.sampling.models import fit_models, hyperparameters, target_acquisition

        torch.manual_seed((self.seed or 0) * 7919 + self._asks)
        models = fit_models(data, warm=self._hyperparameters)
        self._hyperparameters = hyperparameters(models)
        acqf = target_acquisition(models, data)
        return self._best_new(acqf, data, search_space)

    def _best_new(self, acqf, data: Observations, search_space: dict) -> dict | None:
        """The highest-valued point of a Sobol pool that rounds to an untried configuration, as optuna params.

        A pool, not gradient steps: every proposal rounds to a configuration anyway, and L-BFGS
        restarts from raw samples took 7 of an 11-second ask (cProfile, 4 stopped trials, 2
        loaded cores) for a relaxation optimum that rounding mostly discards.
        """
        import torch
        from torch.quasirandom import SobolEngine

        d = data.transform.bounds.shape[0]
        pool = SobolEngine(d, scramble=True, seed=(self.seed or 0) * 1000 + self._asks).draw(POOL).double()
        with torch.no_grad():
            values = torch.cat([acqf(chunk.unsqueeze(1)) for chunk in pool.split(CHUNK)])
        tried = data.tried_keys(self.key)
        first = None
        for i in torch.argsort(values, descending=True).tolist():
            params = data.untransform(pool[i].numpy())
            if first is None:
                first = params
            if configuration_of(params, self.key) not in tried:
                return params
        return first
