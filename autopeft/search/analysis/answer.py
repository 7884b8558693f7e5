"""The answer of a search with a ``target:``: its front at the target against default LoRA.

Pure functions over a study's records (their ``values`` hold the target means over seeds,
``extras["target"]`` the per-seed summary: ``autopeft.search.seeds``) and its seed runs:

- ``paired``: a front point against default LoRA on the seeds both ran (the same data
  order and initialisation seeds), on the test split the search never read
  (``autopeft.search.analysis.paired``): where both kept their per-example outcomes, the paired
  bootstrap over seeds and test examples, its interval and verdict (``better`` or ``worse``
  only when the interval excludes 0); otherwise, paired by seed only, an approximate
  interval that says so. The intervals of all the points compared hold at 95 % together
  (``family``): the answer names the best of them, the one most likely to be lucky;
- ``rung_tau``: Kendall tau between the lowest rung's metric and the target mean, over the
  trials that reached both: how far the first rung could be trusted in this study;
- ``answer``: all of it, with one plain sentence naming the best point, the smallest point
  not shown worse than default LoRA, the interval used, and what the protocol cannot separate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from autopeft.search.analysis.paired import PairedComparison
from autopeft.store.records import StudyRecord, TrialRecord


@dataclass(frozen=True)
class Paired:
    """A front point against default LoRA on the test split.

    Attributes:
        trial: The point's trial number.
        comparison: The paired comparison (``autopeft.search.analysis.paired``): the mean difference
            (point - default LoRA, positive is better, in the metric's units), its interval,
            the verdict and over what it was computed.
    """

    trial: int
    comparison: PairedComparison

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.comparison.seeds

    @property
    def diff(self) -> float:
        return self.comparison.diff

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    def describe(self) -> str:
        return self.comparison.describe()


@dataclass(frozen=True)
class Answer:
    """What a search with a target found (see the module docstring).

    Attributes:
        front: The eligible front at the target (trial records, values = target means).
        reference: Default LoRA's best trial at the target (None: it never got there healthy).
        paired: One ``Paired`` per front point but default LoRA (empty without a reference).
        best: The paired point with the largest difference (None: nothing paired).
        smallest: The paired point with the fewest trainable parameters whose verdict is not
            ``worse`` (None: every one is worse, or nothing paired).
        tau: Kendall tau between the lowest rung and the target, and over how many trials.
        sentence: The answer, said plainly.
    """

    front: tuple[TrialRecord, ...]
    reference: TrialRecord | None
    paired: tuple[Paired, ...]
    best: Paired | None
    smallest: Paired | None
    tau: tuple[float | None, int]
    sentence: str


def reference(records: Sequence[TrialRecord], metric_sign: int, metric_index: int) -> TrialRecord | None:
    """Default LoRA's best complete, healthy trial (by its target mean)."""
    from autopeft.search.analysis.pareto import eligible
    from autopeft.space.default_lora import DEFAULT_LORA

    refs = [r for r in eligible(records) if r.role == DEFAULT_LORA]
    return max(refs, key=lambda r: metric_sign * r.values[metric_index], default=None)


#: Metrics that are a share of the test examples: their resolution is one example.
SHARE_METRICS = ("accuracy", "choice_accuracy", "exact_match")


def paired(point: int, base: int, rows, metric: str, metric_sign: int, floor: float = 0.0, n_test: int = 0,
           *, family: int = 1, rng_seed: int = 0) -> Paired | None:
    """``point`` against ``base`` on the test split, over the seeds both completed; None: no
    shared seed.

    Paired by test example (``autopeft.search.analysis.paired.bootstrap``) when every shared seed's
    two runs kept outcomes of ``metric`` on the same test rows; otherwise by seed only
    (``by_seed``, said to be approximate) with ``floor`` (the least standard error over
    seeds: one test example for a share metric) and ``n_test`` (test rows, for the sampling
    error of a share metric; 0: unknown).

    Args:
        rows: The study's seed rows (``VerificationRecord``) of both trials.
        metric_sign: 1 when higher ``metric`` is better, -1 when lower is.
        family: How many points are compared with ``base`` in all: the intervals hold at 95 % together.
        rng_seed: The bootstrap's seed: the same rows give the same interval.
    """
    from autopeft.search.analysis.paired import bootstrap, by_seed

    a, b = _complete(rows, point, metric), _complete(rows, base, metric)
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    outcomes = [(_outcomes(a[s], metric), _outcomes(b[s], metric)) for s in seeds]
    splits = {o["split"] for pair in outcomes if None not in pair for o in pair}
    if metric_sign > 0 and all(None not in pair for pair in outcomes) and len(splits) == 1 \
            and len({len(o["right"]) for pair in outcomes for o in pair}) == 1:
        from autopeft.search.analysis.paired import outcome_bits

        comparison = bootstrap([outcome_bits(x["right"]) for x, _ in outcomes],
                               [outcome_bits(y["right"]) for _, y in outcomes], seeds, family=family,
                               rng_seed=rng_seed)
    else:
        comparison = by_seed({s: metric_sign * a[s].test_metrics[metric] for s in seeds},
                             {s: metric_sign * b[s].test_metrics[metric] for s in seeds},
                             n_test=n_test, share=metric in SHARE_METRICS, floor=floor, family=family)
    return Paired(point, comparison)


def _complete(rows, trial: int, metric: str) -> dict:
    """``{seed: row}`` of ``trial``'s complete seed rows scored on ``metric``'s test split."""
    return {r.seed: r for r in rows if r.trial_number == trial and r.status == "complete" and metric in r.test_metrics}


def _outcomes(row, metric: str) -> dict | None:
    """A seed row's per-example test outcomes of ``metric`` (None: not kept, or of another metric)."""
    from autopeft.trials.evaluation import OUTCOMES

    o = row.test_metrics.get(OUTCOMES)
    ok = isinstance(o, dict) and o.get("metric") == metric and isinstance(o.get("right"), str) and o["right"]
    return o if ok else None


def rung_tau(records: Sequence[TrialRecord], metric_index: int) -> tuple[float | None, int]:
    """Kendall tau between the lowest rung's metric and the target mean (None below 3 trials)."""
    from autopeft.search.analysis.pareto import eligible

    pairs = [(r.rungs[0].metric, r.values[metric_index]) for r in eligible(records) if r.rungs]
    if len(pairs) < 3:
        return None, len(pairs)
    from scipy.stats import kendalltau

    tau = kendalltau([p for p, _ in pairs], [t for _, t in pairs]).statistic
    return (None if math.isnan(tau) else float(tau)), len(pairs)


def answer(study: StudyRecord, records: Sequence[TrialRecord], rows, metric: str) -> Answer:
    """The front at the target, default LoRA beside it, the paired comparisons, tau and the sentence."""
    from autopeft.search.analysis.pareto import pareto_front
    from autopeft.tasks import METRIC_DIRECTIONS

    names = [n for n, _ in study.objectives]
    mi = names.index(metric)
    sign = 1 if METRIC_DIRECTIONS[metric] == "max" else -1
    front = tuple(sorted(pareto_front(records, study.objectives), key=lambda r: r.trainable_params or 0))
    ref = reference(records, sign, mi)
    n_test = (study.splits or {}).get("test") or 0
    floor = 1.0 / n_test if metric in SHARE_METRICS and n_test else 0.0
    others = [r.number for r in front if ref is not None and r.number != ref.number
              and set(_complete(rows, r.number, metric)) & set(_complete(rows, ref.number, metric))]
    pairs = tuple(p for n in others
                  if (p := paired(n, ref.number, rows, metric, sign, floor, n_test, family=len(others))) is not None)
    size = {r.number: r.trainable_params or 0 for r in front}
    best = max(pairs, key=lambda p: p.diff, default=None)
    smallest = min((p for p in pairs if p.verdict != "worse"), key=lambda p: (size[p.trial], p.trial), default=None)
    return Answer(front, ref, pairs, best, smallest, rung_tau(records, mi),
                  _sentence(front, ref, pairs, best, smallest))


def _sentence(front, ref, pairs, best: Paired | None, smallest: Paired | None) -> str:
    if not front:
        return "no point reached the target healthy: nothing to recommend (see `autopeft show`)"
    if ref is None:
        return "default LoRA did not reach the target healthy, so nothing is compared with it"
    if best is None:
        return "no other point reached the target beside default LoRA: nothing to compare it with"
    by_trial = {r.number: r for r in front}
    base = ref.trainable_params or 0
    b, c = by_trial[best.trial], best.comparison
    if c.verdict == "better":
        head = (f"trial {b.number} beats default LoRA by {c.diff:.4f} ({c.interval()}) with "
                f"{b.trainable_params:,} trainable parameters ({_share(b, base)} of default LoRA's)")
    else:
        head = (f"nothing found here beats default LoRA beyond noise: the best, trial {b.number} "
                f"({b.trainable_params:,} trainable parameters, {_share(b, base)} of default LoRA's), is "
                f"{c.verdict} at {c.diff:+.4f} ({c.interval()}); {c.resolution()}")
    if smallest is None:
        return f"{head}; every point compared is worse than default LoRA"
    if smallest.trial == best.trial:
        return f"{head}; it is also the smallest point not shown worse than default LoRA"
    s, sc = by_trial[smallest.trial], smallest.comparison
    # "Not shown worse", not "as good": within noise, its interval may reach far below 0 (on
    # the quickstart, such an IA3 came out worse when re-trained over 5 seeds: benchmarks/README.md §21).
    return (f"{head}; the smallest point not shown worse than default LoRA is trial {s.number} with "
            f"{s.trainable_params:,} trainable parameters ({_share(s, base)} of default LoRA's), "
            f"{sc.verdict} at {sc.diff:+.4f} ({sc.low:+.4f}..{sc.high:+.4f})")


def _share(r: TrialRecord, base: int) -> str:
    return f"{100 * (r.trainable_params or 0) / base:.1f}%" if base else "n/a"
