"""A cheaper qLogNEHVI candidate generator for optuna-integration's BoTorchSampler.

Profiled here (cProfile, 20 told quickstart trials, one ask): ~90% of a suggestion is the
GP hyper-parameter fit (scipy L-BFGS, ~735 closure calls over the objectives and the
budget constraint), not the acquisition optimisation. Proxy objectives are noisy
(seed-to-seed sd of several accuracy points), so a finely converged fit, redone from
scratch on every ask, buys little. This generator keeps the stock model (SingleTaskGP,
standardised outcomes, the constraint as an extra outcome) and acquisition (qLogNEHVI with
pruned baseline), and

* fits the GP hyper-parameters (lengthscales, noise, mean) only when the data has grown by
  ``refit_every`` trials since the last fit, warm-started from that fit and capped at 100
  L-BFGS iterations; in between, the GP conditions on all the data with the kept
  hyper-parameters (exact inference, milliseconds) — one told trial moves the fitted
  hyper-parameters little next to the proxies' noise;
* optimises the acquisition with 4 restarts from 256 raw samples, 50 iterations, 64 QMC
  samples (stock: 20 / 1,024 / 200 / 256);
* answers with the best point *that is a new configuration*. The optimum of the continuous
  relaxation often rounds to a configuration already tried (measured on the tabular
  benchmark: from about trial 20 on, nearly every proposal). Told the space's column
  layout (:meth:`QLogNEHVICandidates.bind`), it ranks the restarts' optima and the raw
  samples by acquisition value and returns the first whose rounding is not a trial of the
  study (told or running); ``autopeft.search.sampling.dedup`` stays the safety net.

Optionally (``search.noise``, ``noise_sd``), the GP is told each objective's observation
noise instead of inferring one shared-prior noise per outcome: ``SingleTaskGP(train_Yvar=...)``
(a ``FixedNoiseGaussianLikelihood``), sd**2 on the scale the objective is told, a floor of
1e-6 for the exact ones (trainable parameters, the budget constraint). Measured
whether this stops late proposals from re-probing one configuration at nearby learning
rates; ``benchmarks/README.md`` ("Near-duplicates") has the figures — it is off by default.

``benchmarks/overhead.py`` measures the sampler's share of a trial and
``benchmarks/sampler_quality.py`` its search quality.
"""

from __future__ import annotations

#: Refit the GP hyper-parameters after this many new trials (1 = every ask, the stock behaviour).
REFIT_EVERY = 5
#: State-dict prefixes of the GP's hyper-parameters; outcome standardisation is data, never kept.
_HYPER_PARAMETERS = ("likelihood.", "mean_module.", "covar_module.")
#: Observation variance of an exact outcome when the noise is given (told scale).
_MIN_YVAR = 1e-6


class QLogNEHVICandidates:
    """Same call signature and contract as ``optuna_integration.botorch.qnehvi_candidates_func``.

    One instance per sampler: it remembers the hyper-parameters of its last GP fit.
    """

    def __init__(self, refit_every: int = REFIT_EVERY, noise_sd=None) -> None:
        if refit_every < 1:
            raise ValueError("refit_every must be >= 1")
        if noise_sd is not None and any(sd < 0 for sd in noise_sd):
            raise ValueError("noise_sd must be >= 0")
        self.refit_every = refit_every
        #: Per objective (study order), the observation noise sd on the told scale; None: inferred.
        self.noise_sd = None if noise_sd is None else tuple(float(sd) for sd in noise_sd)
        self._kept: dict | None = None  # hyper-parameters of the last fit
        self._fitted_at = 0  # number of training points at that fit
        self.fits = 0  # how many times the hyper-parameters were fitted (tests and benchmarks read it)
        self._row_key = None  # row of train_x -> configuration key (set by bind)

    def bind(self, search_space: dict, key=None) -> None:
        """Learn how rows of ``train_x`` round to configurations, for this ask's search space.

        ``search_space`` is the dict BoTorchSampler transforms (its column layout is optuna's
        ``_SearchSpaceTransform`` of it, which optuna-integration itself uses); ``key`` maps a
        parameter dict to a configuration key (``autopeft.search.sampling.dedup.configuration_key``).
        """
        from optuna._transform import _SearchSpaceTransform

        from autopeft.search.sampling.dedup import key_of

        transform = _SearchSpaceTransform(search_space)
        self._row_key = lambda row: key_of(transform.untransform(row.detach().cpu().numpy()), key)

    def __call__(self, train_x, train_obj, train_con, bounds, pending_x):
        import torch
        from botorch.acquisition.multi_objective import logei
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.optim import optimize_acqf
        from botorch.sampling import SobolQMCNormalSampler
        from botorch.utils.transforms import normalize, unnormalize

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
        model = self._model(x, train_y)
        # botorch 0.18 JIT-compiles a C++ kernel (torch cpp_extension, -march=native) the first
        # time this acquisition is built: tens of seconds in every fresh environment, and a
        # process killed while it compiles leaves a lock file every later process waits on for
        # ever (seen here: all BoTorch asks hung after a killed search). Its pure-Python path
        # computes the same values; tell botorch the compile was already tried.
        if getattr(logei, "_C", None) is None and hasattr(logei, "_load_attempted"):
            logei._load_attempted = True
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
        candidates, values = optimize_acqf(
            acq_function=acqf, bounds=unit, q=1, num_restarts=4, raw_samples=256,
            options={"batch_limit": 4, "maxiter": 50}, sequential=True, return_best_only=self._row_key is None,
        )
        if self._row_key is None:
            return unnormalize(candidates.detach(), bounds=bounds)
        tried = [train_x] + ([pending_x] if pending_x is not None else [])
        return self._best_new(acqf, candidates.reshape(-1, x.shape[-1]), values.reshape(-1), torch.cat(tried), bounds)

    def _best_new(self, acqf, optima, values, tried, bounds):
        """The highest-valued point among the optima and a Sobol pool that rounds to an untried configuration."""
        import torch
        from torch.quasirandom import SobolEngine
        from botorch.utils.transforms import unnormalize

        pool = SobolEngine(optima.shape[-1], scramble=True, seed=len(tried)).draw(512).to(optima)
        with torch.no_grad():
            pool_values = torch.cat([acqf(chunk.unsqueeze(1)) for chunk in pool.split(128)])
        points = unnormalize(torch.cat([optima, pool]), bounds=bounds)
        order = torch.argsort(torch.cat([values.detach(), pool_values]), descending=True)
        seen = {self._row_key(row) for row in tried}
        for i in order.tolist():
            if self._row_key(points[i]) not in seen:
                return points[i].unsqueeze(0)
        return points[order[0]].unsqueeze(0)  # every one tried: autopeft.search.sampling.dedup redraws it

    def _model(self, x, train_y):
        """A SingleTaskGP on all the data; hyper-parameters refitted or kept (see module doc)."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        yvar = None
        if self.noise_sd is not None:
            import torch

            sd = list(self.noise_sd) + [0.0] * (train_y.shape[-1] - len(self.noise_sd))  # constraints: exact
            yvar = (torch.tensor(sd, dtype=train_y.dtype) ** 2).clamp_min(_MIN_YVAR).expand_as(train_y)
        model = SingleTaskGP(x, train_y, train_Yvar=yvar, outcome_transform=Standardize(m=train_y.shape[-1]))
        restored = self._kept is not None and self._restore(model)
        if not restored or len(x) - self._fitted_at >= self.refit_every:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                             optimizer_kwargs={"options": {"maxiter": 100}})
            self._kept = {k: v.detach().clone() for k, v in model.state_dict().items()
                          if k.startswith(_HYPER_PARAMETERS)}
            self._fitted_at = len(x)
            self.fits += 1
        model.eval()
        return model

    def _restore(self, model) -> bool:
        """Load the kept hyper-parameters; False when they no longer fit (dimensions or outcomes changed)."""
        try:
            model.load_state_dict(self._kept, strict=False)
        except RuntimeError:  # shape mismatch: a new column or outcome, so fit afresh
            self._kept = None
            return False
        return True
