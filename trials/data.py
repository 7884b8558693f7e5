"""A trial's data: the splits of a prepared data file (``autopeft.assets.prepared_data`` writes it).

One safetensors file holds every split, its tensors named ``<split>.<name>``
(``train.input_ids``, ``eval.labels``, ...). ``load_split`` reads the tokenised splits a
trial trains and evaluates on; the ``gen.*`` / ``gentest.*`` tensors that generative metrics
need are read by ``autopeft.trials.generative.load_gen``. The order in which a run draws its
training rows, and the batches made from them, are ``autopeft.trials.batches``.
"""

from __future__ import annotations


def load_split(path: str) -> dict:
    """``{"train": {...}, "eval": {...}, "test": {...}}`` of the file at ``path``: per split,
    its tensors by name; no ``test`` when the data was prepared without a test split."""
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
