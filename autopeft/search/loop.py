"""``run_search``: run (or resume) a study from this process until its target is reached.

A thin wrapper over :class:`autopeft.search.session.SearchSession` (one trial per ``step()``);
the pairing of optuna trials with autopeft's records, the budget, heartbeats and reaping
live in :mod:`autopeft.search.ledger`. ``autopeft search``, the tests and the benchmarks
call this; ``autopeft worker`` drives sessions itself (:mod:`autopeft.search.worker`).
"""

from __future__ import annotations

from autopeft.search.ledger.budget import trained_count
from autopeft.search.ledger.heartbeat import LedgerSettings
from autopeft.search.objectives import BUDGET_CONSTRAINT, objective_values
from autopeft.search.optuna_setup import optuna_study
from autopeft.search.prepare import PreparedSearch
from autopeft.search.reports import SearchEvents, SearchOutcome
from autopeft.search.scheduler import Scheduler
from autopeft.search.session import Runner, SearchSession
from autopeft.search.signals import StopSignals
from autopeft.search.studies import open_study, study_importance
from autopeft.store import Store

# The search's public names, importable from here wherever they live (the CLI, the API, the
# dashboard and the benchmarks import them from here).
__all__ = [
    "BUDGET_CONSTRAINT", "LedgerSettings", "Runner", "Scheduler", "SearchEvents", "SearchOutcome", "SearchSession",
    "StopSignals",
    "objective_values", "open_study", "optuna_study", "run_search", "study_importance", "trained_count",
]


def run_search(
    prep: PreparedSearch,
    store: Store,
    *,
    trials: int | None = None,
    runner: Runner | None = None,
    events: SearchEvents | None = None,
    sampler=None,
    settings: LedgerSettings | None = None,
    stop: StopSignals | None = None,
    scheduler: Scheduler | None = None,
) -> SearchOutcome:
    """Run (or resume) the study of ``prep`` until it has ``trials`` trained trials.

    The budget counts trials other processes are training on the same study (two
    ``autopeft search`` at once overshoot it by at most one), and a trial left running by a
    process that died is failed after ``settings.grace`` seconds without a heartbeat and
    run again. SIGTERM and Ctrl-C stop after recording the running trial as failed
    ("interrupted") and queueing its point again; the outcome says ``interrupted`` and
    which signal. Nothing stored is lost.

    Args:
        sampler: A ready optuna sampler instead of ``make_sampler(space.search, encoding)``.
        settings: Heartbeat, grace and retries (default ``LedgerSettings()``: 10 s, 60 s, 2).
        stop: Where stop requests land (default: a fresh one handling SIGTERM and SIGINT).
        scheduler: What runs next and whether a trial goes on at a rung (default:
            ``autopeft.search.scheduler.DefaultScheduler``).
    """
    session = SearchSession(prep, store, trials=trials, runner=runner, events=events, sampler=sampler,
                            settings=settings, stop=stop, scheduler=scheduler)
    return session.run()
