"""Persistence: optuna's RDBStorage plus autopeft's own tables in the same database."""

from autopeft.store.optuna_storage import LiveTrial
from autopeft.store.records import TRIAL_STATUSES, Resources, StudyRecord, TrialRecord
from autopeft.store.store import Store, TrialSummary, utcnow
from autopeft.store.url import DEFAULT_URL, mask_url, sqlite_file, storage_url

__all__ = ["DEFAULT_URL", "TRIAL_STATUSES", "LiveTrial", "Resources", "Store", "StudyRecord", "TrialRecord", "TrialSummary",
           "mask_url", "sqlite_file", "storage_url", "utcnow"]
