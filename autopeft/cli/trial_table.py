"""The trials table of ``show`` and the front of ``search``: one row per trial, its note
(why it stopped, diverged or failed) and the compact forms a 100-column table needs.

Nothing here decides which trial is optimal or verified (``autopeft.search`` does); the
commands pass in what it decided. Printed on the console of
``autopeft.cli._common.make_console``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.candidate import Targets

#: Objective names as a narrow table heads them (``--wide``: in full).
_SHORT_NAMES = {"trainable_params": "params", "train_time": "time", "peak_memory": "memory",
                "choice_accuracy": "choice acc", "exact_match": "exact"}


def print_trials(console, study, records, only_front: bool = False, verified: dict | None = None,
                 front_on_verified: bool = False, wide: bool = False) -> None:
    """The trials (or the front) as a table; ★ marks the Pareto-optimal rows, on the verified
    test means with ``front_on_verified``. ``verified``: ``{trial number: Verified}``.

    The table reads at 100 columns: module names are abbreviated (``q,v``), a method's rank
    rides with it (``lora r8``), objectives are headed by short names and arrows, and the
    seeds are said once (in the note). ``wide`` prints every field in full.
    """
    from rich import box
    from rich.table import Table

    from autopeft.methods.fields import used_config
    from autopeft.progress import fmt
    from autopeft.search.analysis.pareto import pareto_front
    from autopeft.space.stored import stored_target, study_space

    verified = verified or {}
    if front_on_verified:  # the front of what held up at full fidelity, on the held-out test split
        from autopeft.search.analysis.trust import verified_records

        metric = study_space(study).task.metric
        front = {r.number for r in pareto_front(verified_records(study, records, list(verified.values()), metric),
                                                 study.objectives)}
        kind = "verified Pareto-optimal (test means)"
    else:
        front = {r.number for r in pareto_front(records, study.objectives)}
        kind = ("Pareto-optimal at the target: validation means over seeds" if stored_target(study) is not None
                else "Pareto-optimal on the proxy")
    rows = [r for r in records if r.number in front] if only_front else records
    metric, signal = _task_metric(study), _rung_signal(study)
    target = stored_target(study) is not None
    short = _ModuleNames([m for r in rows for m in r.candidate.targets.modules])
    table = Table(title=f"{study.name}: {'Pareto front' if only_front else 'trials'} (★ = {kind})", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1 if wide else 0))
    # Narrow, a trial's status and role go to the note: "complete" needs no word there.
    heads = ["", "#", "status", "method", "rank", "targets", "layers", "lr"] if wide else \
        ["", "#", "method", "targets", "layers", "lr"]
    for col in heads:
        table.add_column(col, no_wrap=col not in ("#", "targets"), overflow="fold")
    for name, direction in study.objectives:
        head = f"{name} ({direction})" if wide else f"{_SHORT_NAMES.get(name, name)} {'↑' if direction == 'max' else '↓'}"
        table.add_column(head, justify="right", no_wrap=wide, overflow="fold")
    if verified:
        # mean ± sd (and, --wide, the seeds): of `verify`, or of the seed runs at the target
        table.add_column(("verified test" if not target else "test (mean ± sd, seeds)") if wide else
                         ("verified test" if not target else "test"), justify="right", no_wrap=not wide)
    table.add_column("note", min_width=24, overflow="fold")
    for r in rows:
        c = r.candidate
        used = used_config(c)  # '-' for what the method ignores (IA3's rank, prefix tuning's placement)
        values = r.values or [None] * len(study.objectives)
        show = fmt if wide else _compact
        cells = [show(n, v) for (n, _), v in zip(study.objectives, values)]
        if r.values is None and r.trainable_params is not None:
            names = [n for n, _ in study.objectives]
            if "trainable_params" in names:
                cells[names.index("trainable_params")] = show("trainable_params", r.trainable_params)
        v = verified.get(r.number)
        if wide:
            check = [f"{v.test[0]:.4f} ± {v.test[1]:.4f}, {len(v.seeds)}" + (" diverged" if v.diverged else "")
                     if v else ""] if verified else []
        else:
            check = [f"{v.test[0]:.3f} ± {v.test[1]:.3f}" + (" div." if v.diverged else "") if v else ""] \
                if verified else []
        why = note(r, metric, wide=wide, signal=signal)
        if not wide:
            if v and not target:  # the seeds of `verify`, said once, in the note
                why = f"{len(v.seeds)} seeds" + (f"; {why}" if why else "")
            if r.status != "complete":
                why = f"{r.status}: {why}" if why and not why.startswith("stopped") else (why or r.status)
            if role := r.role:
                why = f"{role}" + (f" · {why}" if why else "")
            why = why if len(why) <= 46 else why[:45] + "…"
        if wide:
            targets = c.targets.label
            config = [c.method, str(c.rank) if "rank" in used else "-"]
        else:
            targets = short.describe(c.targets)
            config = [c.method + (f" r{c.rank}" if "rank" in used else "")]
        table.add_row("★" if r.number in front else "", *((number(r), r.status) if wide else (str(r.number),)), *config,
                      targets if "targets" in used else "-", layers(c.layers) if "layers" in used else "-",
                      _rate(c.learning_rate, wide), *cells, *check, why)
    console.print(table)


def _compact(name: str, value) -> str:
    """An objective's value for a narrow table: parameter counts as ``75.0k`` / ``2.50M``."""
    from autopeft.progress import fmt

    if name != "trainable_params" or value is None or value < 10_000:
        return fmt(name, value)
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.3g}k"


class _ModuleNames:
    """Module names abbreviated for a narrow table: ``query, value`` as ``q,v``; ``q_proj`` as
    ``q``; each name the shortest prefix that tells it from the others in the table."""

    def __init__(self, names) -> None:
        stems = sorted({self._stem(n) for n in names})
        self.short = {}
        for stem in stems:
            others = [o for o in stems if o != stem]
            k = next((k for k in range(1, len(stem) + 1) if not any(o.startswith(stem[:k]) for o in others)), len(stem))
            self.short[stem] = stem[:k]

    @staticmethod
    def _stem(name: str) -> str:
        name = str(name)
        return name[:-5] if name.endswith("_proj") and len(name) > 5 else name

    def describe(self, targets: Targets) -> str:
        if targets.all_linear:
            return "all"
        return ",".join(self.short.get(self._stem(t), str(t)) for t in targets.modules)


def _rate(lr: float, wide: bool) -> str:
    """A learning rate: ``1.0e-03`` (wide) or ``1.0e-3``."""
    text = f"{lr:.1e}"
    return text if wide else text.replace("e-0", "e-").replace("e+0", "e+")


def _rung_signal(study) -> str | None:
    """What the study's rungs judged by (``proxy.signal``), from its stored space."""
    if not study.space_yaml:
        return None
    try:
        from autopeft.space.stored import study_space

        return study_space(study).proxy.signal
    except Exception:  # an old or foreign stored space: the note names the task metric
        return None


def _task_metric(study) -> str | None:
    """The study's task metric (the signal its rungs judged), from its stored space."""
    if not study.space_yaml:
        return None
    try:
        from autopeft.space.stored import study_space

        return study_space(study).task.metric
    except Exception:  # an old or foreign stored space: the note falls back to the first metric
        return None


def print_front(console, study, records, verified: dict | None = None, wide: bool = False) -> None:
    """The Pareto front as ``print_trials`` draws it, or why it is empty."""
    from autopeft.search.analysis.pareto import eligible

    if not any(r.status == "complete" for r in records):
        console.print("no trial completed; see `autopeft show` for the reasons")
        return
    if not eligible(records):  # a diverged trial is never on the front
        console.print("every completed trial diverged, so the front is empty; see `autopeft show` for the reasons")
        return
    print_trials(console, study, records, only_front=True, verified=verified, wide=wide)


def number(r) -> str:
    """The trial number, tagged when the trial is a reference the study enqueued (default LoRA,
    cheapest)."""
    return f"{r.number} ({r.role})" if r.role else str(r.number)


def note(r, metric: str | None = None, wide: bool = True, signal: str | None = None) -> str:
    """The note column: why a trial stopped, diverged or failed; a target trial's seeds.

    A stopped trial says the signal its rung judged it on: ``stopped at step 30: eval_loss
    0.996`` (``signal``, the study's rung signal, where the rung recorded it; else ``metric``,
    the task's metric; the first one reported when neither is known).
    """
    from autopeft.search.analysis.pareto import diverged

    cut = (lambda text: text) if wide else (lambda text: text if len(text) <= 44 else text[:43] + "…")
    if r.status == "pruned":
        step = r.stopped_at
        entry = next((e for e in reversed(r.rungs) if e.step == step), None)
        judged = signal is not None and entry is not None and entry.signal is not None
        name = signal if judged else metric
        signal = (entry.signal if judged else entry.metric) if entry is not None else None
        if signal is None:
            metrics = r.metrics or {}
            name = metric if metric in metrics else next((k for k, v in metrics.items()
                                                          if isinstance(v, (int, float))), None)
            signal = metrics.get(name) if name else None
        said = f": {name or 'signal'} {signal:.3f}" if isinstance(signal, (int, float)) else ""
        return f"stopped at step {step}{said}"
    if r.status == "complete":
        why = diverged(r)
        if why:
            return cut(f"diverged: {why}")
        t = r.target
        if t:  # the values are means over these seeds at the target, on validation
            return (f"{len(t.seeds)}/{t.of} seeds, val sd {t.val[1]:.4f}"
                    + (" (a seed diverged)" if t.diverged else ""))
        return ""
    return cut(r.error or "")


def layers(indices: Sequence[int]) -> str:
    """Layer indices, a run of three or more as ``first-last``."""
    indices = list(indices)
    if indices and indices == list(range(indices[0], indices[-1] + 1)) and len(indices) > 2:
        return f"{indices[0]}-{indices[-1]}"
    return ",".join(map(str, indices))
