"""Where the rungs fall (``proxy.rungs: auto``): after the reference run has begun to learn.

A rung placed before learning starts ranks runs that are all still at chance, by size: a cut
there is a coin toss. So, with ``proxy.rungs: auto``, the first trials of a study (default
LoRA at its rates, trained first) are *probed*: evaluated every :func:`probe_every` steps,
never judged. The first rung is the first probe step at which a reference's rung signal has
moved beyond its noise from where it started — by more than :data:`Z` standard errors, from
its first probe or, for a classifier's validation loss, from the loss of answering the label
frequencies whatever the input (``eval_prior_loss``), whichever is lower. Later rungs follow geometrically, ``eta`` apart,
up to ``target / eta``, each on the probe grid so that a run probed from the start is judged at
them too. If the reference reaches the target without having moved, there are no rungs: every
trial trains to the target, and the study says why.

The ladder is decided once per study and kept in optuna's study attributes
(:data:`LADDER_ATTR`), where every worker reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from autopeft.search.fidelity.signals import Reading, RungSignal

#: Standard errors the reference's signal must move by to count as learning.
Z = 2.0
#: Probes per run towards the target while the ladder is not placed.
PROBES = 10
#: optuna study user attribute that holds the placed ladder (JSON).
LADDER_ATTR = "autopeft:rungs"


@dataclass(frozen=True)
class Ladder:
    """A study's placed rungs and why they fell there.

    Attributes:
        rungs: Steps at which trials are judged (empty: every trial trains to the target).
        signal: The rung signal's name.
        start: The reference's signal where it started (its first probe, or the prior's loss).
        moved: Its reading at the first rung (None when it never moved).
        reference: The trial number that placed the ladder.
    """

    rungs: tuple[int, ...]
    signal: str
    start: float
    moved: Reading | None
    reference: int

    def to_json(self) -> dict:
        data = asdict(self)
        data["rungs"] = list(self.rungs)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Ladder":
        moved = data.get("moved")
        return cls(tuple(data["rungs"]), data["signal"], float(data["start"]),
                   Reading(**moved) if moved else None, int(data["reference"]))

    def why(self) -> str:
        """One line for the end of ``search`` and ``show``."""
        label = _LABELS.get(self.signal, self.signal)
        if not self.rungs:
            return (f"no rungs: the reference (trial {self.reference})'s {label} never moved by more than "
                    f"{Z:g} standard errors from {self.start:.3f} before the target; every trial trained to it")
        later = f"; later rungs at {', '.join(map(str, self.rungs[1:]))}" if len(self.rungs) > 1 else ""
        moved = self.moved
        return (f"first rung at {self.rungs[0]} steps: the reference (trial {self.reference})'s {label} first moved "
                f"by more than {Z:g} standard errors there ({self.start:.3f} -> {moved.value:.3f} ± {moved.se:.3f})"
                f"{later}")


_LABELS = {"eval_loss": "validation loss", "train_loss": "training loss", "accuracy": "validation accuracy"}


def probe_every(target_steps: int) -> int:
    """Steps between probes of a run towards ``target_steps``."""
    return max(1, target_steps // PROBES)


def probe_steps(target_steps: int) -> tuple[int, ...]:
    """The probe grid: every :func:`probe_every` steps, below the target."""
    every = probe_every(target_steps)
    return tuple(range(every, target_steps, every))


def start_value(signal: RungSignal, first: Reading, prior_loss: float | None) -> float:
    """Where the reference's signal started: its first probe, or the prior's loss when that is lower
    (a classifier's loss sits near it until the run learns more than the label frequencies)."""
    if signal.name == "eval_loss" and prior_loss is not None:
        return min(first.value, prior_loss)
    return first.value


def learned_at(signal: RungSignal, probes: Sequence[tuple[int, Reading]], prior_loss: float | None = None) -> int | None:
    """The first probe step at which ``signal`` has moved from its start by more than :data:`Z`
    standard errors in its good direction; None if it has not (yet)."""
    if not probes:
        return None
    start = start_value(signal, probes[0][1], prior_loss)
    for step, reading in probes:
        if signal.oriented(start) - signal.oriented(reading.value) > Z * reading.se > 0:
            return step
    return None


def ladder_from(first: int, target_steps: int, eta: int) -> tuple[int, ...]:
    """Rungs from ``first`` up by factors of ``eta``, each rounded to the probe grid.

    A later rung stands only at or below ``target / eta``, as in successive halving, where the
    target is ``eta`` times the last rung: a rung just short of the target (135 of 150) would
    cost a promoted run nearly the whole target and then cut it without a result at the target.
    """
    every = probe_every(target_steps)
    rungs, rung = [], float(first)
    while True:
        step = max(every, int(round(rung / every)) * every)
        if step >= target_steps or (rungs and step * eta > target_steps):
            break
        if not rungs or step > rungs[-1]:
            rungs.append(step)
        rung *= eta
    return tuple(rungs)


def place(signal: RungSignal, probes: Sequence[tuple[int, Reading]], *, target_steps: int, eta: int,
          reference: int, finished: bool, prior_loss: float | None = None) -> Ladder | None:
    """The ladder a reference's probes place, or None while they cannot place it yet.

    Args:
        probes: ``(step, reading)`` of the reference so far, in step order.
        finished: The reference reached the target: if its signal never moved, there are no rungs.
        prior_loss: For a classifier's validation loss, the loss of answering the label
            frequencies (the trial's ``eval_prior_loss``).
    """
    if not probes:
        return None
    start = start_value(signal, probes[0][1], prior_loss)
    step = learned_at(signal, probes, prior_loss)
    if step is not None:
        reading = dict(probes)[step]
        return Ladder(ladder_from(step, target_steps, eta), signal.name, start, reading, reference)
    if finished:
        return Ladder((), signal.name, start, None, reference)
    return None


def stored_ladder(user_attrs: dict) -> Ladder | None:
    """The ladder kept in an optuna study's user attributes, if placed."""
    data = user_attrs.get(LADDER_ATTR)
    return Ladder.from_json(data) if data else None


def read_ladder(storage, study_name: str) -> Ladder | None:
    """The ladder placed for study ``study_name`` in optuna ``storage``, if any."""
    from autopeft.store.retry import retried_optuna

    study_id = retried_optuna(lambda: storage.get_study_id_from_name(study_name))
    return stored_ladder(retried_optuna(lambda: storage.get_study_user_attrs(study_id)))


def keep_ladder(storage, study_name: str, ladder: Ladder) -> Ladder:
    """Store ``ladder`` unless one is placed already (the first placed stands); the one that stands."""
    from autopeft.store.retry import retried_optuna

    placed = read_ladder(storage, study_name)
    if placed is not None:
        return placed
    study_id = retried_optuna(lambda: storage.get_study_id_from_name(study_name))
    retried_optuna(lambda: storage.set_study_user_attr(study_id, LADDER_ATTR, ladder.to_json()))
    return ladder
