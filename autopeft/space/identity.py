"""A space's identity: ``space_hash``, which a study stores and resumes against.

Two documents that search the same thing hash the same: keys that bound or place a run
without changing what it measures are left out, so a study can be resumed with other values.
"""

from __future__ import annotations

import hashlib
import json

from autopeft.space.schema import SearchSpace, default_learning_rate

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
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
