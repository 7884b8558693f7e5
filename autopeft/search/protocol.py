"""How a run at full fidelity is trained: one protocol for every re-training.

A study re-trains points in three places, all with the same protocol shape:

- ``autopeft verify`` (``autopeft.search.verify``): one epoch (or ``--steps``/``--epochs``)
  of every training row, scored on validation and on the test split;
- a study's seed runs at its ``target:`` (``autopeft.search.seeds``): ``target.steps`` with
  the proxy's batch and learning-rate schedule, each seed drawing its rows from every
  training row;
- ``export --train`` (``autopeft.retrain``): the chosen trial and default LoRA, on every
  training row unless limited.

Verification rows store the protocol (:meth:`RunProtocol.as_dict`) and are found again by
its hash (:meth:`RunProtocol.key`, ``autopeft.store.verifications.protocol_key``): the key
must not drift, or a resumed run trains its rows again (``tests/test_run_protocol.py`` pins
it). It lives at the bottom of ``search/`` so that verify, the seeds, the session, the
workers and the queue (``autopeft.search.runs``) all read it, and ``autopeft.retrain``
beside them; it needs nothing of theirs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass

from autopeft.errors import AutoPeftError

#: The fields a stored protocol holds (those set); the others (seeds, metric, task) say which
#: runs there are and how they are compared, not how each one is trained.
_STORED = ("fidelity", "steps", "batch_size", "max_length", "train_examples", "eval_examples", "test_examples",
           "test_split", "schedule", "rows")


#: ``RunProtocol.rows``: each seed draws its rows from every training row.
BY_SEED = "drawn by seed from every training row"


@dataclass(frozen=True)
class RunProtocol:
    """How a run at full fidelity is trained: its length, batch, data and seeds.

    Asked for (``steps`` or ``epochs``, not both: checked here, for every caller), then
    :meth:`resolved` against the prepared data: a resolved protocol has ``steps`` and no
    ``epochs``. The sizes the caller does not know stay None and are not stored.

    Attributes:
        steps: Optimiser steps per run.
        batch_size: Examples per step.
        max_length: Tokens per example after truncation.
        train_examples: Training rows (verify, ``export --train``: the prepared data's; None
            for a study's seed runs at its target, see ``rows``).
        eval_examples: Validation examples.
        seeds: The training seeds, one run each (not stored: a row is one seed).
        metric: The task metric the runs are compared on (``export --train``'s card).
        task: The task's type (``classification``, ``causal_lm``).
        epochs: The length asked for in epochs of ``train_examples`` (default 1 when neither
            is given), until :meth:`resolved`.
        test_examples: Test examples verify scores on.
        test_split: ``given: <file>`` when the test split is the user's ``task.test`` file
            (None: carved from the data set; only then is it stored, so older rows keep
            their key).
        fidelity: ``target`` for a study's seed runs at its target.
        schedule: The learning-rate schedule after warm-up (a study's seed runs).
        rows: :data:`BY_SEED` when each seed draws its training rows from every training row
            of the data set, however many the data holds (a study's seed runs at its target:
            ``train_examples`` is then not stored); None: from ``train_examples``.
    """

    steps: int | None = None
    batch_size: int | None = None
    max_length: int | None = None
    train_examples: int | None = None
    eval_examples: int | None = None
    seeds: tuple[int, ...] = ()
    metric: str | None = None
    task: str = "classification"
    _: KW_ONLY
    epochs: float | None = None
    test_examples: int | None = None
    test_split: str | None = None
    fidelity: str | None = None
    schedule: str | None = None
    rows: str | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise AutoPeftError("give --steps or --epochs, not both")

    def resolved(self, **fields) -> RunProtocol:
        """This protocol with ``fields`` set and its length in steps: ``steps`` if given, else
        ``epochs`` (1 when not given either) of ``train_examples`` in batches of ``batch_size``."""
        p = dataclasses.replace(self, **fields)
        if p.steps is not None:
            return p
        steps = max(1, math.ceil((p.epochs or 1.0) * p.train_examples / p.batch_size))
        return dataclasses.replace(p, steps=steps, epochs=None)

    def as_dict(self) -> dict:
        """The protocol as a verification row stores it (``VerificationRecord.protocol``)."""
        if self.steps is None:
            raise ValueError("an unresolved protocol (epochs, no steps) is never stored: resolve it first")
        return {name: getattr(self, name) for name in _STORED if getattr(self, name) is not None}

    def key(self) -> str:
        """The stored rows' protocol key (``autopeft.store.verifications.protocol_key``)."""
        from autopeft.store.verifications import protocol_key

        return protocol_key(self.as_dict())

    @property
    def better(self):
        """``better(a, b)``: is metric value a better than b (direction from the task kind)."""
        from autopeft.tasks import METRIC_DIRECTIONS

        return (lambda a, b: a > b) if METRIC_DIRECTIONS[self.metric] == "max" else (lambda a, b: a < b)
