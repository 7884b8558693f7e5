"""A training run's state at a step, saved so that a later process resumes it exactly.

What a step s leaves behind and step s + 1 needs: the trainable tensors, AdamW's moments
and step counts, the learning-rate schedule's position, the torch RNG (dropout), the
learning curve so far and the losses not yet averaged into it. The batch order needs
nothing: it is a function of the seed (``autopeft.trials.batches``), so a resumed run
takes the schedule from step s on. Resuming, then training to step S, gives the run that
trained to S without stopping (``tests/test_checkpoint.py``: equal to 1e-5).

On disk: one folder per checkpoint, ``tensors.safetensors`` (trainable weights, optimizer
moments, RNG) and ``state.json`` (step, schedule, curve, optimizer hyper-parameters), written
to a temporary folder and renamed into place, so a killed writer leaves no half checkpoint
under the final name. No pickle: both files are plain data.

Methods whose per-step hook keeps state of its own (AdaLoRA's rank allocator) and IST
(its layer sampler) are not checkpointed: ``save`` refuses them in one line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from autopeft.trials.spec import TrialFailure

FORMAT = 1


class CheckpointError(TrialFailure):
    """A checkpoint that cannot be written or read; the message says which and why."""


def save(folder: str | os.PathLike, *, step: int, model, optimizer, scheduler, curve: list, window: list) -> Path:
    """Write the run's state after ``step`` into ``folder`` (replacing an older one there)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    names = _trainable_names(model)
    tensors = {f"param.{name}": p.detach().contiguous().cpu() for name, p in names.items()}
    state = optimizer.state_dict()
    index = _positions(optimizer)
    by_name = {index[id(p)]: name for name, p in names.items() if id(p) in index}
    moments: dict = {}
    for i, values in state["state"].items():
        plain = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{by_name[i]}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain[key] = value
        moments[by_name[i]] = plain
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": FORMAT, "step": step, "curve": curve, "window": window,
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]],
        "order": [by_name[i] for i in sorted(by_name)], "plain": moments,
        "scheduler": scheduler.state_dict(),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"checkpoint at step {step} could not be written to {folder}: {e}") from e
    return folder


def load(folder: str | os.PathLike, *, model, optimizer, scheduler) -> tuple[int, list, list]:
    """Restore the state saved in ``folder`` into a freshly built run; ``(step, curve, window)``.

    Raises:
        CheckpointError: missing, unreadable or written for another model or optimizer.
    """
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / "tensors.safetensors"))
    except Exception as e:  # missing files, bad JSON, or safetensors' own error type for a truncated file
        raise CheckpointError(f"checkpoint {folder} cannot be read: {type(e).__name__}: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {folder} has format {meta.get('format')}, expected {FORMAT}")
    names = _trainable_names(model)
    saved = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    if set(saved) != set(names) or any(saved[n].shape != p.shape for n, p in names.items()):
        raise CheckpointError(f"checkpoint {folder} holds other trainable tensors than this run "
                              f"({len(saved)} saved, {len(names)} here): not this trial's checkpoint")
    with torch.no_grad():
        for name, p in names.items():
            p.copy_(tensors[f"param.{name}"])
    index = _positions(optimizer)
    state = {}
    for name in meta["order"]:
        values = dict(meta["plain"].get(name, {}))
        prefix = f"optim.{name}."
        values.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        state[index[id(names[name])]] = values
    groups = [dict(g, params=[index[id(p)] for p in group["params"]])
              for g, group in zip(meta["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), [list(point) for point in meta["curve"]], list(meta["window"])


def _trainable_names(model) -> dict:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _positions(optimizer) -> dict:
    """``id(parameter) -> its index`` in the optimizer's state dict (params in group order)."""
    return {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
