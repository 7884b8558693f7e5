"""Deterministic, stratified train / validation / test splits of a labelled table's rows."""

from __future__ import annotations

import numpy as np


def three_way_split(labels: np.ndarray, n_train: int, n_eval: int, n_test: int, seed: int):
    """``(train, eval, test)`` indices: the test split is carved first, stratified by ``seed``.

    Carving it first makes it depend only on the data, ``n_test`` and the seed: every proxy
    size of a study, and every verification of it, sees the same test examples, and no
    training or validation example is ever among them. ``n_test`` is at most a third of the rows.
    """
    if n_test <= 0:
        train, evals = stratified_split(labels, n_train, n_eval, seed)
        return train, evals, np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 7])  # its own stream: the test carve never shifts with the other sizes
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    take = _apportion({c: len(p) for c, p in pools.items()}, min(n_test, len(labels) // 3))
    test = np.sort(np.concatenate([pools[c][: take[c]] for c in classes]))
    rest = np.setdiff1d(np.arange(len(labels)), test)
    train, evals = stratified_split(labels[rest], n_train, n_eval, seed)
    return rest[train], rest[evals], test


def test_size(n_rows: int, test_examples) -> int:
    """How many rows the test split takes: an int, or a fraction of the rows (``0.2``)."""
    if isinstance(test_examples, float):
        return int(round(test_examples * n_rows))
    return int(test_examples)


def stratified_split(labels: np.ndarray, n_train: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the same labels and seed give the same indices.

    Each class contributes in proportion to its frequency (largest remainders get the
    rounding), first to validation, then to training from what is left.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    total = len(labels)
    n_eval = min(n_eval, total // 2)
    n_train = min(n_train, total - n_eval)
    eval_take = _apportion({c: len(p) for c, p in pools.items()}, n_eval)
    eval_idx = np.concatenate([pools[c][: eval_take[c]] for c in classes])
    rest = {c: pools[c][eval_take[c]:] for c in classes}
    train_take = _apportion({c: len(p) for c, p in rest.items()}, n_train)
    train_idx = np.concatenate([rest[c][: train_take[c]] for c in classes])
    return rng.permutation(train_idx), np.sort(eval_idx)


def _apportion(sizes: dict, n: int) -> dict:
    total = sum(sizes.values())
    exact = {c: n * s / total for c, s in sizes.items()}
    take = {c: min(sizes[c], int(v)) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: exact[c] - int(exact[c]), reverse=True):
        if sum(take.values()) >= n:
            break
        if take[c] < sizes[c]:
            take[c] += 1
    return take
