"""The ``dashboard`` command: the Streamlit dashboard (``autopeft.dashboard``) on a database.

A plain function: ``autopeft.cli`` registers it on its app.
"""

from __future__ import annotations

from typing import Optional

import typer

from autopeft.cli._common import STORAGE, storage_url


def dashboard(
    storage: Optional[str] = STORAGE,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = typer.Option(8501, "--port"),
    read_only: bool = typer.Option(False, "--read-only", help="Hide the New search page."),
) -> None:
    """Open the Streamlit dashboard on the same database."""
    from autopeft.dashboard.launch import launch

    raise typer.Exit(launch(storage_url(storage), host=host, port=port, read_only=read_only))
