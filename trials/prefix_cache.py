"""Frozen-prefix activation cache: skip the layers below the lowest adapter.

When a candidate has no trainable parameter below layer j, the hidden states entering
layer j depend only on the frozen model and the data. They are computed once per
(model, tokenised split, j) with the prefix in eval mode, cached on disk (safetensors),
and each such trial trains layers >= j only: the prefix layers are replaced by
pass-throughs and a pre-hook on layer j feeds it the cached states of the batch.

Semantics: with the cache the frozen prefix runs without dropout (eval mode), exactly as
at evaluation time; the correctness test checks loss and logits against the uncached
eval-mode model within 1e-5. The cache is bounded: ``AUTOPEFT_PREFIX_CACHE_MB`` (default
4096 MiB) — the least recently used files are deleted when a new one would exceed it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from autopeft.assets.cache import cache_dir


class _Stop(Exception):
    """Raised by the capture hook: nothing above layer j is needed to fill the cache."""


def _pass_through():
    """A module standing in for a frozen prefix layer: returns its input hidden states.

    (transformers >= 5 layers return the hidden-states tensor itself.)"""
    import torch

    class PassThrough(torch.nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states

    return PassThrough()


def cache_path(model: str, data_path: str, layer: int, splits: tuple[str, ...] = ("train", "eval"),
               train_rows=None) -> Path:
    """Where the states entering ``layer`` of ``splits`` of a tokenised data file are cached.

    ``train_rows``: the training rows the run reads (``autopeft.trials.batches.drawn_rows``),
    when the train split was cut to them; runs of another length, batch or seed read other
    rows and get another file. None: the whole train split."""
    which = "" if set(splits) == {"train", "eval"} else "|" + ",".join(sorted(splits))
    if train_rows is not None:
        which += "|rows:" + hashlib.sha256(train_rows.numpy().astype("int64").tobytes()).hexdigest()[:16]
    key = hashlib.sha256(f"{os.path.abspath(model)}|{os.path.basename(data_path)}|{layer}{which}".encode()).hexdigest()[:24]
    return cache_dir() / "prefix" / f"{key}.safetensors"


def prefix_states(model, layers_path: str, layer: int, splits: dict, path: Path, batch_size: int = 64) -> dict:
    """The hidden states entering ``layer`` for every example of every split (cached on disk).

    Returns ``{split: tensor (n, max_length, hidden)}``; computed with the model in eval mode.
    """
    from safetensors.torch import load_file, save_file

    if path.exists():
        os.utime(path)  # LRU: a hit makes the file young again
        return load_file(str(path))
    import torch

    stack = model.get_submodule(layers_path)
    device = next(model.parameters()).device
    captured: list = []

    def capture(_module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    handle = stack[layer].register_forward_pre_hook(capture, with_kwargs=True)
    was_training = model.training
    model.eval()
    out = {}
    try:
        with torch.no_grad():
            for split, tensors in splits.items():
                chunks = []
                n = len(tensors["labels"])
                for start in range(0, n, batch_size):
                    batch = {k: v[start:start + batch_size].to(device) for k, v in tensors.items() if k != "labels"}
                    captured.clear()
                    try:
                        model(**batch)
                    except _Stop:
                        pass
                    chunks.append(captured[0].detach().float().cpu())  # host memory: splits live there
                out[split] = torch.cat(chunks).contiguous()
    finally:
        handle.remove()
        model.train(was_training)
    _make_room(path.parent, sum(t.numel() * 4 for t in out.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file(out, str(tmp))
    tmp.replace(path)  # atomic: a concurrent trial never reads half a file
    return out


def _make_room(folder: Path, incoming: int) -> None:
    limit = int(float(os.environ.get("AUTOPEFT_PREFIX_CACHE_MB", "4096")) * 1024 * 1024)
    if not folder.exists():
        return
    files = sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    used = sum(p.stat().st_size for p in files)
    while files and used + incoming > limit:
        victim = files.pop(0)
        used -= victim.stat().st_size
        victim.unlink(missing_ok=True)


class SkipPrefix:
    """Install on a model: layers below ``layer`` become pass-throughs; layer ``layer``
    receives ``self.current`` (the cached states of the batch) instead of their output."""

    def __init__(self, model, layers_path: str, layer: int) -> None:
        stack = model.get_submodule(layers_path)
        self.current = None
        self.layer = layer
        self._stack = stack
        self._skipped = {i: stack[i] for i in range(layer)}
        self._active = True
        for i in range(layer):
            stack[i] = _pass_through()
        stack[layer].register_forward_pre_hook(self._feed, with_kwargs=True)

    @contextlib.contextmanager
    def full_stack(self):
        """Run every layer again for the duration: for sequences the cache does not hold
        (answers scored after a prompt, greedy decoding). The prefix is frozen, so the model
        computes what it computed when the cache was filled."""
        for i, layer in self._skipped.items():
            self._stack[i] = layer
        self._active = False
        try:
            yield
        finally:
            for i in self._skipped:
                self._stack[i] = _pass_through()
            self._active = True

    def _feed(self, _module, args, kwargs):
        if not self._active:
            return None
        if self.current is None:
            raise RuntimeError("SkipPrefix: no cached states set for this batch")
        states, self.current = self.current, None
        if args:
            return (states, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": states}


def skippable_prefix(model, head_modules: tuple[str, ...] = ("classifier", "score")) -> tuple[str, int] | None:
    """``(layers_path, j)`` if every trainable parameter is in layers >= j (j >= 1) or in the
    task head; ``None`` otherwise (e.g. prefix tuning, whose parameters steer every layer)."""
    from autopeft.assets.architecture import _find_layer_stack

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    path, stack = _find_layer_stack(base)
    if stack is None:
        return None
    layer_of = {}
    for i, layer in enumerate(stack):
        for p in layer.parameters():
            layer_of[id(p)] = i
    lowest = len(stack)
    for name, p in base.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in layer_of:
            lowest = min(lowest, layer_of[id(p)])
        elif not any(part in head_modules for part in name.split(".")):
            return None
    if model is not base:  # peft's own parameters outside the base model (prompt encoders)
        own = {id(p) for p in base.parameters()}
        if any(p.requires_grad and id(p) not in own for p in model.parameters()):
            return None
    return (path, lowest) if 1 <= lowest < len(stack) else None
