"""What the command modules share: the ``--storage`` and ``--set`` options, the storage URL and the console."""

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
    splits = {r.protocol.get("test_split", "carved from the data set") for r in runs}
    console.print(f"test split: {', '.join(sorted(splits))}")
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
