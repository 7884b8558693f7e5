"""A cheaper qLogNEHVI candidate generator for optuna-integration's BoTorchSampler.

Profiled here (cProfile, 20 told quickstart trials, one ask): ~90% of a suggestion is the
GP hyper-parameter fit (scipy L-BFGS, ~735 closure calls over the objectives and the
budget constraint), not the acquisition optimisation. Proxy objectives are noisy
(seed-to-seed sd of several accuracy points), so a finely converged fit buys little: this
generator keeps the stock model (SingleTaskGP, standardised outcomes, the constraint as an
extra outcome) and acquisition (qLogNEHVI with pruned baseline), caps the fit at 100
L-BFGS iterations, and optimises the acquisition with 4 restarts from 256 raw samples,
50 iterations, 64 QMC samples (stock: 20 / 1,024 / 200 / 256). ``benchmarks/overhead.py``
measures the sampler's share of a trial.
"""

from __future__ import annotations


def cheap_qlognehvi_candidates(train_x, train_obj, train_con, bounds, pending_x):
    """Same signature and contract as ``optuna_integration.botorch.qnehvi_candidates_func``."""
    import torch
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.transforms import normalize, unnormalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    n_objectives = train_obj.size(-1)
    extra = {}
    train_y = train_obj
    if train_con is not None:
        train_y = torch.cat([train_obj, train_con], dim=-1)
        n_con = train_con.size(1)
        extra = {
            "objective": IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives))),
            # feasible when <= 0: the sign convention optuna's constraints use
            "constraints": [(lambda Z, i=i: Z[..., -n_con + i]) for i in range(n_con)],
        }
    x = normalize(train_x, bounds=bounds)
    pending = normalize(pending_x, bounds=bounds) if pending_x is not None else None
    model = SingleTaskGP(x, train_y, outcome_transform=Standardize(m=train_y.shape[-1]))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), optimizer_kwargs={"options": {"maxiter": 100}})
    acqf = qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=(train_obj.min(dim=0).values - 1e-8).tolist(),
        X_baseline=x,
        prune_baseline=True,
        sampler=SobolQMCNormalSampler(torch.Size((64,))),
        X_pending=pending,
        **extra,
    )
    unit = torch.zeros_like(bounds)
    unit[1] = 1
    candidates, _ = optimize_acqf(
        acq_function=acqf, bounds=unit, q=1, num_restarts=4, raw_samples=256,
        options={"batch_limit": 4, "maxiter": 50}, sequential=True,
    )
    return unnormalize(candidates.detach(), bounds=bounds)
