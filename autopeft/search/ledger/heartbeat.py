"""Heartbeats: how a running trial shows that its process is alive, and when it counts as dead.

optuna keeps a heartbeat per trial; a RUNNING trial whose last beat is older than ``grace``
seconds belongs to a dead process, and the reaper (:mod:`autopeft.search.ledger.reaper`) fails it
and queues its point again. :class:`LedgerSettings` holds those numbers (optuna's heartbeat
storage is opened with them), :class:`Heartbeat` beats for one trial from ask to finish, in a
single ``autopeft search`` as in a worker.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from autopeft.errors import LedgerError

log = logging.getLogger("autopeft")


@dataclass(frozen=True)
class LedgerSettings:
    """How dead processes are told from slow ones.

    Attributes:
        heartbeat: Seconds between heartbeats of a running trial (optuna keeps whole
            seconds, at least 1).
        grace: Seconds without a heartbeat after which a trial's process counts as dead:
            its trial is failed and its point queued again.
        retries: How often one point is queued again (after a dead process or an interrupt).
    """

    heartbeat: float = 10.0
    grace: float = 60.0
    retries: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.heartbeat:
            raise LedgerError(f"heartbeat must be at least 1 s (optuna keeps whole seconds), got {self.heartbeat:g}")
        if round(self.grace) <= round(self.heartbeat):
            raise LedgerError(f"--grace ({self.grace:g} s) must be longer than --heartbeat ({self.heartbeat:g} s), "
                              "or live trials would be failed as dead")
        if self.retries < 0:
            raise LedgerError(f"retries must be 0 or more, got {self.retries}")


class Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds from a daemon thread until stopped.

    The trial trains in a child process, so this process is mostly idle and the beat is
    steady. A beat that fails (a database blip) is logged on the ``autopeft`` logger and
    tried again at the next interval; after ``grace`` seconds of failures other processes
    will treat the trial as lost, which is what the warning says.
    """

    def __init__(self, storage, trial_id: int, label: str, interval: float, grace: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.label = label
        self.interval = interval
        self.grace = grace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{label}", daemon=True)
        self._failing_since: float | None = None

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        self._beat()  # at once: optuna cannot call a trial stale before its first beat
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as e:  # noqa: BLE001 - the next beat may succeed; say so, never crash the trial
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("heartbeat of %s failed (%s: %s); retrying every %g s — after %g s without one, "
                            "other processes will fail the trial as lost", self.label, type(e).__name__,
                            str(e).splitlines()[0][:200] if str(e) else "", self.interval, self.grace)
            return
        if self._failing_since is not None:
            log.warning("heartbeat of %s recovered after %.0f s", self.label, time.monotonic() - self._failing_since)
            self._failing_since = None
