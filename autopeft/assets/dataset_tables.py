"""A data set's rows as a labelled table, ready to split.

Rows with empty text or no label are skipped and counted (that is the documented behaviour,
not an error); a missing column is an error that lists the columns there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from autopeft.assets.dataset_sources import DatasetRef, GivenTestError, load_dataset
from autopeft.errors import AssetError

if TYPE_CHECKING:  # annotations only: assets sit below the space DSL, which compiles these specs
    from autopeft.space.schema import TaskSpec


@dataclass(frozen=True)
class LabelledTable:
    """Rows ready to split: text columns, integer labels, and the label names in id order."""

    texts: tuple[tuple[str, ...], ...]  # one tuple per text column (instruction data: prompts, completions)
    labels: np.ndarray
    label_names: tuple[str, ...]
    skipped: int
    #: Instruction data: the answer set (``labels`` index it); empty when there is none.
    choices: tuple[str, ...] = ()


def load_table(ref: DatasetRef, task: TaskSpec, *, one_class: bool = False) -> LabelledTable:
    """Rows with non-empty text (and, for classification, a label); the others are counted.

    A language-modelling task has no labels: every row gets label 0 and no label names.
    Instruction data (prompt/completion, chats) is checked row by row
    (``autopeft.assets.instruct.check_rows``) and labelled by its answer, so that the split
    is stratified by answer. ``one_class``: a single class is allowed (a given test file).
    """
    ds = load_dataset(ref)
    columns = list(ds.column_names)
    if task.instruction:
        from autopeft.assets.instruct import check_rows

        rows = check_rows(ref.name, ds, task)
        return LabelledTable((rows.prompts, rows.completions), rows.labels, (), rows.skipped, rows.choices)
    if task.type != "classification":
        return _text_table(ref, ds, task, columns)
    for col in (*task.text, task.label):
        if col not in columns:
            raise AssetError(
                f"dataset '{ref.name}' has no column '{col}' (task.text / task.label); columns: {columns}"
            )
    table = ds.select_columns([*dict.fromkeys((*task.text, task.label))]).to_dict()  # plain lists: fast to index
    cols = [table[c] for c in task.text]
    raw_labels = table[task.label]
    keep = [
        i for i in range(len(raw_labels))
        if raw_labels[i] is not None and all(isinstance(c[i], str) and c[i].strip() for c in cols)
    ]
    if not keep:
        raise AssetError(f"dataset '{ref.name}': no row has both non-empty text and a label")
    names = sorted({str(raw_labels[i]) for i in keep}, key=_natural)
    if len(names) < 2 and not one_class:
        raise AssetError(f"dataset '{ref.name}': column '{task.label}' has one class ({names[0]!r}); need at least 2")
    index = {n: k for k, n in enumerate(names)}
    return LabelledTable(
        texts=tuple(tuple(c[i] for i in keep) for c in cols),
        labels=np.array([index[str(raw_labels[i])] for i in keep], dtype=np.int64),
        label_names=tuple(names),
        skipped=len(raw_labels) - len(keep),
    )


def load_test_table(ref: DatasetRef, task: TaskSpec, table: LabelledTable) -> LabelledTable:
    """The rows of the given test file, labelled in ``table``'s terms (its label names or answers).

    Raises:
        GivenTestError: the file cannot be read, lacks a column, has no usable row, or has a
            label (answer) the data set does not have.
    """
    try:
        given = load_table(ref, task, one_class=True)
    except AssetError as e:
        raise GivenTestError(str(e)) from e
    if task.type == "classification":
        known, theirs, what = table.label_names, given.label_names, "labels"
    elif table.choices:
        known, theirs, what = table.choices, given.choices, "answers"
        if not theirs:
            raise GivenTestError(f"'{ref.name}': its completions are not an answer set like the data set's "
                                 f"({list(known)})")
    else:  # a corpus, or open answers: nothing to map
        return LabelledTable(given.texts, np.zeros(len(given.labels), dtype=np.int64), table.label_names,
                             given.skipped, table.choices)
    unknown = [n for n in theirs if n not in known]
    if unknown:
        raise GivenTestError(f"'{ref.name}' has {what} the data set does not have: {unknown} (the data set's: {list(known)})")
    index = {n: k for k, n in enumerate(known)}
    labels = np.array([index[theirs[k]] for k in given.labels], dtype=np.int64)
    return LabelledTable(given.texts, labels, table.label_names, given.skipped, table.choices)


def _text_table(ref: DatasetRef, ds, task: TaskSpec, columns: list) -> LabelledTable:
    for col in task.text:
        if col not in columns:
            raise AssetError(f"dataset '{ref.name}' has no column '{col}' (task.text); columns: {columns}")
    table = ds.select_columns(list(dict.fromkeys(task.text))).to_dict()
    cols = [table[c] for c in task.text]
    keep = [i for i in range(len(cols[0])) if all(isinstance(c[i], str) and c[i].strip() for c in cols)]
    if not keep:
        raise AssetError(f"dataset '{ref.name}': no row has non-empty text in {list(task.text)}")
    return LabelledTable(tuple(tuple(c[i] for i in keep) for c in cols), np.zeros(len(keep), dtype=np.int64), (),
                         len(cols[0]) - len(keep))


def _natural(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)
