"""The contract between the search and a trial: plain, JSON-able, frozen; and
``TrialFailure``, the one-line reason a trial gives when it cannot go on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Protocol


class TrialFailure(Exception):
    """The trial cannot go on; the message is the recorded reason."""


@dataclass(frozen=True)
class IstSpec:
    """IST sparse tuning for LoRA-family trials: train ``active_fraction`` of the adapted
    layers per step, chosen by importance learned from probes every ``every`` steps."""

    active_fraction: float = 0.25
    every: int = 10


#: Learning-rate schedules after warm-up (``ProxySpec.schedule``).
SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class ProxySpec:
    """A short fine-tune that stands in for the real one.

    Attributes:
        train_examples: Training examples drawn (stratified) from the data set.
        eval_examples: Validation examples the metric is measured on.
        steps: Optimiser steps per trial.
        batch_size: Examples per step.
        max_length: Tokens per example after truncation.
        warmup: Fraction of steps with linear warm-up.
        schedule: The learning rate after warm-up: ``linear`` decays to 0 at ``steps``;
            ``constant`` holds it, so a run's first s steps do not depend on its length (a
            short run is a prefix of a long one, as ``autopeft.trials.checkpoint`` resumes).
        warmup_steps: Warm-up length in steps, instead of the ``warmup`` fraction: what a
            ``constant`` schedule needs for its prefixes not to depend on the length either.
        seed: Seed of the split, the data order and the adapter initialisation.
        log_every: Steps between learning-curve points.
        timeout: Seconds before a trial is stopped and recorded as failed.
        memory_limit_mb: Address-space cap of the trial process (None = none).
        threads: Torch threads per trial. None in a space means: ``$AUTOPEFT_THREADS`` if set
            (``autopeft search --workers N`` sets it to cores / N for its workers), else all
            cores; ``trial_spec`` resolves it, so a TrialSpec always carries the number.
        prefix_cache: Skip (and cache) the frozen layers below a trial's lowest adapter.
        ist: IST sparse tuning for LoRA-family methods (None = off).
        rungs: Steps at which a trial is judged against the others (multi-fidelity).
        auto_rungs: ``rungs: auto`` in a space: the rungs are placed while the study runs,
            after its reference run has begun to learn (``autopeft.search.fidelity.placement``);
            ``rungs`` then holds the probe or placed steps of one trial.
        signal: What a rung judges by (``autopeft.search.fidelity.signals``): ``eval_loss``,
            ``train_loss`` or a task metric.
        eta: At each rung, the best 1/eta of the trials there (by non-dominated sorting) go on.
        device: Where trials run: ``auto`` (CUDA, else MPS, else CPU; resolved in the trial
            process), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``autopeft.trials.device``).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast (weights stay fp32).
        gradient_checkpointing: Recompute activations in the backward pass: less memory,
            about a third more compute.
        runner: ``package.module:function`` that trains the trial instead of the built-in
            loop (``autopeft.trials.user_runner``); None = the built-in trainer.
    """

    train_examples: int = 800
    eval_examples: int = 300
    steps: int = 30
    batch_size: int = 16
    max_length: int = 64
    warmup: float = 0.1
    schedule: str = "linear"
    warmup_steps: int | None = None
    seed: int = 0
    log_every: int = 5
    timeout: float = 1800.0
    memory_limit_mb: int | None = None
    threads: int | None = None
    prefix_cache: bool = True
    ist: IstSpec | None = None
    rungs: tuple[int, ...] = ()
    auto_rungs: bool = False
    signal: str = "eval_loss"
    eta: int = 3
    device: str = "auto"
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    runner: str | None = None


@dataclass(frozen=True)
class TrialSpec:
    """Everything a proxy fine-tune needs, with no reference to the search that made it.

    Built by ``autopeft.search.prepare.trial_spec`` (the one place that maps a prepared
    search and a candidate to a trial); the proxy settings travel as one nested ``ProxySpec``.

    Attributes:
        study: Study name (for logs).
        trial: Trial number in the study (a seed index for ``export --train``).
        method: Registered autopeft method name (selects per-step hooks).
        model: Local directory or hub id of the base model.
        num_labels: Classes of the task head (0 for a causal LM).
        data_path: Tokenised split (safetensors) made by ``autopeft.assets.prepared_data.prepare_data``.
        peft_config: ``PeftConfig.to_dict()`` of the candidate.
        learning_rate: Peak AdamW learning rate.
        proxy: How the trial trains: steps, batch, warm-up, seed, threads, limits, caches,
            IST, rungs (only the rungs below ``proxy.steps`` are kept).
        metric: The task metric the search optimises (``accuracy``, ``eval_loss`` ...).
        task: ``autopeft.tasks``: the head the model gets and how it is scored.
        trust_remote_code: Passed to ``from_pretrained``.
        revision: The model revision (hub models pinned by the space).
        save_dir: Write the trained adapter here (safetensors), e.g. for ``export --train``.
        max_new_tokens: Greedy-decoding cap of ``exact_match`` (instruction data).
        test_split: Also score the held-out test split (``autopeft verify``; a search never does).
        checkpoint_dir: Save the run's state (``autopeft.trials.checkpoint``) at each of
            ``proxy.rungs`` below ``proxy.steps``, as ``checkpoint_dir/step-N``.
        resume_from: A checkpoint folder of this run to go on from instead of step 0; the
            steps before it are not trained again.
    """

    study: str
    trial: int
    method: str
    model: str
    num_labels: int
    data_path: str
    peft_config: dict
    learning_rate: float
    proxy: ProxySpec = field(default_factory=lambda: ProxySpec())
    metric: str = "accuracy"
    task: str = "classification"
    trust_remote_code: bool = False
    revision: str | None = None
    save_dir: str | None = None
    max_new_tokens: int = 16
    test_split: bool = False
    checkpoint_dir: str | None = None
    resume_from: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialSpec":
        data = json.loads(text)
        proxy = dict(data.pop("proxy"))
        proxy["rungs"] = tuple(proxy.get("rungs") or ())
        proxy["ist"] = IstSpec(**proxy["ist"]) if proxy.get("ist") else None
        return cls(**data, proxy=ProxySpec(**proxy))


@dataclass(frozen=True)
class TrialResult:
    """What a trial produced, whether it finished or not.

    Attributes:
        status: ``complete`` or ``failed``.
        metrics: ``accuracy``, ``macro_f1``, ``eval_loss`` on the validation split.
        test_metrics: The same on the held-out test split, when the spec asked for it.
        curve: ``[step, mean training loss over the last log_every steps]`` points.
        trainable_params: As reported by peft after ``get_peft_model``.
        train_time: Seconds in the training loop (no model load, no evaluation).
        setup_time: Seconds before the training loop: model load, peft wrap, data, caches.
        eval_time: Seconds evaluating on the validation split (at rungs and at the end).
        wall_time: Seconds from process start to result.
        cpu_time: CPU seconds (user + system, all threads) the trial process used: what a
            search costs on shared cores, whatever else the machine was doing.
        peak_rss_mb: Peak resident memory of the trial process, MiB.
        peak_memory_mb: Peak memory of the device the trial ran on, MiB (``memory_kind`` says
            which figure: ``cpu_peak_rss``, ``cuda_max_allocated``, ``mps_current_allocated``).
        device: The device the trial ran on (``cpu``, ``cuda:0``, ``mps``).
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
    cpu_time: float = 0.0
    peak_rss_mb: float = 0.0
    test_metrics: dict = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    memory_kind: str = "cpu_peak_rss"
    device: str = "cpu"
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


#: A rung callback: ``on_rung(step, metrics) -> go on?``, called by a runner at each of
#: ``spec.proxy.rungs`` below ``spec.proxy.steps`` with the metrics measured there.
OnRung = Callable[[int, dict], bool]


class Runner(Protocol):
    """What trains a trial: ``run_isolated``, a user's runner, or a fake in tests.

    Called as ``runner(spec)`` when the trial has no rungs, ``runner(spec, on_rung=judge)`` when
    it has: the runner asks ``judge`` at each rung and returns ``status="pruned"`` with the rung's
    metrics (``extras["fidelity"]`` = the step) when it says stop.
    """

    def __call__(self, spec: TrialSpec, on_rung: OnRung | None = None) -> TrialResult: ...
