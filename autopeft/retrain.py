"""``export --train``: re-train a chosen configuration at full fidelity, over several seeds.

The search's proxies are short and noisy; before a user ships a configuration, it is
trained on all the training data (unless limited) for each seed, in the same isolated
trial process as the search, and the adapter of the best seed is saved with peft
(``adapter_model.safetensors``). A model card reports the metric mean ± sd over seeds.
``--baseline`` trains default LoRA (``autopeft.space.default_lora``: r=8, alpha 16, the
attention's query and value projections, all layers) under the same protocol, so the card can
say whether the search beat the guess. The baseline gets its own learning rate, from a sweep
over standard LoRA rates (``BASELINE_RATES``, one seed each on validation), and a diverged run
is never a comparison: every run is checked (``autopeft.search.analysis.divergence``) and the
card says so instead of claiming a win.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autopeft.candidate import Candidate
from autopeft.errors import ExportError
from autopeft.search.protocol import RunProtocol
from autopeft.space.default_lora import BASELINE, BASELINE_RATES, baseline_candidate, best_rate
from autopeft.store import StudyRecord, TrialRecord

@dataclass(frozen=True)
class SeedRun:
    seed: int
    metrics: dict
    trainable_params: int
    train_time: float
    diverged: str | None = None  # why the run counts as diverged (autopeft.search.analysis.divergence)


@dataclass(frozen=True)
class ConfigReport:
    name: str
    candidate: Candidate
    runs: tuple[SeedRun, ...]

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs]

    def mean_sd(self, metric: str) -> tuple[float, float]:
        v = self.values(metric)
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

    @property
    def trainable_params(self) -> int:
        return self.runs[0].trainable_params

    @property
    def diverged(self) -> str | None:
        """Why some seed diverged (the first such seed), or None."""
        return next((f"seed {r.seed}: {r.diverged}" for r in self.runs if r.diverged), None)


@dataclass(frozen=True)
class Sweep:
    """The baseline's learning-rate sweep: ``(rate, metric value or None, divergence)`` per rate."""

    rows: tuple[tuple[float, float | None, str | None], ...]
    chosen: float

    def describe(self, metric: str) -> str:
        parts = []
        for lr, value, why in self.rows:
            score = "failed" if value is None else f"{value:.4f}"
            parts.append(f"{lr:g}: {score}{' (diverged)' if why else ''}{' <- used' if lr == self.chosen else ''}")
        return f"learning rate from a sweep (seed 0, {metric} on validation): " + ", ".join(parts)


def retrain(study: StudyRecord, record: TrialRecord, out: Path, *, seeds: int = 3, steps: int | None = None,
            epochs: float | None = None, train_examples: int | None = None, baseline: bool = False,
            baseline_rates: tuple[float, ...] = BASELINE_RATES,
            on_progress=None) -> tuple[RunProtocol, ConfigReport, ConfigReport | None]:
    """Train ``record``'s configuration per seed, keep the best seed's adapter in ``out``.

    The protocol: ``steps``, or ``epochs`` (default 1) of the training rows, for each of
    ``seeds`` seeds; the same for the chosen configuration and the baseline. With
    ``baseline``, default LoRA is trained under it at the best of ``baseline_rates`` (a
    one-seed sweep on validation, ``sweep_baseline``)."""
    from autopeft.search.prepare import prepare_search
    from autopeft.space.stored import study_space
    if record.status != "complete":
        raise ExportError(f"trial {record.number} is {record.status}; pick a completed trial to train")
    asked = RunProtocol(steps=steps, epochs=epochs, seeds=tuple(range(seeds)))  # AutoPeftError for both
    space = study_space(study)
    full = dataclasses.replace(space.proxy, train_examples=train_examples or 10**9)
    space = dataclasses.replace(space, proxy=full)
    prep = prepare_search(space)
    protocol = asked.resolved(batch_size=full.batch_size, max_length=full.max_length, train_examples=prep.data.n_train,
                              eval_examples=prep.data.n_eval, metric=space.task.metric, task=space.task.type)

    chosen = _train_all("chosen", record.candidate, prep, protocol, out, keep=True, on_progress=on_progress)
    base = note = None
    if baseline:
        sweep = sweep_baseline(record.candidate, prep, protocol, baseline_rates, on_progress=on_progress)
        cand = baseline_candidate(record.candidate, prep.arch, learning_rate=sweep.chosen)
        base = _train_all("baseline", cand, prep, protocol, out, keep=False, on_progress=on_progress)
        note = (f"Baseline: default LoRA (r={BASELINE['rank']}, alpha {BASELINE['alpha']:g}, "
                f"{'/'.join(cand.targets.modules)}, all layers) at learning rate {sweep.chosen:g}; "
                f"{sweep.describe(protocol.metric)}.")
    (out / "README.md").write_text(model_card(study, record, protocol, chosen, base, prep.data.num_labels, note))
    return protocol, chosen, base


def sweep_baseline(candidate: Candidate, prep, protocol: RunProtocol, rates: tuple[float, ...], *,
                   on_progress=None) -> Sweep:
    """Train default LoRA once (seed 0) at each of ``rates`` and pick the best on validation.

    A run that diverges or fails (a non-finite loss) is recorded, never chosen while another
    rate trained; if every rate diverged, the best of them is used and the card says so.
    """
    single = dataclasses.replace(protocol, seeds=(0,))
    rows = []
    for lr in rates:
        cand = baseline_candidate(candidate, prep.arch, learning_rate=lr)
        result = _train_one("baseline sweep", cand, prep, single, 0, None, on_progress, note=f"learning rate {lr:g}")
        if result.status != "complete":
            rows.append((lr, None, f"failed: {result.error}"))
            continue
        from autopeft.search.analysis.divergence import divergence
        from autopeft.store.trial_extras import Diagnostics

        why = divergence(result.metrics, Diagnostics.from_extras(result.extras), result.curve)
        rows.append((lr, result.metrics[protocol.metric], why))
    trained = [r for r in rows if r[1] is not None]
    if not trained:
        raise ExportError(f"the baseline failed at every learning rate of the sweep: {rows[0][2]}")
    from autopeft.tasks import METRIC_DIRECTIONS

    return Sweep(tuple(rows), best_rate(trained, maximise=METRIC_DIRECTIONS[protocol.metric] == "max"))


def _train_all(name, cand, prep, protocol: RunProtocol, out: Path, *, keep: bool, on_progress) -> ConfigReport:
    from autopeft.search.analysis.divergence import divergence
    from autopeft.store.trial_extras import Diagnostics

    runs, best = [], None
    with tempfile.TemporaryDirectory(prefix="autopeft-train-") as tmp:
        for seed in protocol.seeds:
            save = Path(tmp) / f"seed{seed}"
            result = _train_one(name, cand, prep, protocol, seed, save if keep else None, on_progress)
            if result.status != "complete":
                raise ExportError(f"{name} training with seed {seed} failed: {result.error}")
            run = SeedRun(seed, result.metrics, result.trainable_params, result.train_time,
                          divergence(result.metrics, Diagnostics.from_extras(result.extras), result.curve))
            runs.append(run)
            if best is None or protocol.better(run.metrics[protocol.metric], best.metrics[protocol.metric]):
                best = run
        if keep:
            out.mkdir(parents=True, exist_ok=True)
            for f in (Path(tmp) / f"seed{best.seed}").iterdir():
                shutil.copy2(f, out / f.name)
    return ConfigReport(name, cand, tuple(runs))


def _train_one(name, cand, prep, protocol: RunProtocol, seed: int, save: Path | None, on_progress, note: str = ""):
    """One isolated training run of ``cand`` under ``protocol`` with ``seed`` (a TrialResult)."""
    from autopeft.search.prepare import full_run_spec
    from autopeft.trials.executor import run_isolated

    if on_progress:
        on_progress(f"{name}: {note + ', ' if note else ''}seed {seed}, {protocol.steps} steps")
    spec = full_run_spec(prep, cand, study="export", trial=seed, steps=protocol.steps, batch_size=protocol.batch_size,
                         seed=seed, save_dir=str(save) if save is not None else None)
    return run_isolated(spec)


def model_card(study: StudyRecord, record: TrialRecord, p: RunProtocol, chosen: ConfigReport, base: ConfigReport | None,
               num_labels: int, baseline_note: str | None = None) -> str:
    from autopeft.export import load_snippet

    m = p.metric
    best_seed = chosen.runs[0].seed
    for r in chosen.runs:
        if p.better(r.metrics[m], next(x for x in chosen.runs if x.seed == best_seed).metrics[m]):
            best_seed = r.seed
    lines = [
        f"# PEFT adapter from autopeft study `{study.name}`, trial {record.number}",
        "",
        f"Base model `{study.model}`, data set `{study.dataset}`. Found by the search, then re-trained for "
        f"{p.steps} steps (batch {p.batch_size}, max length {p.max_length}) on {p.train_examples:,} training "
        f"examples with seeds {', '.join(map(str, p.seeds))}; {m} on {p.eval_examples:,} validation examples.",
        "",
        "| configuration | method | trainable params | " + m + " (mean ± sd over seeds) | per seed |",
        "|---|---|---|---|---|",
        _row(chosen, m),
    ]
    if base is not None:
        lines.append(_row(base, m))
    if baseline_note:
        lines += ["", baseline_note]
    if base is not None:
        lines += ["", comparison(chosen, base, m, p)]
    lines += [
        "",
        f"The weights here are those of the best seed ({best_seed}). Candidate: `{chosen.candidate.to_json()}`.",
        "The validation examples are the split the search measured its proxies on: the configuration was",
        "selected on them, so treat the figures as optimistic and confirm on held-out data of your own.",
        "",
        "## Load it",
        "",
        "```python",
        load_snippet(study, chosen.candidate.method, ".", p.task, num_labels, weights=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def comparison(chosen: ConfigReport, base: ConfigReport, metric: str, p: RunProtocol) -> str:
    """One sentence comparing the chosen configuration with the baseline — or saying why it cannot."""
    if base.diverged:
        return f"**Baseline diverged — not a comparison** ({base.diverged})."
    if chosen.diverged:
        return f"**The chosen configuration diverged — not a comparison** ({chosen.diverged})."
    (cm, csd), (bm, bsd) = chosen.mean_sd(metric), base.mean_sd(metric)
    noise = max(csd, bsd)
    ratio = chosen.trainable_params / base.trainable_params
    if abs(cm - bm) <= noise:
        verdict = f"within one sd ({noise:.4f}) of default LoRA"
    else:
        verdict = "better than" if p.better(cm, bm) else "worse than"
        verdict = f"{verdict} default LoRA by {abs(cm - bm):.4f} (more than one sd, {noise:.4f})"
    return f"Chosen vs baseline: {metric} {cm:.4f} vs {bm:.4f}, {verdict}, at {ratio:.1%} of its trainable parameters."


def _row(report: ConfigReport, metric: str) -> str:
    mean, sd = report.mean_sd(metric)
    per_seed = ", ".join(f"{v:.4f}" for v in report.values(metric))
    flag = " **diverged**" if report.diverged else ""
    return (f"| {report.name}{flag} | {report.candidate.method} | {report.trainable_params:,} | "
            f"{mean:.4f} ± {sd:.4f} | {per_seed} |")
