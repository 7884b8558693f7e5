"""Which database to open, and how to show its URL.

A URL can carry a password (``postgresql+psycopg://user:password@host/db``): whatever
prints or logs one shows ``mask_url(url)``, never the URL itself.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_URL = "sqlite:///autopeft.db"
#: The environment variable a storage URL comes from when none is given.
STORAGE_ENV = "AUTOPEFT_STORAGE"


def storage_url(given: str | None = None, *, env: tuple[str, ...] = (STORAGE_ENV,)) -> str:
    """The database URL to open: ``given``, else the first of the environment variables
    ``env`` that is set, else ``DEFAULT_URL``.

    An empty string counts as unset, so that ``AUTOPEFT_STORAGE=`` falls back to the default.

    Args:
        given: The URL the caller was handed (``--storage``, ``storage=``), or None.
        env: The environment variables to look in, in order.
    """
    if given:
        return given
    for name in env:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_URL


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to print or log."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not parseable: hide everything between '://' and '@'
        head, sep, tail = url.partition("://")
        return head + sep + ("***@" + tail.split("@", 1)[1] if "@" in tail else tail)


def sqlite_file(url: str) -> Path | None:
    """The file of a file-backed SQLite URL, else None (another database, in-memory SQLite,
    or a URL that does not parse: opening a ``Store`` says what is wrong with it)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()
