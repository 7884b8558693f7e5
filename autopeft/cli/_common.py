"""What the command modules share: the ``--storage`` and ``--set`` options, the storage URL and the console."""

from __future__ import annotations

import sys
from typing import Optional

import typer

STORAGE = typer.Option(None, "--storage", help="Database URL (default sqlite:///autopeft.db; or $AUTOPEFT_STORAGE).")
SET = typer.Option(None, "--set", help="Override a DSL key, e.g. --set proxy.steps=10 (repeatable).")


def storage_url(url: Optional[str]) -> str:
    """``--storage``, else ``$AUTOPEFT_STORAGE``, else the default SQLite file."""
    import os

    from autopeft.store import DEFAULT_URL

    return url or os.environ.get("AUTOPEFT_STORAGE") or DEFAULT_URL


def make_console():
    """A rich console for tables and messages."""
    from rich.console import Console

    # Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)
