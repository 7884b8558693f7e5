"""Models and data sets: resolution, loading, the stratified split, and the tokenised cache."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from autopeft.assets.datasets import load_table, prepare_data, resolve_dataset, stratified_split
from autopeft.assets.models import resolve_model
from autopeft.errors import AssetError
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec

# ------------------------------------------------------------------------------ stratified split


def imbalanced_labels(n=1000, seed=123):
    # 50% / 30% / 15% / 5%, shuffled
    counts = [n // 2, n * 3 // 10, n * 15 // 100]
    counts.append(n - sum(counts))
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(seed).permutation(labels)


def test_split_is_deterministic_for_a_seed():
    labels = imbalanced_labels()
    a = stratified_split(labels, 300, 120, seed=7)
    b = stratified_split(labels, 300, 120, seed=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_split_sizes_and_disjointness():
    labels = imbalanced_labels()
    train, evals = stratified_split(labels, 300, 120, seed=0)
    assert len(train) == 300 and len(evals) == 120
    assert len(set(train.tolist())) == 300 and len(set(evals.tolist())) == 120  # no repeats
    assert not set(train.tolist()) & set(evals.tolist())
    assert train.min() >= 0 and max(train.max(), evals.max()) < len(labels)


@pytest.mark.parametrize("n_train, n_eval", [(300, 120), (97, 31), (10, 7)])
def test_split_is_stratified_within_one_example(n_train, n_eval):
    labels = imbalanced_labels()
    train, evals = stratified_split(labels, n_train, n_eval, seed=3)
    share = np.bincount(labels) / len(labels)
    for idx, n in ((train, n_train), (evals, n_eval)):
        counts = np.bincount(labels[idx], minlength=len(share))
        assert np.all(np.abs(counts - share * n) <= 1), (counts, share * n)


def test_different_seeds_give_different_splits():
    labels = imbalanced_labels()
    a_train, a_eval = stratified_split(labels, 300, 120, seed=0)
    b_train, b_eval = stratified_split(labels, 300, 120, seed=1)
    assert set(a_eval.tolist()) != set(b_eval.tolist())
    assert set(a_train.tolist()) != set(b_train.tolist())


def test_split_larger_than_the_data_is_clipped():
    labels = imbalanced_labels(n=40)
    train, evals = stratified_split(labels, 1000, 1000, seed=0)
    # At most half goes to validation, the rest to training, nothing twice.
    assert len(evals) == 20 and len(train) == 20
    assert not set(train.tolist()) & set(evals.tolist())


# ------------------------------------------------------------------------------ tables


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


ROWS = [
    ("what a lovely morning", "pos"),
    ("", "neg"),  # empty text: skipped and counted
    ("the train was late again", "neg"),
    ("meeting moved to three", "neu"),
    ("best concert of the year", "pos"),
    ("i want my money back", "neg"),
    ("the shop opens at nine", "neu"),
]


def test_load_table_from_a_local_csv(tmp_path):
    ref = resolve_dataset(str(write_csv(tmp_path / "d.csv", ROWS)))
    assert ref.kind == "file"
    table = load_table(ref, TaskSpec(ref.name, ("text",), "label"))
    assert table.skipped == 1
    kept = [r for r in ROWS if r[0]]
    assert table.texts == (tuple(t for t, _ in kept),)
    assert table.label_names == tuple(sorted({lab for _, lab in kept}))
    assert [table.label_names[i] for i in table.labels] == [lab for _, lab in kept]


def test_missing_column_lists_the_columns(tmp_path):
    ref = resolve_dataset(str(write_csv(tmp_path / "d.csv", ROWS, header=("sentence", "label"))))
    with pytest.raises(AssetError) as info:
        load_table(ref, TaskSpec(ref.name, ("text",), "label"))
    msg = str(info.value)
    assert "'text'" in msg and "sentence" in msg and "label" in msg and "d.csv" in msg


def test_fingerprint_follows_the_content(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    before = resolve_dataset(str(path)).fingerprint
    assert resolve_dataset(str(path)).fingerprint == before
    write_csv(path, ROWS + [("one more row", "pos")])
    assert resolve_dataset(str(path)).fingerprint != before


def test_bbc_news_alias_has_five_classes():
    ref = resolve_dataset("bbc-news")
    assert ref.kind == "bundled"
    table = load_table(ref, TaskSpec("bbc-news", ("text",), "label"))
    assert len(table.label_names) == 5
    assert set(np.unique(table.labels).tolist()) == set(range(5))
    assert len(table.labels) > 1000


@pytest.mark.parametrize("name", ["/nonexistent/data.csv", "./missing.csv", "missing.jsonl"])
def test_nonexistent_local_dataset(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssetError, match="no such file"):
        resolve_dataset(name)


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    with pytest.raises(AssetError, match="unsupported file type"):
        resolve_dataset(str(path))


def test_nonexistent_local_model(tmp_path):
    with pytest.raises(AssetError, match="no such directory"):
        resolve_model(ModelSpec(str(tmp_path / "nope")))
    with pytest.raises(AssetError, match="no config.json"):
        resolve_model(ModelSpec(str(tmp_path)))  # exists, but is not a model directory


def test_bundled_model_alias_resolves_to_a_local_directory(model_ref):
    assert model_ref.local and os.path.isfile(os.path.join(model_ref.location, "config.json"))
    again = resolve_model(ModelSpec("minilm-l6"))
    assert again.fingerprint == model_ref.fingerprint


# ------------------------------------------------------------------------------ the hub, offline

_HUB_PROBE = """
import sys, time
from autopeft.errors import AssetError
t0 = time.perf_counter()
try:
    {call}
except AssetError as e:
    msg = str(e)
    assert "\\n" not in msg, msg
    print("ASSET-ERROR", round(time.perf_counter() - t0, 1), msg)
    sys.exit(0)
print("NO ERROR")
sys.exit(1)
"""


@pytest.mark.parametrize(
    "call, name",
    [
        ("from autopeft.assets.models import resolve_model; from autopeft.space.schema import ModelSpec; "
         "resolve_model(ModelSpec('autopeft-test-org/no-such-model'))", "autopeft-test-org/no-such-model"),
        ("from autopeft.assets.datasets import resolve_dataset, load_dataset; "
         "load_dataset(resolve_dataset('autopeft-test-org/no-such-data'))", "autopeft-test-org/no-such-data"),
    ],
    ids=["model", "dataset"],
)
def test_hub_id_without_network_fails_fast_with_an_asset_error(call, name, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _HUB_PROBE.format(call=call)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "ASSET-ERROR" in result.stdout and name in result.stdout
    assert time.monotonic() - started < 60


# ------------------------------------------------------------------------------ prepared data


def _rows(n):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    return [(" ".join(words[(i + j) % 6] for j in range(3 + i % 4)), ("a", "b", "c")[i % 3]) for i in range(n)]


def test_prepare_data_writes_safetensors_and_reuses_them(tmp_path, monkeypatch, model_ref):
    from safetensors.numpy import load_file

    import autopeft.assets.prepared_data as prepared_mod

    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))
    ref = resolve_dataset(str(write_csv(tmp_path / "d.csv", _rows(60))))
    task = TaskSpec(ref.name, ("text",), "label")
    proxy = ProxySpec(train_examples=24, eval_examples=12, max_length=16, seed=0)

    first = prepare_data(model_ref, ref, task, proxy)
    assert first.path.startswith(str(tmp_path / "cache")) and first.path.endswith(".safetensors")
    assert (first.n_train, first.n_eval, first.num_labels) == (24, 12, 3)
    assert first.label_names == ("a", "b", "c")
    arrays = load_file(first.path)
    assert arrays["train.input_ids"].shape == (24, 16) and arrays["eval.input_ids"].shape == (12, 16)
    assert arrays["train.attention_mask"].shape == (24, 16)
    assert sorted(np.bincount(arrays["eval.labels"]).tolist()) == [4, 4, 4]  # stratified

    mtime = os.stat(first.path).st_mtime_ns

    def no_reload(*a, **k):
        raise AssertionError("prepare_data re-read the data set although the prepared file exists")

    monkeypatch.setattr(prepared_mod, "load_table", no_reload)
    monkeypatch.setattr(prepared_mod, "load_tokenizer", no_reload)
    second = prepare_data(model_ref, ref, task, proxy)
    assert second == first
    assert os.stat(second.path).st_mtime_ns == mtime


def test_prepare_data_key_changes_with_what_changes_the_data(tmp_path, monkeypatch, model_ref):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))
    path = write_csv(tmp_path / "d.csv", _rows(40))
    ref = resolve_dataset(str(path))
    task = TaskSpec(ref.name, ("text",), "label")
    proxy = ProxySpec(train_examples=12, eval_examples=6, max_length=8, seed=0)
    base = prepare_data(model_ref, ref, task, proxy).path
    other_seed = prepare_data(model_ref, ref, task, ProxySpec(train_examples=12, eval_examples=6, max_length=8, seed=1))
    assert other_seed.path != base
    write_csv(path, _rows(41))
    assert prepare_data(model_ref, resolve_dataset(str(path)), task, proxy).path != base
