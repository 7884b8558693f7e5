"""A worker serves a study only in the space it was created with.

It rebuilds the space from the YAML stored with the study; when that YAML now compiles to
another space (its hash differs from the stored ``space_hash``, as for a study created before
the built-in learning-rate bands of an omitted ``space.learning_rate``), serving it would mix
two searches in one study. ``autopeft worker STUDY`` refuses it in one line (exit 2); a worker
serving every study skips it with one logged line and serves the others.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa

from autopeft.cli import main
from autopeft.errors import StoreError
from autopeft.search.loop import open_study
from autopeft.search.prepare import prepare_search
from autopeft.search.worker import Worker
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.store.tables import studies
from test_loop import ok_runner

# No space.learning_rate: the built-in per-family bands, hashed as such.
SPACE = """
study: {study}
model: minilm-l6
task: {{dataset: tweet-sentiment}}
objectives: {{accuracy: max, trainable_params: min}}
space:
  method: [lora, ia3]
  rank: [2, 4]
  targets: [[query, value]]
proxy: {{train_examples: 32, eval_examples: 16, steps: 2, max_length: 16}}
search: {{sampler: random, trials: 2, seed: 0, baseline: false}}
"""


def legacy_hash(space_yaml: str) -> str:
    """The hash an omitted learning_rate had before it stood for the built-in bands."""
    import yaml

    doc = yaml.safe_load(space_yaml)
    (doc.get("search") or {}).pop("trials", None)
    (doc.get("proxy") or {}).pop("device", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@pytest.fixture
def url(tmp_path):
    """Two studies in a real SQLite store: 'old' as an older autopeft stored it, 'fresh' as today."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(url)
    for name in ("old", "fresh"):
        open_study(store, prepare_search(load_space_text(SPACE.format(study=name)), with_data=False))
    old = store.get_study("old")
    with store.engine.begin() as connection:
        connection.execute(sa.update(studies).where(studies.c.name == "old")
                           .values(space_hash=legacy_hash(old.space_yaml)))
    assert store.get_study("old").space_hash != old.space_hash
    store.close()
    return url


def test_a_worker_of_the_study_refuses_it_and_trains_nothing(url):
    calls, lines = [], []
    store = Store(url)
    try:
        with pytest.raises(StoreError) as refused:
            Worker(store, runner=ok_runner(calls), poll=0.1, log=lines.append).run_study("old")
        message = str(refused.value)
        assert "study 'old'" in message and "another search space" in message and "--set study=NEW_NAME" in message
        assert len(message.splitlines()) == 1
        assert calls == [] and store.trials("old") == []
        assert not any("preparing" in line for line in lines), lines  # refused before anything was prepared
    finally:
        store.close()


def test_the_worker_command_exits_2_with_one_line(url, capsys):
    code = main(["worker", "old", "--storage", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "study 'old'" in err[0] and "another search space" in err[0], err
    store = Store(url)
    try:
        assert store.trials("old") == []
    finally:
        store.close()


def test_a_worker_serving_every_study_skips_it_and_serves_the_others(url):
    calls, lines = [], []
    store = Store(url)
    try:
        outcome = Worker(store, runner=ok_runner(calls), poll=0.1, log=lines.append).serve_all(
            poll=0.1, exit_when_idle=True)
        skipped = [line for line in lines if "skipping study 'old'" in line]
        assert len(skipped) == 1 and "another search space" in skipped[0], lines
        assert store.trials("old") == [] and {spec.study for spec in calls} == {"fresh"}
        assert outcome.studies == ("fresh",) and outcome.trials == 2
        assert [r.status for r in store.trials("fresh")] == ["complete", "complete"]
    finally:
        store.close()
