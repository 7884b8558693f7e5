"""SPT sensitivity: which (layer, module) weights the task's loss is most sensitive to.

A few batches of the task run through the frozen pretrained model with its (new) task
head; for every weight of every linear module in the layer stack we accumulate the squared
gradient g² (the diagonal empirical Fisher). A module's score is the mean over its weights,
so wide FFN matrices do not win by size alone; a layer's score is the sum of its modules'.
Once per study, before any trial; the result is stored with the study and reused on resume.
"""

from __future__ import annotations

import os


def spt_sensitivity(model_location: str, num_labels: int, data_path: str, layers_path: str,
                    modules: tuple[str, ...], *, batches: int = 8, batch_size: int = 16, seed: int = 0,
                    trust_remote_code: bool = False, task: str = "classification"):
    """Return an ``ImportanceMap`` of kind ``spt`` (mean g² per weight, per layer and module)."""
    import torch

    from autopeft.importance import ImportanceMap
    from autopeft.trials.batches import batches as batch_stream
    from autopeft.trials.data import load_split
    from autopeft.trials.model import load_base_model

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    model = load_base_model(model_location, task, num_labels, trust_remote_code=trust_remote_code)
    model.eval()  # no dropout: the sensitivity of the model as it is, not of a noisy copy
    stack = model.get_submodule(layers_path)
    weights = {(i, m): stack[i].get_submodule(m).weight for i in range(len(stack)) for m in modules}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    fisher = {key: torch.zeros((), dtype=torch.float64) for key in weights}
    split = load_split(data_path)["train"]
    stream = batch_stream(split, batch_size, torch.Generator().manual_seed(seed))
    for _ in range(batches):
        model.zero_grad(set_to_none=True)
        model(**next(stream)).loss.backward()
        for key, w in weights.items():
            fisher[key] += w.grad.double().pow(2).mean()
    scores = tuple(tuple(float(fisher[(i, m)] / batches) for m in modules) for i in range(len(stack)))
    return ImportanceMap("spt", tuple(modules), scores, note=f"mean squared gradient per weight over {batches} batches of {batch_size}")
