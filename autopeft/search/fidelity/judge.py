"""The rung decisions one trial meets on its way to the target, as one object.

A :class:`RungJudge` is what a trial's runner calls at each of its evaluations
(``on_rung(step, metrics) -> go on?``). It reads the study's rung signal, records every
evaluation, places the study's ladder from a reference's probes (``proxy.rungs: auto``,
:mod:`autopeft.search.fidelity.placement`) and, at a rung, asks
:func:`autopeft.search.fidelity.promotion.promote`. The session gives it two callbacks, so that
it knows nothing of the ledger: ``records()`` (the study's trials, other workers' included) and
``save(extras)`` (the running trial's rung entries, as they come).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from autopeft.search.fidelity.placement import Ladder, keep_ladder, place, probe_steps, read_ladder
from autopeft.search.fidelity.promotion import entry_reading, promote, rung_at
from autopeft.search.fidelity.signals import rung_signal
from autopeft.store import trial_extras
from autopeft.store.records import TrialRecord
from autopeft.store.trial_extras import Rung

log = logging.getLogger("autopeft")


class RungJudge:
    """Judges one trial at its rungs.

    Args:
        space: The study's ``SearchSpace``.
        storage: optuna's storage (where the placed ladder is kept).
        study: The study's name; ``objectives``: its ``(name, direction)`` objectives.
        number: The trial's number; ``params``: its trainable parameters.
        reference: The role of the study's reference trials (``default LoRA``), whose probes place the ladder.
        role: Judge only against trials of this role (default LoRA at its rates), or None.
        is_reference: The trial is a reference trial.
        rungs: Rung entries already passed (a re-run resuming its predecessor's checkpoint).
        records: The study's trials, read again at each decision.
        save: Persist the running trial's rung and probe entries (:meth:`extras`).
    """

    def __init__(self, space, storage, study: str, objectives, *, number: int, params: int, reference: str,
                 role: str | None, is_reference: bool, rungs: Sequence[Rung], records: Callable[[], list[TrialRecord]],
                 save: Callable[[dict], None]) -> None:
        self.space, self.storage, self.study, self.objectives = space, storage, study, objectives
        self.number, self.params, self.role, self.is_reference = number, params, role, is_reference
        self.reference = reference
        self.records, self.save = records, save
        self.signal = rung_signal(space)
        self.rungs: list[Rung] = list(rungs)
        self.probes: list[Rung] = []

    def planned(self) -> tuple[int, ...]:
        """The steps this trial is evaluated at: the space's rungs, or (``rungs: auto``) the placed
        ladder, else the probe grid until it is placed."""
        if not self.space.proxy.auto_rungs:
            return self.space.proxy.rungs
        ladder = self.ladder()
        return ladder.rungs if ladder is not None else probe_steps(self.space.proxy.steps)

    def ladder(self) -> Ladder | None:
        return read_ladder(self.storage, self.study) if self.space.proxy.auto_rungs else None

    def __call__(self, step: int, metrics: dict) -> bool:
        """Go on past ``step``? (``metrics``: the trial's rung metrics there.)"""
        reading = self.signal.read(metrics)
        entry = rung_at(step, metrics.get(self.space.task.metric), reading)
        if self.space.proxy.auto_rungs:
            ladder = self.ladder()
            if ladder is None:  # probing: this reading may place the ladder
                self.probes.append(entry)
                ladder = self._place(metrics, finished=False)
            elif step not in ladder.rungs:
                self.probes.append(entry)
            if ladder is None or step not in ladder.rungs:  # a probe, not a rung: nothing is judged
                self.save(self.extras())
                return True
        self.rungs.append(entry)
        self.save(self.extras())
        return promote(self.records(), self.objectives, self.number, step, entry.metric, self.params,
                       self.space.proxy.eta, role=self.role, signal=self.signal, reading=reading)

    def finished(self, metrics: dict) -> None:
        """The trial reached the target: a reference that never moved places an empty ladder."""
        if self.space.proxy.auto_rungs and self.ladder() is None:
            self._place(metrics, finished=True)

    def extras(self) -> dict:
        """The trial record's rung entries so far."""
        return trial_extras.rung_extras(self.rungs, self.probes)

    def _place(self, metrics: dict, *, finished: bool) -> Ladder | None:
        """Place the ladder from this trial's probes if they can: it is a reference trial, or the
        study has none (then any trial's run is the reference)."""
        if not self.is_reference and any(r.role == self.reference for r in self.records()):
            return None
        readings = [(e.step, entry_reading(e, self.signal)) for e in self.probes]
        proxy = self.space.proxy
        ladder = place(self.signal, [(s, r) for s, r in readings if r is not None], target_steps=proxy.steps,
                       eta=proxy.eta, reference=self.number, finished=finished,
                       prior_loss=metrics.get("eval_prior_loss") if self.signal.name == "eval_loss" else None)
        if ladder is None:
            return None
        ladder = keep_ladder(self.storage, self.study, ladder)
        log.info("study '%s': %s", self.study, ladder.why())
        return ladder
