"""The proxy fine-tune: real model, real peft, real data; short.

AdamW with linear warm-up and decay, gradient clipping at 1.0, the method's per-step hook
(AdaLoRA's ``update_and_allocate``), a learning curve, then accuracy, macro-F1 and loss on
the validation split (loss and perplexity for causal LM). A non-finite loss ends the trial
as failed. Optional: the frozen-prefix cache (``autopeft.trials.prefix_cache``), IST sparse tuning
(``autopeft.trials.ist``), multi-fidelity rungs at which the parent may stop the trial, and a
checkpoint at each rung that a later run resumes from (``autopeft.trials.checkpoint``).

This module is the training loop and its rung decisions. The model it trains is built by
``autopeft.trials.model``, its data read by ``autopeft.trials.data`` (batches:
``autopeft.trials.batches``), its metrics computed by ``autopeft.trials.evaluation``.
"""

from __future__ import annotations

import collections
import math
import os
import time
from pathlib import Path
from typing import Callable

from autopeft.store import trial_extras
from autopeft.trials import checkpoint
from autopeft.trials.batches import drawn_rows, scheduled_batches
from autopeft.trials.data import load_split
from autopeft.trials.device import peak_rss_mb
from autopeft.trials.evaluation import trial_metrics
from autopeft.trials.model import build_model, forward, layer_stack, make_ist, use_prefix_cache
from autopeft.trials.spec import TrialFailure, TrialResult, TrialSpec

Emit = Callable[[dict], None]
#: Asked at each rung with (step, validation metrics): go on training?
Decide = Callable[[int, dict], bool]
#: Steps whose mean training loss a rung reports as ``train_loss``.
TRAIN_LOSS_WINDOW = 10


def run_proxy(spec: TrialSpec, emit: Emit = lambda event: None, decide: Decide | None = None) -> TrialResult:
    """Fine-tune ``spec`` in this process and evaluate it.

    Args:
        spec: What to train.
        emit: Called with ``{"kind": "curve", "step": s, "loss": l}`` as training goes, so a
            parent process keeps the partial curve if this one dies.
        decide: Asked at each of ``spec.proxy.rungs`` (below ``spec.proxy.steps``) with the validation
            metrics there, and ``train_loss``, the mean training loss of the last
            ``TRAIN_LOSS_WINDOW`` steps; ``False`` stops the trial as ``pruned`` at that fidelity.
    """
    started = time.perf_counter()
    placement = _set_up_process(spec)
    from autopeft.methods import get_method

    method = get_method(spec.method)
    model = build_model(spec, method, placement.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    data = load_split(spec.data_path)
    if not spec.test_split:
        data.pop("test", None)  # the search never reads it (nor caches states for it)
    if spec.proxy.runner:  # the user's function trains; everything around it is the same
        return _run_user(spec, model, placement, data, method, emit, started, _count(trainable))
    run = _Training(spec, method, model, placement, trainable, data, started)
    pruned = run.train(emit, decide)
    return pruned if pruned is not None else run.finish()


def _set_up_process(spec: TrialSpec):
    """The trial process made ready to train: library chatter off, the thread count, the
    device placement (``autopeft.trials.device``) with its peak memory reset, the seed."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation chatter, not trial news

    from autopeft.assets.models import quiet_transformers
    from autopeft.trials.device import DeviceUnavailable, resolve

    quiet_transformers()
    # The spec carries the thread count (autopeft.search.prepare.trial_spec resolves it).
    torch.set_num_threads(spec.proxy.threads or os.cpu_count() or 1)
    try:
        placement = resolve(spec.proxy.device, spec.proxy.precision)  # here, in the trial process
    except DeviceUnavailable as e:
        raise TrialFailure(str(e)) from e
    placement.reset_peak_memory()
    torch.manual_seed(spec.proxy.seed)
    return placement


class _Training:
    """One proxy run once its model and data are loaded: the training stream, the optimiser
    and its schedule, the curve, the clocks, and the evaluations at rungs and at the end."""

    def __init__(self, spec: TrialSpec, method, model, placement, trainable: list, data: dict, started: float):
        self.spec, self.method, self.model, self.placement = spec, method, model, placement
        self.trainable, self.n_trainable, self.data, self.started = trainable, _count(trainable), data, started
        self.diagnostics: dict = {}  # what tells a collapsed run, from the validation split
        # The last steps' losses: a rung's smoothed training loss (one batch's loss is too noisy to rank by).
        self.recent: collections.deque = collections.deque(maxlen=TRAIN_LOSS_WINDOW)
        self.eval_time = 0.0
        schedule = self._prepare_data()
        self._prepare_optimizer()
        self.batches = scheduled_batches(data["train"], schedule[self.start:])

    def _prepare_data(self) -> list:
        """Per split, what answer scoring reads; IST's probe batch held out; the train split cut
        to the rows the run reads; the frozen-prefix cache attached. Returns the batch schedule
        (``autopeft.trials.batches.drawn_rows``)."""
        from autopeft.trials.generative import load_gen

        spec, data = self.spec, self.data
        self.gens = {split: load_gen(spec.data_path, split) if spec.task == "causal_lm" else {}
                     for split in data if split != "train"}
        self.ist = make_ist(self.model, spec, data)
        # IST changes which layers train step by step, so no layer is reliably frozen below.
        # The run reads steps x batch rows of the train split, known before the first step:
        # the split is cut to them, so nothing (the prefix cache above all) works on the rest.
        rows, schedule = drawn_rows(len(data["train"]["labels"]), spec.proxy.batch_size, spec.proxy.steps, spec.proxy.seed)
        data["train"] = {k: v[rows] for k, v in data["train"].items()}
        self.skip = None
        if spec.proxy.prefix_cache and self.ist is None:
            # Answer scoring runs whole sequences the cache does not hold; when it also yields the
            # validation loss, the validation split's states would never be read: not computed.
            splits = tuple(split for split in data if split == "train" or not self.gens[split].get("loss_from_choices"))
            with self.placement.autocast():  # the states the uncached trial's own (autocast) forward computes
                self.skip = use_prefix_cache(self.model, spec, data, splits, train_rows=rows)
        return schedule

    def _prepare_optimizer(self) -> None:
        """AdamW, the loss scaler, the learning-rate schedule, and the step, curve and losses
        to go on from: a resumed checkpoint's, else none."""
        import torch

        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.spec.learning_rate, weight_decay=0.0)
        self.scaler = self.placement.grad_scaler()  # fp16 on CUDA only
        self.scheduler = _schedule(self.optimizer, self.spec.proxy)
        self.start, self.curve, self.window = 0, [], []
        self.resume = _resume(self.spec, self.method, self.ist, self.scaler, self.model, self.optimizer, self.scheduler)
        if "state" in self.resume:  # the checkpoint's step, curve and unaveraged losses: go on from there
            self.start, self.curve, self.window = self.resume.pop("state")

    def train(self, emit: Emit, decide: Decide | None) -> TrialResult | None:
        """Train to ``spec.proxy.steps``: the ``pruned`` result if ``decide`` stops the run at a
        rung, else ``None`` (``finish`` then evaluates it)."""
        spec = self.spec
        self.model.train()
        self.t0 = time.perf_counter()
        self.setup_time = self.t0 - self.started
        for step in range(self.start + 1, spec.proxy.steps + 1):
            loss = self._step(step)
            self._record(step, loss, emit)
            self.recent.append(loss)
            at_rung = step in spec.proxy.rungs and step < spec.proxy.steps
            if decide is not None and at_rung:
                rung_metrics = {**self.evaluate(), "train_loss": sum(self.recent) / len(self.recent)}
                if not decide(step, rung_metrics):
                    return self._result("pruned", rung_metrics, self._train_time(), {**trial_extras.stopped_extras(step), **self.resume})
            # After the rung's decision, never before: a checkpoint at a rung then means "recorded
            # there and promoted", so a run resumed from it never skips a rung's judgement.
            if spec.checkpoint_dir and at_rung:
                checkpoint.save(Path(spec.checkpoint_dir) / f"step-{step}", step=step, model=self.model,
                                optimizer=self.optimizer, scheduler=self.scheduler, curve=self.curve, window=self.window)
        return None

    def _step(self, step: int) -> float:
        """One optimiser step on the next batch; its loss (a non-finite one fails the trial)."""
        import torch

        model, skip = self.model, self.skip
        with self.placement.autocast():
            if self.ist is not None:
                self.ist.before_step(step, lambda batch: forward(model, batch, skip))
            loss = forward(model, next(self.batches), skip).loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrialFailure(f"non-finite loss ({value}) at step {step}")
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        self.method.on_step(model, step)
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def _record(self, step: int, value: float, emit: Emit) -> None:
        """The learning curve: the mean loss of every ``log_every`` steps (and of the last
        ones), emitted point by point."""
        self.window.append(value)
        if step % self.spec.proxy.log_every == 0 or step == self.spec.proxy.steps:
            point = [step, sum(self.window) / len(self.window)]
            self.window.clear()
            self.curve.append(point)
            emit({"kind": "curve", "step": point[0], "loss": point[1]})

    def evaluate(self, split: str = "eval") -> dict:
        """The metrics on ``split`` (``autopeft.trials.evaluation.trial_metrics``), timed as evaluation."""
        e0 = time.perf_counter()
        with self.placement.autocast():
            metrics = trial_metrics(self.model, self.spec, self.data[split], self.gens[split], skip=self.skip,
                                    diagnostics=self.diagnostics if split == "eval" else None,
                                    outcomes=split == "test")  # runs are compared pairwise on test
        self.eval_time += time.perf_counter() - e0
        return metrics

    def _train_time(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_time  # rung evaluations are evaluation, not training

    def finish(self) -> TrialResult:
        """The run trained to the end: its metrics (the test split's too when it was kept), what
        the method, the prefix cache and IST record, the weights saved if ``spec.save_dir``."""
        train_time = self._train_time()
        model, method = self.model, self.method
        extras = {**method.summary(model), **self.resume}
        if self.skip is not None:  # recorded: what the trial's forward passes did not recompute
            extras = {**extras, "prefix_cache_skipped_layers": self.skip.layer}
        if self.ist is not None:
            self.ist.finish()
            extras = {**extras, "importance": self.ist.importance(len(layer_stack(model))),
                      "ist_active_steps": self.ist.active_counts}
        metrics = self.evaluate()
        extras = {**extras, **self.diagnostics}
        test_metrics = self.evaluate("test") if "test" in self.data else {}
        if self.spec.save_dir:
            method.save_weights(model, self.spec.save_dir)
        return self._result("complete", metrics, train_time, extras, test_metrics=test_metrics)

    def _result(self, status: str, metrics: dict, train_time: float, extras: dict, **more) -> TrialResult:
        return TrialResult(
            status=status, metrics=metrics, curve=self.curve, trainable_params=self.n_trainable,
            train_time=train_time, setup_time=self.setup_time, eval_time=self.eval_time,
            wall_time=time.perf_counter() - self.started, peak_rss_mb=peak_rss_mb(), extras=extras,
            **more, **_memory(self.placement),
        )


def _count(trainable: list) -> int:
    return int(sum(p.numel() for p in trainable))


def _schedule(optimizer, proxy):
    """Warm-up (``warmup_steps``, else the ``warmup`` fraction of ``steps``), then linear decay
    to 0 at ``steps`` or a constant rate (transformers' own schedules)."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = proxy.warmup_steps if proxy.warmup_steps is not None else int(proxy.warmup * proxy.steps)
    if proxy.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_linear_schedule_with_warmup(optimizer, warmup, proxy.steps)


def _resume(spec: TrialSpec, method, ist, scaler, model, optimizer, scheduler) -> dict:
    """What to record about resuming, with the restored ``state`` (step, curve, window) when
    ``spec.resume_from`` was read. A checkpoint that cannot be read is no crash: the run
    trains from step 0 and ``resume_failed`` records why."""
    if not (spec.checkpoint_dir or spec.resume_from):
        return {}
    why = ("its method's per-step hook keeps state of its own" if method.stateful_steps else
           "IST samples layers with state of its own" if ist is not None else
           "fp16 loss scaling is not saved" if scaler is not None else None)
    if why:
        raise TrialFailure(f"checkpoint/resume: {spec.method} cannot be resumed exactly ({why})")
    if not spec.resume_from:
        return {}
    try:
        state = checkpoint.load(spec.resume_from, model=model, optimizer=optimizer, scheduler=scheduler)
    except checkpoint.CheckpointError as e:
        return {"resume_failed": f"{e}; trained from step 0"}
    return {"resumed_from": state[0], "state": state}


def _run_user(spec: TrialSpec, model, placement, data: dict, method, emit: Emit, started: float,
              n_trainable: int) -> TrialResult:
    """The trial trained by ``spec.proxy.runner`` (``autopeft.trials.user_runner``)."""
    from autopeft.trials.user_runner import run_user

    t0 = time.perf_counter()
    metrics, test_metrics, curve = run_user(spec, model, placement, data, emit)
    train_time = time.perf_counter() - t0  # the runner's evaluation included: it is one call
    if spec.save_dir:
        method.save_weights(model, spec.save_dir)
    return TrialResult(
        status="complete", metrics=metrics, curve=curve, trainable_params=n_trainable, train_time=train_time,
        setup_time=t0 - started, wall_time=time.perf_counter() - started, peak_rss_mb=peak_rss_mb(),
        extras={**method.summary(model), "runner": spec.proxy.runner}, test_metrics=test_metrics,
        **_memory(placement),
    )


def _memory(placement) -> dict:
    peak, kind = placement.peak_memory_mb()
    return {"peak_memory_mb": peak, "memory_kind": kind, "device": placement.device}
