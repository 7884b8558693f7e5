"""The one exception root of autopeft.

Every error a user can cause (a bad YAML, a missing model, an unreachable database) is an
``AutoPeftError`` whose message says what was wrong and how to fix it. The CLI prints that
message on one line and exits 2; anything else escaping is a bug.
"""

from __future__ import annotations


class AutoPeftError(Exception):
    """Root of every error autopeft raises on purpose."""


class SpaceError(AutoPeftError):
    """A search space is invalid. The message names the file, the key path and what was expected.

    Args:
        source: The YAML file (or ``--set``) the value came from.
        path: Dotted key path inside the document, e.g. ``space.rank[2]``.
        problem: What is wrong and what was expected.
    """

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


class AssetError(AutoPeftError):
    """A model or data set could not be found, read or understood."""


class DataError(AssetError):
    """A row of a data set cannot serve the task as declared (an empty completion, an answer
    outside ``task.choices``, a malformed chat). The message names the data set, the row
    (counting data rows from 1, header excluded), the column and the fix."""


class StoreError(AutoPeftError):
    """The database could not be reached or does not hold what was asked for."""


class LedgerError(StoreError):
    """The trial ledger cannot do what was asked: settings under which live trials would be
    failed as dead, or a trial it does not know."""


class MethodError(AutoPeftError):
    """A PEFT method could not be built from a candidate."""


class ExportError(AutoPeftError):
    """A trial could not be exported."""
