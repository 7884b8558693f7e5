"""Where a study's rung checkpoints live, and which one a re-run trial resumes from.

A trial of a study with a ``target:`` saves its state at each rung
(``autopeft.trials.checkpoint``) into one folder per trial, under the study's artifact
folder. When it ends in its own process (complete, pruned, failed) the folder is removed:
a run that is over never resumes. When its process dies instead (kill -9, a lost machine),
the folder stays; the ledger reaps the trial and queues its point again, and the re-run
(``TrialRecord.retry_of``) takes over the folder and resumes from its newest checkpoint on
whichever worker claims it, without training the first steps again. A checkpoint that
cannot be read makes the trial train from step 0, with the reason in
``extras["resume_failed"]``.

The artifact folder: ``$AUTOPEFT_ARTIFACTS`` if set; else, for a SQLite file, a folder next
to it (``autopeft.db`` -> ``autopeft.db-artifacts``); else ``<cache>/artifacts``, which only
this machine sees: workers on several machines resume each other's trials only when
``$AUTOPEFT_ARTIFACTS`` names a folder they share.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_STEP = re.compile(r"step-(\d+)$")


def artifacts_root(store) -> Path:
    """The folder a database's studies keep their artifacts in (see the module docstring)."""
    if os.environ.get("AUTOPEFT_ARTIFACTS"):
        return Path(os.environ["AUTOPEFT_ARTIFACTS"]).resolve()
    from sqlalchemy.engine import make_url

    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database + "-artifacts").resolve()  # recorded in trials: valid from any directory
    from autopeft.assets.cache import cache_dir

    return cache_dir() / "artifacts"


def resumable(method, proxy) -> bool:
    """Whether a trial of ``method`` under ``proxy`` can be checkpointed and resumed exactly
    (``autopeft.trials.checkpoint`` refuses per-step state it does not save)."""
    return not (method.stateful_steps or proxy.ist is not None or proxy.precision == "fp16" or proxy.runner)


def folder_for(store, study: str, record, previous) -> Path:
    """The checkpoint folder of trial ``record``: its predecessor's when it re-runs one
    (``previous``, the record of its ``retry_of``), else its own."""
    if previous is not None and previous.checkpoint_dir:
        return Path(previous.checkpoint_dir)
    return artifacts_root(store) / study / f"trial-{record.number}"


def newest(folder: Path) -> tuple[int, Path] | None:
    """``(step, path)`` of the newest complete checkpoint in ``folder`` (None: none)."""
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            m = _STEP.match(child.name)
            if m and child.is_dir():
                found.append((int(m.group(1)), child))
    return max(found) if found else None


def remove(folder: Path | str | None) -> None:
    """Delete a finished trial's checkpoints (nothing to do when there are none)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
