"""A space's identity: ``space_hash``, which a study stores and resumes against.

Two documents that search the same thing hash the same: keys that bound or place a run
without changing what it measures are left out, so a study can be resumed with other values.
"""

from __future__ import annotations

import hashlib
import json

from autopeft.space.dimensions import default_learning_rate
from autopeft.space.schema import SearchSpace

#: Key paths left out of the hash. ``search.trials``: the trial count may grow. The
#: run-environment keys of ``proxy``: ``device``: a study started on a laptop's CPU can be
#: resumed by GPU workers (``--set proxy.device=cuda``); ``timeout`` and ``memory_limit_mb``:
#: caps at which a trial is stopped and recorded failed; a trial that finishes measures the same.
#: Not here, because they change results: anything of the data, the training or the model, and
#: ``proxy.log_every`` (the learning curve a language-model run is judged diverged by),
#: ``precision``, ``prefix_cache`` and ``gradient_checkpointing`` (what a step computes, its
#: time and memory).
IGNORED_KEYS = ("search.trials", "proxy.device", "proxy.timeout", "proxy.memory_limit_mb")
#: Left out unless ``train_time`` is an objective: torch threads change how fast a step runs,
#: not what it computes.
TIMING_KEYS = ("proxy.threads",)


def space_hash(space: SearchSpace) -> str:
    """A stable hash of what changes results.

    Ignores :data:`IGNORED_KEYS`, and :data:`TIMING_KEYS` unless ``train_time`` is an
    objective. An omitted ``space.learning_rate`` is hashed as the built-in bands it stands
    for, so a change to those bands is a change of the space.
    """
    return hashlib.sha256(json.dumps(identity_document(space), sort_keys=True).encode()).hexdigest()[:16]


def space_changes(old: SearchSpace, new: SearchSpace, limit: int = 3) -> list[str]:
    """What differs between two spaces in what :func:`space_hash` covers, one
    ``key.path: OLD vs NEW`` per changed key (``space.rank: [2, 8] vs [2, 4, 8, 16]``), at most
    ``limit`` of them and a count of the rest; ``(absent)`` for a key one side lacks."""
    a, b = _flat(identity_document(old)), _flat(identity_document(new))
    keys = [k for k in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0] != "space", k)) if a.get(k, _ABSENT) != b.get(k, _ABSENT)]
    said = [f"{k}: {_show(a.get(k, _ABSENT))} vs {_show(b.get(k, _ABSENT))}" for k in keys[:limit]]
    if len(keys) > limit:
        said.append(f"and {len(keys) - limit} more")
    return said


_ABSENT = object()


def _flat(doc, prefix: str = "") -> dict:
    """``{"space.rank": [2, 8], ...}``: mappings flattened to dotted key paths, lists kept whole."""
    if not isinstance(doc, dict) or not doc:
        return {prefix: doc} if prefix else {}
    out = {}
    for key, value in doc.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _show(value) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, default=str).replace('"', "")
    return text if len(text) <= 60 else text[:59] + "…"


def identity_document(space: SearchSpace) -> dict:
    """The document :func:`space_hash` hashes: ``space.document`` without the ignored keys, and
    an omitted ``space.learning_rate`` as the built-in bands it stands for."""
    doc = json.loads(json.dumps(space.document))
    ignored = IGNORED_KEYS if "train_time" in space.objective_names else IGNORED_KEYS + TIMING_KEYS
    for path in ignored:
        section, key = path.split(".")
        (doc.get(section) or {}).pop(key, None)
    sp = doc.get("space")
    if isinstance(sp, dict) and "learning_rate" not in sp:
        # From the document's methods: a prepared space may have dropped some the model refuses.
        methods = sp.get("method")
        sp["learning_rate"] = {"built-in": {str(m): list(default_learning_rate(str(m)))
                                            for m in (methods if isinstance(methods, list) else [methods])}}
    return doc
