"""What a user's own CSV meets before any training: data too small for the splits asked,
skipped rows said (``validate``, ``search``, ``show``), files that are not UTF-8 or hold only a
header, and data / model errors that name the YAML file and the key. Every refusal is one
line on stderr, exit 2, no traceback, and leaves the store as it was."""

from __future__ import annotations

import sqlite3

import pytest

from test_cli import autopeft, one_line_error

SPACE = """study: mine
model: minilm-l6
task: {dataset: data.csv, text: text, label: label, metric: accuracy}
objectives: {accuracy: max, trainable_params: min}
space: {method: [lora], rank: [2, 4], targets: [[query, value]], layers: {top_k: [1, 2], by: top}}
proxy: {train_examples: 32, eval_examples: 16, steps: 2, batch_size: 4, max_length: 16}
search: {trials: 1, sampler: random, baseline: false}
"""


def write(tmp_path, rows: list[str], name="data.csv", encoding="utf-8"):
    (tmp_path / "space.yaml").write_text(SPACE.replace("data.csv", name))
    (tmp_path / name).write_bytes(("\n".join(["text,label", *rows]) + "\n").encode(encoding))
    return tmp_path / "space.yaml"


def reviews(n: int, *, blank_every: int = 0) -> list[str]:
    """``n`` rows, two classes; every ``blank_every``-th text empty or "NaN" (alternately)."""
    rows = []
    for i in range(n):
        text = f"review {i} was {'great' if i % 2 else 'dull'}"
        if blank_every and i % blank_every == 0:
            text = "NaN" if (i // blank_every) % 2 else ""
        rows.append(f"{text},{'pos' if i % 2 else 'neg'}")
    return rows


def table_counts(db) -> dict:
    with sqlite3.connect(db) as c:
        names = [r[0] for r in c.execute("select name from sqlite_master where type='table'")]
        return {n: c.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


# "search" first runs a real search, whose study must stay as it was: the slow lane.
@pytest.mark.parametrize("command", ["validate", pytest.param("search", marks=pytest.mark.slow)])
def test_data_too_small_for_the_splits_is_refused_in_one_line(command, tmp_path):
    space = write(tmp_path, ["I love it,pos", "awful,neg", "fine film,pos"])
    db = tmp_path / "s.db"
    extra = ["--storage", f"sqlite:///{db}"] if command == "search" else []
    if command == "search":  # a study already stored must stay as it was
        other = write(tmp_path, reviews(60), name="other.csv")
        other.write_text(other.read_text().replace("study: mine", "study: other"))
        assert autopeft("search", other, *extra, cwd=tmp_path, timeout=300).returncode == 0
        before = table_counts(db)
        space = write(tmp_path, ["I love it,pos", "awful,neg", "fine film,pos"])
    line = one_line_error(autopeft(command, space, *extra, cwd=tmp_path, timeout=300))
    assert "space.yaml: task.dataset:" in line and "data.csv" in line
    assert "3 usable rows" in line and "needs at least 20 rows" in line
    if command == "search":
        assert table_counts(db) == before


def test_skipped_rows_are_counted_and_said_by_validate(tmp_path):
    rows = reviews(200, blank_every=3)  # 67 rows without text (empty or "NaN")
    rows[1] = rows[1].rsplit(",", 1)[0] + ","  # and one without a label
    result = autopeft("validate", write(tmp_path, rows), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "skipped" in line)
    assert "space.yaml: task.dataset:" in warning and "skipped 68 of 200 rows" in warning
    assert "67 with empty or missing text in 'text'" in warning and "1 without a label in 'label'" in warning


@pytest.mark.slow
def test_search_warns_of_skipped_rows_and_small_splits_and_show_prints_them(tmp_path):
    space = write(tmp_path, reviews(90, blank_every=3))  # 30 skipped, 60 left: 12 test, 24 train, 24 validation
    result = autopeft("search", space, "--set", "proxy.eval_examples=24", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped 30 rows: 30 with empty or missing text" in result.stderr
    assert "proxy.train_examples: dataset 'data.csv' gives 24 train examples, fewer than the 32 asked" in result.stderr
    shown = autopeft("show", "mine", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    splits = " ".join(next(line for line in shown.stdout.split("\nsplits:")[1:2]).split())
    assert "24 (of 32 asked) train" in splits and "skipped 30 rows" in splits


def test_a_file_that_is_not_utf8_says_the_byte_and_the_line(tmp_path):
    space = write(tmp_path, ["fine,pos", "café au lait,neg"], encoding="latin-1")
    result = autopeft("validate", space, cwd=tmp_path)
    line = one_line_error(result)
    assert "space.yaml: task.dataset:" in line and "not UTF-8" in line and "0xe9" in line and "line 3" in line
    assert "iconv" in line and "Failed to read" not in result.stderr + result.stdout


def test_a_header_without_rows_says_so(tmp_path):
    line = one_line_error(autopeft("validate", write(tmp_path, []), cwd=tmp_path))
    assert "data.csv" in line and "has a header" in line and "but no rows" in line and "Instruction" not in line


@pytest.mark.parametrize("override, key", [("task.label=lbl", "task.label"), ("task.text=[body]", "task.text"),
                                           ("model=./no-such-model", "model")])
def test_data_and_model_errors_name_the_file_and_the_key(override, key, tmp_path):
    line = one_line_error(autopeft("validate", write(tmp_path, reviews(60)), "--set", override, cwd=tmp_path))
    assert line.startswith(f"autopeft: error: {tmp_path / 'space.yaml'}: {key}: ") or f"space.yaml: {key}: " in line, line
