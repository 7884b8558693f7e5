"""autopeft's own tables, beside optuna's in the same database (prefix ``autopeft_``).

Optuna's tables are the trial ledger the samplers read; these hold what optuna has no
place for: the space YAML, asset fingerprints, the importance map, and per trial the
candidate, the peft config, metrics, learning curve, resources and error text.
Schema changes go through the alembic migrations in ``autopeft/store/migrations``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

studies = Table(
    "autopeft_studies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("space_yaml", Text, nullable=False),
    Column("space_hash", String(32), nullable=False),
    Column("objectives", JSON, nullable=False),
    Column("trials_target", Integer, nullable=False),
    Column("model", String(500), nullable=False),
    Column("model_fingerprint", String(64), nullable=False),
    Column("dataset", String(500), nullable=False),
    Column("data_fingerprint", String(64), nullable=False),
    Column("budget_params", Integer, nullable=True),
    Column("importance", JSON, nullable=True),
    Column("splits", JSON, nullable=True),
    Column("autopeft_version", String(32), nullable=False),
)

trials = Table(
    "autopeft_trials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("autopeft_studies.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("candidate", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("peft_config", JSON, nullable=True),
    Column("trainable_params", Integer, nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("values", JSON, nullable=True),
    Column("curve", JSON, nullable=False),
    Column("resources", JSON, nullable=False),
    Column("extras", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("sampler_time", Float, nullable=True),
    UniqueConstraint("study_id", "number", name="uq_autopeft_trials_study_number"),
)

verifications = Table(
    "autopeft_verifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("autopeft_studies.id", ondelete="CASCADE"), nullable=False),
    # "trial:12" (a searched trial's configuration) or "baseline" (default LoRA)
    Column("subject", String(32), nullable=False),
    Column("trial_number", Integer, nullable=True),
    Column("seed", Integer, nullable=False),
    Column("protocol_key", String(32), nullable=False),
    Column("protocol", JSON, nullable=False),
    Column("candidate", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | running | complete | failed
    Column("metrics", JSON, nullable=False),  # validation split
    Column("test_metrics", JSON, nullable=False),  # the test split the search never read
    Column("trainable_params", Integer, nullable=True),
    Column("curve", JSON, nullable=False),
    Column("extras", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # Beaten while the run trains: a running row whose beat is older than the grace is a dead process's.
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("study_id", "subject", "seed", "protocol_key", name="uq_autopeft_verifications_job"),
)
