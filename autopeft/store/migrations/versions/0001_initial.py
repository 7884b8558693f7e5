"""autopeft studies and trials

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopeft_studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("space_yaml", sa.Text, nullable=False),
        sa.Column("space_hash", sa.String(32), nullable=False),
        sa.Column("objectives", sa.JSON, nullable=False),
        sa.Column("trials_target", sa.Integer, nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("model_fingerprint", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(500), nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("budget_params", sa.Integer, nullable=True),
        sa.Column("importance", sa.JSON, nullable=True),
        sa.Column("autopeft_version", sa.String(32), nullable=False),
    )
    op.create_table(
        "autopeft_trials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("autopeft_studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("candidate", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("peft_config", sa.JSON, nullable=True),
        sa.Column("trainable_params", sa.Integer, nullable=True),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("values", sa.JSON, nullable=True),
        sa.Column("curve", sa.JSON, nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("extras", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sampler_time", sa.Float, nullable=True),
        sa.UniqueConstraint("study_id", "number", name="uq_autopeft_trials_study_number"),
    )


def downgrade() -> None:
    op.drop_table("autopeft_trials")
    op.drop_table("autopeft_studies")
