"""The search space a study was created with, read back from the YAML stored with it.

Showing, verifying, exporting or resuming a study reads its space many times over (the table,
the verified rows, the target, the comparison); each read used to parse and check the YAML
again. Here it is parsed once per process for each stored text: the cache is keyed on the
study's name (the source its errors name) and the YAML itself, so a study whose stored YAML
changed is parsed afresh. Sharing one ``SearchSpace`` is safe: it and its parts are frozen
dataclasses, and the one mutable field, ``document``, is only read (``apply_overrides`` and
``space_hash`` copy it first).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from autopeft.space.loader import load_space_text

if TYPE_CHECKING:
    from autopeft.space.schema import SearchSpace, TargetSpec
    from autopeft.store.records import StudyRecord


def study_space(study: StudyRecord) -> SearchSpace:
    """The search space ``study`` was created with, parsed from its stored YAML.

    Raises:
        SpaceError: the stored YAML no longer parses (e.g. a study stored by an older
            autopeft); the error names the study.
    """
    return _parsed(study.name, study.space_yaml)


def stored_target(study: StudyRecord) -> TargetSpec | None:
    """The study's ``target:`` (None: the proxy is the target, or no space is stored with it)."""
    return study_space(study).target if study.space_yaml else None


# Bounded: the dashboard runs for days and may show many studies.
@lru_cache(maxsize=64)
def _parsed(name: str, space_yaml: str) -> SearchSpace:
    # An error in a stored space is reported against the study, not a file.
    return load_space_text(space_yaml, f"study '{name}' (stored space)")
