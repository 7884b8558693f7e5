"""A study's stored search space is parsed once per process, and again only when it changed.

The table, the verified rows, the target and the comparison each read the study's space;
``autopeft.space.stored`` keeps one parse per (study, stored YAML) so they share it.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone

import pytest
import yaml

import autopeft.space.stored as stored
from autopeft.errors import SpaceError
from autopeft.space.stored import stored_target, study_space
from autopeft.store.records import StudyRecord

DOCUMENT = {
    "study": "stored",
    "model": "minilm-l6",
    "task": {"dataset": "tweet-sentiment"},
    "objectives": {"accuracy": "max", "trainable_params": "min"},
    "space": {"method": ["lora"], "rank": [2, 8], "targets": [["query", "value"]]},
    "proxy": {"steps": 10, "train_examples": 100, "eval_examples": 50},
    "search": {"sampler": "random", "trials": 4, "seed": 0},
}


def record(space_yaml: str, name: str) -> StudyRecord:
    """A study as the store returns it (each read of the store gives a new record)."""
    return StudyRecord(name=name, created_at=datetime.now(timezone.utc), space_yaml=space_yaml, space_hash="0" * 16,
                       objectives=(("accuracy", "max"), ("trainable_params", "min")), trials_target=4,
                       model="minilm-l6", model_fingerprint="", dataset="tweet-sentiment", data_fingerprint="")


@pytest.fixture
def parses(monkeypatch):
    """The sources the stored spaces were parsed for, in order (one entry per parse)."""
    seen = []

    def counting(text, source="<text>", overrides=()):
        seen.append(source)
        return load(text, source, overrides)

    load = stored.load_space_text
    monkeypatch.setattr(stored, "load_space_text", counting)
    return seen


def test_a_stored_space_is_parsed_once_and_shared(parses):
    name = f"once-{uuid.uuid4().hex[:8]}"  # no earlier test in this process can have cached it
    text = yaml.safe_dump(DOCUMENT, sort_keys=False)
    first = study_space(record(text, name))
    assert study_space(record(text, name)) is first
    assert stored_target(record(text, name)) is None and first.target is None
    assert parses == [f"study '{name}' (stored space)"]
    assert first.source == f"study '{name}' (stored space)"


def test_a_changed_stored_space_is_parsed_afresh(parses):
    name = f"changed-{uuid.uuid4().hex[:8]}"
    before = study_space(record(yaml.safe_dump(DOCUMENT, sort_keys=False), name))
    changed = {**DOCUMENT, "space": {**DOCUMENT["space"], "rank": [4, 16]},
               "target": {"steps": 40, "seeds": 2}}
    study = record(yaml.safe_dump(changed, sort_keys=False), name)
    after = study_space(study)
    assert after is not before and len(parses) == 2
    assert after.space.rank.values == (4, 16) and before.space.rank.values == (2, 8)
    assert stored_target(study) == after.target and after.target.steps == 40
    # The same YAML under another study's name is that study's space: its errors name it.
    other = study_space(dataclasses.replace(study, name=f"{name}-copy"))
    assert other is not after and other.source == f"study '{name}-copy' (stored space)" and len(parses) == 3


def test_a_stored_space_that_no_longer_parses_names_the_study(parses):
    name = f"broken-{uuid.uuid4().hex[:8]}"
    broken = yaml.safe_dump({**DOCUMENT, "space": {**DOCUMENT["space"], "method": ["no-such-method"]}})
    for _ in range(2):  # an error is not cached: the next read reports it again
        with pytest.raises(SpaceError, match=f"study '{name}' \\(stored space\\)"):
            study_space(record(broken, name))
    assert len(parses) == 2


def test_no_stored_space_has_no_target(parses):
    assert stored_target(record("", f"empty-{uuid.uuid4().hex[:8]}")) is None
    assert parses == []
