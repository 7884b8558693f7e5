"""A data set's rows as a labelled table, ready to split.

Rows with empty text or no label are skipped and counted (that is the documented behaviour,
not an error); a missing column is an error that lists the columns there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from autopeft.assets.dataset_sources import DatasetRef, GivenTestError, keyed, load_dataset
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
    #: Why rows were skipped: ``(reason, count)`` pairs that add up to ``skipped``.
    skipped_why: tuple[tuple[str, int], ...] = ()


def describe_skipped(skipped: int, why) -> str:
    """``skipped 63 of 200 rows: 60 with empty or missing text in 'text', 3 without a label``
    (without the total); empty when nothing was skipped."""
    if not skipped:
        return ""
    reasons = ", ".join(f"{n} {reason}" for reason, n in why if n)
    return f"skipped {skipped} row{'s' if skipped != 1 else ''}" + (f": {reasons}" if reasons else "")


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
        why = ((f"with an empty or missing prompt in '{task.text[0]}'", rows.skipped),) if rows.skipped else ()
        return LabelledTable((rows.prompts, rows.completions), rows.labels, (), rows.skipped, rows.choices, why)
    if task.type != "classification":
        return _text_table(ref, ds, task, columns)
    for col, key in (*((c, "task.text") for c in task.text), (task.label, "task.label")):
        if col not in columns:
            raise keyed(AssetError(f"dataset '{ref.name}' has no column '{col}'; columns: {columns}"), key)
    table = ds.select_columns([*dict.fromkeys((*task.text, task.label))]).to_dict()  # plain lists: fast to index
    cols = [table[c] for c in task.text]
    raw_labels = table[task.label]
    has_text = [all(isinstance(c[i], str) and c[i].strip() for c in cols) for i in range(len(raw_labels))]
    keep = [i for i in range(len(raw_labels)) if has_text[i] and raw_labels[i] is not None]
    if not keep:
        raise keyed(AssetError(f"dataset '{ref.name}': no row has both non-empty text and a label "
                               f"({len(raw_labels)} rows read)"), "task.text")
    names = sorted({str(raw_labels[i]) for i in keep}, key=_natural)
    if len(names) < 2 and not one_class:
        raise keyed(AssetError(f"dataset '{ref.name}': column '{task.label}' has one class ({names[0]!r}); "
                               "need at least 2"), "task.label")
    no_text = len(raw_labels) - sum(has_text)
    index = {n: k for k, n in enumerate(names)}
    return LabelledTable(
        texts=tuple(tuple(c[i] for i in keep) for c in cols),
        labels=np.array([index[str(raw_labels[i])] for i in keep], dtype=np.int64),
        label_names=tuple(names),
        skipped=len(raw_labels) - len(keep),
        skipped_why=tuple((why, n) for why, n in (
            (f"with empty or missing text in {_quoted(task.text)} (empty, NaN, null)", no_text),
            (f"without a label in '{task.label}'", len(raw_labels) - len(keep) - no_text)) if n),
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
                             given.skipped, table.choices, given.skipped_why)
    unknown = [n for n in theirs if n not in known]
    if unknown:
        raise GivenTestError(f"'{ref.name}' has {what} the data set does not have: {unknown} (the data set's: {list(known)})")
    index = {n: k for k, n in enumerate(known)}
    labels = np.array([index[theirs[k]] for k in given.labels], dtype=np.int64)
    return LabelledTable(given.texts, labels, table.label_names, given.skipped, table.choices, given.skipped_why)


def _text_table(ref: DatasetRef, ds, task: TaskSpec, columns: list) -> LabelledTable:
    for col in task.text:
        if col not in columns:
            raise keyed(AssetError(f"dataset '{ref.name}' has no column '{col}'; columns: {columns}"), "task.text")
    table = ds.select_columns(list(dict.fromkeys(task.text))).to_dict()
    cols = [table[c] for c in task.text]
    keep = [i for i in range(len(cols[0])) if all(isinstance(c[i], str) and c[i].strip() for c in cols)]
    if not keep:
        raise keyed(AssetError(f"dataset '{ref.name}': no row has non-empty text in {list(task.text)}"), "task.text")
    skipped = len(cols[0]) - len(keep)
    return LabelledTable(tuple(tuple(c[i] for i in keep) for c in cols), np.zeros(len(keep), dtype=np.int64), (),
                         skipped, (), ((f"with empty or missing text in {_quoted(task.text)}", skipped),) if skipped else ())


def _quoted(columns) -> str:
    return ", ".join(f"'{c}'" for c in columns)


def _natural(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)
