"""The Python API: run or resume a search, and read a study, from a script or a notebook.

::

    from autopeft import run_study, load_study

    result = run_study("search_spaces/quickstart.yaml", storage="sqlite:///autopeft.db", trials=6,
                       overrides={"proxy.steps": 10}, progress=print)
    result.front                        # pandas DataFrame of the Pareto-optimal trials
    result.pick("budget:50k")           # the TrialRecord chosen like `autopeft export --pick`
    result.export("./adapter")          # adapter_config.json + autopeft.json

The same functions the CLI calls do the work (``load_space``, ``prepare_search``,
``run_search``, ``Store``, ``export_trial``); this module only adapts them to a caller that
is not a terminal: no ``sys.exit``, no progress bar, errors raised as ``AutoPeftError``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from autopeft.errors import AutoPeftError, SpaceError, StoreError
from autopeft.store.records import StudyRecord, TrialRecord
from autopeft.store.url import sqlite_file, storage_url

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from autopeft.space.schema import SearchSpace

#: Where the configuration columns of ``StudyResult.trials`` come from (``used_config``).
_CONFIG_COLUMNS = ("method", "rank", "layer_ranks", "alpha", "dropout", "targets", "layers", "dora", "rslora",
                   "learning_rate")


@dataclass(frozen=True)
class StudyResult:
    """A study as read from its database after ``run_study`` or ``load_study``.

    Attributes:
        study: The study's metadata (objectives, model, data set, trial target ...).
        records: Every trial record, in trial-number order.
        interrupted: The search was stopped by Ctrl-C / a notebook interrupt; running
            ``run_study`` again resumes it.
    """

    study: StudyRecord
    records: tuple[TrialRecord, ...]
    interrupted: bool = False
    #: The database URL (kept out of ``repr``: it may hold a password).
    storage: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.study.name

    def __repr__(self) -> str:
        # A notebook echoes the result: a summary, not every record's peft config.
        from collections import Counter

        from autopeft.search.analysis.pareto import pareto_front

        counts = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in self.records).items())
        objectives = ", ".join(f"{n} ({d})" for n, d in self.study.objectives)
        return (f"StudyResult({self.name!r}: {len(self.records)} trials ({counts or 'none yet'}), "
                f"front {len(pareto_front(self.records, self.study.objectives))}; objectives {objectives}"
                + ("; interrupted" if self.interrupted else "") + ")")

    @property
    def trials(self) -> pandas.DataFrame:
        """One row per trial: number, status, the configuration (fields a method does not use
        are missing values), objective values in their own units, every task metric,
        ``trainable_params``, ``peak_memory_mib``, ``train_time_s``, ``pareto``, ``diverged``
        (why a complete trial counts as diverged, else None) and ``error``."""
        return trials_frame(self.study, self.records)

    @property
    def front(self) -> pandas.DataFrame:
        """The Pareto-optimal rows of ``trials`` (complete trials that did not diverge, all objectives)."""
        frame = self.trials
        return frame[frame["pareto"]].reset_index(drop=True)

    def pick(self, how: str = "knee") -> TrialRecord:
        """One trial, chosen like ``autopeft export --pick``.

        Diverged trials are never picked by ``knee``, ``best:`` or ``budget:``; ``trial:N``
        returns one anyway, with a ``UserWarning`` saying why it counts as diverged.

        Args:
            how: ``knee`` | ``best:OBJECTIVE`` (e.g. ``best:accuracy``) | ``budget:PARAMS``
                (e.g. ``budget:50k``) | ``trial:N``.

        Raises:
            ExportError: an unknown pick, or no completed trial fits it (also when every
                completed trial diverged).
        """
        from autopeft.search.analysis.pareto import diverged, pick, trial_by_number

        kind, _, arg = how.partition(":")
        if kind == "trial":
            try:
                record = trial_by_number(self.records, int(arg))
            except ValueError:
                from autopeft.errors import ExportError

                raise ExportError(f"pick '{how}': expected trial:N with N a trial number") from None
            if why := diverged(record):
                warnings.warn(f"trial {record.number} diverged ({why}); it is never on the front", UserWarning,
                              stacklevel=2)
            return record
        return pick(self.study, self.records, how)

    def export(self, out: str | Path, *, pick: str = "knee", train: bool = False, as_: str | None = None,
               seeds: int = 3, steps: int | None = None, epochs: float | None = None,
               train_examples: int | None = None, baseline: bool = False,
               progress: Callable[[str], None] | None = None) -> Path:
        """Write the picked trial as a peft adapter directory (like ``autopeft export``).

        Args:
            out: The directory to write ``adapter_config.json`` and ``autopeft.json`` into.
            pick: As for ``pick``.
            train: Also re-train at full fidelity over ``seeds`` and save the best seed's
                weights and a model card (``autopeft export --train``); minutes, not seconds.
            as_: ``"lora"``: an AdaLoRA trial as LoRA with its learned ``rank_pattern``.
            progress: With ``train``, called with one line per training run.

        Returns:
            The directory written.
        """
        from autopeft.export import export_trial, make_portable

        record = self.pick(pick)
        path = export_trial(self.study, record, out, picked_by=pick, as_=as_)
        if train:
            if as_:
                raise AutoPeftError("train=True with as_ is not supported: train the AdaLoRA trial, or export as_='lora' alone")
            from autopeft.retrain import retrain

            retrain(self.study, record, path, seeds=seeds, steps=steps, epochs=epochs, train_examples=train_examples,
                    baseline=baseline, on_progress=progress)
            make_portable(path, self.study)
        return path


def run_study(space: str | Path | Mapping | SearchSpace, *, storage: str | None = None, trials: int | None = None,
              overrides: Mapping[str, Any] | Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None, log_to: str | None = None) -> StudyResult:
    """Run a search, or resume the study of the same name, and return the study.

    Args:
        space: A search-space YAML file, the same document as a dict, or a ``SearchSpace``.
        storage: Database URL; default ``$AUTOPEFT_STORAGE``, else ``sqlite:///autopeft.db``.
        trials: Trained trials the study should reach (default: the space's ``search.trials``).
        overrides: DSL keys to replace, ``{"proxy.steps": 4, "study": "mine"}`` (values as
            Python objects) or ``["proxy.steps=4"]`` (values as YAML, like ``--set``).
        progress: Called with one plain-text line as the study starts and after each trial
            (``progress=print`` in a notebook); None is quiet.
        log_to: ``"mlflow"`` or ``"mlflow:URI"``: also log every trial as an MLflow run.

    Returns:
        The study after the search; ``.interrupted`` if it was stopped (Ctrl-C, a notebook's
        interrupt): the running trial is recorded and ``run_study`` again resumes.

    Raises:
        AutoPeftError: a ``SpaceError`` naming the key path of a bad value, an
            ``AssetError`` for a missing model or data set, a ``StoreError`` for the
            database (for instance, the study exists with another space).
    """
    from autopeft.events import LineEvents, Tee, log_to_events
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.store import Store

    sp = _space(space, overrides)
    logger = log_to_events(log_to, warn=progress or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3)))
    store = Store(storage_url(storage))
    try:
        prep = prepare_search(sp)
        for line in prep.warnings:
            warnings.warn(line, UserWarning, stacklevel=2)
        events = Tee(LineEvents(progress) if progress is not None else None, logger)
        outcome = run_search(prep, store, trials=trials, events=events)
    finally:
        store.close()
    return StudyResult(outcome.study, tuple(outcome.records), outcome.interrupted, store.url)


def load_study(name: str, storage: str | None = None) -> StudyResult:
    """A study as stored (finished or not), without running anything.

    Raises:
        StoreError: no database there, or no study ``name`` in it (the message lists the
            studies there are).
    """
    from autopeft.store import Store, mask_url

    url = storage_url(storage)
    path = sqlite_file(url)
    if path is not None and not path.exists():  # opening a Store would create an empty database
        raise StoreError(f"no database at {mask_url(url)} (the file {path} does not exist)")
    store = Store(url)
    try:
        return StudyResult(store.get_study(name), tuple(store.trials(name)), False, url)
    finally:
        store.close()


def trials_frame(study: StudyRecord, records: Sequence[TrialRecord]) -> pandas.DataFrame:
    """``StudyResult.trials``: one row per trial (see there). The dashboard's table
    (``autopeft.dashboard.data.trials_frame``) names a column it shares with this one alike."""
    import pandas as pd

    from autopeft.methods.fields import used_config
    from autopeft.search.analysis.pareto import diverged, pareto_front

    front = {r.number for r in pareto_front(records, study.objectives)}
    names = [n for n, _ in study.objectives]
    rows = []
    for r in sorted(records, key=lambda r: r.number):
        config = used_config(r.candidate)
        row: dict[str, Any] = {"number": r.number, "status": r.status}
        row.update({k: config.get(k) for k in _CONFIG_COLUMNS})
        for name, value in zip(names, r.values or [None] * len(names)):
            row[name] = value
        row["trainable_params"] = r.trainable_params  # also for infeasible trials, which have no values
        for k, v in (r.metrics or {}).items():
            row.setdefault(k, v)
        row["peak_memory_mib"] = r.peak_memory_mib
        row["train_time_s"] = r.resources.train_time
        row["pareto"] = r.number in front
        row["diverged"] = diverged(r)
        row["error"] = r.error
        rows.append(row)
    head = ["number", "status", *_CONFIG_COLUMNS, *[n for n in names if n != "trainable_params"], "trainable_params"]
    frame = pd.DataFrame(rows, columns=None if rows else head + ["peak_memory_mib", "train_time_s", "pareto", "diverged",
                                                                  "error"])
    if rows:
        frame = frame[head + [c for c in frame.columns if c not in head]]
    # Integer columns with gaps (IA3 has no rank; infeasible trials no count) stay integers.
    for col in ("rank", "trainable_params"):
        frame[col] = frame[col].astype("Int64")
    if frame["layer_ranks"].isna().all():
        frame = frame.drop(columns=["layer_ranks"])
    frame["pareto"] = frame["pareto"].astype(bool)
    return frame


# ---------------------------------------------------------------------- helpers
def _override_items(overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        # JSON is YAML: the value reaches the DSL exactly as the Python object given.
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise SpaceError("overrides", "", "expected a dict {'proxy.steps': 4} or a list of 'key.path=value' strings")
    return [str(item) for item in overrides]


def _space(space, overrides) -> SearchSpace:
    """The validated space, with overrides; a bad override is reported against ``overrides``."""
    from autopeft.space import load_space
    from autopeft.space.loader import parse_with_overrides
    from autopeft.space.schema import SearchSpace

    items = _override_items(overrides)
    try:
        if isinstance(space, (str, Path)):
            return load_space(space, items)
        if isinstance(space, SearchSpace):
            if not items:
                return space
            document, source = space.document, space.source
        elif isinstance(space, Mapping):
            document, source = dict(space), "<dict>"
        else:
            raise SpaceError("space", "", f"expected a YAML path, a dict or a SearchSpace, got {type(space).__name__}")
        return parse_with_overrides(document, source, items)
    except SpaceError as e:
        if e.source == "--set":  # the CLI's name for overrides; here they came from the argument
            raise SpaceError("overrides", e.path, e.problem) from None
        raise
