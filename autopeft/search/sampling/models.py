"""The multi-fidelity sampler's GPs and its acquisition at the target.

``fit_models``: the task metric by ``SingleTaskMultiFidelityGP`` over ``(configuration, fraction
of the target)`` with botorch's exponential-decay kernel on the fraction (``linear_truncated=
False``: a learning curve that flattens, not a linear trend); every other objective and the
budget constraint by ``SingleTaskGP`` on the configuration. All take ``d + 1`` inputs so that one
``ModelListGP`` serves the acquisition; the configuration-only models see the fraction as a
constant 1 (they are asked at the target only).

``target_acquisition``: qLogNEHVI over that list with the fraction fixed at 1
(``FixedFeatureAcquisitionFunction``): noisy incumbents (the configurations trained, pruned
ones included), pending points (running trials), the constraint feasible at <= 0.
"""

from __future__ import annotations

#: L-BFGS iterations of a fit from the priors' defaults, and of one from the last fit's optimum.
COLD_ITERATIONS, WARM_ITERATIONS = 100, 50
#: Monte-Carlo samples of the acquisition (stock: 256; proxies are noisy, 64 is plenty).
MC_SAMPLES = 64


def fit_models(data, warm: "list[dict] | None" = None):
    """A fitted ``ModelListGP``: the metric, the other objectives, then the constraint (if any).

    ``warm``: each model's :func:`hyperparameters` from the previous fit, where L-BFGS starts
    (the data grows by a trial or two per ask, so the optimum moves little): fewer iterations
    than from the priors' defaults.
    """
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP, SingleTaskMultiFidelityGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    d = data.metric_x.shape[1] - 1
    models = [SingleTaskMultiFidelityGP(torch.as_tensor(data.metric_x), torch.as_tensor(data.metric_y).unsqueeze(-1),
                                        iteration_fidelity=d, linear_truncated=False,
                                        outcome_transform=Standardize(m=1))]
    for x, y in data.objectives + ((data.constraint,) if data.constraint is not None else ()):
        models.append(SingleTaskGP(_at_target(x), torch.as_tensor(y).unsqueeze(-1), outcome_transform=Standardize(m=1)))
    for i, model in enumerate(models):
        started = warm is not None and i < len(warm) and _warm_start(model, warm[i])
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                         optimizer_kwargs={"options": {"maxiter": WARM_ITERATIONS if started else COLD_ITERATIONS}})
        model.eval()
    return ModelListGP(*models)


def hyperparameters(models) -> list[dict]:
    """The fitted kernel, likelihood and mean parameters of each model of a ``ModelListGP`` (their
    raw, unconstrained values), for the next :func:`fit_models` to start from."""
    return [{k: v.detach().clone() for k, v in m.named_parameters()} for m in models.models]


def _warm_start(model, params: dict) -> bool:
    """Start ``model``'s hyperparameters at ``params`` where names and shapes agree (a model
    over other inputs keeps its own); whether every one of them did."""
    import torch

    every = True
    with torch.no_grad():
        for name, param in model.named_parameters():
            old = params.get(name)
            if old is not None and old.shape == param.shape:
                param.copy_(old)
            else:
                every = False
    return every


def target_acquisition(models, data):
    """qLogNEHVI at the target: a function of ``(batch, 1, d)`` unit configurations."""
    import torch
    from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
    from botorch.acquisition.multi_objective import logei
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
    from botorch.sampling import SobolQMCNormalSampler

    d = data.metric_x.shape[1] - 1
    n_objectives = 1 + len(data.objectives)
    # botorch compiles a C++ kernel for this acquisition on first use (tens of seconds, and a
    # killed compile leaves a lock every later process waits on); its Python path is the same
    # maths (autopeft.search.sampling.acquisition says more).
    if getattr(logei, "_C", None) is None and hasattr(logei, "_load_attempted"):
        logei._load_attempted = True
    extra = {}
    if data.constraint is not None:
        extra = {"objective": IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives))),
                 "constraints": [lambda Z: Z[..., -1]]}
    acqf = qLogNoisyExpectedHypervolumeImprovement(
        model=models,
        ref_point=_reference_point(data),
        X_baseline=_at_target(data.baseline),
        prune_baseline=True,
        sampler=SobolQMCNormalSampler(torch.Size((MC_SAMPLES,))),
        X_pending=_at_target(data.pending) if len(data.pending) else None,
        **extra,
    )
    return FixedFeatureAcquisitionFunction(acqf, d=d + 1, columns=[d], values=[1.0])


def _at_target(x):
    """``(n, d)`` configurations -> ``(n, d + 1)`` with the fraction of the target at 1."""
    import torch

    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=-1)


def _reference_point(data) -> list[float]:
    """Just below the worst value seen of each objective (oriented: larger is better)."""
    ys = [data.metric_y[data.metric_x[:, -1] >= 1.0] if (data.metric_x[:, -1] >= 1.0).any() else data.metric_y]
    ys += [y for _, y in data.objectives]
    out = []
    for y in ys:
        low, high = float(y.min()), float(y.max())
        out.append(low - 0.1 * max(high - low, 1e-6))
    return out
