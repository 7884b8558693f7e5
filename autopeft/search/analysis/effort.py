"""What a study spent, and how much of it re-probed one configuration: reads over its records.

- CPU seconds: each trial and each seed or verification run records its own process's user +
  system time (``TrialResult.cpu_time``; a trial killed at its timeout or by a crash, the
  figure of its last report). Unlike wall time it does not grow while the process waits for
  a core another job holds, though contention for caches and memory still raises it a little.
- Near-duplicates: trained trials that repeat an earlier trial's structure at a learning
  rate within ``dedup.NEAR_FACTOR`` of it (``autopeft.search.sampling.dedup.near_duplicates``). A
  trial whose point was queued again (``TrialRecord.retried_as``: interrupted, or its process
  died) is left out: its retry is the same point by design, not a re-probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from autopeft.store.records import TrialRecord


@dataclass(frozen=True)
class Effort:
    """A study's spending (see the module docstring).

    Attributes:
        trials: Trial processes that trained (complete, pruned or failed; retried ones too).
        runs: Seed and verification runs trained apart from the trials.
        cpu_seconds: Their CPU seconds, over those that recorded it.
        unrecorded: How many of them have no CPU time in their record (stored by an older autopeft).
        near: Numbers of the trials that are near-duplicates of an earlier one.
        considered: How many trials the near-duplicates were counted among.
    """

    trials: int
    runs: int
    cpu_seconds: float
    unrecorded: int
    near: tuple[int, ...]
    considered: int

    def describe(self, factor: float) -> str:
        spent = ""
        if self.cpu_seconds:
            spent = (f"spent: {self.cpu_seconds:,.0f} CPU-seconds in {self.trials} trial(s) and {self.runs} "
                     f"seed/verification run(s)" + (f" ({self.unrecorded} without a CPU time)" if self.unrecorded else "")
                     + "; ")
        return (f"{spent}near-duplicates: {len(self.near)} of {self.considered} trained trials repeat an earlier "
                f"one's structure at a learning rate within x{factor:g} of it"
                + (f" (trials {', '.join(map(str, self.near))})" if self.near else ""))


def effort(records: Sequence[TrialRecord], runs) -> Effort:
    """The ``Effort`` of a study's trial ``records`` and its verification ``runs``."""
    from autopeft.search.sampling.dedup import near_duplicates

    trained = sorted((r for r in records if r.status in ("complete", "pruned", "failed")), key=lambda r: r.number)
    # A seed row that is a trial's own run is that trial's process, counted with the trials.
    apart = [r for r in runs if r.status in ("complete", "failed") and not r.trial_run]
    cpu = [r.resources.cpu_time for r in trained] + [r.cpu_time for r in apart]
    probes = [r for r in trained if r.retried_as is None]
    near = near_duplicates([r.candidate for r in probes])
    return Effort(len(trained), len(apart), sum(c for c in cpu if c), sum(1 for c in cpu if c is None),
                  tuple(probes[i].number for i in near), len(probes))
