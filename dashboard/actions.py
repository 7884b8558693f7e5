"""What the Export and New search pages do: the files ``autopeft export`` writes for a trial
and the equivalent command line; checking a pasted space and creating its study.

``create_study`` is the dashboard's only write, and it refuses an existing name, so the
dashboard never modifies a study it did not create.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from autopeft.errors import AutoPeftError, StoreError
from autopeft.store import StudyRecord, TrialRecord


def export_files(study: StudyRecord, record: TrialRecord, how: str) -> dict[str, str]:
    """``{file name: text}`` exactly as ``autopeft export`` writes them for ``record``.

    Calls the CLI's own ``export_trial`` into a temporary directory, so the download and
    the command are byte-identical: peft's ``adapter_config.json`` (written by peft's
    ``save_pretrained``) for peft methods, the method's own file otherwise, plus
    ``autopeft.json`` (provenance).

    Raises:
        AutoPeftError: the trial has no buildable config or is not complete.
    """
    import tempfile

    from autopeft.export import export_trial

    with tempfile.TemporaryDirectory(prefix="autopeft-dashboard-") as tmp:
        out = export_trial(study, record, tmp, picked_by=how)
        return {p.name: p.read_text() for p in sorted(Path(out).iterdir()) if p.is_file()}


def config_file(files: dict[str, str]) -> str:
    """The adapter config among ``export_files``' outputs (not the provenance)."""
    if "adapter_config.json" in files:
        return "adapter_config.json"
    return next((n for n in files if n != "autopeft.json"), "autopeft.json")


def export_command(study: str, display_url: str, how: str) -> str:
    """The ``autopeft export`` line equivalent to the Export page's choice."""
    from autopeft.store import DEFAULT_URL

    parts = ["autopeft", "export", study]
    if display_url != DEFAULT_URL:
        parts += ["--storage", display_url]
    parts += ["--trial", how.split(":", 1)[1]] if how.startswith("trial:") else ["--pick", how]
    parts += ["--out", f"./{study}-adapter"]
    return shlex.join(parts)


# ---------------------------------------------------------------------- new search
def validate_space(text: str):
    """``(space, None)`` or ``(None, message)``: the CLI's key-path message on error."""
    from autopeft.space.loader import load_space_text

    try:
        return load_space_text(text, "<pasted YAML>"), None
    except AutoPeftError as e:
        return None, str(e)


def create_study(store, space) -> StudyRecord:
    """Create the study of ``space`` for workers to run; never touch an existing one.

    Raises:
        AutoPeftError: the name is taken, or the space does not fit its model or data.
    """
    from autopeft.search.loop import open_study
    from autopeft.search.prepare import prepare_search

    if store.find_study(space.study) is not None:
        raise StoreError(f"a study named '{space.study}' already exists; change `study:` to create a new one "
                         "(the dashboard never modifies existing studies)")
    return open_study(store, prepare_search(space, with_data=False))
