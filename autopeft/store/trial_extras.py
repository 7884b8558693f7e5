"""Typed, read-only views of what a trial record keeps in its ``extras`` JSON.

The store keeps ``extras`` as the JSON the writers put there (no migration: the shape in the
database is unchanged); this module is the one place that names its structured keys: the rest
of the package asks ``TrialRecord`` for ``role``, ``rungs``, ``target`` ... and writes them
through the writers below (``rung_extras``, ``with_target`` ...), never by string key. A key that is missing, or of an older or foreign shape, reads as None (or an
empty tuple / dict), never as an error.

The keys read here:

- ``baseline``: the role of a reference trial the study enqueued (``default LoRA``, ``cheapest``);
- ``fidelity``: the step a pruned trial stopped at;
- ``rungs`` and ``probes``: one ``[step, task metric, signal, standard error]`` entry per rung
  judged or probe evaluated (``[step, task metric]`` in studies recorded before rung signals);
- ``target``: the summary over the seeds at the target (``autopeft.search.seeds.fold``);
- ``retry_of`` / ``retried_as``: the trial this one re-runs / the trial that re-runs this one;
- ``rank_allocation``: AdaLoRA's final ``{module path: rank}``;
- ``checkpoints``: the folder the trial's checkpoints are in;
- ``verified``: set (in memory, never stored) on a record whose values are verify's test means
  (``autopeft.search.analysis.trust.verified_records``);
- ``predicted_classes`` and ``majority_rate``: the divergence diagnostics the trial process
  reports (:class:`Diagnostics`), on trial records and on verification rows alike.

A verification row's ``extras`` also holds (read by ``VerificationRecord``):

- ``trial_run``: the row is a trial's own run, stored as its first seed (``autopeft.search.seeds``);
- ``cpu_time`` / ``wall_time``: what the run cost (``autopeft.search.runs.train``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Rung:
    """One evaluation of a trial before its end: a rung it was judged at, or a probe.

    Attributes:
        step: The training step.
        metric: The task metric there (None when the trial did not report it).
        signal: The rung signal's value (``proxy.signal``); None in an entry recorded before
            rung signals, which the task metric judged.
        signal_se: The signal's standard error (None with ``signal``).
    """

    step: int
    metric: float | None
    signal: float | None = None
    signal_se: float | None = None

    @classmethod
    def from_json(cls, entry: Any) -> "Rung | None":
        """From a stored entry; None for one that is not ``[step, metric, ...]``."""
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) < 2:
            return None
        try:
            step = int(entry[0])
        except (TypeError, ValueError):
            return None
        signal = _float(entry[2]) if len(entry) >= 4 else None
        return cls(step, _float(entry[1]), signal, _float(entry[3]) if signal is not None else None)

    def to_json(self) -> list:
        """The stored entry, as :meth:`from_json` reads it."""
        return [self.step, self.metric] if self.signal is None else [self.step, self.metric, self.signal, self.signal_se]

    @property
    def finite_metric(self) -> bool:
        return self.metric is not None and math.isfinite(self.metric)


@dataclass(frozen=True)
class TargetSummary:
    """What a trial's runs at the target came to, over its seeds (``autopeft.search.seeds.fold``).

    Attributes:
        seeds: The seeds completed so far.
        of: The seeds the target asks for (``target.seeds``).
        val: The task metric's ``(mean, sd)`` on validation over ``seeds``.
        test: ``(mean, sd)`` on the test split (None unless every completed seed was scored there).
        failed: The seeds that failed (they count as done).
        own: The trial's own run's task metric (the value optuna was told).
        diverged: Why a seed diverged (None: none did).
    """

    seeds: tuple[int, ...]
    of: int
    val: tuple[float, float]
    test: tuple[float, float] | None = None
    failed: tuple[int, ...] = ()
    own: float | None = None
    diverged: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> "TargetSummary | None":
        """From the stored summary; None without one, or for one missing its seeds, count or means."""
        if not isinstance(data, Mapping):
            return None
        try:
            seeds = tuple(int(s) for s in data["seeds"])
            of = int(data["of"])
            val = _pair(data["val"])
        except (KeyError, TypeError, ValueError):
            return None
        if val is None:
            return None
        return cls(seeds=seeds, of=of, val=val, test=_pair(data.get("test")),
                   failed=tuple(int(s) for s in data.get("failed") or ()), own=_float(data.get("own")),
                   diverged=data.get("diverged") or None)

    def to_json(self) -> dict:
        """The stored summary, as :meth:`from_json` reads it."""
        return {"seeds": list(self.seeds), "of": self.of, "failed": list(self.failed), "val": list(self.val),
                "test": list(self.test) if self.test is not None else None, "own": self.own,
                "diverged": self.diverged}

    @property
    def complete(self) -> bool:
        """Whether the means are over all the seeds (failed seeds count as done)."""
        return len(self.seeds) + len(self.failed) >= self.of


@dataclass(frozen=True)
class Diagnostics:
    """What a run reported for judging whether it diverged (``autopeft.search.analysis.divergence``).

    Attributes:
        predicted_classes: How many classes (or answers) its predictions on validation use.
        majority_rate: The metric of always answering the split's most frequent class or answer.
    """

    predicted_classes: int | None = None
    majority_rate: float | None = None

    #: The keys of ``extras`` they are stored under (a seed row copies these of its trial's).
    KEYS = ("predicted_classes", "majority_rate")

    @classmethod
    def from_extras(cls, extras: Mapping | None) -> "Diagnostics":
        """From a record's (or a trial result's) extras; a missing or non-numeric key reads as None."""
        classes, rate = ((extras or {}).get(key) for key in cls.KEYS)
        return cls(_int(classes), _float(rate))


# A trial record's keys, each read above its writer below: the key names live in this module only.
_ROLE, _STOPPED_AT, _RUNGS, _PROBES, _TARGET = "baseline", "fidelity", "rungs", "probes", "target"
RETRY_OF, RETRIED_AS = "retry_of", "retried_as"  # public: the store selects them in SQL
_RANK_ALLOCATION, _CHECKPOINTS, _VERIFIED, _TRACEBACK = "rank_allocation", "checkpoints", "verified", "traceback"


def role(extras: Mapping | None) -> str | None:
    value = (extras or {}).get(_ROLE)
    return value if isinstance(value, str) and value else None


def stopped_at(extras: Mapping | None) -> int | None:
    return _int((extras or {}).get(_STOPPED_AT))


def rungs(extras: Mapping | None) -> tuple[Rung, ...]:
    return _entries(extras, _RUNGS)


def probes(extras: Mapping | None) -> tuple[Rung, ...]:
    return _entries(extras, _PROBES)


def _entries(extras: Mapping | None, key: str) -> tuple[Rung, ...]:
    entries = (extras or {}).get(key)
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return ()
    return tuple(r for r in map(Rung.from_json, entries) if r is not None)


def target(extras: Mapping | None) -> TargetSummary | None:
    return TargetSummary.from_json((extras or {}).get(_TARGET))


def trial_number(extras: Mapping | None, key: str) -> int | None:
    """``RETRY_OF`` or ``RETRIED_AS``: another trial's number."""
    return _int((extras or {}).get(key))


def rank_allocation(extras: Mapping | None) -> dict[str, float]:
    """AdaLoRA's ``{module path: rank}`` (a copy; empty without one)."""
    value = (extras or {}).get(_RANK_ALLOCATION)
    return dict(value) if isinstance(value, Mapping) else {}


def checkpoint_dir(extras: Mapping | None) -> str | None:
    value = (extras or {}).get(_CHECKPOINTS)
    return value if isinstance(value, str) and value else None


def verified(extras: Mapping | None) -> bool:
    return _VERIFIED in (extras or {})


# Writers: what a trial record's extras gain, as the readers above read it.

def role_extras(role: str | None) -> dict:
    """A reference trial's role (none for a searched trial)."""
    return {_ROLE: role} if role else {}


def retry_extras(retry_of: int | None) -> dict:
    """The mark of a trial that re-runs trial ``retry_of`` (none for a first run)."""
    return {RETRY_OF: retry_of} if retry_of is not None else {}


def with_retried_as(extras: Mapping, new: int) -> dict:
    return {**extras, RETRIED_AS: new}


def stopped_extras(step: int) -> dict:
    """A pruned trial's: the step it stopped at."""
    return {_STOPPED_AT: step}


def rung_extras(rungs: Sequence[Rung], probes: Sequence[Rung] = ()) -> dict:
    """A running trial's rung and probe entries so far (a key only where there are entries)."""
    return {**({_RUNGS: [r.to_json() for r in rungs]} if rungs else {}),
            **({_PROBES: [p.to_json() for p in probes]} if probes else {})}


def checkpoint_extras(folder: str) -> dict:
    return {_CHECKPOINTS: folder}


def rank_allocation_extras(allocation: Mapping[str, float]) -> dict:
    """AdaLoRA's final ``{module path: rank}``."""
    return {_RANK_ALLOCATION: dict(allocation)}


def with_target(extras: Mapping, summary: TargetSummary) -> dict:
    return {**extras, _TARGET: summary.to_json()}


def with_verified(extras: Mapping, *, seeds: Sequence[int], test: Sequence[float], val: Sequence[float],
                  diverged: str | None) -> dict:
    """Marks a record whose values are verify's test means (in memory: such a record is never saved)."""
    return {**extras, _VERIFIED: {"seeds": list(seeds), "test": list(test), "val": list(val), "diverged": diverged}}


def with_traceback(extras: Mapping, trace: str) -> dict:
    """A failed run's traceback (a run that failed outside its trial process)."""
    return {**extras, _TRACEBACK: trace}


def without_traceback(extras: Mapping) -> dict:
    """A run queued again: the last attempt's traceback is not the next one's."""
    return {k: v for k, v in extras.items() if k != _TRACEBACK}


# A verification row's keys (``VerificationRecord``); each is written and read only below.
_TRIAL_RUN, _CPU_TIME, _WALL_TIME = "trial_run", "cpu_time", "wall_time"


def trial_run(extras: Mapping | None) -> bool:
    return bool((extras or {}).get(_TRIAL_RUN))


def cpu_time(extras: Mapping | None) -> float | None:
    return _float((extras or {}).get(_CPU_TIME))


def wall_time(extras: Mapping | None) -> float | None:
    return _float((extras or {}).get(_WALL_TIME))


def run_cost(cpu: float | None, wall: float | None) -> dict:
    """A verification row's ``cpu_time`` / ``wall_time`` extras."""
    return {_CPU_TIME: cpu, _WALL_TIME: wall}


def own_run(trial: Mapping | None) -> dict:
    """The extras of the seed row that is a trial's own run: the trial's divergence diagnostics
    (copied as stored, so the row judges as the trial did) and the ``trial_run`` mark."""
    return {**{k: v for k, v in (trial or {}).items() if k in Diagnostics.KEYS}, _TRIAL_RUN: True}


def _number(value: Any, kind: type):
    """``kind(value)`` (float or int), or None for a missing, boolean or non-numeric value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    return _number(value, float)


def _int(value: Any) -> int | None:
    return _number(value, int)


def _pair(value: Any) -> tuple[float, float] | None:
    """A stored ``[mean, sd]``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    mean, sd = _float(value[0]), _float(value[1])
    return None if mean is None or sd is None else (mean, sd)
