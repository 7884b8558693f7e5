"""optuna's study of an autopeft study: its directions and its creation, one copy for every opener.

The ledger opens it on a storage with heartbeats (its trials beat while they train);
readers and the set-up of a new study (:func:`optuna_study`) open it without. Both create it
if it is missing and load it otherwise, so every process opens the same one.
"""

from __future__ import annotations

from typing import Sequence

from autopeft.store import Store, StudyRecord


def optuna_directions(objectives: Sequence[tuple[str, str]]) -> list[str]:
    """optuna's directions (``"maximize"`` / ``"minimize"``) of ``StudyRecord.objectives``, in study order."""
    return ["maximize" if d == "max" else "minimize" for _, d in objectives]


def open_optuna_study(name: str, storage, objectives: Sequence[tuple[str, str]], sampler=None):
    """optuna's study ``name`` in ``storage`` (created if missing, else loaded), asking ``sampler``.

    Args:
        name: The study's name (autopeft's and optuna's).
        storage: An optuna storage (``Store.optuna_storage``, or one with heartbeats).
        objectives: ``StudyRecord.objectives``: ``(name, "max" | "min")`` pairs.
        sampler: The sampler ``ask`` uses (None: random; enough to read, count or enqueue).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=optuna_directions(objectives),
        sampler=sampler if sampler is not None else optuna.samplers.RandomSampler(),
        load_if_exists=True,
    )


def optuna_study(store: Store, study: StudyRecord, sampler):
    """optuna's study of ``study`` (created if missing), without heartbeats: for readers and set-up."""
    return open_optuna_study(study.name, store.optuna_storage, study.objectives, sampler)
