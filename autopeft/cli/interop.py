"""Commands that meet users in the tools they already use: ``db annotate`` (optuna-dashboard).

Plain functions: ``autopeft.cli`` registers them on its app.
"""

from __future__ import annotations

from typing import Optional

import typer

from autopeft.cli._common import STORAGE, storage_url


def db_annotate(
    study: str = typer.Argument(..., help="Study to annotate."),
    storage: Optional[str] = STORAGE,
) -> None:
    """Make a study readable in optuna-dashboard: metric names with their scale, and the decoded
    configuration, metrics and peft config of every trial as user attributes (safe to rerun)."""
    from autopeft.search.optuna_view import annotate_study, metric_names
    from autopeft.store import Store

    store = Store(storage_url(storage))
    try:
        n = annotate_study(store, study)
        names = ", ".join(metric_names(store.get_study(study).objectives))
    finally:
        store.close()
    typer.echo(f"annotated study {study} in {store.display_url}: metrics {names}; user attributes on {n} trial(s)")
    typer.echo(f"  view it: optuna-dashboard '{store.display_url}'")
