"""The search's progress bar: trial i/N, elapsed, ETA, best of each objective, front size.

The best values and the front are over eligible trials (``autopeft.search.analysis.pareto.eligible``):
a diverged trial is reported as such, never as a best.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from autopeft.candidate import Candidate
from autopeft.search.loop import trained_count
from autopeft.search.analysis.pareto import best, diverged, eligible, pareto_front
from autopeft.store import StudyRecord, TrialRecord


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "trainable_params":
        return f"{value:,.0f}"
    if name in ("accuracy", "macro_f1", "choice_accuracy", "exact_match"):
        return f"{value:.4f}"
    if name == "peak_memory":
        return f"{value:,.0f} MiB"
    if name == "train_time":
        return f"{value:.1f} s"
    return f"{value:.4g}"


def _elapsed(seconds: float | None) -> str:
    minutes, s = divmod(round(seconds or 0), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"


class RichEvents:
    """``SearchEvents`` drawn with rich on stderr (stdout stays for results).

    On a terminal, a live bar. Written to a file or a pipe (a log), rich would draw the bar once,
    at the end, squeezed into 80 columns until its counts read "…"; there the bar is off and the
    search ends with the same facts as one plain line.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]trial"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
            disable=not self.live,
        )
        self.task = None
        self.study: StudyRecord | None = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        if not self.live and self.task is not None:
            task = self.progress.tasks[self.task]
            self.console.print(f"trials {task.completed:.0f}/{task.total:.0f} in {_elapsed(task.elapsed)}"
                               + (f": {task.fields['status']}" if task.fields.get("status") else ""),
                               markup=False, highlight=False, soft_wrap=True)

    def started(self, study: StudyRecord, done: int, target: int) -> None:
        self.study = study
        if done:
            self.console.print(f"resuming study [bold]{study.name}[/]: {done}/{target} trials already done")
        self.task = self.progress.add_task("search", total=target, completed=done, status="starting")

    def trial_started(self, number: int, candidate: Candidate) -> None:
        self.progress.update(self.task, status=f"#{number} {candidate.method} r={candidate.rank} "
                                               f"{candidate.targets.label} ...")

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        objectives = self.study.objectives
        parts = []
        if eligible(records):
            for name, _ in objectives:
                parts.append(f"best {name} {fmt(name, best(records, objectives, name).values[[n for n, _ in objectives].index(name)])}")
            parts.append(f"front {len(pareto_front(records, objectives))}")
        if record.status == "pruned":
            self.console.print(f"  trial {record.number} stopped at step {record.stopped_at} "
                               "(successive halving: others did better there)")
        elif record.status != "complete":
            self.console.print(f"  trial {record.number} {record.status}: {record.error}")
        elif why := diverged(record):
            self.console.print(f"  trial {record.number} diverged ({why}): kept, never on the front")
        self.progress.update(self.task, completed=trained_count(records), status=" · ".join(parts))

    def seed_finished(self, run, record: TrialRecord) -> None:
        """A seed run at the target finished: one line, the trial's mean so far."""
        t = record.target
        if run.status != "complete":
            self.console.print(f"  trial {record.number} seed {run.seed} failed: {run.error}", markup=False)
            return
        val = t.val if t else (float("nan"), 0.0)
        self.console.print(f"  trial {record.number} seed {run.seed} at the target: mean {val[0]:.4f} ± {val[1]:.4f} "
                           f"over {len(t.seeds) if t else 0}/{t.of if t else '?'} seeds", markup=False)
