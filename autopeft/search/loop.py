"""The ask/tell loop: sampler proposes, method builds, budget gates, runner trains, store records.

Failures are data: a trial that crashes, times out, runs out of memory or hits a
non-finite loss is told to the study as FAIL and recorded with its reason, and the search
goes on. Over-budget candidates are never trained: they are told as *infeasible* through
an optuna constraint, with imputed objective values (the worst seen so far) so that the
constraint-aware samplers learn where the budget boundary is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from autopeft.errors import MethodError, StoreError
from autopeft.search.prepare import PreparedSearch, trial_spec
from autopeft.search.scales import scaled
from autopeft.store import Store, StudyRecord, TrialRecord, utcnow
from autopeft.trials.spec import TrialResult, TrialSpec

Runner = Callable[[TrialSpec], TrialResult]
BUDGET_CONSTRAINT = "trainable_params_over_budget"


class SearchEvents(Protocol):
    """What the loop reports as it goes (the CLI draws a progress bar from it)."""

    def started(self, study: StudyRecord, done: int, target: int) -> None: ...

    def trial_started(self, number: int, candidate: dict) -> None: ...

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None: ...


class _Silent:
    def started(self, study, done, target): ...

    def trial_started(self, number, candidate): ...

    def trial_finished(self, record, records): ...


@dataclass(frozen=True)
class SearchOutcome:
    study: StudyRecord
    records: list[TrialRecord]
    interrupted: bool = False


def trained_count(records: list[TrialRecord]) -> int:
    """Trials that count against the study's budget: trained to an end (complete or failed).

    A trial whose worker died (no heartbeat) and that optuna re-queued is recorded as
    failed with ``extras["retried_as"]``: its retry counts instead, so that a killed
    worker costs the study nothing. Single-process searches never retry, so for them this
    is every complete or failed trial.
    """
    return sum(1 for r in records if r.status in ("complete", "failed", "pruned") and r.extras.get("retried_as") is None)


def running_count(records: list[TrialRecord], ostudy) -> int:
    """Trials being trained right now (by any worker) that count against the budget.

    A record says ``running`` from the moment a feasible trial starts training; optuna's
    ledger says whether its worker is still alive (a trial whose worker died without a
    heartbeat is failed by optuna), so only records optuna still holds RUNNING count:
    a dead worker's trial must not block the budget forever.
    """
    from optuna.trial import TrialState

    alive = {t.number for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sum(1 for r in records if r.status == "running" and r.number in alive)


def open_study(store: Store, prep: PreparedSearch, trials_target: int | None = None) -> StudyRecord:
    """Create the study, or resume it when it exists with the same space."""
    import yaml

    from autopeft import __version__
    from autopeft.space import space_hash

    space = prep.space
    target = trials_target or space.search.trials
    digest = space_hash(space)
    existing = store.find_study(space.study)
    if existing is not None:
        if existing.space_hash != digest:
            raise StoreError(
                f"study '{space.study}' already exists in {store.display_url} with a different search space; "
                "resume it with the same YAML, or start a new study (--set study=NEW_NAME)"
            )
        if existing.trials_target != target:
            store.set_trials_target(space.study, target)
        return store.get_study(space.study)
    record = StudyRecord(
        name=space.study,
        created_at=utcnow(),
        space_yaml=yaml.safe_dump(space.document, sort_keys=False),
        space_hash=digest,
        objectives=tuple((o.name, o.direction) for o in space.objectives),
        trials_target=target,
        model=space.model.name,
        model_fingerprint=prep.model.fingerprint,
        dataset=space.task.dataset,
        data_fingerprint=prep.dataset.fingerprint,
        budget_params=prep.budget_limit,
        autopeft_version=__version__,
    )
    try:
        return store.add_study(record)
    except StoreError:
        if store.find_study(space.study) is not None:  # another worker created it first
            return store.get_study(space.study)
        raise


def study_importance(store: Store, study: StudyRecord, prep: PreparedSearch):
    """The study's importance map: computed once (SPT pass) and stored, then reused by every
    resume and every worker, so all of them rank layers the same way."""
    from autopeft.importance import ImportanceMap

    if study.importance:
        return ImportanceMap.from_json(study.importance)
    from autopeft.trials.importance import spt_sensitivity

    importance = spt_sensitivity(
        prep.model.location, prep.data.num_labels, prep.data.path, prep.arch.layers_path,
        tuple(s.name for s in prep.arch.linears), batch_size=prep.space.proxy.batch_size,
        seed=prep.space.proxy.seed, trust_remote_code=prep.model.trust_remote_code, task=prep.space.task.type,
    )
    store.set_importance(study.name, importance.to_json())
    return importance


def optuna_study(store: Store, study: StudyRecord, sampler):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study.name,
        storage=store.optuna_storage,
        directions=["maximize" if d == "max" else "minimize" for _, d in study.objectives],
        sampler=sampler,
        load_if_exists=True,
    )


def run_search(
    prep: PreparedSearch,
    store: Store,
    *,
    trials: int | None = None,
    runner: Runner | None = None,
    events: SearchEvents | None = None,
    sampler=None,
    count_running: bool = False,
) -> SearchOutcome:
    """Run (or resume) the study of ``prep`` until it has ``trials`` trained trials.

    ``KeyboardInterrupt`` stops after recording the running trial as failed
    ("interrupted"); nothing stored is lost and the outcome says ``interrupted``.

    Args:
        sampler: A ready optuna sampler instead of ``make_sampler(space.search, encoding)``
            (workers seed theirs apart, so that they do not propose the same points).
        count_running: For many workers on one study: before each trial re-read the
            store and count trials other workers are training now against the budget,
            so N workers overshoot it by at most N - 1. Off (the default), the loop
            counts only trained trials, as a single process needs.
    """
    from autopeft.search.samplers import make_sampler

    if runner is None:
        from autopeft.trials.executor import run_isolated as runner
    events = events or _Silent()
    study = open_study(store, prep, trials)
    prep = prep.with_importance(study_importance(store, study, prep)) if prep.space.importance != "none" else prep
    target = study.trials_target
    if sampler is None:
        sampler = make_sampler(prep.space.search, prep.encoding)
    ostudy = optuna_study(store, study, sampler)
    records = store.trials(study.name)
    events.started(study, trained_count(records), target)
    attempts = 0
    max_attempts = 5 * target + 20  # a space mostly over budget must still end
    interrupted = False

    def budget_left() -> bool:
        nonlocal records
        if not count_running:
            return trained_count(records) < target
        # Other workers write to the same study: only the store knows what they did.
        records = store.trials(study.name)
        return trained_count(records) + running_count(records, ostudy) < target

    while budget_left() and attempts < max_attempts:
        attempts += 1
        try:
            record = _one_trial(prep, store, study, ostudy, records, runner, events)
        except KeyboardInterrupt:
            interrupted = True
            _retry_interrupted(store, study.name)
            break
        records = [r for r in records if r.number != record.number] + [record]
        events.trial_finished(record, records)
    return SearchOutcome(study, store.trials(study.name), interrupted)


def _retry_interrupted(store: Store, name: str) -> None:
    """Queue the point of the trial Ctrl-C stopped, so the next run trains it first and the
    interruption costs the study nothing (the stopped record stays, linked to its retry)."""
    from autopeft.search.worker import requeue_interrupted

    stopped = [r.number for r in store.trials(name) if r.status == "failed" and r.error == "interrupted"]
    if stopped:
        requeue_interrupted(store, name, max(stopped), retries=2)


def _one_trial(prep, store, study, ostudy, records, runner, events) -> TrialRecord:
    from optuna.trial import TrialState

    from autopeft.methods import BuildContext, get_method

    t0 = time.perf_counter()
    trial = ostudy.ask()
    candidate = prep.encoding.suggest(trial)
    sampler_time = time.perf_counter() - t0
    base = dict(
        study=study.name, number=trial.number, candidate=candidate.to_json(), params=dict(trial.params),
        started_at=utcnow(), sampler_time=sampler_time,
    )
    method = get_method(candidate.method)
    ctx = BuildContext(prep.arch, prep.space.proxy.steps, base_model=prep.model.location)
    try:
        config = method.build(candidate, ctx)
        count = method.count_trainable(candidate, ctx)
    except MethodError as e:  # e.g. per-layer bits that switch every layer off
        trial.set_constraint(BUDGET_CONSTRAINT, 1.0)
        return _infeasible(store, ostudy, trial, records, study, base, None, None, str(e))
    limit = prep.budget_limit
    trial.set_constraint(BUDGET_CONSTRAINT, (count - limit) / limit if limit else -1.0)
    peft_config = method.config_json(config)
    if limit is not None and count > limit:
        reason = f"over budget: {count:,} trainable parameters > {limit:,}"
        return _infeasible(store, ostudy, trial, records, study, base, peft_config, count, reason)

    store.save_trial(TrialRecord(status="running", peft_config=peft_config, trainable_params=count, **base))
    events.trial_started(trial.number, candidate.to_json())
    spec = trial_spec(prep, candidate, peft_config, study=study.name, trial=trial.number)
    rungs: list = []

    def on_rung(step: int, metrics: dict) -> bool:
        from autopeft.search.fidelity import promote

        value = metrics[prep.space.task.metric]
        rungs.append([step, value])
        store.save_trial(TrialRecord(status="running", peft_config=peft_config, trainable_params=count,
                                     extras={"rungs": list(rungs)}, **base))
        # Re-read the store: other workers' trials at this rung count too.
        return promote(store.trials(study.name), study.objectives, trial.number, step, value, count, prep.space.proxy.eta)

    try:
        result = runner(spec, on_rung=on_rung) if spec.proxy.rungs else runner(spec)
    except KeyboardInterrupt:
        ostudy.tell(trial, state=TrialState.FAIL)
        store.save_trial(TrialRecord(status="failed", peft_config=peft_config, trainable_params=count,
                                     error="interrupted", finished_at=utcnow(), **base))
        raise
    trainable = result.trainable_params or count
    values = objective_values(study, result, trainable) if result.status == "complete" else None
    if result.status == "pruned":
        ostudy.tell(trial, state=TrialState.PRUNED)  # see autopeft.search.fidelity
        status = "pruned"
    elif values is not None:
        ostudy.tell(trial, scaled(study.objectives, values))  # the sampler models log10 params
        status = "complete"
    else:
        trial.set_user_attr("error", result.error)
        ostudy.tell(trial, state=TrialState.FAIL)
        status = "failed"
    record = TrialRecord(
        status=status,
        peft_config=peft_config,
        trainable_params=trainable,
        metrics=result.metrics,
        values=values,
        curve=result.curve,
        resources={"wall_time": result.wall_time, "train_time": result.train_time, "setup_time": result.setup_time,
                   "eval_time": result.eval_time, "peak_rss_mb": result.peak_rss_mb,
                   "peak_memory_mb": result.peak_memory_mb, "memory_kind": result.memory_kind, "device": result.device},
        extras={**_with_importance(result.extras, prep), **({"rungs": rungs} if rungs else {})},
        error=result.error if status == "failed" else None,
        finished_at=utcnow(),
        **base,
    )
    store.save_trial(record)
    return record


def _with_importance(extras: dict, prep: PreparedSearch) -> dict:
    """Add the trial's ``ImportanceMap`` when its method measured one (AdaLoRA's final ranks)."""
    if "rank_allocation" not in extras or "importance" in extras:
        return extras
    from autopeft.importance import ImportanceMap

    imap = ImportanceMap.from_named(
        "adalora", extras["rank_allocation"], prep.arch.layers_path, prep.arch.num_layers,
        tuple(s.name for s in prep.arch.linears), note="final AdaLoRA rank per matrix",
    )
    return {**extras, "importance": imap.to_json()}


def objective_values(study: StudyRecord, result: TrialResult, trainable_params: int) -> list[float] | None:
    """The result's objective values in study order (None if one is missing or not finite)."""
    import math

    source = {
        "trainable_params": trainable_params,
        "peak_memory": result.peak_memory_mb or result.peak_rss_mb,  # the device's own figure
        "train_time": result.train_time,
        **result.metrics,
    }
    values = [source.get(name) for name, _ in study.objectives]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return [float(v) for v in values]


def _infeasible(store, ostudy, trial, records, study, base, peft_config, count, reason) -> TrialRecord:
    """Tell an untrained candidate as infeasible, with the worst values seen as stand-ins.

    Before any trial has completed there is nothing to impute from: the trial is told as
    FAIL (samplers skip it), and recorded as infeasible all the same.
    """
    from optuna.trial import TrialState

    done = [r.values for r in records if r.status == "complete" and r.values]
    trial.set_user_attr("infeasible", reason)
    record = TrialRecord(status="infeasible", peft_config=peft_config, trainable_params=count, error=reason,
                         finished_at=utcnow(), **base)
    if not done:
        ostudy.tell(trial, state=TrialState.FAIL)
        store.save_trial(record)
        return record
    imputed = []
    for i, (name, direction) in enumerate(study.objectives):
        if name == "trainable_params" and count is not None:
            imputed.append(float(count))
        else:
            column = [v[i] for v in done]
            imputed.append(min(column) if direction == "max" else max(column))
    ostudy.tell(trial, scaled(study.objectives, imputed))
    store.save_trial(record)
    return record
