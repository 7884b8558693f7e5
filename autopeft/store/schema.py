"""The alembic revision of autopeft's tables: bringing them to head, reading it, checking it.

autopeft's migrations live in ``migrations/`` and its revision in :data:`VERSION_TABLE`
(optuna manages its own tables and keeps its revision in ``alembic_version``). A store opened
to write runs :func:`upgrade_to_head`; a read-only one runs :func:`require_current_revision`,
which changes nothing and says how to upgrade.
"""

from __future__ import annotations

import random
from pathlib import Path

from autopeft.errors import StoreError
from autopeft.store.engine import first_line, make_engine
from autopeft.store.retry import is_transient, retried
from autopeft.store.url import mask_url

MIGRATIONS = Path(__file__).parent / "migrations"
#: Where autopeft's alembic revision lives (``migrations/env.py`` says the same); optuna's
#: own revision stays in ``alembic_version``.
VERSION_TABLE = "autopeft_alembic_version"


def _created_meanwhile(e: BaseException) -> bool:
    text = str(getattr(e, "orig", None) or e).lower()
    return "already exists" in text or "duplicate key" in text or "unique constraint" in text


def upgrade_to_head(engine, display_url: str) -> None:
    """Bring autopeft's tables to the newest revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    def upgrade() -> None:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    try:
        # Processes opening a fresh database together (two searches, N workers) all find
        # no tables and all create them; the losers fail (table exists, duplicate key,
        # locked). Once the winner has committed, a retry finds them at head.
        retried(upgrade, attempts=6,
                retry_if=lambda e: isinstance(e, (SQLAlchemyError, CommandError))
                and (is_transient(e) or _created_meanwhile(e)),
                pause=lambda n: random.uniform(0.1, 0.3) * n)
    except (SQLAlchemyError, CommandError) as e:  # unreachable server, no permission, a foreign schema
        raise StoreError(f"cannot prepare the database {display_url}: {first_line(e)}") from e


def require_current_revision(engine, display_url: str) -> None:
    """Refuse (``StoreError``, saying how to upgrade) autopeft's tables when they are not at head."""
    current, head = read_revision(engine, display_url), head_revision()
    if current != head:
        state = "do not exist yet" if current is None else f"are at revision {current}"
        raise StoreError(f"autopeft's tables in {display_url} {state}; this autopeft reads revision {head}. "
                         f"Opened read-only, nothing was changed: run `autopeft db upgrade --storage URL` first")


def head_revision() -> str:
    """The newest revision of autopeft's tables this code knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def schema_revision(url: str) -> str | None:
    """The revision of autopeft's tables at ``url`` (None: not created), without opening a Store."""
    display = mask_url(url)
    engine = make_engine(url, display)
    try:
        return read_revision(engine, display)
    finally:
        engine.dispose()


def read_revision(engine, display_url: str) -> str | None:
    """The revision of autopeft's tables on ``engine`` (None: not created), read without changing anything."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except SQLAlchemyError as e:
        raise StoreError(f"cannot read {display_url}: {first_line(e)}") from e
