"""The arrays of a prepared file for instruction data: packed sequences per split, and what
generative metrics need (``gen.*`` for validation, ``gentest.*`` for test)."""

from __future__ import annotations

import numpy as np

from autopeft.assets.dataset_tables import LabelledTable
from autopeft.assets.instruct import choice_arrays, pack, render, stop_ids
from autopeft.assets.tokenizer import pad_id


def instruction_arrays(arrays: dict, meta: dict, tokenizer, template: str, table: LabelledTable,
                       train_idx, eval_idx, max_length: int, test_idx=()) -> dict:
    """Fill ``arrays`` (train/eval/test sequences, ``gen.*`` for validation and ``gentest.*``
    for test) and ``meta`` for instruction data; return the number of examples per split
    that fit ``max_length``."""
    prompts, completions = table.texts
    pad = pad_id(tokenizer)
    sizes, too_long = {}, 0
    for split, idx in (("train", train_idx), ("eval", eval_idx)) + ((("test", test_idx),) if len(test_idx) else ()):
        rendered = render(tokenizer, template, [prompts[i] for i in idx], [completions[i] for i in idx])
        ids, mask, labels, prompt_len, kept = pack(rendered, max_length, pad)
        arrays.update({f"{split}.input_ids": ids, f"{split}.attention_mask": mask, f"{split}.labels": labels})
        sizes[split] = len(kept)
        too_long += len(idx) - len(kept)
        if split == "test":  # what choice_accuracy / exact_match need on the test split
            rows = [int(idx[k]) for k in kept]
            arrays["gentest.prompt_len"] = prompt_len
            arrays["gentest.gold"] = table.labels[rows] if table.choices else np.full(len(rows), -1, dtype=np.int64)
            meta["gold_test"] = [completions[i] for i in rows]
        if split == "eval":
            rows = [int(idx[k]) for k in kept]
            arrays["gen.prompt_len"] = prompt_len
            arrays["gen.gold"] = table.labels[rows] if table.choices else np.full(len(rows), -1, dtype=np.int64)
            meta["gold"] = [completions[i] for i in rows]  # exact_match compares generated text with these
            eval_completions = [rendered.completions[k] for k in kept]
    if table.choices:
        ids, lengths = choice_arrays(tokenizer, template, table.choices, completions, table.labels, pad)
        arrays["gen.choice_ids"], arrays["gen.choice_len"] = ids, lengths
        gold = arrays["gen.gold"]
        # When every validation completion is token for token its gold answer, scoring the
        # answers also yields the validation loss: the trial then runs one pass, not two.
        meta["loss_from_choices"] = all(
            list(ids[g, : lengths[g]]) == list(c) for g, c in zip(gold.tolist(), eval_completions))
    meta.update(choices=list(table.choices), too_long=too_long, template=template, pad_id=pad,
                stop_ids=stop_ids(tokenizer, template))
    return sizes
