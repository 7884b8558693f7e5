"""How far the proxy can be trusted in *this* study: verified means, fidelity, the baseline.

After ``autopeft verify``, each verified configuration has runs over seeds at full fidelity,
scored on validation and on the test split the search never read. This module turns them
into what a user decides on:

- ``verified_records``: the study's trials with their objective values replaced by the
  verified test means (and a ``verified`` entry in ``extras``), so the same Pareto, knee and
  pick code draws and picks the *verified* front;
- ``fidelity``: Kendall tau and Spearman rho between the proxy metric and the verified test
  mean over the verified points (with n), the seed-to-seed sd of the verified metric, and how
  many proxy front points stay on the verified front — with one sentence of advice when
  tau < 0.5;
- ``dominating_baseline``: which verified points beat default LoRA on every objective;
- ``verified_by_trial`` and ``select_verified``: the same read from a study's store, for
  ``autopeft show`` (the verified column and front) and ``autopeft export --verified``.

Diverged runs (``autopeft.search.analysis.divergence``) are kept and flagged, never averaged into a
win: a configuration with a diverged seed is marked so wherever it is shown.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Sequence

from autopeft.candidate import Candidate
from autopeft.search.analysis.divergence import divergence
from autopeft.store import trial_extras
from autopeft.store.records import StudyRecord, TrialRecord


@dataclass(frozen=True)
class Verified:
    """One configuration's verification: means and sds over its completed seeds.

    Attributes:
        subject: ``trial:N``, ``baseline``, or ``sweep:<rate>`` (one run of the baseline's
            learning-rate sweep).
        trial_number: N for a searched trial.
        seeds: Completed seeds.
        val: ``(mean, sd)`` of the task metric on validation.
        test: ``(mean, sd)`` on the test split.
        trainable_params: As the runs reported.
        diverged: Why some seed diverged, or None.
        candidate: The configuration.
    """

    subject: str
    trial_number: int | None
    seeds: tuple[int, ...]
    val: tuple[float, float]
    test: tuple[float, float]
    trainable_params: int
    diverged: str | None
    candidate: Candidate


def summarize(runs, metric: str) -> list[Verified]:
    """One ``Verified`` per subject with at least one complete run (of the newest protocol)."""
    done = [r for r in runs if r.status == "complete" and metric in r.metrics and metric in r.test_metrics]
    newest = {}
    for r in done:  # a later `verify --steps N` supersedes an earlier protocol for its subject
        newest[r.subject] = r.protocol_key
    out = []
    for subject in dict.fromkeys(r.subject for r in done):
        rows = [r for r in done if r.subject == subject and r.protocol_key == newest[subject]]
        why = next((f"seed {r.seed}: {d}" for r in rows if (d := divergence(r.metrics, r.diagnostics, r.curve))), None)
        out.append(Verified(
            subject, rows[0].trial_number, tuple(r.seed for r in rows),
            _mean_sd([r.metrics[metric] for r in rows]), _mean_sd([r.test_metrics[metric] for r in rows]),
            rows[0].trainable_params or 0, why, rows[0].candidate,
        ))
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verified_records(study: StudyRecord, records: Sequence[TrialRecord], verified: Sequence[Verified],
                     metric: str) -> list[TrialRecord]:
    """The verified trials with objective values from their verification (task metric: the
    test mean; trainable parameters: as trained; other costs: the proxy's), ready for
    ``pareto_front`` / ``knee`` / ``pick``. Trials without a verification are left out."""
    by_number = {v.trial_number: v for v in verified if v.trial_number is not None}
    out = []
    for r in records:
        v = by_number.get(r.number)
        if v is None or r.values is None:
            continue
        values = list(r.values)
        for i, (name, _) in enumerate(study.objectives):
            if name == metric:
                values[i] = v.test[0]
            elif name == "trainable_params":
                values[i] = float(v.trainable_params)
        out.append(dataclasses.replace(
            r, values=values, metrics={**r.metrics, metric: v.test[0]},
            extras=trial_extras.with_verified(r.extras, seeds=v.seeds, test=v.test, val=v.val, diverged=v.diverged),
        ))
    return out


@dataclass(frozen=True)
class Fidelity:
    """How the proxy's ranking held up under verification.

    Attributes:
        n: Verified configurations compared.
        kendall_tau: Rank agreement of proxy metric and verified test mean (None below 3 points).
        spearman_rho: The same by Spearman.
        seed_sd: Pooled seed-to-seed sd of the verified test metric (the noise floor).
        front_kept: Proxy front points that are also on the verified front.
        front_size: Verified proxy front points.
        advice: One sentence when tau < 0.5 (what to change), else None.
    """

    n: int
    kendall_tau: float | None
    spearman_rho: float | None
    seed_sd: float | None
    front_kept: int
    front_size: int
    advice: str | None

    def describe(self) -> str:
        if self.kendall_tau is None:
            return f"proxy fidelity: {self.n} verified point(s): too few for a rank correlation (need 3)"
        text = (f"proxy fidelity over {self.n} verified points: Kendall tau {self.kendall_tau:.2f}, "
                f"Spearman rho {self.spearman_rho:.2f}; seed sd {self.seed_sd:.4f}; "
                f"{self.front_kept} of {self.front_size} proxy front points stay on the verified front")
        return text + (f". {self.advice}" if self.advice else "")


def fidelity(study: StudyRecord, records: Sequence[TrialRecord], verified: Sequence[Verified], metric: str,
             proxy_steps: int, eval_examples: int) -> Fidelity:
    """Proxy metric vs verified test mean over the verified trials (see ``Fidelity``)."""
    from autopeft.search.analysis.pareto import pareto_front

    points = [(r, v) for r in records for v in verified if v.trial_number == r.number and metric in r.metrics]
    n = len(points)
    sds = [v.test[1] for _, v in points if len(v.seeds) > 1]
    seed_sd = (statistics.fmean(s * s for s in sds)) ** 0.5 if sds else None
    proxy_front = {r.number for r in pareto_front([r for r, _ in points], study.objectives)}
    vrecs = verified_records(study, [r for r, _ in points], [v for _, v in points], metric)
    verified_front = {r.number for r in pareto_front(vrecs, study.objectives)}
    kept = len(proxy_front & verified_front)
    if n < 3:
        return Fidelity(n, None, None, seed_sd, kept, len(proxy_front), None)
    from scipy.stats import kendalltau, spearmanr

    proxy = [r.metrics[metric] for r, _ in points]
    truth = [v.test[0] for _, v in points]
    tau = float(kendalltau(proxy, truth).statistic)
    rho = float(spearmanr(proxy, truth).statistic)
    advice = None
    if not tau >= 0.5:  # also when tau is NaN (all proxy values equal)
        moved = (f"the front held: all {kept} proxy front points survive" if kept == len(proxy_front) else
                 f"the front moved: {kept} of {len(proxy_front)} proxy front points survive")
        advice = (f"The proxy ranks configurations poorly here (tau {tau:.2f} < 0.5; {moved}): lengthen the proxy "
                  f"(proxy.steps {proxy_steps} -> "
                  f"{proxy_steps * 3}) and score it on more examples (proxy.eval_examples {eval_examples} -> "
                  f"{eval_examples * 2}), then search again")
    return Fidelity(n, tau, rho, seed_sd, kept, len(proxy_front), advice)


def dominating_baseline(study: StudyRecord, verified: Sequence[Verified], metric: str) -> list[Verified] | None:
    """Verified trials at least as good as verified default LoRA on the test metric and the
    parameter count, and better on one; None when there is no healthy baseline to compare with
    (not verified, or diverged: never a comparison)."""
    from autopeft.tasks import METRIC_DIRECTIONS

    base = next((v for v in verified if v.subject == "baseline"), None)
    if base is None or base.diverged:
        return None
    better = (lambda a, b: a > b) if METRIC_DIRECTIONS[metric] == "max" else (lambda a, b: a < b)
    out = []
    for v in verified:
        if v.trial_number is None or v.diverged:  # the baseline itself, its learning-rate sweep
            continue
        no_worse = not better(base.test[0], v.test[0]) and v.trainable_params <= base.trainable_params
        strictly = better(v.test[0], base.test[0]) or v.trainable_params < base.trainable_params
        if no_worse and strictly:
            out.append(v)
    return out


def verified_by_trial(store, study: StudyRecord) -> dict[int, Verified]:
    """``{trial number: Verified}`` of the study's verified trials (empty before ``autopeft verify``)."""
    from autopeft.space.stored import study_space
    from autopeft.store.verifications import Verifications

    runs = Verifications(store).of(study.name)
    if not runs:
        return {}
    metric = study_space(study).task.metric
    return {v.trial_number: v for v in summarize(runs, metric) if v.trial_number is not None}


def select_verified(store, study: str, trial: int | None, pick: str | None) -> tuple[StudyRecord, TrialRecord, str]:
    """Like ``autopeft.export.select_trial``, among the verified points and on their verified
    test means: the study, the chosen trial's record as stored, and how it was chosen.

    Raises:
        ExportError: not exactly one of ``trial`` / ``pick``, no verified point, or ``trial``
            was not verified.
    """
    from autopeft.errors import ExportError
    from autopeft.search.analysis.pareto import pick as pick_trial
    from autopeft.search.analysis.pareto import trial_by_number
    from autopeft.space.stored import study_space

    if (trial is None) == (pick is None):
        raise ExportError("give exactly one of --trial N or --pick (knee | best:OBJECTIVE | budget:PARAMS)")
    s = store.get_study(study)
    verified = verified_by_trial(store, s)
    if not verified:
        raise ExportError(f"study '{study}' has no verified point; run `autopeft verify {study}` first")
    metric = study_space(s).task.metric
    records = store.trials(study)
    candidates = verified_records(s, records, list(verified.values()), metric)
    if trial is not None:
        if trial not in verified:
            raise ExportError(f"trial {trial} was not verified; verified: {sorted(verified)}")
        chosen, how = trial_by_number(candidates, trial), f"trial:{trial} (verified)"
    else:
        chosen, how = pick_trial(s, candidates, pick), f"{pick} among verified points (test means)"
    return s, trial_by_number(records, chosen.number), how
