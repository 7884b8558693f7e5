"""The scale each objective is compared on: log10 for the trainable-parameter count.

Trainable parameters span three orders of magnitude in one space (IA3 on one layer ~2e3,
LoRA r=16 on every linear ~1e6), and users read them as ratios ("a tenth of the
parameters"). On a linear scale, a GP with standardised outcomes sees every small
configuration as one value, and hypervolume improvement rewards trimming 300k parameters
off the largest configurations far more than a tenfold reduction at the small end — so
BoTorch chased the wrong region (``benchmarks/sampler_quality.py``: HV@20 0.734 told raw
counts, see benchmarks/README.md for the figure told log10). So the sampler is told
log10(count), and the study's hypervolume and knee use the same geometry. Pareto fronts
do not change (a monotone map keeps dominance); stored values stay in their own units.
"""

from __future__ import annotations

import math
from typing import Sequence

#: Objectives compared on log10 of their value (counts over orders of magnitude).
LOG_SCALED = frozenset({"trainable_params"})


def scaled(objectives: Sequence, values: Sequence[float]) -> list[float]:
    """``values`` (study order) on the scale the sampler models and the hypervolume measures."""
    return [math.log10(max(float(v), 1.0)) if name in LOG_SCALED else float(v)
            for (name, _), v in zip(objectives, values)]


def unscaled(objectives: Sequence, values: Sequence[float]) -> list[float]:
    """The inverse of :func:`scaled`: back to each objective's own units."""
    return [10.0 ** float(v) if name in LOG_SCALED else float(v) for (name, _), v in zip(objectives, values)]
