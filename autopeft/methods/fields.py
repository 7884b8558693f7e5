"""Which candidate fields a trial's method actually used: the one rule every table follows.

Every dimension is suggested in every trial (the encoding is fixed-dimensional, see
``autopeft.space.encoding``), so an IA3 candidate still carries a ``rank`` that nothing
read. Showing it invites a wrong reading ("IA3 at r=16 did well"); the CLI prints '-', and
the dashboard, the Python API's frames and optuna's user attributes do the same through
this function.
"""

from __future__ import annotations

from typing import Collection

from autopeft.candidate import Candidate

#: Candidate fields in the order tables show them. ``method`` and ``learning_rate`` are
#: read by every trial (the trainer, not the method, uses the learning rate).
FIELD_ORDER = ("method", "rank", "layer_ranks", "alpha", "dropout", "targets", "layers", "dora", "rslora",
               "learning_rate")
ALWAYS_USED = frozenset({"method", "learning_rate"})


def method_uses(method: str) -> frozenset[str]:
    """The candidate fields ``method`` reads (``Method.uses``); an unknown method (a study made
    by a newer autopeft) uses every field, so nothing is hidden that might matter."""
    from autopeft.errors import MethodError
    from autopeft.methods import get_method

    try:
        return frozenset(get_method(method).uses)
    except MethodError:
        return frozenset(FIELD_ORDER)


def used_config(candidate: Candidate, uses: Collection[str] | None = None) -> dict:
    """The fields of ``candidate`` its method uses, in ``FIELD_ORDER``, valued as tables, optuna's
    attributes and MLflow's parameters show them (``Candidate.to_json()``: lists, ``"all-linear"``).

    Args:
        candidate: A decoded candidate (``TrialRecord.candidate``).
        uses: The method's ``uses``; None looks it up in the registry.

    ``layer_ranks`` appears only when ranks vary per layer (and the method uses ``rank``).
    """
    if uses is None:
        uses = method_uses(candidate.method)
    used = (set(uses) | ALWAYS_USED) - {"layer_ranks"}
    if "rank" in used and candidate.layer_ranks is not None:
        used.add("layer_ranks")
    shown = candidate.to_json()
    return {k: shown[k] for k in FIELD_ORDER if k in used}
