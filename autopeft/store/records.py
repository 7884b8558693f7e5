"""Frozen records read from and written to the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

from autopeft.candidate import Candidate
from autopeft.store import trial_extras
from autopeft.store.trial_extras import Diagnostics, Rung, TargetSummary


@dataclass(frozen=True)
class StudyRecord:
    """A study's metadata.

    Attributes:
        objectives: ``[[name, "max"|"min"], ...]`` in the study's objective order.
        trials_target: Trained trials (complete + failed) the study asks for.
        budget_params: The trainable-parameter cap in parameters (None = none).
        splits: The data splits trials and ``verify`` use: ``{"train", "eval", "test"}``
            example counts, ``seed``, ``test_source`` (``carved`` or ``given``) and the
            prepared data's ``fingerprint``; None until the data is prepared.
    """

    name: str
    created_at: datetime
    space_yaml: str
    space_hash: str
    objectives: tuple[tuple[str, str], ...]
    trials_target: int
    model: str
    model_fingerprint: str
    dataset: str
    data_fingerprint: str
    budget_params: int | None = None
    importance: dict | None = None
    autopeft_version: str = ""
    splits: dict | None = None


#: complete: trained and evaluated. failed: crashed, timed out, OOM or non-finite loss.
#: infeasible: over budget (or not buildable); never trained. running: in progress.
#: pruned: stopped at a multi-fidelity rung (``TrialRecord.stopped_at`` is the step).
TRIAL_STATUSES = ("running", "complete", "failed", "infeasible", "pruned")


@dataclass(frozen=True)
class Resources:
    """What a trial's run cost (None: not measured, e.g. a trial never trained).

    Attributes:
        wall_time, train_time, setup_time, eval_time, cpu_time: Seconds.
        peak_rss_mb: The trial process's resident peak, MiB.
        peak_memory_mb: The device's own peak, MiB (``memory_kind`` says which one it is).
        memory_kind: ``cpu_peak_rss``, ``cuda_max_allocated`` ... (``autopeft.trials.spec.TrialResult``).
        device: Where the trial ran (``cpu``, ``cuda:0``, ``mps``).
    """

    wall_time: float | None = None
    train_time: float | None = None
    setup_time: float | None = None
    eval_time: float | None = None
    cpu_time: float | None = None
    peak_rss_mb: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    device: str | None = None

    @property
    def peak_memory_mib(self) -> float | None:
        """The peak as every view reports it: the device's own figure when it was measured, else
        the process's resident peak; None if neither."""
        return self.peak_memory_mb or self.peak_rss_mb

    @classmethod
    def of(cls, result) -> "Resources":
        """The resources of a ``TrialResult``."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(cls)})

    @classmethod
    def from_json(cls, data: dict | None) -> "Resources":
        """From the stored JSON (keys a newer version wrote are not read)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def to_json(self) -> dict:
        """The stored JSON: the measured fields only."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as autopeft records it.

    Attributes:
        number: Optuna's trial number in the study.
        candidate: The decoded candidate (a dict given here, as the store's JSON is, is read
            into a :class:`Candidate`).
        params: The raw optuna parameters the candidate was decoded from.
        peft_config: JSON of the peft config (None when it could not be built).
        trainable_params: Analytic count before training; peft's count after.
        metrics: Task metrics on the validation split.
        values: Objective values in study order (None unless complete).
        curve: ``[[step, loss], ...]``.
        resources: What the run cost (:class:`Resources`; a dict given here, as the store's
            JSON is, is read into one).
        extras: What the trial recorded beside its metrics, as stored (JSON): method-specific
            records, divergence diagnostics, and the keys read by the typed properties below
            (``role``, ``stopped_at``, ``rungs``, ``probes``, ``target``, ``retry_of``,
            ``retried_as``, ``rank_allocation``, ``checkpoint_dir``, ``verified``, ``diagnostics``; parsed in
            ``autopeft.store.trial_extras``), which code outside the store reads instead.
        error: Why the trial failed or was infeasible.
        sampler_time: Seconds the sampler took to propose this trial.
    """

    study: str
    number: int
    status: str
    candidate: Candidate
    params: dict
    started_at: datetime
    peft_config: dict | None = None
    trainable_params: int | None = None
    metrics: dict = field(default_factory=dict)
    values: list | None = None
    curve: list = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    extras: dict = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None
    sampler_time: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.resources, Resources):  # the store's JSON, or None from an old row
            object.__setattr__(self, "resources", Resources.from_json(self.resources))
        if not isinstance(self.candidate, Candidate):  # the store's JSON
            object.__setattr__(self, "candidate", Candidate.from_json(self.candidate))

    @property
    def peak_memory_mib(self) -> float | None:
        """The trial's peak memory in MiB as every view reports it (the ``peak_memory_mib``
        column of the API and the dashboard, the optuna and MLflow attributes)."""
        return self.resources.peak_memory_mib

    # What extras holds, typed (None or empty when missing or of an older shape).
    @property
    def role(self) -> str | None:
        """The role of a reference trial the study enqueued (``default LoRA``, ``cheapest``)."""
        return trial_extras.role(self.extras)

    @property
    def stopped_at(self) -> int | None:
        """The step a pruned trial stopped at (its fidelity)."""
        return trial_extras.stopped_at(self.extras)

    @property
    def rungs(self) -> tuple[Rung, ...]:
        """The rungs the trial was judged at, in order."""
        return trial_extras.rungs(self.extras)

    @property
    def probes(self) -> tuple[Rung, ...]:
        """The evaluations that placed the study's rungs (``rungs: auto``), not judged."""
        return trial_extras.probes(self.extras)

    @property
    def target(self) -> TargetSummary | None:
        """The summary over the trial's seeds at the target (None before any, or without a target)."""
        return trial_extras.target(self.extras)

    @property
    def retry_of(self) -> int | None:
        """The trial this one re-runs (its point, queued again)."""
        return trial_extras.trial_number(self.extras, trial_extras.RETRY_OF)

    @property
    def retried_as(self) -> int | None:
        """The trial that re-runs this one (then this one does not count against the budget)."""
        return trial_extras.trial_number(self.extras, trial_extras.RETRIED_AS)

    @property
    def rank_allocation(self) -> dict[str, float]:
        """AdaLoRA's final ``{module path: rank}`` (a copy; empty for other methods)."""
        return trial_extras.rank_allocation(self.extras)

    @property
    def checkpoint_dir(self) -> str | None:
        """The folder of the trial's checkpoints (a study with a target that resumes re-runs)."""
        return trial_extras.checkpoint_dir(self.extras)

    @property
    def verified(self) -> bool:
        """Whether the record's values are verify's test means, not its proxy run's
        (``autopeft.search.analysis.trust.verified_records``)."""
        return trial_extras.verified(self.extras)

    @property
    def diagnostics(self) -> Diagnostics:
        """What the trial reported for judging whether it diverged."""
        return Diagnostics.from_extras(self.extras)
