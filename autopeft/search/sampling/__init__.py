"""Sampling: what to try next. ``multi_fidelity`` (a BoTorch sampler fed every evaluation of
every trial), ``observations`` (those evaluations, read from optuna's trials) and ``models``
(its GPs and the acquisition at the target)."""
