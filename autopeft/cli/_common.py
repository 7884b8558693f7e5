"""What the command modules share: the ``--storage`` and ``--set`` options, the storage URL and the console.

What they print is in ``autopeft.cli.render``.
"""

from __future__ import annotations

import sys

import typer

# The command modules import it from here, with the options it goes with.
from autopeft.store.url import storage_url

STORAGE = typer.Option(None, "--storage", help="Database URL (default sqlite:///autopeft.db; or $AUTOPEFT_STORAGE).")
SET = typer.Option(None, "--set", help="Override a DSL key, e.g. --set proxy.steps=10 (repeatable).")


def make_console():
    """A rich console for tables and messages."""
    from rich.console import Console

    # Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)

