"""Listeners of a search's ``SearchEvents`` besides the CLI's progress bar.

``run_search`` reports each trial through one ``events`` object; ``Tee`` lets several
listen at once (the rich bar and an MLflow logger), ``LineEvents`` writes one plain-text
line per trial (a notebook, a log file: no terminal control codes), and ``log_to_events``
turns ``--log-to`` into a listener. Nothing here imports rich, torch or mlflow.
"""

from __future__ import annotations

from typing import Callable

from autopeft.candidate import Candidate
from autopeft.errors import AutoPeftError
from autopeft.store.records import StudyRecord, TrialRecord


class Tee:
    """Forward every event to each of ``listeners`` in order."""

    def __init__(self, *listeners) -> None:
        self.listeners = [x for x in listeners if x is not None]

    def started(self, study: StudyRecord, done: int, target: int) -> None:
        for x in self.listeners:
            x.started(study, done, target)

    def trial_started(self, number: int, candidate: Candidate) -> None:
        for x in self.listeners:
            x.trial_started(number, candidate)

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        for x in self.listeners:
            x.trial_finished(record, records)

    def seed_finished(self, run, record: TrialRecord) -> None:
        for x in self.listeners:
            if hasattr(x, "seed_finished"):  # optional: see autopeft.search.reports.SearchEvents
                x.seed_finished(run, record)


class LineEvents:
    """One plain line per finished trial, given to ``emit`` (``print`` by default).

    ``trial 3 complete (2/10): lora rank=4 targets=query,value layers=4,5 lr=0.00123 ->
    accuracy 0.612, trainable_params 12,288 | trained 2/10, front 2``; a diverged trial's
    line says so (``... | diverged: predicts a single class | ...``): it is not counted in the front.
    """

    def __init__(self, emit: Callable[[str], None] = print) -> None:
        self.emit = emit
        self.study: StudyRecord | None = None
        self.target = 0

    def started(self, study: StudyRecord, done: int, target: int) -> None:
        self.study, self.target = study, target
        self.emit(f"study {study.name}: {done}/{target} trials done" + (", resuming" if done else ""))

    def trial_started(self, number: int, candidate: Candidate) -> None:
        return None  # one line per trial, when its result is known

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        from autopeft.search.loop import trained_count
        from autopeft.search.analysis.pareto import diverged, pareto_front

        why = diverged(record)
        self.emit(trial_line(self.study, record) + (f" | diverged: {why}" if why else "")
                  + f" | trained {trained_count(records)}/{self.target}, "
                  f"front {len(pareto_front(records, self.study.objectives))}")


    def seed_finished(self, run, record: TrialRecord) -> None:
        t = record.target
        val = t.val if t else (float("nan"), 0.0)
        self.emit(f"trial {record.number} seed {run.seed} {run.status} at the target"
                  + (f": mean {val[0]:.4g} ± {val[1]:.2g} over {len(t.seeds) if t else 0}/{t.of if t else '?'} seeds"
                     if run.status == "complete" else f" ({run.error})"))


def trial_line(study: StudyRecord, record: TrialRecord) -> str:
    """``trial N STATUS: CONFIG -> OBJECTIVES`` (only the fields the method uses; 3 significant digits)."""
    from autopeft.methods.fields import used_config

    config = []
    for key, value in used_config(record.candidate).items():
        if key == "method":
            config.append(str(value))
        elif key == "learning_rate":
            config.append(f"lr={value:.3g}")
        elif isinstance(value, list):
            config.append(f"{key}={','.join(map(str, value))}")
        else:
            config.append(f"{key}={value}")
    line = f"trial {record.number} {record.status}: {' '.join(config)}"
    if record.values:
        line += " -> " + ", ".join(f"{n} {_num(n, v)}" for (n, _), v in zip(study.objectives, record.values))
    elif record.error:
        line += f" ({record.error})"
    return line


def _num(name: str, value: float) -> str:
    return f"{value:,.0f}" if name == "trainable_params" else f"{value:.3g}"


def log_to_events(target: str | None, warn: Callable[[str], None] | None = None):
    """The listener ``--log-to TARGET`` asks for (None for None).

    ``mlflow`` logs to MLflow's default tracking URI (``$MLFLOW_TRACKING_URI``, else MLflow's
    own default); ``mlflow:URI`` to that URI (``mlflow:file:///tmp/mlruns``,
    ``mlflow:http://host:5000``).

    Raises:
        AutoPeftError: an unknown target, or mlflow is not installed.
    """
    if target is None:
        return None
    kind, _, uri = target.partition(":")
    if kind != "mlflow":
        raise AutoPeftError(f"--log-to {target}: expected mlflow or mlflow:TRACKING_URI")
    from autopeft.mlflow_log import MlflowEvents

    return MlflowEvents(uri or None, warn=warn)
