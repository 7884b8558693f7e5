"""The answer of a search with a ``target:``: its front at the target against default LoRA.

Pure functions over a study's records (their ``values`` hold the target means over seeds,
``extras["target"]`` the per-seed summary: ``autopeft.search.seeds``) and its seed runs:

- ``paired``: a front point against default LoRA on the seeds both ran (the same data
  order and initialisation seeds), on the test split the search never read: the mean
  paired difference and its standard error, called *within noise* when it is within two
  standard errors of zero. For a share of examples (accuracy, choice accuracy, exact
  match) the standard error is never taken below one test example: two or three seeds
  can agree to the example by chance (two seeds both +2 of 100 give an error of 0), and a
  difference of one example is not evidence;
- ``rung_tau``: Kendall tau between the lowest rung's metric and the target mean, over the
  trials that reached both: how far the first rung could be trusted in this study;
- ``answer``: all of it, with one plain sentence.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from autopeft.store.records import StudyRecord, TrialRecord


@dataclass(frozen=True)
class Paired:
    """A point against default LoRA, paired by seed on the test split.

    Attributes:
        trial: The point's trial number.
        seeds: The seeds both ran.
        diff: Mean of (point - default LoRA) over those seeds, in the metric's units,
            signed so that positive is better.
        se: Its standard error (0 with one seed).
        verdict: ``better``, ``worse`` or ``within noise`` (within 2 se of 0, or one seed).
    """

    trial: int
    seeds: tuple[int, ...]
    diff: float
    se: float
    verdict: str

    def describe(self) -> str:
        if self.verdict == "within noise":
            return f"within noise ({self.diff:+.4f} ± {self.se:.4f}, {len(self.seeds)} seeds)"
        return f"{self.verdict} by {abs(self.diff):.4f} ± {self.se:.4f} ({len(self.seeds)} seeds)"


@dataclass(frozen=True)
class Answer:
    """What a search with a target found (see the module docstring).

    Attributes:
        front: The eligible front at the target (trial records, values = target means).
        reference: Default LoRA's best trial at the target (None: it never got there healthy).
        paired: One ``Paired`` per front point (empty without a reference).
        tau: Kendall tau between the lowest rung and the target, and over how many trials.
        sentence: The answer, said plainly.
    """

    front: tuple[TrialRecord, ...]
    reference: TrialRecord | None
    paired: tuple[Paired, ...]
    tau: tuple[float | None, int]
    sentence: str


def reference(records: Sequence[TrialRecord], metric_sign: int, metric_index: int) -> TrialRecord | None:
    """Default LoRA's best complete, healthy trial (by its target mean)."""
    from autopeft.search.baseline import DEFAULT_LORA
    from autopeft.search.pareto import eligible

    refs = [r for r in eligible(records) if r.extras.get("baseline") == DEFAULT_LORA]
    return max(refs, key=lambda r: metric_sign * r.values[metric_index], default=None)


#: Metrics that are a share of the test examples: their resolution is one example.
SHARE_METRICS = ("accuracy", "choice_accuracy", "exact_match")


def paired(point: int, base: int, rows, metric: str, metric_sign: int, floor: float = 0.0) -> Paired | None:
    """``point`` against ``base`` on the seeds both completed (test metric); None: no shared
    seed. ``floor``: the least standard error (one test example for a share metric)."""
    def by_seed(n):
        return {r.seed: r.test_metrics[metric] for r in rows
                if r.trial_number == n and r.status == "complete" and metric in r.test_metrics}

    a, b = by_seed(point), by_seed(base)
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    diffs = [metric_sign * (a[s] - b[s]) for s in seeds]
    mean = statistics.fmean(diffs)
    se = max(statistics.stdev(diffs) / math.sqrt(len(diffs)), floor) if len(diffs) > 1 else 0.0
    if len(diffs) < 2 or abs(mean) <= 2 * se:
        verdict = "within noise"
    else:
        verdict = "better" if mean > 0 else "worse"
    return Paired(point, seeds, mean, se, verdict)


def rung_tau(records: Sequence[TrialRecord], metric_index: int) -> tuple[float | None, int]:
    """Kendall tau between the lowest rung's metric and the target mean (None below 3 trials)."""
    from autopeft.search.pareto import eligible

    pairs = [(r.extras["rungs"][0][1], r.values[metric_index]) for r in eligible(records) if r.extras.get("rungs")]
    if len(pairs) < 3:
        return None, len(pairs)
    from scipy.stats import kendalltau

    tau = kendalltau([p for p, _ in pairs], [t for _, t in pairs]).statistic
    return (None if math.isnan(tau) else float(tau)), len(pairs)


def answer(study: StudyRecord, records: Sequence[TrialRecord], rows, metric: str) -> Answer:
    """The front at the target, default LoRA beside it, the paired comparisons, tau and the sentence."""
    from autopeft.search.pareto import pareto_front
    from autopeft.tasks import METRIC_DIRECTIONS

    names = [n for n, _ in study.objectives]
    mi = names.index(metric)
    sign = 1 if METRIC_DIRECTIONS[metric] == "max" else -1
    front = tuple(sorted(pareto_front(records, study.objectives), key=lambda r: r.trainable_params or 0))
    ref = reference(records, sign, mi)
    n_test = (study.splits or {}).get("test") or 0
    floor = 1.0 / n_test if metric in SHARE_METRICS and n_test else 0.0
    pairs = tuple(p for r in front if ref is not None and r.number != ref.number
                  and (p := paired(r.number, ref.number, rows, metric, sign, floor)) is not None)
    return Answer(front, ref, pairs, rung_tau(records, mi), _sentence(front, ref, pairs))


def _sentence(front, ref, pairs) -> str:
    if not front:
        return "no point reached the target healthy: nothing to recommend (see `autopeft show`)"
    if ref is None:
        return "default LoRA did not reach the target healthy, so nothing is compared with it"
    by_trial = {r.number: r for r in front}
    base = ref.trainable_params or 0
    better = [p for p in pairs if p.verdict == "better"]
    if better:
        best = max(better, key=lambda p: p.diff)
        r = by_trial[best.trial]
        return (f"trial {r.number} beats default LoRA by {best.diff:.4f} ± {best.se:.4f} on the test split with "
                f"{r.trainable_params:,} trainable parameters ({_share(r, base)} of default LoRA's)")
    even = [p for p in pairs if p.verdict == "within noise" and (by_trial[p.trial].trainable_params or 0) < base]
    if even:
        r = min((by_trial[p.trial] for p in even), key=lambda r: r.trainable_params or 0)
        return (f"default LoRA is as good as anything found here; the smallest point within noise of it is "
                f"trial {r.number} with {r.trainable_params:,} trainable parameters ({_share(r, base)} of default LoRA's)")
    return "default LoRA is as good as anything found here, and no smaller point comes within noise of it"


def _share(r: TrialRecord, base: int) -> str:
    return f"{100 * (r.trainable_params or 0) / base:.1f}%" if base else "n/a"
