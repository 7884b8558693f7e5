"""What a search reports: :class:`SearchEvents` as it goes, :class:`SearchOutcome` at the end.

``autopeft.events`` implements the listeners (plain lines, MLflow) and the CLI draws its
progress bar from them; :class:`~autopeft.search.session.SearchSession` tells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from autopeft.candidate import Candidate
from autopeft.store import StudyRecord, TrialRecord


class SearchEvents(Protocol):
    """What the session reports as it goes (the CLI draws a progress bar from it)."""

    def started(self, study: StudyRecord, done: int, target: int) -> None: ...

    def trial_started(self, number: int, candidate: Candidate) -> None: ...

    def trial_finished(self, record: TrialRecord, records: list[TrialRecord]) -> None: ...

    # Optional (a listener without it is not told): a seed run at the target finished and
    # folded into ``record`` (``autopeft.search.seeds``).
    # def seed_finished(self, run: VerificationRecord, record: TrialRecord) -> None: ...


class Silent:
    """The listener of a session given none: told everything, says nothing."""

    def started(self, study, done, target): ...

    def trial_started(self, number, candidate): ...

    def trial_finished(self, record, records): ...


@dataclass(frozen=True)
class SearchOutcome:
    """What a search run did.

    Attributes:
        study: The study (as opened).
        records: Every record of the study at the end, any process's.
        interrupted: A stop was requested (Ctrl-C, SIGTERM); the running trial, if any, was
            recorded as interrupted and its point queued again.
        signal: The signal that stopped it (None: it ended on its own).
    """

    study: StudyRecord
    records: list[TrialRecord]
    interrupted: bool = False
    signal: int | None = None
