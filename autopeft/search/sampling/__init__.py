"""Sampling: what to try next.

``samplers`` (the registry: a sampler's name -> a seeded optuna sampler), ``dedup`` (any
sampler, minus repeats), ``acquisition`` (the cheaper qLogNEHVI candidates of the botorch
sampler), ``multi_fidelity`` (a BoTorch sampler fed every evaluation of every trial),
``observations`` (those evaluations, read from optuna's trials), ``models`` (its GPs and the
acquisition at the target), ``baseline`` (the reference trials a new study starts with: default
LoRA, the cheapest point) and ``startup`` (its random start, stratified over methods).
"""
