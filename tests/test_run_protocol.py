"""A run protocol's key is stored with every verification row: it must never drift.

The keys pinned here were computed by the code that stored the rows of existing databases
(``verify`` planning and a study's seed runs at its target); a row whose protocol hashes
differently is no longer found, so a resumed ``verify`` or search would train it again.
The plans are made from a stored study and a stand-in for the prepared data (only its
sizes are read), so nothing is trained.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from autopeft.space import load_space_text
from autopeft.store import Store, utcnow
from test_store_contract import CANDIDATE, study_record, trial_record
from test_target import SPACE

FLAT = SPACE.replace("target: {steps: 36, seeds: 3}\n", "").replace("study: tg", "study: flat")
CONSTANT = SPACE.replace("eta: 3}", "eta: 3, schedule: constant, warmup_steps: 2}").replace("study: tg", "study: const")

#: The stored protocol of tg's seed runs at its target (36 steps, the proxy's batch and
#: schedule, each seed drawing its rows from every training row).
TARGET = {"fidelity": "target", "steps": 36, "batch_size": 8, "max_length": 16, "eval_examples": 32,
          "schedule": "linear", "rows": "drawn by seed from every training row"}
#: The same before the seeds drew their rows by seed: all on the proxy's 64 rows. Rows stored
#: under it are still read.
TARGET_BEFORE = {"fidelity": "target", "steps": 36, "batch_size": 8, "max_length": 16, "train_examples": 64,
                 "eval_examples": 32, "schedule": "linear"}
#: ``verify`` of a study without a target: one epoch of the 4,000 training rows in batches of 8.
EPOCH = {"steps": 500, "batch_size": 8, "max_length": 16, "train_examples": 4000, "eval_examples": 300,
         "test_examples": 500}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('protocol')}/p.db")
    for name, yaml in (("tg", SPACE), ("flat", FLAT), ("const", CONSTANT)):
        store.add_study(study_record(name, space_yaml=yaml))
        store.save_trial(trial_record(name, 0, status="complete", candidate={"method": "lora", "rank": 4},
                                      metrics={"accuracy": 0.6}, values=[0.6, 1000], trainable_params=1000,
                                      finished_at=utcnow()))
    return store


def _prep(store, name: str, *, given: bool = False):
    space = load_space_text(store.get_study(name).space_yaml, name)
    if given:
        space = dataclasses.replace(space, task=dataclasses.replace(space.task, test="data/test.csv"))
    data = SimpleNamespace(n_train=4000, n_eval=300, n_test=500, num_labels=3,
                           test_source="given" if given else "carved")
    return SimpleNamespace(space=space, data=data)


@pytest.mark.parametrize("name, asked, given, stored, seeds, key", [
    ("tg", {}, False, TARGET, (0, 1, 2), "02c89480eefb4a16"),
    ("tg", {"seeds": 5}, False, TARGET, (0, 1, 2, 3, 4), "02c89480eefb4a16"),  # more seeds, the same rows
    ("tg", {"steps": 10}, False, {**EPOCH, "steps": 10}, (0, 1, 2), "9223f4a1b7fbd5f7"),
    ("flat", {}, False, EPOCH, (0, 1, 2), "94b1cc6203feb572"),
    ("flat", {"steps": 7, "seeds": 2}, False, {**EPOCH, "steps": 7}, (0, 1), "850cce932ddad8e6"),
    ("flat", {"epochs": 2.5}, False, {**EPOCH, "steps": 1250}, (0, 1, 2), "6986291de36844f4"),
    ("flat", {}, True, {**EPOCH, "test_split": "given: data/test.csv"}, (0, 1, 2), "8caf5ec07111fbe8"),
])
def test_verify_stores_its_runs_under_the_keys_it_always_had(store, name, asked, given, stored, seeds, key):
    from autopeft.search.verify import jobs, plan

    p, _ = plan(store, name, prep=_prep(store, name, given=given), **asked)
    rows = jobs(p)
    assert [r.seed for r in rows] == list(seeds)
    assert all(r.protocol == stored and r.protocol_key == key for r in rows)


def test_a_studys_seed_runs_keep_their_key(store):
    from autopeft.search.seeds import study_target_key
    from autopeft.store.verifications import Verifications

    runs = Verifications(store)
    assert study_target_key(runs, store.get_study("tg")) == "02c89480eefb4a16"
    assert study_target_key(runs, store.get_study("const")) == "df57f13bd46cd285"  # the schedule is part of it
    assert study_target_key(runs, store.get_study("flat")) is None


def test_seed_rows_stored_before_seeds_drew_their_rows_are_still_read(tmp_path):
    from autopeft.search.seeds import rows_of
    from autopeft.store.verifications import VerificationRecord, Verifications

    store = Store(f"sqlite:///{tmp_path}/old.db")
    store.add_study(study_record("tg", space_yaml=SPACE))
    runs = Verifications(store)
    row = dict(study="tg", subject="trial:0", candidate=CANDIDATE, trial_number=0)
    runs.add([VerificationRecord(seed=0, protocol=TARGET_BEFORE, **row), VerificationRecord(seed=1, protocol=TARGET, **row),
              VerificationRecord(seed=2, protocol={**TARGET, "steps": 10}, **row)])  # another protocol: not the target's
    got = rows_of(runs, store.get_study("tg"), load_space_text(SPACE, "tg.yaml"))
    assert sorted((r.seed, r.protocol_key) for r in got) == [(0, "532a62b8b92375c0"), (1, "02c89480eefb4a16")]


def test_a_study_searched_before_seeds_drew_their_rows_keeps_its_protocol_to_the_end(tmp_path):
    """Its pending rows must still be claimed, and new seeds queued beside its old ones, not under
    the new key (where verify would train every seed again and the answer mix two draws of data)."""
    from autopeft.search.seeds import queue, study_target_key
    from autopeft.store.verifications import VerificationRecord, Verifications

    store = Store(f"sqlite:///{tmp_path}/old.db")
    space = load_space_text(SPACE, "tg.yaml")
    for name in ("old", "new"):
        store.add_study(study_record(name, space_yaml=SPACE.replace("study: tg", f"study: {name}")))
    runs = Verifications(store)
    runs.add([VerificationRecord(study="old", subject="trial:0", seed=1, protocol=TARGET_BEFORE,
                                 candidate=CANDIDATE, trial_number=0)])

    assert study_target_key(runs, store.get_study("old")) == "532a62b8b92375c0"
    assert study_target_key(runs, store.get_study("new")) == "02c89480eefb4a16"
    record = trial_record("old", 3, status="complete", values=[0.7, 100.0], metrics={"accuracy": 0.7})
    assert queue(runs, store.get_study("old"), space, record, {"accuracy": 0.65}) == 2
    assert {r.protocol_key for r in runs.of("old")} == {"532a62b8b92375c0"}


def test_a_trials_own_run_is_stored_as_its_first_seed_and_no_other_process_can_take_it(tmp_path):
    from autopeft.search.seeds import queue
    from autopeft.store.verifications import Verifications

    store = Store(f"sqlite:///{tmp_path}/own.db")
    store.add_study(study_record("tg", space_yaml=SPACE))
    runs = Verifications(store)
    stolen = []

    class Racing(Verifications):
        """Another process claims whatever is pending the moment rows are added."""

        def add(self, records, **kw):
            new = super().add(records, **kw)
            stolen.append(runs.claim("tg", "another"))
            return new

    record = trial_record("tg", 3, status="complete", values=[0.7, 100.0], metrics={"accuracy": 0.7})
    assert queue(Racing(store), store.get_study("tg"), load_space_text(SPACE, "tg.yaml"), record,
                 {"accuracy": 0.65}) == 2
    assert stolen[0] is None  # the own row was never pending, so the other process found nothing

    rows = {r.seed: r for r in runs.of("tg")}
    assert rows[0].status == "complete" and rows[0].metrics == {"accuracy": 0.7}
    assert rows[0].test_metrics == {"accuracy": 0.65} and rows[0].worker == "search"
    taken = [stolen[1], runs.claim("tg", "another"), runs.claim("tg", "another")]
    assert sorted(r.seed for r in taken if r is not None) == [1, 2]  # seed 0 was never claimable
    # The same trial queued again (a resumed search folding it twice) adds nothing and keeps seed 0.
    assert queue(runs, store.get_study("tg"), load_space_text(SPACE, "tg.yaml"), record, {"accuracy": 0.1}) == 0
    assert {r.seed: r for r in runs.of("tg")}[0].test_metrics == {"accuracy": 0.65}


def test_the_protocols_as_built_give_the_pinned_keys():
    from autopeft.search.protocol import RunProtocol
    from autopeft.search.seeds import target_protocol

    target = target_protocol(load_space_text(SPACE, "tg.yaml"))
    assert target.as_dict() == TARGET and target.key() == "02c89480eefb4a16" and target.seeds == (0, 1, 2)
    assert RunProtocol(**{k: v for k, v in TARGET_BEFORE.items() if k not in ("fidelity", "schedule")},
                       fidelity="target", schedule="constant").key() == "08cfdd9a06fb8b33"
    assert RunProtocol(**{k: v for k, v in TARGET_BEFORE.items() if k not in ("fidelity", "schedule")},
                       fidelity="target", schedule="linear").key() == "532a62b8b92375c0"
    verify = RunProtocol(4, 8, 16, 120, 40, test_examples=60)
    assert verify.as_dict() == {"steps": 4, "batch_size": 8, "max_length": 16, "train_examples": 120,
                                "eval_examples": 40, "test_examples": 60}
    assert verify.key() == "f63cdda7e5cba7ee"
    # Which seeds there are, and how runs are compared, is not how each run is trained.
    assert dataclasses.replace(verify, seeds=(0, 1, 2), metric="accuracy", task="causal_lm").key() == verify.key()


def test_steps_or_epochs_not_both_and_epochs_resolve_against_the_data(store):
    from autopeft.errors import AutoPeftError
    from autopeft.search.protocol import RunProtocol
    from autopeft.search.verify import plan

    with pytest.raises(AutoPeftError, match=r"^give --steps or --epochs, not both$"):
        RunProtocol(steps=3, epochs=1.0)
    with pytest.raises(AutoPeftError, match="not both"):  # refused before anything is prepared
        plan(store, "flat", steps=3, epochs=1.0)
    sizes = {"batch_size": 8, "train_examples": 100}
    assert RunProtocol().resolved(**sizes).steps == 13  # one epoch by default, the last batch partial
    assert RunProtocol(epochs=0.01).resolved(**sizes).steps == 1
    assert RunProtocol(epochs=2.0).resolved(**sizes) == RunProtocol(steps=25, **sizes)
    assert RunProtocol(steps=7).resolved(**sizes).steps == 7
    with pytest.raises(ValueError):
        RunProtocol(epochs=2.0).as_dict()
