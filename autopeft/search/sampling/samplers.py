"""The sampler registry: name -> factory of a seeded optuna sampler.

Every sampler sees the same fixed-dimensional space (``autopeft.space.encoding``), and
the budget as an optuna constraint (``trial.set_constraint``), which the constrained
samplers (botorch, gp, tpe, nsga2) model; ``random`` ignores it by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from autopeft.space.schema import SearchSpec


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    summary: str
    make: Callable[..., object]  # (search, key) -> sampler; key: configuration key or None


_REGISTRY: dict[str, SamplerInfo] = {}


def register_sampler(name: str, summary: str):
    """Decorator registering a sampler factory; refuses duplicates."""

    def wrap(make: Callable[..., object]):
        if name in _REGISTRY:
            raise ValueError(f"sampler {name!r} is already registered")
        _REGISTRY[name] = SamplerInfo(name, summary, make)
        return make

    return wrap


def sampler_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_sampler(search: SearchSpec, encoding=None):
    """A fresh sampler for ``search`` (seeded by ``search.seed``) that never re-proposes a
    configuration the study already has (``autopeft.search.sampling.dedup``; pass the search's
    ``encoding`` so that "the same" means the same configuration, not the same raw values)."""
    from autopeft.search.sampling.dedup import Deduplicated, configuration_key

    key = configuration_key(encoding) if encoding is not None else None
    return Deduplicated(_REGISTRY[search.sampler].make(search, key), key)


@register_sampler("botorch", "GP + qLogNEHVI (noisy multi-objective, constraint-aware) via optuna-integration")
def _botorch(search: SearchSpec, key=None):
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna_integration import BoTorchSampler

    from autopeft.search.sampling.acquisition import QLogNEHVICandidates

    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    # qLogNEHVI: short proxies are noisy (seed sd ~2.7 pt), so the noisy variant, not qEHVI,
    # which trusts each observed value; fitted and optimised more cheaply than
    # optuna-integration's default (autopeft.search.sampling.acquisition says why and by how much).
    class _BoTorch(BoTorchSampler):
        # Tells the candidate generator how this ask's columns round to configurations.
        def sample_relative(self, study, trial, search_space):
            bind = getattr(self._candidates_func, "bind", None)  # absent on a plain function (tests)
            if bind is not None and search_space:
                bind(search_space, key)
            return super().sample_relative(study, trial, search_space)

    # consider_running_trials: other workers' running points enter qLogNEHVI as pending.
    noise = tuple(sd for _, sd in search.noise) or None  # search.noise: told, not inferred
    return _BoTorch(candidates_func=QLogNEHVICandidates(noise_sd=noise), n_startup_trials=search.startup_trials, seed=search.seed,
                    consider_running_trials=True)


@register_sampler("mf-botorch", "multi-fidelity GP over (configuration, step) fed every rung of every trial; "
                                "qLogNEHVI at the target")
def _mf_botorch(search: SearchSpec, key=None):
    from autopeft.search.sampling.multi_fidelity import MultiFidelitySampler

    return MultiFidelitySampler(startup_trials=search.startup_trials, seed=search.seed, key=key)


@register_sampler("gp", "optuna's GPSampler (log EHVI for several objectives)")
def _gp(search: SearchSpec, key=None):
    import optuna

    # Independent draws happen by design (autopeft.search.sampling.dedup redraws repeats): not news.
    return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=search.startup_trials,
                                     warn_independent_sampling=False)


@register_sampler("tpe", "optuna's multivariate TPE")
def _tpe(search: SearchSpec, key=None):
    import optuna

    return optuna.samplers.TPESampler(
        seed=search.seed, n_startup_trials=search.startup_trials, multivariate=True, warn_independent_sampling=False
    )


@register_sampler("nsga2", "optuna's NSGA-II evolutionary sampler")
def _nsga2(search: SearchSpec, key=None):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=max(4, search.startup_trials))


@register_sampler("random", "uniform random search (the baseline every sampler must beat)")
def _random(search: SearchSpec, key=None):
    import optuna

    return optuna.samplers.RandomSampler(seed=search.seed)
