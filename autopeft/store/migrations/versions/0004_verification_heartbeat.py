"""a heartbeat for verification runs: a dead process's run is queued again within a minute

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a run claimed before this revision has none; its start time stands in.
    with op.batch_alter_table("autopeft_verifications") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autopeft_verifications") as batch:
        batch.drop_column("heartbeat_at")
