"""verification runs of front points (autopeft verify)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopeft_verifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("autopeft_studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subject", sa.String(32), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("protocol_key", sa.String(32), nullable=False),
        sa.Column("protocol", sa.JSON, nullable=False),
        sa.Column("candidate", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("test_metrics", sa.JSON, nullable=False),
        sa.Column("trainable_params", sa.Integer, nullable=True),
        sa.Column("curve", sa.JSON, nullable=False),
        sa.Column("extras", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("study_id", "subject", "seed", "protocol_key", name="uq_autopeft_verifications_job"),
    )
    op.create_index("ix_autopeft_verifications_status", "autopeft_verifications", ["study_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_autopeft_verifications_status", table_name="autopeft_verifications")
    op.drop_table("autopeft_verifications")
