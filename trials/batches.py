"""The order in which a run draws its training rows, and the batches made from it.

A run's batches are a pure function of (rows in the split, batch size, seed): each epoch is
a fresh ``randperm`` of the rows from one seeded generator, cut into full batches (the last
partial batch is dropped). Because the order is known before the first step, a run of S
steps can say up front which rows it will ever read — S x batch rows, not the whole split
(2,400 of 35,558 tweets at 150 x 16) — and the frozen-prefix cache computes states for those
rows only. Cutting the split to them changes no batch: the same examples arrive in the same
order (``tests/test_prefix_cache.py`` checks this against the endless stream).
"""

from __future__ import annotations

from typing import Iterator


def trim(batch: dict) -> dict:
    """Cut the padding every example of the batch has (class labels are 1-D; LM labels 2-D)."""
    length = int(batch["attention_mask"].sum(dim=1).max())
    return {k: (v[:, :length] if v.dim() >= 2 else v) for k, v in batch.items()}


def _row_stream(n: int, batch_size: int, generator) -> Iterator:
    """Endless index tensors, one per batch, in the seeded epoch order."""
    import torch

    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[start:start + batch_size]


def batches(split: dict, batch_size: int, generator) -> Iterator[dict]:
    """Endless shuffled batches of ``split``, padding trimmed to the longest example in each."""
    for rows in _row_stream(len(split["labels"]), batch_size, generator):
        yield trim({k: v[rows] for k, v in split.items()})


def drawn_rows(n: int, batch_size: int, steps: int, seed: int):
    """``(rows, schedule)`` for a run of ``steps`` batches over ``n`` rows with ``seed``.

    ``rows``: the sorted distinct row indices the run reads (a LongTensor); ``schedule``:
    one index tensor per step into ``rows`` (not into the split), so that
    ``split[rows][schedule[s]]`` is exactly the batch ``batches(split, ...)`` yields at step s.
    """
    import torch

    stream = _row_stream(n, batch_size, torch.Generator().manual_seed(seed))
    drawn = [next(stream) for _ in range(steps)]
    rows, inverse = torch.unique(torch.cat(drawn), sorted=True, return_inverse=True)
    schedule = list(torch.split(inverse, [len(d) for d in drawn]))
    return rows, schedule


def scheduled_batches(split: dict, schedule) -> Iterator[dict]:
    """The batches of ``schedule`` (from ``drawn_rows``) over a split already cut to its rows."""
    for rows in schedule:
        yield trim({k: v[rows] for k, v in split.items()})
