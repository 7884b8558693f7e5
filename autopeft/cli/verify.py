"""The ``verify`` command: re-train front points over seeds and score them on held-out data.

A plain function: ``autopeft.cli`` registers it on its app.
"""

from __future__ import annotations

from typing import Optional

import typer

from autopeft.cli._common import STORAGE, make_console, storage_url
from autopeft.cli.comparison import print_verification


def verify(
    study: str = typer.Argument(..., help="The study to verify."),
    storage: Optional[str] = STORAGE,
    front: bool = typer.Option(True, "--front", help="Verify every point of the proxy front (the default)."),
    top: Optional[int] = typer.Option(None, "--top", help="Verify only the K front points nearest the knee."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per point (default: the space's verify.seeds, 3)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimiser steps per run (default: one epoch)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="Epochs over the training rows per run."),
    baseline: bool = typer.Option(False, "--baseline", help="Also verify default LoRA (r=8 on the query/value "
                                  "projections, all layers) at the learning rate of its own sweep."),
    enqueue_only: bool = typer.Option(False, "--enqueue-only", help="Only queue the runs in the database and train "
                                      "nothing here: `autopeft worker` processes (same --storage) train them. "
                                      "With --baseline the seeds of default LoRA are queued by a rerun once its "
                                      "sweep is done."),
) -> None:
    """Re-train the chosen front points at full fidelity over seeds; score them on validation and test.

    Resumable (a killed verify continues where it stopped) and shareable: the same command on
    other machines (same --storage) claims the runs still pending, each run trained once. The
    proxy results of the trials are never changed. With --enqueue-only it only queues the runs
    for `autopeft worker` processes; `autopeft show STUDY` (or this command again) prints what
    they have verified so far.
    """
    from autopeft.search.runs import run_pending
    from autopeft.search.verify import VerifyError, baseline_jobs, enqueue_baseline, jobs, plan
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    if seeds is not None and seeds < 1:
        raise VerifyError(f"--seeds must be at least 1, got {seeds}")
    store = Store(storage_url(storage))
    console = make_console()
    p, prep = plan(store, study, top=top, seeds=seeds, steps=steps, epochs=epochs, baseline=baseline)
    runs = Verifications(store)
    runs.retry_failed(study)  # a rerun tries failed runs again
    new = runs.add(jobs(p))
    trials = ", ".join(f"{r.number} ({r.role})" if r.role else str(r.number)
                       for r in p.trials)
    console.print(f"verifying {len(p.trials)} point(s) of '{study}' (trials {trials}) "
                  f"x {len(p.seeds)} seed(s): {p.protocol.steps} steps on {prep.data.n_train:,} training "
                  f"rows, scored on {prep.data.n_eval:,} validation and {prep.data.n_test:,} test "
                  f"examples, {p.protocol.test_split or 'carved from the data set'} ({new} new run(s))")
    log = lambda line: console.print(f"  {line}", markup=False, highlight=False)  # noqa: E731
    if enqueue_only:
        if baseline:
            enqueue_baseline(p, prep, runs, log=log)
        stored = runs.of(study)
        if any(r.status == "complete" for r in stored):
            print_verification(console, store, study)  # a rerun shows what the workers verified so far
        pending = sum(1 for r in stored if r.status in ("pending", "running"))
        console.print(f"queued: {pending} run(s) pending or running in {store.display_url}; start `autopeft worker` "
                      f"processes on it to train them, then `autopeft show {study}`")
        return
    if baseline:
        runs.add(baseline_jobs(p, prep, log=log, runs=runs))
    run_pending(runs, study, prep, log=log, protocol=p.protocol)
    print_verification(console, store, study)
