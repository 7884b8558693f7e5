"""Database calls made again when they failed for a reason that a moment's wait cures.

Many processes share one database (with SQLite, one writer at a time), so a call can fail
through no fault of its caller: a lock held past the busy timeout, a deadlock victim, a
dropped connection, or a table another process is creating right now. :func:`retried` is the
one loop that waits and calls again; each caller says which errors are worth it, how long to
wait and how often, and what to raise once it gives up. Only calls that are safe to repeat
go through it.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: Errors a retry cures: SQLite's writer lock held past the busy timeout by another
#: process, PostgreSQL's deadlock victim or serialisation failure, a dropped connection.
_TRANSIENT = ("database is locked", "database table is locked", "deadlock detected", "could not serialize",
              "server closed the connection", "connection reset")


def is_transient(e: BaseException) -> bool:
    """Would the same database call probably succeed if made again in a moment?"""
    text = str(getattr(e, "orig", None) or e).lower()
    return any(t in text for t in _TRANSIENT)


def is_transient_chain(e: BaseException | None) -> bool:
    """Is ``e``, or one of the errors that caused it, transient (:func:`is_transient`)?"""
    # optuna wraps driver errors in StorageInternalError with a generic message: look at the causes.
    seen = 0
    while e is not None and seen < 5:
        if is_transient(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def retried(call: Callable[[], T], *, attempts: int, retry_if: Callable[[Exception], bool],
            pause: Callable[[int], float]) -> T:
    """``call()``, made again while it fails with an error that ``retry_if`` accepts.

    Args:
        call: What to run; it must be safe to repeat.
        attempts: How many calls at most, the first included.
        retry_if: Whether an error is worth another attempt; any other error is raised at once.
        pause: Seconds to wait after failed attempt ``n`` (1-based) before the next.

    Returns:
        What ``call`` returned.

    Raises:
        Exception: The error of the last attempt, or the first one ``retry_if`` refused,
            unchanged: translating it is the caller's business.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as e:
            if attempt == attempts or not retry_if(e):
                raise
            time.sleep(pause(attempt))
    raise AssertionError("unreachable")


def retried_optuna(call: Callable[[], T], attempts: int = 6) -> T:
    """``call()`` on optuna's storage, again after a pause when the database was busy.

    optuna reports a busy database as its own ``StorageInternalError``, so the cause chain is
    what is looked at (:func:`is_transient_chain`). The error of the last attempt is raised
    as it is.
    """
    return retried(call, attempts=attempts, retry_if=is_transient_chain, pause=lambda n: min(5.0, 0.1 * 2 ** n))
