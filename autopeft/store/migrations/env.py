"""Alembic environment for autopeft's own tables.

Optuna keeps its schema version in ``alembic_version``; ours lives in
``autopeft_alembic_version`` so the two migration histories never collide.
"""

from alembic import context

from autopeft.store.schema import VERSION_TABLE
from autopeft.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    include_name=lambda name, type_, parent: type_ != "table" or name.startswith("autopeft_"),
)
with context.begin_transaction():
    context.run_migrations()
