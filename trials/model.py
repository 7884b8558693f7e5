"""The trial's model: the pretrained base with its task head, wrapped by the PEFT method.

``build_model`` makes what a proxy run trains (base model, optional gradient checkpointing,
the method's wrapper, on the trial's device). Around it: the forward pass every training
step and evaluation goes through (``forward``), the frozen-prefix cache wired into the model
(``use_prefix_cache``; the cache itself is ``autopeft.trials.prefix_cache``), and IST set-up
(``make_ist``; the sampler itself is ``autopeft.trials.ist``).
"""

from __future__ import annotations

from autopeft.trials.batches import trim
from autopeft.trials.spec import TrialFailure, TrialSpec


def build_model(spec: TrialSpec, method, device):
    """The base model of ``spec`` wrapped by ``method`` (``autopeft.methods``), on ``device``."""
    base = load_base_model_for(spec)
    if spec.proxy.gradient_checkpointing:
        _enable_gradient_checkpointing(base)
    return method.wrap(base, spec.peft_config).to(device)


def load_base_model_for(spec: TrialSpec):
    """The pretrained model ``spec`` names, with the head of its task."""
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


def forward(model, batch: dict, skip):
    """The model's output on ``batch``, moved to the model's device first (CPU, CUDA or MPS:
    one code path; splits stay in host memory, one batch at a time goes to the device).

    ``skip``: the ``SkipPrefix`` of ``use_prefix_cache`` (the batch then carries the cached
    ``prefix_hidden`` states), or ``None``."""
    device = _device_of(model)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if skip is not None:
        skip.current = batch.pop("prefix_hidden")
    return model(**batch)


def _device_of(model):
    return next(model.parameters()).device


def _base_of(model):
    """The pretrained model inside ``model`` (a peft wrapper), or ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def layer_stack(model):
    """The base model's stack of transformer layers (``autopeft.assets.architecture``)."""
    from autopeft.assets.architecture import _find_layer_stack

    return _find_layer_stack(_base_of(model))[1]


def path_in_model(model, base, path: str) -> str:
    """``path`` (inside the base model) as a path inside ``model`` (a peft wrapper or itself)."""
    if model is base:
        return path
    prefix = next(name for name, module in model.named_modules() if module is base)
    return f"{prefix}.{path}" if prefix else path


def use_prefix_cache(model, spec: TrialSpec, data: dict, splits: tuple[str, ...] = ("train", "eval"),
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
    base = _base_of(model)
    states = prefix_states(model, path_in_model(model, base, layers_path), layer, {s: data[s] for s in splits},
                           Path(cache_path(spec.model, spec.data_path, layer, splits, train_rows)))
    for split in splits:
        data[split]["prefix_hidden"] = states[split]
    return SkipPrefix(model, path_in_model(model, base, layers_path), layer)


def make_ist(model, spec: TrialSpec, data: dict):
    """IST for LoRA-family trials when the spec asks for it, else ``None``; the probe batch is
    held out from the training stream (the last ``batch_size`` training examples, cut from
    ``data["train"]``)."""
    from autopeft.methods import get_method
    from autopeft.trials.ist import IST

    if not spec.proxy.ist or not get_method(spec.method).supports_ist:
        return None
    from autopeft.assets.architecture import _find_layer_stack

    layers_path = _find_layer_stack(_base_of(model))[0]
    train = data["train"]
    n_probe = min(spec.proxy.batch_size, max(1, len(train["labels"]) // 4))
    probe = trim({k: v[-n_probe:] for k, v in train.items()})
    data["train"] = {k: v[:-n_probe] for k, v in train.items()}
    return IST(model, layers_path, spec.proxy.ist.active_fraction, spec.proxy.ist.every, probe, seed=spec.proxy.seed)
