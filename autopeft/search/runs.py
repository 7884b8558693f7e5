"""Verification runs, trained: claimed from the queue, beaten while they train, recorded.

``autopeft verify`` plans rows in ``autopeft_verifications`` (:mod:`autopeft.search.verify`), and
a study with a ``target:`` queues its seed runs there (:mod:`autopeft.search.seeds`). Whoever
serves the queue trains them here, through one code path: ``verify`` itself
(:func:`run_pending`), a worker and a search session (:func:`run_one`). Each claimed run beats a
heartbeat while it trains; a ``running`` row without one for :data:`STALE_AFTER` seconds belonged
to a dead process and is queued again. A run that fails is recorded ``failed`` with its reason,
never raised: the queue goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import traceback
from typing import TYPE_CHECKING, Callable

from autopeft.errors import AutoPeftError
from autopeft.store import trial_extras
from autopeft.store.trial_extras import run_cost
from autopeft.store.verifications import VerificationRecord, Verifications

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.search.protocol import RunProtocol

logger = logging.getLogger("autopeft")

#: Seconds between heartbeats of a running verification, and without one after which its
#: process counts as dead and the run is queued again (a trial's, ``LedgerSettings``).
HEARTBEAT = 10.0
STALE_AFTER = 60.0


def run_pending(runs: Verifications, name: str, prep, *, worker: str | None = None,
                log: Callable[[str], None] = lambda line: None, subjects: set[str] | None = None,
                limit: int | None = None, protocol: RunProtocol | None = None) -> int:
    """Claim and train the study's pending runs (oldest first) until none is left; returns how many ran.

    Other processes may be claiming too: each run is trained once. ``subjects`` limits this
    process to those rows (it then leaves the others for later); ``protocol`` to the rows of
    that protocol (``prep`` trains them: a study's seed runs at its target need the search's
    preparation, a full-fidelity re-check another).
    """
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    runs.requeue_stale(name, STALE_AFTER)
    only = protocol.key() if protocol is not None else None
    done = 0
    while limit is None or done < limit:
        record = (runs.claim(name, worker, only=only) if subjects is None
                  else _claim_among(runs, name, worker, subjects, only))
        if record is None:
            return done
        log(f"verify {name}: {record.subject} seed {record.seed}, {record.protocol['steps']} steps")
        finished = run_one(runs, record, prep)
        if finished.status == "failed":
            log(f"verify {name}: {record.subject} seed {record.seed} failed: {finished.error}")
        done += 1
    return done


def run_one(runs: Verifications, record: VerificationRecord, prep, *,
            interruptible=contextlib.nullcontext, runner=None) -> VerificationRecord:
    """Train one claimed run and record its outcome; returns the finished record.

    A run that fails (a crash, a non-finite loss, a configuration that cannot be built, or
    anything raised here) is recorded as ``failed`` with its reason, never raised: whoever
    runs the queue goes on with the next run. An exception raised here (not a failure the
    trial process reported) keeps its traceback: logged, and in ``extras["traceback"]``.
    Only an interruption (``KeyboardInterrupt``, e.g. SIGTERM to a worker) propagates, with
    the run put back to ``pending``.
    ``interruptible()`` wraps the training only (a worker's ``StopSignals.interruptible``),
    never the database writes. ``runner`` trains the spec (default: an isolated trial process).
    """
    # A failed run queued again keeps its extras: the last attempt's traceback is not this one's.
    record = dataclasses.replace(record, extras=trial_extras.without_traceback(record.extras))
    try:
        with interruptible(), beating(runs, record):
            finished = train(record, prep, runner=runner)
    except KeyboardInterrupt:
        runs.release(record)
        raise
    except Exception as e:  # noqa: BLE001 - one bad run must not stop the queue
        trace = traceback.format_exc()
        logger.error("study '%s' verification %s seed %d failed:\n%s", record.study, record.subject, record.seed,
                     trace.rstrip())
        finished = dataclasses.replace(record, status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                                       extras=trial_extras.with_traceback(record.extras, trace))
    runs.finish(finished)
    return finished


@contextlib.contextmanager
def beating(runs: Verifications, record: VerificationRecord, every: float = HEARTBEAT):
    """Beat ``record``'s heartbeat every ``every`` seconds while the block runs (a thread: the
    training happens in a child process, this one only waits)."""
    import threading

    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                runs.beat(record.id)
            except Exception as e:  # noqa: BLE001 - a missed beat is retried; the run goes on
                logger.warning("verification %s seed %d: heartbeat failed (%s)", record.subject, record.seed, e)

    thread = threading.Thread(target=beat, name=f"verify-heartbeat-{record.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _claim_among(runs: Verifications, name: str, worker: str, subjects: set[str],
                 only: str | None = None) -> VerificationRecord | None:
    pending = [r for r in runs.of(name) if r.status == "pending" and r.subject in subjects
               and (only is None or r.protocol_key == only)]
    for r in pending:
        claimed = runs.claim_id(r.id, worker)
        if claimed is not None:
            return claimed
    return None


def train(record: VerificationRecord, prep, runner=None) -> VerificationRecord:
    """Train one claimed run (in an isolated trial process unless ``runner`` says otherwise);
    its record with the outcome."""
    from autopeft.search.prepare import full_run_spec
    from autopeft.search.protocol import BY_SEED
    from autopeft.trials.executor import run_isolated

    try:
        if record.protocol.get("rows") == BY_SEED:  # the seed draws its rows from every training row
            prep = prep.with_every_training_row()
        spec = full_run_spec(prep, record.candidate, study=record.study,
                             trial=record.trial_number or 0, steps=record.protocol["steps"],
                             batch_size=record.protocol["batch_size"], seed=record.seed, test_split=True)
    except AutoPeftError as e:
        return dataclasses.replace(record, status="failed", error=str(e))
    result = (runner or run_isolated)(spec)
    spent = run_cost(result.cpu_time, result.wall_time)  # what the run cost, beside what it found
    if result.status != "complete":
        return dataclasses.replace(record, status="failed", error=result.error, curve=result.curve,
                                   extras={**record.extras, **spent})
    return dataclasses.replace(record, status="complete", metrics=result.metrics, test_metrics=result.test_metrics,
                               trainable_params=result.trainable_params, curve=result.curve,
                               extras={**result.extras, **spent})
