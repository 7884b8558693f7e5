"""Split and tokenise a data set once for a model, into a file every trial reads.

The file (safetensors, under the cache directory) is keyed on everything that changes its
contents: the model's and the data's fingerprints, the task's columns, the split sizes, the
seed and the maximum length. A second study with the same key reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from autopeft.assets.cache import cache_dir
from autopeft.assets.dataset_sources import DatasetRef, keyed
from autopeft.assets.dataset_tables import LabelledTable, load_table, load_test_table
from autopeft.assets.instruction_arrays import instruction_arrays
from autopeft.assets.models import ModelRef
from autopeft.assets.splits import stratified_split, test_size, three_way_split
from autopeft.assets.tokenizer import load_tokenizer, pad_id
from autopeft.errors import AssetError

if TYPE_CHECKING:  # annotations only: assets sit below the space DSL, which compiles these specs
    from autopeft.space.schema import ProxySpec, TaskSpec

_PREPARED_VERSION = 3  # 2: instruction data (left-truncated prompts, gen.* arrays); 3: a test split


@dataclass(frozen=True)
class PreparedData:
    """A tokenised train/validation split on disk (safetensors), shared by every trial.

    Attributes:
        skipped: Rows left out of the data set (empty text or prompt, no label).
        choices: Instruction data: the answer set ``choice_accuracy`` chooses among.
        too_long: Instruction data: drawn examples dropped because their completion alone
            fills ``proxy.max_length`` (``n_train`` / ``n_eval`` are what is left).
        template: Instruction data: ``chat`` or ``plain``, as rendered.
    """

    path: str
    num_labels: int
    label_names: tuple[str, ...]
    n_train: int
    n_eval: int
    skipped: int
    fingerprint: str
    choices: tuple[str, ...] = ()
    too_long: int = 0
    template: str | None = None
    n_test: int = 0  # the held-out test split (``autopeft verify`` only)
    #: ``carved`` from the data set (``verify.test_examples``), or ``given`` (``task.test``).
    test_source: str = "carved"
    #: Why rows were skipped: ``(reason, count)`` pairs (``LabelledTable.skipped_why``).
    skipped_why: tuple[tuple[str, int], ...] = ()


#: The fewest examples the train or the validation split may hold (fewer when the space asks
#: fewer): below it a proxy's score says nothing about the candidate, and a search on it would
#: end blaming the training ("every completed trial diverged") for what is the data's fault.
MIN_SPLIT = 8


def split_sizes(n_rows: int, n_train: int, n_eval: int, n_test: int) -> tuple[int, int, int]:
    """``(train, validation, test)`` sizes ``three_way_split`` gives ``n_rows`` rows (before
    stratification's rounding): the test split first (at most a third), then validation (at
    most half of the rest), then training from what is left."""
    test = min(n_test, n_rows // 3) if n_test > 0 else 0
    rest = n_rows - test
    evals = min(n_eval, rest // 2)
    return min(n_train, rest - evals), evals, test


def check_split_sizes(name: str, n_rows: int, skipped: int, proxy: ProxySpec, test_examples: int | float = 0,
                      test_cap: int = 2000, given_test: bool = False) -> tuple[int, int, int]:
    """The split sizes ``n_rows`` usable rows give; refuse data too small to split as asked.

    Raises:
        AssetError: (at ``task.dataset``) when the train or the validation split would hold
            fewer than :data:`MIN_SPLIT` examples (or than the space asks, if that is fewer):
            one line naming the data set, the rows found and the rows needed.
    """
    def sizes(n: int) -> tuple[int, int, int]:
        n_test = 0 if given_test else min(test_size(n, test_examples), test_cap)
        return split_sizes(n, proxy.train_examples, proxy.eval_examples, n_test)

    floor = (min(proxy.train_examples, MIN_SPLIT), min(proxy.eval_examples, MIN_SPLIT))
    got = sizes(n_rows)
    if got[0] >= floor[0] and got[1] >= floor[1]:
        return got
    needed = next(n for n in range(n_rows + 1, 100 * sum(floor) + 100)
                  if sizes(n)[0] >= floor[0] and sizes(n)[1] >= floor[1])
    full = next((n for n in range(needed, 10 * (proxy.train_examples + proxy.eval_examples) + 100)
                 if sizes(n)[:2] == (proxy.train_examples, proxy.eval_examples)), None)
    test = "" if given_test else f" / {got[2]} test"
    raise keyed(AssetError(
        f"dataset '{name}': too small to split: {n_rows} usable row{'s' if n_rows != 1 else ''}"
        + (f" ({skipped} skipped)" if skipped else "") + f" give {got[0]} train / {got[1]} validation{test}; "
        f"it needs at least {needed} rows ({floor[0]} train and {floor[1]} validation examples)"
        + (f", {full} for the sizes asked (proxy.train_examples {proxy.train_examples}, "
           f"proxy.eval_examples {proxy.eval_examples})" if full else "")), "task.dataset")


def prepare_data(model: ModelRef, dataset: DatasetRef, task: TaskSpec, proxy: ProxySpec,
                 test_examples: int | float = 0, test_cap: int = 2000, test: DatasetRef | None = None) -> PreparedData:
    """Split and tokenise once per (model, data, split, max length); reuse the file afterwards.

    Three splits: ``train`` and ``eval`` (validation: what the search selects on) as big as
    ``proxy`` asks, and ``test`` (``test_examples`` rows or that fraction of them, at most
    ``test_cap``), which only ``autopeft verify`` reads (``three_way_split``). A ``test``
    file (``task.test``) is the test split instead, whole: train and validation are then drawn
    from the whole data set, and ``test_examples`` / ``test_cap`` are not used.

    Raises:
        GivenTestError: the ``test`` file cannot serve (``load_test_table``).

    Instruction data also gets, for the validation split, what generative metrics need
    (``gen.*``: each prompt's length, the gold answer's index, the answers' token ids).
    """
    tokenizer = None
    if task.instruction and task.template is None:
        from dataclasses import replace

        from autopeft.assets.instruct import resolve_template

        tokenizer = load_tokenizer(model)
        task = replace(task, template=resolve_template(task, tokenizer, model.name, "task"))
    key = json.dumps(
        [_PREPARED_VERSION, model.fingerprint, dataset.fingerprint, task.type, task.text, task.label,
         proxy.train_examples, proxy.eval_examples, proxy.max_length, proxy.seed, test_examples, test_cap]
        + ([task.messages, task.template, list(task.choices)] if task.instruction else [])
        + ([["test", test.fingerprint]] if test is not None else [])
    )
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = cache_dir() / "data" / f"{fingerprint}.safetensors"
    if path.exists():
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = json.loads(f.metadata()["autopeft"])
        return PreparedData(str(path), len(meta["label_names"]), tuple(meta["label_names"]),
                            meta["n_train"], meta["n_eval"], meta["skipped"], fingerprint,
                            tuple(meta.get("choices", ())), meta.get("too_long", 0), meta.get("template"),
                            meta.get("n_test", 0), meta.get("test_source", "carved"),
                            tuple(tuple(w) for w in meta.get("skipped_why", ())))

    table = load_table(dataset, task)
    check_split_sizes(dataset.name, len(table.labels), table.skipped, proxy, test_examples, test_cap,
                      given_test=test is not None)
    if test is None:
        n_test = min(test_size(len(table.labels), test_examples), test_cap)
        train_idx, eval_idx, test_idx = three_way_split(table.labels, proxy.train_examples, proxy.eval_examples,
                                                        n_test, proxy.seed)
    else:  # the given file after the data set's rows: one table, indexed as usual
        given = load_test_table(test, task, table)
        n_rows = len(table.labels)
        train_idx, eval_idx = stratified_split(table.labels, proxy.train_examples, proxy.eval_examples, proxy.seed)
        test_idx = np.arange(n_rows, n_rows + len(given.labels))
        table = LabelledTable(tuple(a + b for a, b in zip(table.texts, given.texts)),
                              np.concatenate([table.labels, given.labels]), table.label_names, table.skipped,
                              table.choices, table.skipped_why)
    tokenizer = tokenizer or load_tokenizer(model)
    arrays = {}
    meta: dict = {"label_names": list(table.label_names), "skipped": table.skipped,
                  "skipped_why": [list(w) for w in table.skipped_why],
                  "test_source": "carved" if test is None else "given"}
    if task.instruction:
        sizes = instruction_arrays(arrays, meta, tokenizer, task.template, table, train_idx, eval_idx, proxy.max_length,
                                   test_idx)
    else:
        sizes = {"train": len(train_idx), "eval": len(eval_idx), "test": len(test_idx)}
    splits = (("train", train_idx), ("eval", eval_idx)) + ((("test", test_idx),) if len(test_idx) else ())
    for split, idx in (() if task.instruction else splits):
        columns = [[col[i] for i in idx] for col in table.texts]
        if task.type == "classification":
            enc = tokenizer(*columns, truncation=True, max_length=proxy.max_length, padding="max_length", return_tensors="np")
            arrays[f"{split}.input_ids"] = enc["input_ids"].astype(np.int64)
            arrays[f"{split}.attention_mask"] = enc["attention_mask"].astype(np.int64)
            if "token_type_ids" in enc:
                arrays[f"{split}.token_type_ids"] = enc["token_type_ids"].astype(np.int64)
            arrays[f"{split}.labels"] = table.labels[idx]
        else:
            ids, mask, labels = _lm_arrays(tokenizer, columns[0], proxy.max_length)
            arrays.update({f"{split}.input_ids": ids, f"{split}.attention_mask": mask, f"{split}.labels": labels})
    meta.update(n_train=sizes["train"], n_eval=sizes["eval"], n_test=sizes.get("test", 0))
    if sizes["eval"] < 1 or sizes["train"] < 1:
        raise AssetError(f"dataset '{dataset.name}': no drawn example fits proxy.max_length={proxy.max_length} "
                         f"({meta.get('too_long', 0)} completions alone are that long); raise proxy.max_length")
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file(arrays, str(tmp), metadata={"autopeft": json.dumps(meta)})
    tmp.replace(path)  # atomic: concurrent workers never read a half-written file
    return PreparedData(str(path), len(table.label_names), table.label_names, sizes["train"], sizes["eval"],
                        table.skipped, fingerprint, tuple(meta.get("choices", ())), meta.get("too_long", 0),
                        meta.get("template"), sizes.get("test", 0), meta["test_source"], table.skipped_why)


def _lm_arrays(tokenizer, texts: list[str], max_length: int):
    """Token ids, mask and labels for a plain corpus, right-padded to ``max_length``: every
    token is a target (text longer than ``max_length`` is cut at the end)."""
    pad = pad_id(tokenizer)
    n = len(texts)
    ids = np.full((n, max_length), pad, dtype=np.int64)
    mask = np.zeros((n, max_length), dtype=np.int64)
    labels = np.full((n, max_length), -100, dtype=np.int64)
    for row, tokens in enumerate(tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        labels[row, : len(tokens)] = tokens
    return ids, mask, labels
