"""The proxy fine-tune: real model, real peft, real data; short.

AdamW with linear warm-up and decay, gradient clipping at 1.0, the method's per-step hook
(AdaLoRA's ``update_and_allocate``), a learning curve, then accuracy, macro-F1 and loss on
the validation split (loss and perplexity for causal LM). A non-finite loss ends the trial
as failed. Optional: the frozen-prefix cache (``autopeft.trials.prefix_cache``), IST sparse tuning
(``autopeft.trials.ist``), multi-fidelity rungs at which the parent may stop the trial, and a
checkpoint at each rung that a later run resumes from (``autopeft.trials.checkpoint``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Callable

from autopeft.trials import checkpoint
from autopeft.trials.batches import drawn_rows, scheduled_batches, trim
from autopeft.trials.device import peak_rss_mb
from autopeft.trials.spec import TrialFailure, TrialResult, TrialSpec

Emit = Callable[[dict], None]
#: Asked at each rung with (step, validation metrics): go on training?
Decide = Callable[[int, dict], bool]


def run_proxy(spec: TrialSpec, emit: Emit = lambda event: None, decide: Decide | None = None) -> TrialResult:
    """Fine-tune ``spec`` in this process and evaluate it.

    Args:
        spec: What to train.
        emit: Called with ``{"kind": "curve", "step": s, "loss": l}`` as training goes, so a
            parent process keeps the partial curve if this one dies.
        decide: Asked at each of ``spec.proxy.rungs`` (below ``spec.proxy.steps``) with the validation
            metrics there; ``False`` stops the trial as ``pruned`` at that fidelity.
    """
    started = time.perf_counter()
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation chatter, not trial news

    from autopeft.assets.models import quiet_transformers
    from autopeft.methods import get_method
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
    method = get_method(spec.method)
    base = _load_base_model(spec)
    if spec.proxy.gradient_checkpointing:
        _enable_gradient_checkpointing(base)
    model = method.wrap(base, spec.peft_config).to(placement.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = int(sum(p.numel() for p in trainable))
    data = _load_split(spec.data_path)
    if not spec.test_split:
        data.pop("test", None)  # the search never reads it (nor caches states for it)
    if spec.proxy.runner:  # the user's function trains; everything around it is the same
        return _run_user(spec, model, placement, data, method, emit, started, n_trainable)
    from autopeft.trials.generative import generative_metrics, load_gen

    gens = {split: load_gen(spec.data_path, split) if spec.task == "causal_lm" else {} for split in data if split != "train"}
    ist = _make_ist(model, spec, data)
    # IST changes which layers train step by step, so no layer is reliably frozen below.
    # The run reads steps x batch rows of the train split, known before the first step:
    # the split is cut to them, so nothing (the prefix cache above all) works on the rest.
    rows, schedule = drawn_rows(len(data["train"]["labels"]), spec.proxy.batch_size, spec.proxy.steps, spec.proxy.seed)
    data["train"] = {k: v[rows] for k, v in data["train"].items()}
    skip = None
    if spec.proxy.prefix_cache and ist is None:
        # Answer scoring runs whole sequences the cache does not hold; when it also yields the
        # validation loss, the validation split's states would never be read: not computed.
        splits = tuple(split for split in data if split == "train" or not gens[split].get("loss_from_choices"))
        with placement.autocast():  # the states the uncached trial's own (autocast) forward computes
            skip = _use_prefix_cache(model, spec, data, splits, train_rows=rows)

    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0)
    scaler = placement.grad_scaler()  # fp16 on CUDA only
    scheduler = _schedule(optimizer, spec.proxy)
    curve: list = []
    window: list[float] = []
    start = 0
    resume = _resume(spec, method, ist, scaler, model, optimizer, scheduler)
    if "state" in resume:  # the checkpoint's step, curve and unaveraged losses: go on from there
        start, curve, window = resume.pop("state")
    batches = scheduled_batches(data["train"], schedule[start:])
    model.train()
    t0 = time.perf_counter()
    setup_time = t0 - started
    eval_time = 0.0

    diagnostics: dict = {}

    def timed_evaluate(split: str = "eval") -> dict:
        nonlocal eval_time
        e0 = time.perf_counter()
        with placement.autocast():
            metrics = generative_metrics(
                model, data[split], gens[split], metric=spec.metric, max_new_tokens=spec.max_new_tokens,
                tokenizer_location=spec.model, batch_size=max(64, spec.proxy.batch_size),
                full_stack=skip.full_stack if skip is not None else contextlib.nullcontext,
                # Scored by its answers, a run answering one thing has collapsed (autopeft.search.divergence);
                # a loss-scored run is judged by its loss, whatever its answers.
                diagnostics=diagnostics if split == "eval" and spec.metric == "choice_accuracy" else None,
            )
            if "eval_loss" not in metrics:  # answer scoring did not yield it: one pass of its own
                metrics.update(evaluate(model, data[split], spec.num_labels,
                                        batch_size=max(32, spec.proxy.batch_size * 2), skip=skip,
                                        diagnostics=diagnostics if split == "eval" else None))
        eval_time += time.perf_counter() - e0
        return metrics

    for step in range(start + 1, spec.proxy.steps + 1):
        with placement.autocast():
            if ist is not None:
                ist.before_step(step, lambda batch: _forward(model, batch, skip))
            loss = _forward(model, next(batches), skip).loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrialFailure(f"non-finite loss ({value}) at step {step}")
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        method.on_step(model, step)
        optimizer.zero_grad(set_to_none=True)
        window.append(value)
        if step % spec.proxy.log_every == 0 or step == spec.proxy.steps:
            point = [step, sum(window) / len(window)]
            window.clear()
            curve.append(point)
            emit({"kind": "curve", "step": point[0], "loss": point[1]})
        if decide is not None and step in spec.proxy.rungs and step < spec.proxy.steps:
            rung_metrics = timed_evaluate()
            if not decide(step, rung_metrics):
                return TrialResult(
                    status="pruned", metrics=rung_metrics, curve=curve, trainable_params=n_trainable,
                    train_time=time.perf_counter() - t0 - eval_time, setup_time=setup_time, eval_time=eval_time,
                    wall_time=time.perf_counter() - started, peak_rss_mb=peak_rss_mb(), extras={"fidelity": step, **resume},
                    **_memory(placement),
                )
        # After the rung's decision, never before: a checkpoint at a rung then means "recorded
        # there and promoted", so a run resumed from it never skips a rung's judgement.
        if spec.checkpoint_dir and step in spec.proxy.rungs and step < spec.proxy.steps:
            checkpoint.save(Path(spec.checkpoint_dir) / f"step-{step}", step=step, model=model, optimizer=optimizer,
                            scheduler=scheduler, curve=curve, window=window)
    train_time = time.perf_counter() - t0 - eval_time  # rung evaluations are evaluation, not training
    extras = {**method.summary(model), **resume}
    if skip is not None:  # recorded: what the trial's forward passes did not recompute
        extras = {**extras, "prefix_cache_skipped_layers": skip.layer}
    if ist is not None:
        ist.finish()
        extras = {**extras, "importance": ist.importance(len(_stack(model))), "ist_active_steps": ist.active_counts}
    metrics = timed_evaluate()
    extras = {**extras, **diagnostics}
    test_metrics = timed_evaluate("test") if "test" in data else {}
    if spec.save_dir:
        method.save_weights(model, spec.save_dir)
    return TrialResult(
        status="complete",
        metrics=metrics,
        curve=curve,
        trainable_params=n_trainable,
        train_time=train_time,
        setup_time=setup_time,
        eval_time=eval_time,
        wall_time=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
        extras=extras,
        test_metrics=test_metrics,
        **_memory(placement),
    )


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


def _enable_gradient_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass (transformers' own mechanism).

    Non-reentrant checkpointing needs no input that requires grad, so it works with frozen
    embeddings under peft; decoders must not build a KV cache while training.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise TrialFailure(f"gradient checkpointing: {type(model).__name__} does not support it; "
                           "set proxy.gradient_checkpointing: false")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False


def _stack(model):
    from autopeft.assets.architecture import _find_layer_stack

    return _find_layer_stack(model.get_base_model() if hasattr(model, "get_base_model") else model)[1]


def _make_ist(model, spec: TrialSpec, data: dict):
    """IST for LoRA-family trials when the spec asks for it; the probe batch is held out
    from the training stream (the last ``batch_size`` training examples)."""
    from autopeft.methods import get_method
    from autopeft.trials.ist import IST

    if not spec.proxy.ist or not get_method(spec.method).supports_ist:
        return None
    from autopeft.assets.architecture import _find_layer_stack

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers_path = _find_layer_stack(base)[0]
    train = data["train"]
    n_probe = min(spec.proxy.batch_size, max(1, len(train["labels"]) // 4))
    probe = trim({k: v[-n_probe:] for k, v in train.items()})
    data["train"] = {k: v[:-n_probe] for k, v in train.items()}
    return IST(model, layers_path, spec.proxy.ist.active_fraction, spec.proxy.ist.every, probe, seed=spec.proxy.seed)


def _use_prefix_cache(model, spec: TrialSpec, data: dict, splits: tuple[str, ...] = ("train", "eval"),
                      train_rows=None):
    """Attach the cached states entering the lowest adapted layer to ``splits`` and make
    the model skip the layers below it; ``None`` when the candidate cannot skip any.

    ``train_rows``: the rows of the tokenised train split that ``data["train"]`` was cut
    to (``autopeft.trials.batches.drawn_rows``); part of the cache key."""
    from pathlib import Path

    from autopeft.trials.prefix_cache import SkipPrefix, cache_path, prefix_states, skippable_prefix

    found = skippable_prefix(model)
    if found is None:
        return None
    layers_path, layer = found
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    states = prefix_states(model, _relative(model, base, layers_path), layer, {s: data[s] for s in splits},
                           Path(cache_path(spec.model, spec.data_path, layer, splits, train_rows)))
    for split in splits:
        data[split]["prefix_hidden"] = states[split]
    return SkipPrefix(model, _relative(model, base, layers_path), layer)


def _relative(model, base, path: str) -> str:
    """``path`` (inside the base model) as a path inside ``model`` (a peft wrapper or itself)."""
    if model is base:
        return path
    prefix = next(name for name, module in model.named_modules() if module is base)
    return f"{prefix}.{path}" if prefix else path


def _forward(model, batch: dict, skip):
    """The model's output on ``batch``, moved to the model's device first (CPU, CUDA or MPS:
    one code path; splits stay in host memory, one batch at a time goes to the device)."""
    device = _device_of(model)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if skip is not None:
        skip.current = batch.pop("prefix_hidden")
    return model(**batch)


def _device_of(model):
    return next(model.parameters()).device


def _load_base_model(spec: TrialSpec):
    return load_base_model(spec.model, spec.task, spec.num_labels, trust_remote_code=spec.trust_remote_code,
                           revision=spec.revision)


def load_base_model(location: str, task: str, num_labels: int, *, trust_remote_code: bool = False, revision=None):
    """The pretrained model with the head of ``task`` (``autopeft.tasks``)."""
    from autopeft.tasks import task_kind

    kind = task_kind(task)
    model = kind.auto().from_pretrained(
        location, trust_remote_code=trust_remote_code, revision=revision, **kind.model_kwargs(num_labels)
    )
    if getattr(model.config, "pad_token_id", None) is None and getattr(model.config, "eos_token_id", None) is not None:
        model.config.pad_token_id = model.config.eos_token_id  # decoder heads need a pad id to pool
    return model


def _load_split(path: str) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(path)
    out: dict = {"train": {}, "eval": {}, "test": {}}
    for key, value in tensors.items():
        split, name = key.split(".", 1)
        if split in out:  # gen.*, gentest.*: what generative metrics need (autopeft.trials.generative.load_gen)
            out[split][name] = value
    if not out["test"]:
        del out["test"]  # data prepared without a test split
    return out


def evaluate(model, split: dict, num_labels: int, batch_size: int = 64, skip=None, diagnostics: dict | None = None) -> dict:
    """Accuracy, macro-F1 (mean over classes of F1, 0 for a class never predicted nor
    present) and mean cross-entropy on ``split``; for language modelling (2-D labels), the
    token-weighted loss and its perplexity.

    ``diagnostics``, if given, receives ``predicted_classes`` (how many classes the model
    predicts at all) and ``majority_rate`` (the accuracy of always answering the most frequent
    class): a run that predicts one class has collapsed, whatever its accuracy looks like."""
    import torch

    if split["labels"].dim() == 2:
        return _evaluate_lm(model, split, batch_size, skip)

    model.eval()
    preds, losses = [], []
    n = len(split["labels"])
    # Batches of similar length: each batch is trimmed to its longest example, so sorting
    # by length cuts the padding the model computes on (measured: benchmarks/overhead.py).
    order = torch.argsort(split["attention_mask"].sum(dim=1), stable=True)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            batch = trim({k: v[rows] for k, v in split.items()})
            out = _forward(model, batch, skip)
            losses.append(float(out.loss) * len(batch["labels"]))
            preds.append(out.logits.argmax(dim=-1).cpu())
    model.train()
    pred = torch.empty_like(split["labels"])
    pred[order] = torch.cat(preds)
    gold = split["labels"]
    if diagnostics is not None:
        diagnostics["predicted_classes"] = int(pred.unique().numel())
        diagnostics["majority_rate"] = float(torch.bincount(gold).max()) / max(len(gold), 1)
    return {
        "accuracy": float((pred == gold).float().mean()),
        "macro_f1": macro_f1(pred.tolist(), gold.tolist(), num_labels),
        "eval_loss": sum(losses) / n,
    }


def _evaluate_lm(model, split: dict, batch_size: int, skip) -> dict:
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(split["labels"]), batch_size):
            batch = trim({k: v[start:start + batch_size] for k, v in split.items()})
            n = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels by one
            if n:
                total += float(_forward(model, batch, skip).loss) * n
                tokens += n
    model.train()
    loss = total / max(tokens, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def macro_f1(pred: list[int], gold: list[int], num_labels: int) -> float:
    scores = []
    for c in range(num_labels):
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / num_labels
