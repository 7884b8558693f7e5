"""Persistence: optuna's RDBStorage plus autopeft's own tables in the same database."""

from autopeft.store.records import TRIAL_STATUSES, StudyRecord, TrialRecord
from autopeft.store.store import DEFAULT_URL, LiveTrial, Store, TrialSummary, mask_url, utcnow

__all__ = ["DEFAULT_URL", "TRIAL_STATUSES", "LiveTrial", "Store", "StudyRecord", "TrialRecord", "TrialSummary",
           "mask_url", "utcnow"]
