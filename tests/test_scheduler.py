"""The scheduler decides what a search runs next and whether a trial goes on at a rung; the
session only runs its answers. A scheduler passed to SearchSession is the one obeyed, and the
default one trains pending seed runs at the target before any new trial."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest

from autopeft.search.ledger.budget import Budget
from autopeft.search.prepare import prepare_search
from autopeft.search.scheduler import DefaultScheduler, NewTrial, Nothing, RunningTrial, SeedRun, SessionParts
from autopeft.search.session import SearchSession
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.store.verifications import Verifications
from autopeft.trials.spec import TrialResult
from test_target import SPACE as TARGET_SPACE

# test_target's space, as a study of its own that trains no reference trials.
SPACE = TARGET_SPACE.replace("study: tg", "study: sched").replace(
    "search: {sampler: tpe, trials: 9, startup_trials: 3, seed: 1}",
    "search: {sampler: tpe, trials: 3, startup_trials: 1, seed: 1, baseline: false}")
assert "study: sched" in SPACE and "baseline: false" in SPACE, "test_target's space changed: adapt this one"


def prep():
    return prepare_search(load_space_text(SPACE, "sched.yaml"))


class FakeRunner:
    """Trains nothing: records the specs it was given; the score rises along the rungs."""

    def __init__(self):
        self.specs = []

    def __call__(self, spec, on_rung=None):
        self.specs.append(spec)
        q = 0.9 - 0.1 * abs(math.log10(spec.learning_rate / 1e-3)) + 0.01 * (spec.proxy.seed % 3)
        for step in spec.proxy.rungs:
            metrics = {"accuracy": q * (0.5 + 0.5 * step / spec.proxy.steps)}
            if on_rung is not None and not on_rung(step, metrics):
                return TrialResult(status="pruned", metrics=metrics, trainable_params=None, extras={"fidelity": step})
        return TrialResult(status="complete", metrics={"accuracy": q}, test_metrics={"accuracy": q - 0.01},
                           trainable_params=None, train_time=1.0, peak_rss_mb=1.0)


class SpySampler(optuna.samplers.RandomSampler):
    """A random sampler that counts the trials it was asked for."""

    def __init__(self):
        super().__init__(seed=0)
        self.asked = 0

    def before_trial(self, study, trial):
        self.asked += 1
        super().before_trial(study, trial)


class NeverScheduler:
    """Runs nothing, ever."""

    def __init__(self):
        self.calls = 0

    def next(self, parts: SessionParts):
        self.calls += 1
        return Nothing(None, "budget")

    def judge(self, parts, trial):  # pragma: no cover - nothing runs
        raise AssertionError("no trial should be judged")


class StopAtFirstRung(DefaultScheduler):
    """The default's order, but every trial stops at its first rung (the rung still recorded)."""

    def judge(self, parts, trial: RunningTrial):
        inner = super().judge(parts, trial)

        class Stopping:
            def __call__(self, step, metrics):
                inner(step, metrics)  # records the rung entry as the default would
                return False

            def __getattr__(self, name):
                return getattr(inner, name)

        return Stopping()


def test_a_scheduler_answering_nothing_stops_the_step_before_the_sampler_is_asked(tmp_path):
    spy, runner, never = SpySampler(), FakeRunner(), NeverScheduler()
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    session = SearchSession(prep(), store, runner=runner, sampler=spy, scheduler=never)
    try:
        assert session.scheduler is never
        assert session.step() is None and session.step() is None
        assert never.calls == 2
        assert spy.asked == 0 and runner.specs == [] and store.trials("sched") == []
        # The same session with the default scheduler asks the sampler and trains: the spy sees it.
        session.scheduler = DefaultScheduler()
        record = session.step()
        assert record is not None and spy.asked == 1 and len(runner.specs) == 1
    finally:
        session.ledger.close()


def test_a_scheduler_that_stops_every_trial_at_its_first_rung_yields_pruned_records(tmp_path):
    runner = FakeRunner()
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    session = SearchSession(prep(), store, runner=runner, scheduler=StopAtFirstRung())
    out = session.run()
    assert len(out.records) == 3 and len(runner.specs) == 3
    assert [r.status for r in out.records] == ["pruned"] * 3
    first = session.prep.space.proxy.rungs[0]
    assert all([rung.step for rung in r.rungs] == [first] for r in out.records)
    # Nothing reached the target, so no seed run was queued.
    assert Verifications(store).count("sched", session.target_key, ("pending", "running", "complete", "failed")) == 0


def test_run_search_and_a_worker_obey_the_scheduler_they_are_given(tmp_path):
    from autopeft.search.loop import run_search
    from autopeft.search.worker import Worker

    runner = FakeRunner()
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    out = run_search(prep(), store, runner=runner, scheduler=StopAtFirstRung())
    assert [r.status for r in out.records] == ["pruned"] * 3 and len(runner.specs) == 3
    # A worker serving a study whose budget is raised: its sessions ask its scheduler too.
    store.set_trials_target("sched", 5)
    never = NeverScheduler()
    Worker(store, runner=runner, scheduler=never, poll=0.01).run_study("sched")
    assert never.calls >= 1 and len(runner.specs) == 3 and len(store.trials("sched")) == 3


def test_the_default_scheduler_trains_pending_seed_runs_before_new_trials(tmp_path):
    runner = FakeRunner()
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    session = SearchSession(prep(), store, runner=runner)
    try:
        first = session.step()  # the only trial at its first rung goes on to the target: seeds queued
        assert first.status == "complete" and not session.last_was_seed
        runs = Verifications(store)
        assert runs.count("sched", session.target_key, ("pending",)) == 2  # seeds 2 and 3 of 3
        numbers = [r.number for r in store.trials("sched")]
        for _ in range(2):
            record = session.step()
            assert session.last_was_seed and record.number == first.number
            assert [r.number for r in store.trials("sched")] == numbers  # no new trial was asked
        assert runs.count("sched", session.target_key, ("pending",)) == 0
        record = session.step()  # none pending: a new trial
        assert not session.last_was_seed and record.number == first.number + 1
    finally:
        session.ledger.close()


# ---------------------------------------------------------------------- the default's order, unit by unit
class FakeRuns:
    def __init__(self, row):
        self.row, self.claimed = row, []

    def requeue_stale(self, study, after):
        pass

    def claim(self, study, worker, *, only=None):
        self.claimed.append(only)
        row, self.row = self.row, None
        return row


class FakeLedger:
    def __init__(self, budget):
        self._budget, self.reads = budget, 0

    def budget(self, reap=False):
        assert reap, "the step's budget reaps dead processes' trials first"
        self.reads += 1
        return self._budget


def parts(row=None, budget=Budget(target=3, trained=0, running=0), target_key="k", stopped=False):
    study = dataclasses.make_dataclass("S", ["name"])("sched")
    return SessionParts(store=None, study=study, prep=None, ledger=FakeLedger(budget), runs=FakeRuns(row),
                        target_key=target_key, stopped=lambda: stopped)


def test_a_pending_seed_run_comes_before_the_budget_is_even_read():
    p = parts(row="seed-row")
    work = DefaultScheduler().next(p)
    assert work == SeedRun("seed-row") and p.ledger.reads == 0 and p.runs.claimed == ["k"]
    work = DefaultScheduler().next(p)  # that one claimed: a new trial while the budget has room
    assert isinstance(work, NewTrial) and work.budget.left == 3 and p.ledger.reads == 1


@pytest.mark.parametrize("kw,want", [
    ({"budget": Budget(target=3, trained=2, running=1)}, Nothing(Budget(3, 2, 1), "budget")),
    ({"stopped": True}, Nothing(None, "stop")),
])
def test_nothing_runs_when_the_budget_is_met_or_a_stop_came(kw, want):
    p = parts(**kw)
    assert DefaultScheduler().next(p) == want


def test_without_a_target_no_seed_run_is_looked_for():
    p = parts(row="seed-row", target_key=None)
    assert isinstance(DefaultScheduler().next(p), NewTrial) and p.runs.claimed == []
