"""The ``verify`` command: re-train front points over seeds and score them on held-out data.

A plain function: ``autopeft.cli`` registers it on its app.
"""

from __future__ import annotations

from typing import Optional

import typer

from autopeft.cli._common import STORAGE, make_console, storage_url


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
    plan_only: bool = typer.Option(False, "--plan-only", help="Create the runs and leave them to `autopeft worker`."),
) -> None:
    """Re-train the chosen front points at full fidelity over seeds; score them on validation and test.

    Resumable (a killed verify continues where it stopped) and shareable (workers run the
    same runs). The proxy results of the trials are never changed.
    """
    from autopeft.search.verify import VerifyError, baseline_jobs, jobs, plan, run_pending
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
    console.print(f"verifying {len(p.trials)} point(s) of '{study}' (trials {', '.join(str(r.number) for r in p.trials)}) "
                  f"x {len(p.seeds)} seed(s): {p.protocol['steps']} steps on {p.protocol['train_examples']:,} training "
                  f"rows, scored on {p.protocol['eval_examples']:,} validation and {p.protocol['test_examples']:,} test "
                  f"examples ({new} new run(s))")
    log = lambda line: console.print(f"  {line}", markup=False, highlight=False)  # noqa: E731
    if plan_only and not baseline:
        console.print(f"left to workers: autopeft worker {study}")
        return
    if baseline:
        runs.add(baseline_jobs(p, prep, log=log, runs=runs))
    if not plan_only:
        run_pending(runs, study, prep, log=log)
    print_verification(console, store, study)


def print_verification(console, store, study: str) -> None:
    """The verified table, the proxy's fidelity and the comparison with default LoRA."""
    from rich.table import Table

    from autopeft.search.trust import dominating_baseline, fidelity, summarize
    from autopeft.space import load_space_text
    from autopeft.store.verifications import Verifications

    s = store.get_study(study)
    space = load_space_text(s.space_yaml, f"study '{study}'")
    metric = space.task.metric
    runs = Verifications(store).of(study)
    verified = summarize(runs, metric)
    pending = sum(1 for r in runs if r.status in ("pending", "running"))
    failed = [r for r in runs if r.status == "failed"]
    table = Table(title=f"{study}: verified at full fidelity (mean ± sd over seeds)", title_justify="left")
    for col in ("point", "method", "trainable params", "seeds", f"{metric} validation", f"{metric} test", "note"):
        table.add_column(col, justify="right" if col not in ("point", "method", "note") else "left")
    for v in verified:
        if v.subject.startswith("sweep:"):
            continue
        table.add_row(v.subject, v.candidate.get("method", "?"), f"{v.trainable_params:,}", str(len(v.seeds)),
                      f"{v.val[0]:.4f} ± {v.val[1]:.4f}", f"{v.test[0]:.4f} ± {v.test[1]:.4f}",
                      f"diverged: {v.diverged}"[:60] if v.diverged else "")
    console.print(table)
    if pending:
        console.print(f"{pending} run(s) still pending or running (run `autopeft verify {study}` or a worker to finish them)")
    for r in failed:
        console.print(f"[red]failed[/]: {r.subject} seed {r.seed}: {r.error}")
    records = store.trials(study)
    console.print(fidelity(s, records, [v for v in verified if v.trial_number is not None], metric,
                           space.proxy.steps, space.proxy.eval_examples).describe())
    beats = dominating_baseline(s, verified, metric)
    base = next((v for v in verified if v.subject == "baseline"), None)
    if base is not None and base.diverged:
        console.print(f"default LoRA diverged — not a comparison ({base.diverged})")
    elif beats is not None:
        names = ", ".join(v.subject for v in beats) or "none"
        console.print(f"verified points that dominate default LoRA ({base.test[0]:.4f} {metric}, "
                      f"{base.trainable_params:,} params): {names}")
