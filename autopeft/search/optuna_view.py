"""How an autopeft study reads in optuna's own tools (optuna-dashboard, ``study.trials_dataframe()``).

optuna's ledger holds what the sampler was told: objective values on the comparison scale
(``autopeft.search.scales``: log10 of the trainable-parameter count) and the raw encoded
parameters (rank *indices*, a ``top_k`` integer, per-layer bits). Unlabelled, a user of
optuna-dashboard sees "values[1] = 4.2" and "rank_idx = 2". So the study gets metric names
that say the scale, and each trial gets user attributes with what was actually trained:
the decoded configuration (only the fields its method uses), every task metric, the raw
trainable-parameter count, peak memory, why it ended, and the peft config.

``metric_names`` and ``trial_user_attrs`` are pure (the search loop calls them when it tells
a trial); ``annotate_study`` writes both into an existing study (``autopeft db annotate``),
so studies recorded before this existed read the same.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, Collection, Sequence

from autopeft.search.scales import LOG_SCALED
from autopeft.store.records import TrialRecord

#: The optuna user attribute of :func:`observations` (``autopeft.search.sampling.multi_fidelity``).
OBSERVATIONS = "rung_observations"
#: The optuna study user attribute holding the steps a trial trains to (the target).
TARGET_STEPS = "autopeft:target_steps"

#: The unit each cost objective is measured in, as a suffix of its optuna metric name.
_UNITS = {"peak_memory": "mib", "train_time": "s"}


def metric_names(objectives: Sequence) -> list[str]:
    """optuna metric names for a study's objectives, naming the scale the values are on.

    Args:
        objectives: ``StudyRecord.objectives`` (``(name, direction)`` pairs) or a space's
            ``Objective`` objects (with ``.name``), in study order.

    Returns:
        One name per objective: ``trainable_params_log10`` for log-scaled ones,
        ``peak_memory_mib`` / ``train_time_s`` for costs with a unit, the task metric as is.
    """
    names = []
    for objective in objectives:
        name = objective.name if hasattr(objective, "name") else objective[0]
        if name in LOG_SCALED:
            names.append(f"{name}_log10")
        elif name in _UNITS:
            names.append(f"{name}_{_UNITS[name]}")
        else:
            names.append(name)
    return names


def trial_user_attrs(record: TrialRecord, method_uses: Collection[str] | None = None) -> dict[str, Any]:
    """The user attributes that make ``record`` readable in optuna's tools (JSON values only).

    Args:
        record: The trial as autopeft recorded it.
        method_uses: The candidate fields its method reads (``get_method(m).uses``); None
            looks them up in the registry.

    Returns:
        ``method``, the used configuration fields (``rank``, ``alpha``, ``targets``,
        ``layers``, ``learning_rate`` ...), every task metric, ``trainable_params`` (raw
        count), ``peak_memory_mib`` and ``memory_kind`` when measured, ``status``,
        ``reason`` (why it failed, was infeasible or was stopped), and ``peft_config`` as a
        JSON string. Non-finite numbers become None (JSON has no NaN).
    """
    from autopeft.methods.fields import used_config

    attrs: dict[str, Any] = dict(used_config(record.candidate, method_uses))
    for name, value in sorted((record.metrics or {}).items()):
        attrs.setdefault(name, value)
    if record.trainable_params is not None:
        attrs["trainable_params"] = int(record.trainable_params)
    peak = record.peak_memory_mib
    if peak is not None:
        attrs["peak_memory_mib"] = peak
        attrs["memory_kind"] = record.resources.memory_kind or "rss"
    attrs["status"] = record.status
    reason = _reason(record)
    if reason:
        attrs["reason"] = reason
    if record.peft_config is not None:
        attrs["peft_config"] = json.dumps(record.peft_config, sort_keys=True, default=str)
    observed = observations(record)
    if observed:
        attrs[OBSERVATIONS] = observed
    return {k: _json_safe(v) for k, v in attrs.items()}


def observations(record: TrialRecord) -> list[list[float]]:
    """``[[step, task metric], ...]`` of every evaluation of ``record`` before its end (its
    probes and rungs, in step order): what a multi-fidelity sampler learns from a stopped trial."""
    seen: dict[int, float] = {}
    for entry in [*record.probes, *record.rungs]:
        if entry.finite_metric:
            seen[entry.step] = entry.metric
    return [[step, seen[step]] for step in sorted(seen)]


def _reason(record: TrialRecord) -> str | None:
    if record.error:
        return record.error
    if record.status == "pruned":
        return f"stopped at step {record.stopped_at} by the multi-fidelity rungs"
    return None


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def annotate_study(store, study_name: str) -> int:
    """Name the metrics of ``study_name`` and write every recorded trial's user attributes.

    Idempotent: attributes are replaced, never duplicated. Finished trials cannot be updated
    through optuna's API (it refuses with ``UpdateFinishedTrialError``), so the rows go
    straight into optuna's ``trial_user_attributes`` table, in one transaction.

    Returns:
        How many trials were annotated.

    Raises:
        StoreError: the study is not in the store, or optuna has no study of that name yet
            (a study submitted for workers that never started one).
    """
    import optuna
    from sqlalchemy import MetaData, Table, delete, insert
    from sqlalchemy.exc import SQLAlchemyError

    from autopeft.errors import StoreError

    study = store.get_study(study_name)
    storage = store.optuna_storage
    unstarted = StoreError(f"study '{study_name}' has no optuna trials in {store.display_url} yet; "
                           "nothing to annotate until a search or worker has started it")
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        raise unstarted from None
    ostudy = optuna.load_study(study_name=study_name, storage=storage)
    # A submitted study holds only its queued reference trials (autopeft.search.sampling.baseline): unstarted too.
    if all(t.state == optuna.trial.TrialState.WAITING for t in ostudy.get_trials(deepcopy=False)):
        raise unstarted
    with warnings.catch_warnings():  # experimental since optuna 3.2, and the one way optuna-dashboard reads names
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names(metric_names(study.objectives))
    numbers = {t.number for t in ostudy.get_trials(deepcopy=False)}
    rows = []
    for record in store.trials(study_name):
        if record.number not in numbers:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, record.number)
        for key, value in trial_user_attrs(record).items():
            rows.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
    if not rows:
        return 0
    try:
        table = Table("trial_user_attributes", MetaData(), autoload_with=store.engine)
        trial_ids = sorted({r["trial_id"] for r in rows})
        keys = sorted({r["key"] for r in rows})
        with store.engine.begin() as connection:
            # Delete then insert (not a dialect-specific upsert): the same on SQLite and PostgreSQL.
            connection.execute(delete(table).where(table.c.trial_id.in_(trial_ids), table.c.key.in_(keys)))
            connection.execute(insert(table), rows)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot write optuna's user attributes in {store.display_url}: "
                         f"{str(getattr(e, 'orig', e)).splitlines()[0][:200]}") from e
    return len(trial_ids)
