"""What the command modules share: the ``--storage`` and ``--set`` options, the storage URL and the console.

What they print is in ``autopeft.cli.render``, ``autopeft.cli.trial_table`` and ``autopeft.cli.comparison``.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

# The command modules import it from here, with the options it goes with.
from autopeft.store.url import storage_url  # noqa: F401

STORAGE = typer.Option(None, "--storage", help="Database URL (default sqlite:///autopeft.db; or $AUTOPEFT_STORAGE).")
SET = typer.Option(None, "--set", help="Override a DSL key, e.g. --set proxy.steps=10 (repeatable).")


def make_console():
    """A rich console for tables and messages."""
    from rich.console import Console

    # Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)



@contextmanager
def naming_the_space(space):
    """Data and model errors inside this block name the YAML file and the key they are about
    (``quickstart.yaml: task.label: dataset 'x.csv' has no column 'lbl'; ...``), as every
    error the space's own checks raise does (``SpaceError``)."""
    from autopeft.errors import AssetError

    try:
        yield
    except AssetError as e:
        key = getattr(e, "key", None) or _key_of(str(e))
        if key is None or str(e).startswith(f"{space.source}:"):
            raise
        error = type(e)(f"{space.source}: {key}: {e}")
        error.key = key
        raise error from e


def _key_of(message: str) -> str | None:
    """The space key an untagged asset error is about, from the thing its message starts with."""
    if message.startswith(("model ", "model alias ", "the model's ")):
        return "model"
    if message.startswith(("dataset ", "dataset alias ")):
        return "task.dataset"
    return None
