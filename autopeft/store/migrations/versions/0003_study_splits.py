"""the study's data splits: counts, seed, where the test split came from, fingerprint

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: studies made before this revision (and studies submitted without their data
    # prepared) have no record of their splits until a search or worker prepares the data.
    with op.batch_alter_table("autopeft_studies") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("splits", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autopeft_studies") as batch:
        batch.drop_column("splits")
