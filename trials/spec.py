"""The contract between the search and a trial: plain, JSON-able, frozen."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TrialSpec:
    """Everything a proxy fine-tune needs, with no reference to the search that made it.

    Attributes:
        study: Study name (for logs).
        trial: Trial number in the study.
        method: Registered autopeft method name (selects per-step hooks).
        model: Local directory or hub id of the base model.
        num_labels: Classes of the task head.
        data_path: Tokenised split (safetensors) made by ``autopeft.assets.datasets.prepare_data``.
        peft_config: ``PeftConfig.to_dict()`` of the candidate.
        learning_rate: Peak AdamW learning rate.
        steps: Optimiser steps.
        batch_size: Examples per step.
        warmup: Fraction of steps with linear warm-up, then linear decay.
        seed: Seeds the head and adapter initialisation and the data order.
        log_every: Steps per learning-curve point.
        metric: The task metric the search optimises (``accuracy`` or ``macro_f1``).
        timeout: Seconds before the trial is killed and recorded as failed.
        memory_limit_mb: Address space the trial may add to its process (None = unlimited).
        threads: Torch intra-op threads (None = all cores).
        trust_remote_code: Passed to ``from_pretrained``.
    """

    study: str
    trial: int
    method: str
    model: str
    num_labels: int
    data_path: str
    peft_config: dict
    learning_rate: float
    steps: int
    batch_size: int
    warmup: float = 0.1
    seed: int = 0
    log_every: int = 5
    metric: str = "accuracy"
    timeout: float = 1800.0
    memory_limit_mb: int | None = None
    threads: int | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    save_dir: str | None = None  # write the trained adapter here (safetensors), e.g. for export --train
    prefix_cache: bool = True  # skip frozen layers below the lowest adapter (autopeft.trials.prefix_cache)
    task: str = "classification"  # autopeft.tasks: the head the model gets and how it is scored
    rungs: tuple[int, ...] = ()  # steps at which the trial is evaluated and may be stopped (multi-fidelity)
    ist: dict | None = None  # {"active_fraction": f, "every": n}: IST sparse tuning (autopeft.trials.ist)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialSpec":
        data = json.loads(text)
        data["rungs"] = tuple(data.get("rungs") or ())
        return cls(**data)


@dataclass(frozen=True)
class TrialResult:
    """What a trial produced, whether it finished or not.

    Attributes:
        status: ``complete`` or ``failed``.
        metrics: ``accuracy``, ``macro_f1``, ``eval_loss`` on the validation split.
        curve: ``[step, mean training loss over the last log_every steps]`` points.
        trainable_params: As reported by peft after ``get_peft_model``.
        train_time: Seconds in the training loop (no model load, no evaluation).
        setup_time: Seconds before the training loop: model load, peft wrap, data, caches.
        eval_time: Seconds evaluating on the validation split (at rungs and at the end).
        wall_time: Seconds from process start to result.
        peak_rss_mb: Peak resident memory of the trial process, MiB.
        error: Why a failed trial failed (one line).
        extras: Method-specific records (e.g. AdaLoRA's final rank allocation).
    """

    status: Literal["complete", "failed", "pruned"]  # pruned: stopped at a rung (see extras["fidelity"])
    metrics: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)
    trainable_params: int | None = None
    train_time: float = 0.0
    setup_time: float = 0.0
    eval_time: float = 0.0
    wall_time: float = 0.0
    peak_rss_mb: float = 0.0
    error: str | None = None
    extras: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialResult":
        return cls(**json.loads(text))

    @classmethod
    def failed(cls, reason: str, curve: list | None = None, **kw) -> "TrialResult":
        return cls(status="failed", error=reason, curve=list(curve or []), **kw)
