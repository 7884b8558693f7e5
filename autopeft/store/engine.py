"""The SQLAlchemy engine of a store's URL, and how a database error reads in one line.

:func:`make_engine` checks the URL (a malformed one, a missing SQLite directory, an unknown
driver is a ``StoreError``), creates the engine with :func:`engine_kwargs` (optuna's storages
are created with the same) and, on SQLite, turns on WAL and foreign keys at every connection.
"""

from __future__ import annotations

from pathlib import Path

from autopeft.errors import StoreError


def engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several processes share one SQLite file: wait for locks instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def make_engine(url: str, display: str):
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"'{display}' is not a database URL; expected e.g. sqlite:///autopeft.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"SQLite database {display}: the directory {parent} does not exist")
    try:
        engine = create_engine(url, **engine_kwargs(url))
    except NoSuchModuleError:
        raise StoreError(f"'{display}': unknown database dialect or driver; use sqlite:/// or postgresql+psycopg://") from None
    except ModuleNotFoundError as e:
        raise StoreError(f"'{display}' needs the Python package '{e.name}': pip install 'psycopg[binary]' for PostgreSQL") from None
    if parsed.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # readers never block the writer; workers share the file
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    return engine


def first_line(e: Exception) -> str:
    """The first line of a database error (the driver's own message when there is one), at most 300 characters."""
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
