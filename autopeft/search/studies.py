"""Opening a study: created (its reference and start-up trials enqueued) or resumed, with its
recorded splits and its importance map, computed once for every process that serves it.

:func:`~autopeft.search.optuna_setup.optuna_study` (optuna's own study of it, without
heartbeats) lives below the ledger, in :mod:`autopeft.search.optuna_setup`.
"""

from __future__ import annotations

from autopeft.errors import StoreError
from autopeft.search.optuna_setup import optuna_study
from autopeft.search.prepare import PreparedSearch
from autopeft.store import Store, StudyRecord, utcnow

__all__ = ["open_study", "study_importance", "study_splits"]


def open_study(store: Store, prep: PreparedSearch, trials_target: int | None = None) -> StudyRecord:
    """Create the study, or resume it when it exists with the same space.

    Creating it (and only that: not a resume, not a second worker) also enqueues its
    reference trials when ``search.baseline`` is true (``autopeft.search.sampling.baseline``), then its
    method-stratified start-up trials (``autopeft.search.sampling.startup``).
    """
    import yaml

    from autopeft._version import __version__
    from autopeft.space import space_hash

    space = prep.space
    target = trials_target or space.search.trials
    digest = space_hash(space)
    existing = store.find_study(space.study)
    if existing is not None:
        if existing.space_hash != digest:
            raise StoreError(
                f"study '{space.study}' already exists in {store.display_url} with a different search space"
                f"{_changes(existing, space)}; resume it with the same YAML, or start a new study (--set study=NEW_NAME)"
            )
        if existing.trials_target != target:
            store.set_trials_target(space.study, target)
        if existing.splits is None and prep.data is not None:  # submitted without data, or made before 0003
            store.set_splits(space.study, study_splits(prep))
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
        splits=study_splits(prep) if prep.data is not None else None,
    )
    try:
        created = store.add_study(record)
    except StoreError:
        if store.find_study(space.study) is not None:  # another worker created it first
            return store.get_study(space.study)
        raise
    # Only the process whose insert created the study gets here: the references and the
    # start-up design are enqueued once, never again on a resume or by a second worker.
    from autopeft.search.sampling.startup import enqueue_startup

    ostudy = optuna_study(store, created, None)
    references = []
    if space.search.baseline:
        from autopeft.search.sampling.baseline import enqueue_references

        references = enqueue_references(ostudy, prep)
    enqueue_startup(ostudy, prep, room=target - len(references))
    return created


def _changes(existing: StudyRecord, space) -> str:
    """`` (stored vs now: space.rank: [2, 8] vs [2, 4, 8, 16])``: what a refused resume changed."""
    from autopeft.space.identity import space_changes
    from autopeft.space.stored import study_space

    if not existing.space_yaml:
        return ""
    try:
        changes = space_changes(study_space(existing), space)
    except Exception:  # a stored space this version cannot read: the refusal alone
        return ""
    return f" (stored vs now: {'; '.join(changes)})" if changes else ""


def study_splits(prep: PreparedSearch) -> dict:
    """What ``StudyRecord.splits`` records of the prepared data: the same on every process that
    prepares the study (the split is a function of the data, the space and its seed)."""
    data = prep.data
    return {"train": data.n_train, "eval": data.n_eval, "test": data.n_test, "seed": prep.space.proxy.seed,
            "test_source": data.test_source, "fingerprint": data.fingerprint, "skipped": data.skipped,
            "skipped_why": [list(w) for w in data.skipped_why]}


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
