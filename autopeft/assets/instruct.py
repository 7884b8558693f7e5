"""Instruction data for decoders: prompt/completion pairs or chats, checked, rendered, packed.

A row is a prompt and a completion: two text columns (``text: [prompt, completion]``) or one
chat column (``messages: COLUMN``, a list of ``{role, content}`` whose last message, the
assistant's, is the completion). Rendering is the tokenizer's chat template
(``template: chat``) or plain concatenation with an end-of-sequence token after the
completion (``template: plain``, so a model also learns where an answer stops). Only the
completion's tokens are targets.

Length: a prompt that does not fit loses tokens from its *left* (the question belongs at
the end of a prompt for this reason); the completion is never cut. A completion that alone
fills ``max_length`` leaves no prompt to condition on: the example is skipped and counted.

The answer set (``task.choices``, or the data's distinct completions when there are few)
is what ``choice_accuracy`` chooses among. A completion outside a declared answer set, an
empty completion and a malformed chat are ``DataError``s naming the row: they mean the data
is not what the task says, and training on it would hide that.

Nothing here imports torch; the tokenizer comes from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopeft.errors import DataError, SpaceError

#: Derive an answer set from the completions only when there are this few distinct ones:
#: more look like free text, which ``exact_match`` (not ``choice_accuracy``) scores.
MAX_DERIVED_CHOICES = 32
#: A neutral prompt to render answers after (what an answer becomes does not depend on it).
_PROBE_PROMPT = "?"


def normalise(text: str) -> str:
    """How answers are compared: surrounding white space and case do not count."""
    return text.strip().casefold()


@dataclass(frozen=True)
class InstructionRows:
    """Checked rows: prompts (strings, or chats without their last message), completions."""

    prompts: tuple
    completions: tuple[str, ...]
    choices: tuple[str, ...]  # the answer set ("" -free: empty when there is none)
    labels: np.ndarray  # index into choices (0 everywhere when there is no answer set)
    skipped: int  # rows with an empty prompt


def check_rows(name: str, ds, task) -> InstructionRows:
    """The usable rows of ``ds`` for instruction task ``task``.

    Raises:
        AssetError: a column is missing.
        DataError: an empty completion, a completion outside ``task.choices``, a malformed
            chat, or (``choice_accuracy``) no small answer set to choose among.
    """
    from autopeft.assets.dataset_sources import keyed
    from autopeft.errors import AssetError

    columns = list(ds.column_names)
    wanted = [task.messages] if task.messages else list(task.text)
    key = "task.messages" if task.messages else "task.text"
    for col in wanted:
        if col not in columns:
            raise keyed(AssetError(f"dataset '{name}' has no column '{col}'; columns: {columns}"), key)
    table = ds.select_columns(wanted).to_dict()
    prompts, completions, rows = [], [], []
    skipped = 0
    if task.messages:
        for i, chat in enumerate(table[task.messages]):
            prompt, completion = _split_chat(name, task.messages, i, chat)
            prompts.append(prompt)
            completions.append(completion)
            rows.append(i)
    else:
        pcol, ccol = task.text
        for i, (p, c) in enumerate(zip(table[pcol], table[ccol])):
            if not isinstance(p, str) or not p.strip():
                skipped += 1  # nothing to condition on: skipped and counted, like empty text elsewhere
                continue
            if not isinstance(c, str) or not c.strip():
                raise DataError(f"dataset '{name}' row {i + 1}: column '{ccol}' (the completion) is "
                                f"{'empty' if isinstance(c, str) or c is None else f'not text ({type(c).__name__})'}; "
                                "every prompt needs a completion: fill it in or drop the row")
            prompts.append(p)
            completions.append(c)
            rows.append(i)
    if not prompts:
        raise keyed(AssetError(f"dataset '{name}': no row has a non-empty prompt"), key)
    choices = _answer_set(name, task, completions, rows)
    if choices:
        index = {normalise(c): k for k, c in enumerate(choices)}
        labels = np.array([index[normalise(c)] for c in completions], dtype=np.int64)
    else:
        labels = np.zeros(len(completions), dtype=np.int64)
    return InstructionRows(tuple(prompts), tuple(completions), choices, labels, skipped)


def _split_chat(name: str, column: str, i: int, chat) -> tuple[list, str]:
    where = f"dataset '{name}' row {i + 1}: column '{column}'"
    if not isinstance(chat, list) or len(chat) < 2:
        raise DataError(f"{where}: expected a chat, a list of at least two {{role, content}} messages "
                        f"(the last one the assistant's answer), got {_show(chat)}")
    for j, m in enumerate(chat):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {j} is {_show(m)}; expected {{role: ..., content: ...}} with text values")
    if chat[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message is the {chat[-1]['role']!r}'s; the last message is the completion "
                        "and must be the 'assistant''s: end the chat with the answer or drop the row")
    if not chat[-1]["content"].strip():
        raise DataError(f"{where}: the assistant's last message (the completion) is empty; "
                        "every chat needs an answer: fill it in or drop the row")
    return [{"role": m["role"], "content": m["content"]} for m in chat[:-1]], chat[-1]["content"]


def _show(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _answer_set(name: str, task, completions: list[str], rows: list[int]) -> tuple[str, ...]:
    col = f"column '{task.text[1]}'" if not task.messages else f"column '{task.messages}' (last message)"
    if task.choices:
        allowed = {normalise(c) for c in task.choices}
        for row, c in zip(rows, completions):
            if normalise(c) not in allowed:
                raise DataError(f"dataset '{name}' row {row + 1}: {col} is {c.strip()!r}, not one of task.choices "
                                f"{list(task.choices)}; add it to task.choices or fix the row")
        return tuple(task.choices)
    first: dict[str, str] = {}
    for c in completions:
        first.setdefault(normalise(c), c.strip())
    if 2 <= len(first) <= MAX_DERIVED_CHOICES:
        return tuple(sorted(first.values(), key=normalise))
    if task.metric == "choice_accuracy":
        raise DataError(f"dataset '{name}': task.metric choice_accuracy needs a small answer set to choose among, "
                        f"but the completions ({col}) hold {len(first)} distinct answers; declare them with "
                        "task.choices, or use metric exact_match")
    return ()


def resolve_template(task, tokenizer, model_name: str, source: str) -> str:
    """The template an instruction task renders with: the declared one, else ``chat`` when
    the tokenizer has a chat template and ``plain`` when it has none.

    Raises:
        SpaceError: ``template: chat`` (or a messages column) for a model without a chat template.
    """
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if has_chat or task.template == "plain" or (task.template is None and not task.messages):
        return task.template or ("chat" if has_chat else "plain")
    key = "task.template" if task.template == "chat" else "task.messages"
    fix = ("use template: plain (prompt and completion concatenated) or a model with a chat template"
           if key == "task.template" else "give text: [prompt, completion] with template: plain, or a model with one")
    raise SpaceError(source, key, f"model '{model_name}' has no chat template (its tokenizer defines none); {fix}")


@dataclass(frozen=True)
class Rendered:
    """Token ids per row: the prompt (rendered up to where the answer starts) and the
    completion (the answer with whatever the template puts after it)."""

    prompts: list[list[int]]
    completions: list[list[int]]


def render(tokenizer, template: str, prompts, completions) -> Rendered:
    """Tokenise rows as the model will see them (``template`` is ``chat`` or ``plain``)."""
    if template == "chat":
        p_texts, c_texts = [], []
        for p, c in zip(prompts, completions):
            chat = p if isinstance(p, list) else [{"role": "user", "content": p}]
            head = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": c}], tokenize=False)
            if not full.startswith(head):
                from autopeft.errors import AssetError

                raise AssetError("the model's chat template does not render a chat as its prompt followed by the "
                                 "answer, so the answer cannot be scored alone; use task.template: plain")
            p_texts.append(head)
            c_texts.append(full[len(head):])
        # The rendered text already holds the template's special tokens: add none twice.
        return Rendered(tokenizer(p_texts, add_special_tokens=False)["input_ids"],
                        tokenizer(c_texts, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    tail = [eos] if eos is not None else []
    return Rendered(tokenizer(list(prompts))["input_ids"],
                    [ids + tail for ids in tokenizer(list(completions), add_special_tokens=False)["input_ids"]])


def pack(rendered: Rendered, max_length: int, pad: int):
    """Right-padded ``(ids, mask, labels)`` of the rows that fit, the prompt length of each,
    and the indices of the rows kept (a completion of ``max_length`` tokens or more leaves
    no room for a prompt: that row is dropped)."""
    kept = [i for i, c in enumerate(rendered.completions) if len(c) < max_length]
    n = len(kept)
    ids = np.full((n, max_length), pad, dtype=np.int64)
    mask = np.zeros((n, max_length), dtype=np.int64)
    labels = np.full((n, max_length), -100, dtype=np.int64)
    prompt_len = np.zeros(n, dtype=np.int64)
    for row, i in enumerate(kept):
        completion = rendered.completions[i]
        prompt = rendered.prompts[i][-(max_length - len(completion)):]  # cut from the left, never the answer
        tokens = prompt + completion
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        labels[row, len(prompt): len(tokens)] = completion
        prompt_len[row] = len(prompt)
    return ids, mask, labels, prompt_len, kept


def choice_arrays(tokenizer, template: str, choices: tuple[str, ...], completions, labels: np.ndarray, pad: int):
    """``(ids, lengths)`` of each answer as a continuation of a prompt (``(C, Lc)``, right-padded).

    An answer is rendered from the text the data writes it with (its first completion
    normalising to it: `` good`` when the data says `` good``), so an answer is scored as
    exactly the tokens the model was trained to produce for it.
    """
    texts = list(choices)
    for k in range(len(choices)):
        hits = np.flatnonzero(labels == k)
        if len(hits):
            texts[k] = completions[int(hits[0])]
    ids = render(tokenizer, template, [_PROBE_PROMPT] * len(texts), texts).completions
    width = max(len(t) for t in ids)
    out = np.full((len(ids), width), pad, dtype=np.int64)
    for k, t in enumerate(ids):
        out[k, : len(t)] = t
    return out, np.array([len(t) for t in ids], dtype=np.int64)


def stop_ids(tokenizer, template: str) -> list[int]:
    """Tokens that end an answer in greedy decoding: end-of-sequence, and the first token the
    chat template puts after an answer (its end-of-turn marker)."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if template == "chat":
        marker = "autopeft"
        after = render(tokenizer, "chat", [_PROBE_PROMPT], [marker]).completions[0]
        alone = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if after[: len(alone)] == alone and len(after) > len(alone):
            stops.append(after[len(alone)])
    return sorted(set(stops))
