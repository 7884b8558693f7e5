"""Stopping a search: SIGTERM and SIGINT (Ctrl-C) as a request to stop after the running trial.

:class:`StopSignals` is where stop requests land. ``autopeft search`` makes one per session;
a worker shares one across every study it serves.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopSignals:
    """SIGTERM and SIGINT as a request to stop, answered the way Ctrl-C always was.

    Slurm and Kubernetes stop a job with SIGTERM, so it must lose no more than Ctrl-C. Between
    trials a signal only sets :attr:`signal`, and the search stops at its next check (never
    in the middle of a database write). While a trial trains (inside :meth:`interruptible`)
    it raises ``KeyboardInterrupt``: the runner kills the trial process, and the session
    records the trial as interrupted and queues its point again. A second signal raises
    wherever it lands: the way out of a stuck sampler.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._armed = False

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop (the first signal asked for is the one reported)."""
        if self.signal is None:
            self.signal = signum

    @contextmanager
    def installed(self):
        """Handle SIGTERM and SIGINT inside the block (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def interruptible(self):
        """The block (a trial training) is interrupted by a stop, one already requested included."""
        if self.requested:
            raise KeyboardInterrupt
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def _handle(self, signum, _frame) -> None:
        again = self.requested
        self.request(signum)
        if self._armed or again:
            raise KeyboardInterrupt
