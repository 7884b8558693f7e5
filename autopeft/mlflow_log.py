"""Every trial of a search as an MLflow run (``autopeft search --log-to mlflow[:URI]``).

One MLflow experiment per study (named after it); one run per trial, named
``STUDY-trial-N`` and tagged ``autopeft.study`` / ``autopeft.trial``, holding:

- params: the decoded configuration, only the fields the trial's method uses;
- metrics: every task metric, ``trainable_params``, ``peak_memory_mib``, times, and the
  learning curve as ``train_loss`` by step (multi-fidelity rungs as ``<metric>_at_rung``);
- artifact ``peft_config.json``; the run ends FINISHED (complete), FAILED (failed) or
  KILLED (pruned, infeasible), with the reason in the ``autopeft.reason`` tag.

An ``MlflowClient`` with an explicit tracking URI is used rather than ``mlflow.start_run``:
the logger must not touch a notebook user's active run or global tracking URI. Logging is
idempotent per (study, trial): a resumed search, or ``log_records`` after ``--workers``,
skips trials already logged. A failing tracking server never stops a search: the trial is
reported once through ``warn`` and the search goes on.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Callable, Sequence

from autopeft.candidate import Candidate
from autopeft.errors import AutoPeftError
from autopeft.store.records import StudyRecord, TrialRecord

_STATUS = {"complete": "FINISHED", "failed": "FAILED", "pruned": "KILLED", "infeasible": "KILLED"}


class MlflowEvents:
    """``SearchEvents`` that log each finished trial to MLflow.

    Args:
        tracking_uri: e.g. ``file:///tmp/mlruns`` or ``http://host:5000``; None: MLflow's
            default (``$MLFLOW_TRACKING_URI``, else its own).
        warn: Where a logging failure is reported (default: a line on stderr).

    Raises:
        AutoPeftError: mlflow is not installed.
    """

    def __init__(self, tracking_uri: str | None = None, warn: Callable[[str], None] | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise AutoPeftError("--log-to mlflow needs the mlflow package: pip install 'autopeft[mlflow]'") from None
        from mlflow.exceptions import MlflowException

        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        try:
            # Once, before any trial: a wrong URI or a refused backend (MLflow 3 refuses a
            # plain ./mlruns file store unless MLFLOW_ALLOW_FILE_STORE=true) is said at the
            # start, not as one warning per trial after hours of training.
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.tracking_uri = self.client.tracking_uri
            self.client.search_experiments(max_results=1)
        except (MlflowException, OSError) as e:
            raise AutoPeftError(f"--log-to mlflow: cannot use the tracking URI {tracking_uri or '(MLflow default)'}: "
                                f"{_one_line(e)}") from None
        self.study: StudyRecord | None = None
        self._experiment_id: str | None = None

    # ------------------------------------------------------------------ SearchEvents
    def started(self, study: StudyRecord, done: int, target: int) -> None:
        self.study = study

    def trial_started(self, number: int, candidate: Candidate) -> None:
        return None

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        if record.status == "running":
            return
        self._safely(lambda: self.log_trial(self.study, record), record.number)

    # ------------------------------------------------------------------ logging
    def log_records(self, study: StudyRecord, records: Sequence[TrialRecord]) -> int:
        """Log every finished record not logged yet (``--workers``, whose trials run elsewhere).

        Returns:
            How many runs were created.
        """
        self.study = study
        created = 0
        for record in records:
            if record.status != "running":
                created += bool(self._safely(lambda r=record: self.log_trial(study, r), record.number))
        return created

    def _safely(self, log, number: int):
        from mlflow.exceptions import MlflowException

        try:
            return log()
        except (MlflowException, OSError) as e:  # requests' errors are OSErrors
            self.warn(f"MLflow ({self.tracking_uri}): trial {number} not logged: {_one_line(e)}")
            return None

    def experiment_id(self, study: StudyRecord) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(study.name)
            if found is None:
                self._experiment_id = self.client.create_experiment(
                    study.name, tags={"autopeft.study": study.name, "autopeft.model": study.model,
                                      "autopeft.dataset": study.dataset})
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def log_trial(self, study: StudyRecord, record: TrialRecord) -> str | None:
        """Log ``record`` as a run; returns its run id, or None when it was logged before."""
        exp = self.experiment_id(study)
        existing = self.client.search_runs(
            [exp], filter_string=f"tags.`autopeft.trial` = '{record.number}'", max_results=1)
        if existing:
            return None
        from mlflow.entities import Metric, Param, RunTag

        tags = {"autopeft.study": study.name, "autopeft.trial": str(record.number), "autopeft.status": record.status,
                "autopeft.method": record.candidate.method}
        if record.error:
            tags["autopeft.reason"] = record.error[:5000]
        start = _ms(record.started_at)
        run = self.client.create_run(exp, start_time=start, run_name=f"{study.name}-trial-{record.number}",
                                     tags=tags)
        run_id = run.info.run_id
        end = _ms(record.finished_at) if record.finished_at else start
        params = [Param(k, _param(v)) for k, v in run_params(record).items()]
        metrics = [Metric(k, v, end, 0) for k, v in run_metrics(study, record).items()]
        metrics += [Metric("train_loss", float(loss), end, int(step)) for step, loss in record.curve or []
                    if _finite(loss)]
        metric_name = next((n for n, _ in study.objectives if n in (record.metrics or {})), "metric")
        metrics += [Metric(f"{metric_name}_at_rung", rung.metric, end, rung.step) for rung in record.rungs
                    if _finite(rung.metric)]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("mlflow.note.content", _note(record))])
        if record.peft_config is not None:
            self.client.log_dict(run_id, record.peft_config, "peft_config.json")
        self.client.set_terminated(run_id, status=_STATUS.get(record.status, "FINISHED"), end_time=end)
        return run_id


def run_params(record: TrialRecord) -> dict:
    """The decoded configuration the trial trained (the fields its method uses)."""
    from autopeft.methods.fields import used_config

    return used_config(record.candidate)


def run_metrics(study: StudyRecord, record: TrialRecord) -> dict[str, float]:
    """Task metrics, objective values in their own units, trainable parameters, memory and times."""
    out = {k: float(v) for k, v in (record.metrics or {}).items() if _finite(v)}
    for (name, _), value in zip(study.objectives, record.values or []):
        if _finite(value):
            out.setdefault(name, float(value))
    if record.trainable_params is not None:
        out["trainable_params"] = float(record.trainable_params)
    res = record.resources
    for key, value in (("peak_memory_mib", record.peak_memory_mib), ("train_time_s", res.train_time),
                       ("wall_time_s", res.wall_time)):
        if _finite(value):
            out[key] = float(value)
    return out


def _one_line(e: Exception) -> str:
    text = " ".join(str(getattr(e, "message", None) or e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _note(record: TrialRecord) -> str:
    return f"autopeft trial {record.number}: {record.status}" + (f" ({record.error})" if record.error else "")


def _param(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
    return text[:6000]  # MLflow's limit on a param value


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ms(when) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)
