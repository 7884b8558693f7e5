"""Importance as layer x module frames for the Importance and Trials pages: a study's stored
map (SPT sensitivity, ...), else the mean of its trials' AdaLoRA rank allocations, and each
trial's own allocation. Nothing here draws (``autopeft.dashboard.render`` does).
"""

from __future__ import annotations

import re
from typing import Sequence

from autopeft.store import StudyRecord, TrialRecord

_MODULE_NAME = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\.(.+)$")


def importance_frame(allocation: dict):
    """A ``{module path: rank}`` map -> layer x module DataFrame (None if nothing parses).

    AdaLoRA reports e.g. ``...encoder.layer.3.attention.self.query.lora_E``: the number
    after ``layer`` is the row, the last name that is not peft's own (``lora_*``) the column.
    """
    import pandas as pd

    cells: dict[tuple[int, str], float] = {}
    for name, value in (allocation or {}).items():
        m = _MODULE_NAME.search(str(name))
        if not m or not isinstance(value, (int, float)):
            continue
        parts = [p for p in m.group(2).split(".") if not p.startswith("lora_") and p not in ("default", "weight")]
        if not parts:
            continue
        key = (int(m.group(1)), parts[-1])
        cells[key] = cells.get(key, 0) + float(value)
    if not cells:
        return None
    frame = pd.Series(cells).unstack()
    frame.index.name, frame.columns.name = "layer", "module"
    return frame.sort_index()


def map_frame(imap: dict):
    """An ``ImportanceMap`` JSON (``{kind, modules, scores, note}``) -> layer x module DataFrame."""
    import pandas as pd

    try:
        frame = pd.DataFrame([[float("nan") if v is None else float(v) for v in row] for row in imap["scores"]],
                             columns=[str(m) for m in imap["modules"]])
    except (KeyError, TypeError, ValueError):
        return None
    if frame.empty:
        return None
    frame.index.name, frame.columns.name = "layer", "module"
    return frame


def study_importance(study: StudyRecord, records: Sequence[TrialRecord]):
    """``(title, layer x module frame)`` of the study, or None when nothing was recorded.

    In order: the study's stored importance map (SPT sensitivity, ...), else the mean of its
    trials' AdaLoRA rank allocations.
    """
    imp = study.importance
    if isinstance(imp, dict):
        frame = map_frame(imp) if "scores" in imp else importance_frame(imp.get("rank_allocation", imp))
        if frame is not None:
            kind = imp.get("kind", "stored")
            return f"Study importance ({kind}){': ' + imp['note'] if imp.get('note') else ''}", frame
    # Average the raw maps first and parse once: parsing 1,000 maps one by one takes seconds.
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for r in records:
        if r.status != "complete":
            continue
        for name, value in r.rank_allocation.items():
            if isinstance(value, (int, float)):
                total[name] = total.get(name, 0.0) + value
                count[name] = count.get(name, 0) + 1
    frame = importance_frame({k: v / count[k] for k, v in total.items()}) if total else None
    return None if frame is None else ("Study importance: mean AdaLoRA rank per layer x module", frame)


def has_importance(record: TrialRecord) -> bool:
    return bool(record.rank_allocation)


def trial_importance(record: TrialRecord):
    """The trial's own layer x module map: AdaLoRA's final rank allocation (None if absent)."""
    return importance_frame(record.rank_allocation)
