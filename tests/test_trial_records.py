"""The typed reads of a trial's ``extras``: what the writers store comes back through
``TrialRecord``'s properties (``autopeft.store.trial_extras``), the stored JSON keeps its shape,
and a missing or older-shaped ``extras`` reads as None or empty rather than failing. A record's
candidate likewise reads back as a ``Candidate`` from the JSON the store keeps unchanged."""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import pytest

from autopeft.candidate import Candidate, Targets
from autopeft.search.fidelity.promotion import entry_reading, rung_at
from autopeft.search.fidelity.signals import Reading
from autopeft.search.ledger.pairing import ROLE, role_extras
from autopeft.space.default_lora import DEFAULT_LORA
from autopeft.store import Store, StudyRecord, TrialRecord, trial_extras, utcnow
from autopeft.store.trial_extras import Rung, TargetSummary
from autopeft.store.verifications import VerificationRecord, Verifications

OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))
#: A candidate as ``Candidate.to_json()`` writes it (per-layer ranks, so every field has a value).
CANDIDATE = {"method": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.1, "targets": ["query", "value"],
             "layers": [0, 3], "learning_rate": 1e-3, "dora": False, "rslora": True, "layer_ranks": [8, 2]}


def _study(store: Store, name: str = "s") -> StudyRecord:
    return store.add_study(StudyRecord(name=name, created_at=utcnow(), space_yaml="", space_hash="0" * 32,
                                       objectives=OBJECTIVES, trials_target=4, model="m", model_fingerprint="x",
                                       dataset="d", data_fingerprint="y"))


def _trial(number: int = 0, status: str = "complete", extras=None, candidate=CANDIDATE, **more) -> TrialRecord:
    return TrialRecord(study="s", number=number, status=status, params={}, started_at=utcnow(),
                       candidate=candidate, extras=extras, **more)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/records.db")
    _study(s)
    yield s
    s.close()


def test_what_the_writers_store_reads_back_typed_and_the_json_keeps_its_shape(store):
    # Written as the search writes them: the role as the ledger copies it, rung entries from the
    # judge's rung_at (one recorded before rung signals, one with its signal), a retry's links.
    rungs = [rung_at(10, 0.5, None), rung_at(30, 0.625, Reading(0.75, 0.0125))]
    extras = {**role_extras({ROLE: DEFAULT_LORA}), **trial_extras.stopped_extras(30),
              **trial_extras.rung_extras(rungs, [rung_at(5, 0.25, Reading(1.5, 0.25))]),
              **trial_extras.with_retried_as(trial_extras.retry_extras(2), 7),
              **trial_extras.rank_allocation_extras({"encoder.layer.0.attention.self.query.lora_E": 3.0}),
              **trial_extras.checkpoint_extras("/ckpt/trial-3"), "predicted_classes": 2}
    store.save_trial(_trial(3, "pruned", extras))
    got = store.trial("s", 3)

    # The database holds the JSON the writers gave it, in the shape studies recorded before
    # these writers existed keep (no migration).
    assert got.extras == {"baseline": DEFAULT_LORA, "fidelity": 30, "rungs": [[10, 0.5], [30, 0.625, 0.75, 0.0125]],
                          "probes": [[5, 0.25, 1.5, 0.25]], "retry_of": 2, "retried_as": 7,
                          "rank_allocation": {"encoder.layer.0.attention.self.query.lora_E": 3.0},
                          "checkpoints": "/ckpt/trial-3", "predicted_classes": 2}
    assert got.role == DEFAULT_LORA
    assert got.stopped_at == 30
    assert got.rungs == (Rung(10, 0.5), Rung(30, 0.625, 0.75, 0.0125))
    assert list(got.rungs) == rungs  # a resumed trial's judge gets back what was stored
    assert got.probes == (Rung(5, 0.25, 1.5, 0.25),)
    assert (got.retry_of, got.retried_as) == (2, 7)
    assert got.rank_allocation == {"encoder.layer.0.attention.self.query.lora_E": 3.0}
    assert got.checkpoint_dir == "/ckpt/trial-3"
    assert got.target is None  # not at a target

    got.rank_allocation.clear()  # a copy: the record stays as read
    assert got.rank_allocation


def test_the_target_summary_the_fold_writes_reads_back_typed(store):
    from autopeft.search.seeds import complete, fold

    study = store.get_study("s")
    space = SimpleNamespace(task=SimpleNamespace(metric="accuracy"), target=SimpleNamespace(seeds=3))
    record = _trial(1, values=[0.8, 1000], metrics={"accuracy": 0.8}, extras={})
    store.save_trial(record)
    rows = [VerificationRecord(study="s", subject="trial:1", seed=seed, protocol={}, candidate=record.candidate,
                               trial_number=1, status=status, metrics={"accuracy": acc} if acc is not None else {},
                               test_metrics={"accuracy": acc - 0.05} if acc is not None else {})
            for seed, status, acc in ((0, "complete", 0.8), (1, "complete", 0.9), (2, "failed", None))]

    folded = fold(store, study, space, record, rows)
    got = store.trial("s", 1)

    assert got == folded
    t = got.target
    assert isinstance(t, TargetSummary)
    assert t.seeds == (0, 1) and t.of == 3 and t.failed == (2,)
    assert t.val == pytest.approx((0.85, math.sqrt(0.005)))
    assert t.test == pytest.approx((0.80, math.sqrt(0.005)))
    assert t.own == 0.8 and t.diverged is None
    assert t.complete and complete(got)  # two done and one failed of three
    assert got.extras["target"]["seeds"] == [0, 1]  # stored as the fold wrote it
    assert not complete(_trial(extras={"target": {**got.extras["target"], "failed": []}}))


@pytest.mark.parametrize("extras", [None, {}, {"unrelated": 1}])
def test_missing_extras_read_as_none_or_empty(extras):
    r = _trial(extras=extras)
    assert (r.role, r.stopped_at, r.target, r.retry_of, r.retried_as, r.checkpoint_dir) == (None,) * 6
    assert r.rungs == () and r.probes == () and r.rank_allocation == {}


def test_older_and_malformed_shapes_read_as_none_or_are_skipped():
    old_target = {"seeds": [0], "of": 2, "val": [0.7, 0.0], "test": None, "diverged": None}  # no failed, no own
    r = _trial(extras={"baseline": "", "fidelity": "step", "rungs": [[10, 0.5], [20], "x", 5, [30, None, 0.4, 0.1]],
                       "target": old_target, "retry_of": None, "rank_allocation": [1, 2], "checkpoints": 3})
    assert r.role is None  # an empty role is no role
    assert r.stopped_at is None
    assert r.rungs == (Rung(10, 0.5), Rung(30, None, 0.4, 0.1))  # entries that are not [step, metric, ...] skipped
    assert r.target == TargetSummary(seeds=(0,), of=2, val=(0.7, 0.0))
    assert not r.target.complete
    assert r.retry_of is None and r.rank_allocation == {} and r.checkpoint_dir is None

    for broken in ({"seeds": [0], "of": 2}, {"of": 2, "val": [0.7, 0.0]}, {"seeds": [0], "of": 2, "val": [0.7]},
                   "summary", []):
        assert _trial(extras={"target": broken}).target is None, broken
    assert _trial(extras={"rungs": "10,20"}).rungs == ()


def test_an_entry_recorded_before_rung_signals_is_judged_by_its_task_metric():
    signal = SimpleNamespace(name="eval_loss", direction="min")
    assert entry_reading(Rung(10, 0.5), signal) == Reading(0.5, 0.0)
    assert entry_reading(Rung(10, 0.5, 0.75, 0.0125), signal) == Reading(0.75, 0.0125)
    assert entry_reading(Rung(10, 0.5, 0.75, 0.0125), None) == Reading(0.5, 0.0)
    assert entry_reading(Rung(10, float("nan")), None) is None


def test_a_verified_point_says_so_and_is_not_judged_by_its_proxy_run():
    from autopeft.search.analysis.pareto import diverged
    from autopeft.search.analysis.trust import Verified, verified_records

    # The proxy run collapsed onto one class (diverged), but verify's seeds are what a verified point is judged by.
    collapsed = _trial(4, values=[0.4, 1000.0], metrics={"accuracy": 0.4}, extras={"predicted_classes": 1})
    study = StudyRecord(name="s", created_at=utcnow(), space_yaml="", space_hash="0" * 32, objectives=OBJECTIVES,
                        trials_target=4, model="m", model_fingerprint="x", dataset="d", data_fingerprint="y")
    v = Verified(subject="trial:4", trial_number=4, seeds=(0, 1), val=(0.8, 0.01), test=(0.79, 0.02),
                 trainable_params=1000, diverged=None, candidate=collapsed.candidate)
    [point] = verified_records(study, [collapsed], [v], "accuracy")
    assert not collapsed.verified and diverged(collapsed)
    assert point.verified and diverged(point) is None


def _stored_candidates(store: Store, table: str) -> list[str]:
    """The candidate column's text as the database holds it."""
    from sqlalchemy import text

    with store.engine.connect() as c:
        return [row[0] for row in c.execute(text(f"SELECT candidate FROM {table} ORDER BY id"))]


def test_a_record_reads_back_a_candidate_and_the_stored_json_is_unchanged(store):
    import json

    all_linear = {**CANDIDATE, "method": "ia3", "targets": "all-linear", "layers": [1], "layer_ranks": None}
    store.save_trial(_trial(0))
    store.save_trial(_trial(1, candidate=Candidate.from_json(all_linear)))  # given typed, stored the same
    runs = Verifications(store)
    runs.add([VerificationRecord(study="s", subject=f"trial:{n}", seed=0, protocol={}, candidate=c, trial_number=n)
              for n, c in ((0, CANDIDATE), (1, Candidate.from_json(all_linear)))])

    first, second = store.trials("s")
    assert isinstance(first.candidate, Candidate) and first.candidate.method == "lora"
    assert first.candidate.targets == Targets(("query", "value")) and first.candidate.layers == (0, 3)
    assert first.candidate.layer_ranks == (8, 2) and first.candidate.rank_of(3) == 2
    assert second.candidate.targets.all_linear and second.candidate.layer_ranks is None
    assert [v.candidate for v in runs.of("s")] == [first.candidate, second.candidate]
    # The rows hold byte for byte the JSON written when records held Candidate.to_json() itself.
    want = [json.dumps(CANDIDATE), json.dumps(all_linear)]
    assert _stored_candidates(store, "autopeft_trials") == _stored_candidates(store, "autopeft_verifications") == want
    assert first.candidate.to_json() == CANDIDATE and second.candidate.to_json() == all_linear
    # Saved again as read (a finish rewrites the row), the stored text stays the same.
    store.save_trial(first)
    assert _stored_candidates(store, "autopeft_trials") == want


def test_a_verification_rows_extras_read_back_typed_and_keep_their_shape(store):
    from autopeft.store.trial_extras import Diagnostics, own_run, run_cost

    runs = Verifications(store)
    seed = dict(study="s", subject="trial:3", protocol={}, candidate=CANDIDATE, trial_number=3)
    runs.add([VerificationRecord(**seed, seed=0), VerificationRecord(**seed, seed=1)])
    own_row, trained_row = sorted(runs.of("s"), key=lambda r: r.seed)
    # Written as the search writes them: the trial's own run keeps the trial's diagnostics
    # (seeds.queue), a trained row its cost beside what its trial process reported (runs.train).
    trial = {"predicted_classes": 1, "majority_rate": 0.45, "fidelity": 30, "rank_allocation": {"q": 2}}
    own = own_run(trial)
    trained = {"predicted_classes": 3, "majority_rate": 0.45, **run_cost(12.5, 40.0)}
    for row, extras in ((own_row, own), (trained_row, trained)):
        runs.claim_id(row.id, "w")
        runs.finish(dataclasses.replace(row, status="complete", extras=extras))
    got_own, got_trained = sorted(runs.of("s"), key=lambda r: r.seed)

    assert own == {"predicted_classes": 1, "majority_rate": 0.45, "trial_run": True}
    assert (got_own.extras, got_trained.extras) == (own, trained)  # stored as written
    assert got_own.trial_run and not got_trained.trial_run
    assert got_own.diagnostics == Diagnostics(1, 0.45) == _trial(extras=trial).diagnostics
    assert got_trained.diagnostics == Diagnostics(3, 0.45)
    assert (got_trained.cpu_time, got_trained.wall_time) == (12.5, 40.0)
    assert (got_own.cpu_time, got_own.wall_time) == (None, None)  # the trial's cost is on its trial record


@pytest.mark.parametrize("extras", [None, {}, {"cpu_time": "slow", "trial_run": 0, "predicted_classes": "one",
                                               "majority_rate": None}])
def test_missing_or_malformed_verification_extras_read_as_none(extras):
    from autopeft.store.trial_extras import Diagnostics

    r = VerificationRecord(study="s", subject="baseline", seed=0, protocol={}, candidate=CANDIDATE, extras=extras or {})
    assert (r.trial_run, r.cpu_time, r.wall_time) == (False, None, None)
    assert r.diagnostics == Diagnostics() == _trial(extras=extras).diagnostics


def test_divergence_and_the_adalora_hooks_read_the_typed_records():
    from autopeft.methods import get_method
    from autopeft.search.analysis.divergence import divergence
    from autopeft.store.trial_extras import Diagnostics

    collapsed = _trial(extras={"predicted_classes": 1, "majority_rate": 0.45})
    assert divergence({"accuracy": 0.5}, collapsed.diagnostics, []) == "predicts a single class"
    assert divergence({"accuracy": 0.44}, Diagnostics(3, 0.45), []).startswith("accuracy 0.440 is no better")
    assert divergence({"accuracy": 0.44}, _trial(extras={}).diagnostics, []) is None  # recorded without them

    adalora = get_method("adalora")
    config = {"peft_type": "ADALORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 4.0, "target_modules": ["query"]}
    query = "encoder.layer.0.attention.self.query"
    record = _trial(extras={"rank_allocation": {f"{query}.lora_E": 2}})
    lora = adalora.export_as("lora", config, record.rank_allocation)
    assert (lora["r"], lora["target_modules"]) == (2, re.escape(query))
    assert adalora.importance_map(_trial(extras={}).rank_allocation, None) is None  # none recorded
