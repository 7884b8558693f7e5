"""Commands for many workers sharing one database: ``worker`` and ``db upgrade`` / ``db current``.

Plain functions: ``autopeft.cli`` registers them on its app (``db`` as a group with ``DB_HELP``).
"""

from __future__ import annotations

from typing import Optional

import typer

from autopeft.cli._common import STORAGE, storage_url

DB_HELP = "autopeft's own tables in the database (optuna migrates its tables itself)."


def db_upgrade(storage: Optional[str] = STORAGE) -> None:
    """Create or migrate autopeft's tables to the newest revision (safe to rerun).

    Also creates optuna's tables when they are missing; an older optuna schema is left
    alone (``optuna storage upgrade`` migrates it).
    """
    from autopeft.store import Store
    from autopeft.store.schema import schema_revision

    url = storage_url(storage)
    before = schema_revision(url)
    store = Store(url)  # opening a store migrates autopeft's tables to head
    try:
        # Create optuna's tables now too (if missing), so that workers started together on
        # this database do not race to create them. Existing ones are left as they are.
        store.optuna_storage
        after = schema_revision(url)
        if before == after:
            typer.echo(f"autopeft tables in {store.display_url} already at revision {after} (head)")
        else:
            typer.echo(f"autopeft tables in {store.display_url}: {before or 'empty'} -> {after} (head)")
    finally:
        store.close()


def db_current(storage: Optional[str] = STORAGE) -> None:
    """Print the revision of autopeft's tables, without changing anything."""
    from autopeft.store import mask_url
    from autopeft.store.schema import head_revision, schema_revision

    url = storage_url(storage)
    rev = schema_revision(url)
    head = head_revision()
    state = "not created (run: autopeft db upgrade)" if rev is None else (
        f"{rev} (head)" if rev == head else f"{rev} (head is {head}: run autopeft db upgrade)")
    typer.echo(f"autopeft tables in {mask_url(url)}: {state}")


def worker(
    study: Optional[str] = typer.Argument(None, help="Study to join (default: serve every study with trials left)."),
    storage: Optional[str] = STORAGE,
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Stop after training this many trials."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, help="Start no new trial after this many seconds."),
    poll: float = typer.Option(5.0, "--poll", min=0.1, help="Seconds between looks for new work when idle."),
    exit_when_idle: bool = typer.Option(False, "--exit-when-idle", help="Without STUDY: exit when no study has trials "
                                        "or queued verification runs left."),
    heartbeat: int = typer.Option(10, "--heartbeat", min=1, help="Seconds between heartbeats of the running trial."),
    grace: int = typer.Option(60, "--grace", min=2, help="Seconds without a heartbeat before a trial's worker counts as dead."),
    retries: int = typer.Option(2, "--retries", min=0, help="How often a dead worker's trial is re-run."),
) -> None:
    """Join studies in a shared database (SQLite file or PostgreSQL) and run their trials.

    With STUDY, runs trials until that study's trial budget is met. Without it, serves
    every study that has trials left, oldest first, taking turns trial by trial, and waits
    for new studies. SIGTERM records the running trial as failed ("interrupted") and exits 143.
    A trial whose worker died (no heartbeat for --grace seconds) is failed and re-run by any
    worker; with STUDY, a worker stays until no other worker's trial is still running.

    Verification runs queued by `autopeft verify` (of STUDY, or of every study) are served
    first, oldest first, each claimed by one process; --trials counts trials only.
    """
    from autopeft.search.worker import Worker
    from autopeft.store import Store

    store = Store(storage_url(storage))
    try:
        w = Worker(store, max_trials=trials, timeout=timeout, heartbeat=heartbeat, grace=grace, retries=retries,
                   poll=poll)
        typer.echo(f"worker {w.name} on {store.display_url}" + (f", study '{study}'" if study else ", all studies"))
        outcome = w.run_study(study) if study else w.serve_all(poll=poll, exit_when_idle=exit_when_idle)
    finally:
        store.close()
    typer.echo(f"worker {w.name}: trained {outcome.trials} trial(s) of {', '.join(outcome.studies) or 'no study'}"
               + f"; {outcome.verified} verification run(s)"
               + (f"; stopped by signal {outcome.signal}" if outcome.signal else ""))
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
