"""``task.test: FILE``: a data set may bring its own test split, which then wins over the
carved one; a file that cannot serve is a one-line error at ``task.test``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from autopeft.cli import main
from autopeft.errors import SpaceError
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text

LABELS = ("neg", "neu", "pos")


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def rows(n, start=0, labels=LABELS):
    return [(f"sentence number {start + i} about {labels[i % len(labels)]}", labels[i % len(labels)]) for i in range(n)]


YAML = """
study: given
model: minilm-l6
task: {{dataset: {data}, test: {test}}}
space: {{method: lora, rank: 2}}
proxy: {{train_examples: 100, eval_examples: 6, max_length: 16}}
verify: {{test_examples: 50%}}
"""


def space(tmp_path, test, name="given.yaml"):
    data = write_csv(tmp_path / "data.csv", rows(30))
    path = tmp_path / name
    path.write_text(YAML.format(data=data, test=test))
    return path


def test_a_given_test_file_is_the_test_split_and_train_validation_come_from_the_whole_data_set(tmp_path):
    from safetensors.numpy import load_file

    test = write_csv(tmp_path / "test.csv", rows(5, start=100, labels=("pos", "neg")))  # a subset of the classes
    prep = prepare_search(load_space_text(space(tmp_path, test).read_text(), "given.yaml"))
    d = prep.data
    # The file, whole (not 50% of the rows); train and validation from all 30 rows of the data set.
    assert (d.test_source, d.n_test, d.n_train, d.n_eval) == ("given", 5, 24, 6)
    arrays = load_file(d.path)
    # The labels are the data set's label ids (neg=0, neu=1, pos=2), whatever classes the file has.
    assert arrays["test.labels"].tolist() == [2, 0, 2, 0, 2]
    carved = prepare_search(load_space_text(space(tmp_path, test).read_text(), "given.yaml", ["task.test=null"]))
    assert (carved.data.test_source, carved.data.n_test, carved.data.n_train) == ("carved", 10, 14)  # a third at most


def test_a_relative_path_starts_at_the_working_directory_like_the_data_sets(tmp_path, monkeypatch):
    write_csv(tmp_path / "held.csv", rows(4, start=50))
    monkeypatch.chdir(tmp_path)
    prep = prepare_search(load_space_text(space(tmp_path, "held.csv").read_text(), "given.yaml"), with_data=False)
    assert prep.space.task.test == "held.csv"


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "nosuch.csv", "no such file"),
    (lambda p: write_csv(p / "cols.csv", [("a", "pos")], header=("sentence", "label")), "has no column 'text'"),
    (lambda p: write_csv(p / "odd.csv", [("some text", "maybe")]), "labels the data set does not have: ['maybe']"),
    (lambda p: (p / "t.txt").write_text("x") and p / "t.txt", "unsupported file type '.txt'"),
])
def test_a_file_that_cannot_be_the_test_split_is_one_line_at_task_test_exit_2(tmp_path, capsys, make, words):
    path = space(tmp_path, make(tmp_path))
    with pytest.raises(SpaceError) as e:
        prepare_search(load_space_text(path.read_text(), str(path)))
    assert e.value.path == "task.test" and words in str(e.value)
    code = main(["validate", str(path)])  # validate reads the file too, without tokenising
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "task.test" in err and words in err, err


def test_task_test_must_be_a_path():
    doc = {"study": "s", "model": "minilm-l6", "task": {"dataset": "tweet-sentiment", "test": 3},
           "space": {"method": "lora"}}
    with pytest.raises(SpaceError, match="task.test"):
        load_space_text(json.dumps(doc), "s.yaml")


def test_the_study_records_its_splits_and_show_prints_them(tmp_path, capsys):
    """Counts, seed, where the test split came from and the prepared data's fingerprint are on
    the study row; a study submitted without its data gets them when a search prepares it."""
    from autopeft.search.loop import open_study
    from autopeft.store import Store

    test = write_csv(tmp_path / "test.csv", rows(5, start=100))
    sp = load_space_text(space(tmp_path, test).read_text(), "given.yaml")
    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    assert open_study(store, prepare_search(sp, with_data=False)).splits is None  # --submit-only: no data yet
    prep = prepare_search(sp)
    splits = open_study(store, prep).splits
    assert splits == {"train": 24, "eval": 6, "test": 5, "seed": 0, "test_source": "given", "skipped": 0, "skipped_why": [],
                      "fingerprint": prep.data.fingerprint}
    assert main(["show", "given", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert ("splits: 24 (of 100 asked) train · 6 validation (trials) · 5 test (given, never read by the search) · seed 0"
            in out)
