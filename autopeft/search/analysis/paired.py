"""A point against a reference on the test split, paired by seed and by test example.

A measured difference between two configurations carries two kinds of noise: training luck
(seed to seed, 1-3 accuracy points on short runs) and which examples the test split happens
to hold (a 500-row split alone gives one accuracy an sd of sqrt(0.7 x 0.3 / 500) = 2.0 points
at 70 %). A mean and sd over two or three seeds sees only the first, and with one or two
degrees of freedom. So:

- ``bootstrap``: the paired bootstrap over seeds and test examples. Both points were trained
  on the same seeds and scored on the same test rows in the same order
  (``autopeft.trials.evaluation.outcomes_record``), so each (seed, example) has a difference
  of outcomes in {-1, 0, +1}. One resample draws the seeds with replacement and, once for all
  of them, the test examples with replacement (a new test set is new for every seed and for
  both points alike), and takes the mean difference. The 2.5 and 97.5 percentiles of 2,000
  resamples are the 95 % interval of one comparison (of several compared at once, each
  interval is wider, so that they hold at 95 % together: :func:`family_level`); the verdict
  is ``better`` only when it lies above 0, ``worse`` only when below, else ``within noise``;
  its half-width is the smallest difference this protocol can separate;
- ``by_seed``: the fallback when a run kept no per-example outcomes (studies scored before
  they were recorded, a user runner's own metrics, a metric that is no share of examples):
  the per-seed differences' standard error and, for a share of ``n_test`` examples, the test
  split's sampling error taken as if the two points' answers were independent (an upper
  bound: paired answers agree more than that), a normal 95 % interval. Said to be unpaired.

One seed never gives a verdict: training luck cannot be told from merit with one run each.

An answer compares several points with default LoRA and names the best: at 95 % each, the
luckiest of four points equal to it is called better one time in six or so, and the point
named is the one most likely to be lucky. So a ``family`` of comparisons holds at 95 %
together (Bonferroni: each interval at 1 - 0.05 / family). On the quickstart, a point the
search called better by +0.041 at 95 % alone came out within noise at +0.019 when re-trained
over 5 seeds (benchmarks/README.md §21).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from autopeft.errors import AutoPeftError

#: Bootstrap resamples at 95 %: the 2.5 % tail then rests on 50 of them (more for a family).
RESAMPLES = 2000
#: Resamples a tail of the interval rests on, at the least.
TAIL_RESAMPLES = 50
#: Confidence of the interval a verdict is read from.
LEVEL = 0.95
#: ``PairedComparison.how``: paired by seed and test example (bootstrap), or by seed only.
PAIRED, UNPAIRED = "paired bootstrap", "by seed only"
VERDICTS = ("better", "worse", "within noise")


class PairingError(AutoPeftError):
    """Outcomes that cannot be paired: different seeds, or different test rows."""


@dataclass(frozen=True)
class PairedComparison:
    """A point minus its reference on the test split, and what that difference is worth.

    Attributes:
        diff: Mean of (point - reference) over the seeds and test examples, in the metric's
            units (a share: 0.0148 is 1.48 points), signed so that positive is better.
        low: Lower end of the interval (at ``each_level``: the ``level`` of the family of
            comparisons made together), same units.
        high: Upper end.
        verdict: ``better`` (interval above 0), ``worse`` (below 0) or ``within noise``
            (it contains 0, or one seed).
        seeds: The seeds both points ran, paired.
        examples: Test examples per seed, paired by example (0: not paired by example).
        how: ``PAIRED`` (bootstrap over seeds and examples) or ``UNPAIRED`` (by seed only,
            approximate).
        share: Whether the metric is a share of examples (then differences read in points).
        level: The confidence the family's intervals hold at together.
        resamples: Bootstrap resamples (0 for ``UNPAIRED``).
        family: How many comparisons ``level`` covers: this interval's own confidence is
            :attr:`each_level` (Bonferroni).
    """

    diff: float
    low: float
    high: float
    verdict: str
    seeds: tuple[int, ...]
    examples: int
    how: str
    share: bool = True
    level: float = LEVEL
    resamples: int = 0
    family: int = 1

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise PairingError(f"verdict must be one of {VERDICTS}, but got {self.verdict!r}")
        if not self.low <= self.high:
            raise PairingError(f"low <= high must hold, but got low={self.low}, high={self.high}")

    @property
    def each_level(self) -> float:
        """This interval's own confidence (:func:`family_level`)."""
        return family_level(self.family, self.level)

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest difference this protocol can separate."""
        return (self.high - self.low) / 2

    def protocol(self) -> str:
        """What was compared, e.g. ``2 seeds × 500 test rows``."""
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        return f"{seeds} × {self.examples:,} test rows" if self.examples else seeds

    def interval(self) -> str:
        """The interval and how it was made, e.g. ``95% interval +0.0032..+0.0264, paired
        bootstrap over 2 seeds × 500 test rows``."""
        how = (f"paired bootstrap over {self.protocol()}" if self.how == PAIRED else
               f"{self.protocol()}, unpaired by example: approximate")
        family = (f", joint over {self.family} points (Bonferroni: {100 * self.each_level:.2f}% each)"
                  if self.family > 1 else "")
        return f"{100 * self.level:.0f}% interval {self.low:+.4f}..{self.high:+.4f}{family}, {how}"

    def resolution(self) -> str:
        """What the protocol cannot separate, e.g. ``2 seeds × 500 test rows cannot separate
        differences under 2.9 points here``."""
        if len(self.seeds) < 2:
            return f"{self.protocol()} cannot tell a difference from training luck"
        size = f"{100 * self.half_width:.1f} points" if self.share else f"{self.half_width:.4f}"
        return f"{self.protocol()} cannot separate differences under {size} here"

    def describe(self) -> str:
        if self.verdict == "within noise":
            return f"within noise ({self.diff:+.4f}; {self.interval()})"
        return f"{self.verdict} by {abs(self.diff):.4f} ({self.interval()})"


def family_level(family: int, level: float = LEVEL) -> float:
    """The confidence each of ``family`` intervals needs for all of them to hold at ``level`` together."""
    return 1 - (1 - level) / max(1, family)


def verdict(low: float, high: float, n_seeds: int) -> str:
    """``better`` / ``worse`` when the interval excludes 0 (and more than one seed ran)."""
    if n_seeds < 2:
        return "within noise"
    return "better" if low > 0 else "worse" if high < 0 else "within noise"


def bootstrap(point: Sequence[Sequence[int]], base: Sequence[Sequence[int]], seeds: Sequence[int] | None = None, *,
              resamples: int | None = None, level: float = LEVEL, family: int = 1,
              rng_seed: int = 0) -> PairedComparison:
    """The paired bootstrap over seeds and test examples (see the module docstring).

    Args:
        point: 0/1 outcomes, shape ``(S, n)``: row ``s`` is seed ``s``'s run, column ``i``
            test example ``i`` (1: answered right).
        base: The reference's outcomes, the same shape, the same seeds in the same row order.
        seeds: The seed numbers of the rows (for the record; default ``0..S-1``).
        resamples: Bootstrap resamples (default: enough that each tail rests on
            :data:`TAIL_RESAMPLES`, :data:`RESAMPLES` at 95 % alone).
        level: Confidence of the family's intervals together.
        family: Comparisons ``level`` covers (1: this one alone).
        rng_seed: Seed of the resampling: the same inputs and seed give the same interval.

    Raises:
        PairingError: shapes differ, or no seed / no example.
    """
    import numpy as np

    a, b = np.asarray(point, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or 0 in a.shape:
        raise PairingError(f"outcomes must be two (seeds, examples) arrays of one shape, but got "
                           f"{a.shape} and {b.shape}")
    if not 0 < level < 1 or family < 1 or (resamples is not None and resamples < 1):
        raise PairingError(f"0 < level < 1, family >= 1 and resamples >= 1 must hold, but got level={level}, "
                           f"family={family}, resamples={resamples}")
    each = family_level(family, level)
    if resamples is None:
        resamples = max(RESAMPLES, math.ceil(2 * TAIL_RESAMPLES / (1 - each) - 1e-9))
    n_seeds, n = a.shape
    d = a - b
    by_seed = d.mean(axis=1)
    mean = float(by_seed.mean())
    if n_seeds > 1:
        # Resampling S seeds with replacement spreads their means by sd * sqrt((S-1)/S): with
        # 2 seeds, by half the variance. Widened back to the unbiased spread first.
        d = d + (math.sqrt(n_seeds / (n_seeds - 1)) - 1) * (by_seed - mean)[:, None]
    rng = np.random.default_rng(rng_seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // (n + n_seeds))  # about 16 MB of counts at a time
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        seed_counts = _counts(rng, k, n_seeds)  # (k, S): how often each seed was drawn
        example_counts = _counts(rng, k, n)  # (k, n): one draw of the test set for every seed
        means[start:start + k] = ((seed_counts @ d) * example_counts).sum(axis=1) / (n_seeds * n)
    low, high = (float(q) for q in np.quantile(means, [(1 - each) / 2, (1 + each) / 2]))
    chosen = tuple(seeds) if seeds is not None else tuple(range(n_seeds))
    if len(chosen) != n_seeds:
        raise PairingError(f"{n_seeds} rows of outcomes but {len(chosen)} seeds: {chosen}")
    return PairedComparison(mean, low, high, verdict(low, high, n_seeds), chosen, n, PAIRED, True, level, resamples,
                            family)


def _counts(rng, k: int, n: int):
    """``(k, n)`` int counts: ``k`` draws of ``n`` items from ``n`` with replacement."""
    import numpy as np

    idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)


def by_seed(point: Mapping[int, float], base: Mapping[int, float], *, n_test: int = 0, share: bool = False,
            floor: float = 0.0, level: float = LEVEL, family: int = 1) -> PairedComparison | None:
    """The fallback without per-example outcomes: paired by seed only (see the module docstring).

    Args:
        point: ``{seed: test metric}`` of the point, signed so that higher is better (a share
            is a higher-is-better metric: its values are the shares themselves).
        base: The same for the reference.
        n_test: Test examples each was scored on (0: unknown; no sampling term then).
        share: The metric is a share of examples (accuracy): its test sampling error is
            binomial, and differences read in points.
        floor: The least standard error over seeds (one test example for a share: seeds can
            agree to the example by chance).
        level: Confidence of the family's normal intervals together.
        family: Comparisons ``level`` covers (1: this one alone).

    Returns:
        None when no seed is shared.
    """
    from statistics import NormalDist

    seeds = tuple(sorted(set(point) & set(base)))
    if not seeds:
        return None
    diffs = [point[s] - base[s] for s in seeds]
    mean = statistics.fmean(diffs)
    var = max(statistics.stdev(diffs) / math.sqrt(len(diffs)), floor) ** 2 if len(diffs) > 1 else 0.0
    if share and n_test:
        # The test rows are the same for every seed: their sampling error does not shrink with seeds.
        pa, pb = (min(max(statistics.fmean(x[s] for s in seeds), 0.0), 1.0) for x in (point, base))
        var += (pa * (1 - pa) + pb * (1 - pb)) / n_test
    half = NormalDist().inv_cdf((1 + family_level(family, level)) / 2) * math.sqrt(var)
    low, high = mean - half, mean + half
    return PairedComparison(mean, low, high, verdict(low, high, len(seeds)), seeds, 0, UNPAIRED, share, level, 0,
                            family)


def outcome_bits(text: str):
    """``"0110"`` -> int8 array ``[0, 1, 1, 0]``."""
    import numpy as np

    bits = np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")
    if bits.size and bits.max() > 1:
        raise PairingError(f"per-example outcomes must be a string of 0 and 1, but got {text[:20]!r}...")
    return bits.astype(np.int8)
