"""Commands on one search and its results: ``validate``, ``search``, ``studies``, ``show``, ``export``.

Plain functions: ``autopeft.cli`` registers them on its app. They read the options, call the
search (``autopeft.search``: the loop, the local worker pool in ``search.local_pool``, the
verified points in ``search.analysis.trust``) and print through ``autopeft.cli.render``,
``autopeft.cli.trial_table`` and ``autopeft.cli.comparison``.
"""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from autopeft.cli._common import SET, STORAGE, make_console, naming_the_space, storage_url
from autopeft.cli.comparison import print_answer, print_verification
from autopeft.cli.render import data_warnings, print_effort, print_importance, print_space, print_splits, print_studies, warn
from autopeft.cli.trial_table import print_front, print_trials
from autopeft.errors import AutoPeftError


def validate(space: str = typer.Argument(..., help="Search-space YAML."), set_: Optional[List[str]] = SET) -> None:
    """Check a space against its model and data; print its dimensions and parameter range."""
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    from autopeft.assets.dataset_tables import load_table
    from autopeft.assets.prepared_data import check_split_sizes

    sp = load_space(space, set_ or ())
    with naming_the_space(sp):
        prep = warn(prepare_search(sp, with_data=False))
        table = load_table(prep.dataset, prep.space.task)
        v = sp.verify
        sizes = check_split_sizes(prep.dataset.name, len(table.labels), table.skipped, sp.proxy, v.test_examples,
                                  v.max_test_examples, given_test=sp.task.test is not None)
    data_warnings(sp, table.skipped, table.skipped_why, len(table.labels) + table.skipped, sizes)
    print_space(make_console(), sp, prep)


def search(
    space: str = typer.Argument(..., help="Search-space YAML."),
    storage: Optional[str] = STORAGE,
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trained trials the study should reach."),
    set_: Optional[List[str]] = SET,
    submit_only: bool = typer.Option(False, "--submit-only", help="Create the study and leave its trials to `autopeft worker`."),
    workers: int = typer.Option(1, "--workers", min=1, help="Run the trials in N local worker processes (cores shared)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="CUDA devices for the workers, e.g. 0,2,5 (default: all visible); "
                                       "worker i gets GPU i mod G."),
    per_gpu: int = typer.Option(1, "--per-gpu", min=1, help="Workers allowed on one GPU (default 1: never two trials on one GPU)."),
    runner: Optional[str] = typer.Option(None, "--runner", help="package.module:function: your training function trains "
                                         "each trial (same as --set proxy.runner=...)."),
    log_to: Optional[str] = typer.Option(None, "--log-to", help="mlflow or mlflow:TRACKING_URI: also log every trial as an MLflow run."),
    heartbeat: int = typer.Option(10, "--heartbeat", min=1, help="Seconds between heartbeats of the running trial."),
    grace: int = typer.Option(60, "--grace", min=2, help="Seconds without a heartbeat before a trial counts as lost and is re-run."),
    wide: bool = typer.Option(False, "--wide", help="Print every field of the front in full (the table reads at 100 columns without it)."),
) -> None:
    """Run (or resume) a search and print its Pareto front."""
    from autopeft.events import Tee, log_to_events
    from autopeft.progress import RichEvents
    from autopeft.search.ledger.heartbeat import LedgerSettings
    from autopeft.search.local_pool import gpu_assignment, run_local_workers
    from autopeft.search.loop import open_study, run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.search.analysis.trust import verified_by_trial
    from autopeft.space import load_space
    from autopeft.space.stored import stored_target
    from autopeft.store import Store

    settings = LedgerSettings(heartbeat, grace)  # a bad --grace is refused before anything is prepared
    sp = load_space(space, [*(set_ or ()), *([f"proxy.runner={runner}"] if runner else [])])
    if log_to and submit_only:
        raise AutoPeftError("--log-to with --submit-only: the trials run in workers; run the search here to log them")
    logger = log_to_events(log_to)  # before any preparation: a missing mlflow is said at once
    store = Store(storage_url(storage))
    console = make_console()
    console.print(f"preparing [bold]{sp.study}[/]: model {sp.model.name}, data {sp.task.dataset} ...")
    if submit_only:
        with naming_the_space(sp):
            study = open_study(store, warn(prepare_search(sp, with_data=False)), trials)
        flag = f" --storage '{store.display_url}'"
        console.print(f"submitted study {study.name} ({study.trials_target} trials) to {store.display_url}; run it with:\n"
                      f"  autopeft worker {study.name}{flag}")
        return
    gpu_of = gpu_assignment(sp.proxy.device, workers, gpus, per_gpu)
    with naming_the_space(sp):
        prep = warn(prepare_search(sp))
    if prep.data is not None:
        d = prep.data
        data_warnings(sp, d.skipped, d.skipped_why, None, (d.n_train, d.n_eval, d.n_test))
    if workers > 1:
        outcome = run_local_workers(store, prep, trials, workers, gpu_of, log=console.print, settings=settings)
        if logger is not None:  # the workers' trials ran in other processes: log them now
            logger.log_records(outcome.study, outcome.records)
    else:
        if gpu_of[0] is not None:  # before the first trial starts the forkserver, which inherits it
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_of[0]
        with RichEvents() as events:
            if logger is not None:  # through the bar's console: a raw print would tear the bar
                logger.warn = lambda msg: events.console.print(f"warning: {msg}", markup=False, highlight=False)
            outcome = run_search(prep, store, trials=trials, events=Tee(events, logger), settings=settings)
    if logger is not None:
        console.print(f"trials logged to MLflow at {logger.tracking_uri}, experiment '{outcome.study.name}'")
    target = stored_target(outcome.study)
    if target is None:
        print_front(console, outcome.study, outcome.records, wide=wide)
    else:
        records = store.trials(outcome.study.name)  # with the seeds folded in at the end
        print_front(console, outcome.study, records, verified=verified_by_trial(store, outcome.study), wide=wide)
        console.print(f"target: {target.describe()}", highlight=False)
        print_answer(console, store, outcome.study, records)
    print_effort(console, store, outcome.study, store.trials(outcome.study.name))
    from autopeft.search.analysis.pareto import eligible

    url = store.display_url
    flag = "" if url == "sqlite:///autopeft.db" else f" --storage '{url}'"
    # An export needs a complete, non-diverged trial: without one, `export --pick knee` would only be refused.
    export_hint = (f"\n  export:   autopeft export {outcome.study.name}{flag} --pick knee --out ./{outcome.study.name}-adapter"
                   if eligible(store.trials(outcome.study.name)) else "")
    console.print(f"\nstored in {url}\n"
                  f"  inspect:  autopeft show {outcome.study.name}{flag}\n"
                  f"  explore:  autopeft dashboard{flag}" + export_hint, highlight=False)
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: the running trial was recorded as failed; run the same command to resume")
        raise typer.Exit(128 + (outcome.signal or 2))  # 130 for Ctrl-C, 143 for SIGTERM


def studies(storage: Optional[str] = STORAGE) -> None:
    """One row per study: trials done / failed / infeasible, front size."""
    from autopeft.store import Store

    print_studies(make_console(), Store(storage_url(storage)))


def show(
    study: str = typer.Argument(...),
    storage: Optional[str] = STORAGE,
    importance: bool = typer.Option(False, "--importance", help="Print the study's layer x module importance map."),
    proxy: bool = typer.Option(False, "--proxy", help="Mark the proxy front even when verified means exist."),
    wide: bool = typer.Option(False, "--wide", help="Print every field in full (the table reads at 100 columns without it)."),
) -> None:
    """The trials of a study; Pareto-optimal rows are marked with ★ (on verified means once
    `autopeft verify` has run, unless --proxy). Diverged trials are listed, noted, never starred."""
    from autopeft.search.analysis.trust import verified_by_trial
    from autopeft.space.stored import stored_target
    from autopeft.store import Store

    store = Store(storage_url(storage))
    s = store.get_study(study)
    if importance:
        print_importance(make_console(), s)
        return
    records = store.trials(study)
    verified = verified_by_trial(store, s)
    console = make_console()
    target = stored_target(s)
    # With a target the trials' values are the target means over seeds on validation: the
    # front is decided there, as the search decided it; the test means stand beside it.
    print_trials(console, s, records, verified=verified,
                 front_on_verified=bool(verified) and not proxy and target is None, wide=wide)
    if target is not None:
        console.print(f"target: {target.describe()}", highlight=False)
        print_answer(console, store, s, records)
    print_effort(console, store, s, records)
    if s.splits:
        print_splits(console, s)
    if verified:
        print_verification(console, store, study)
    else:
        from autopeft.store.verifications import Verifications

        queued = sum(1 for r in Verifications(store).of(study) if r.status in ("pending", "running"))
        if queued:  # `verify --enqueue-only` before any worker finished a run
            console.print(f"{queued} verification run(s) pending or running (run `autopeft verify {study}` "
                          "or `autopeft worker` to finish them)")


def export(
    study: str = typer.Argument(...),
    out: str = typer.Option(..., "--out", help="Directory to write adapter_config.json and autopeft.json into."),
    storage: Optional[str] = STORAGE,
    trial: Optional[int] = typer.Option(None, "--trial", help="Export this trial number."),
    pick: Optional[str] = typer.Option(None, "--pick", help="knee | best:OBJECTIVE | budget:PARAMS (e.g. budget:50k)."),
    as_: Optional[str] = typer.Option(None, "--as", help="lora: an AdaLoRA trial as LoRA with its learned rank_pattern."),
    train: bool = typer.Option(False, "--train", help="Re-train at full fidelity and save the best seed's adapter weights."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="With --train: seeds to train, default 3 "
                                        "(mean ± sd in the model card)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="With --train: optimiser steps (default: one epoch)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="With --train: epochs over the training data."),
    train_examples: Optional[int] = typer.Option(None, "--train-examples", min=2, help="With --train: limit the training data."),
    baseline: bool = typer.Option(False, "--baseline", help="With --train: also train default LoRA (r=8, q/v, all layers)."),
    verified: bool = typer.Option(False, "--verified", help="Pick among the points `autopeft verify` re-trained, "
                                  "on their verified test means."),
) -> None:
    """Write a trial's peft adapter_config.json (loadable with PeftConfig.from_pretrained)."""
    from autopeft.export import export_trial, select_trial
    from autopeft.search.analysis.trust import select_verified
    from autopeft.store import Store

    # Every refusal comes before anything is opened or written: a refused export leaves no files.
    _check_export_flags(as_, train, seeds, steps, epochs, train_examples, baseline)
    store = Store(storage_url(storage))
    s, record, how = (select_verified if verified else select_trial)(store, study, trial, pick)
    if trial is not None and not verified:  # a pick never lands on a diverged trial; one asked for by number may be
        from autopeft.search.analysis.pareto import diverged

        if why := diverged(record):
            typer.echo(f"warning: trial {record.number} diverged ({why}); it is never on the front", err=True)
    path = export_trial(s, record, out, picked_by=how, as_=as_)
    console = make_console()
    if train:
        _train(console, s, record, path, seeds or 3, steps, epochs, train_examples, baseline)
        return
    console.print(f"trial {record.number} ({how}) -> {path}; load it with:")
    console.print(_load_snippet(s, record, path, weights=False), markup=False, highlight=False)


def _check_export_flags(as_, train, seeds, steps, epochs, train_examples, baseline) -> None:
    """Refuse the flag combinations ``export`` cannot honour."""
    from autopeft.search.protocol import RunProtocol

    if train and as_:
        raise AutoPeftError("--train with --as is not supported: train the AdaLoRA trial, or export --as lora alone")
    RunProtocol(steps=steps, epochs=epochs)  # refuses both
    given = {"--seeds": seeds is not None, "--steps": steps is not None, "--epochs": epochs is not None,
             "--train-examples": train_examples is not None, "--baseline": baseline}
    without_train = [flag for flag, set_ in given.items() if set_]
    if without_train and not train:
        raise AutoPeftError(f"{', '.join(without_train)} only apply with --train (re-training); add --train or drop them")


def _load_snippet(study, record, path, weights: bool) -> str:
    from autopeft.export import load_snippet, study_task

    task, num_labels = study_task(study)
    return load_snippet(study, record.candidate.method, str(path), task, num_labels, weights=weights)


def _train(console, study, record, path, seeds, steps, epochs, train_examples, baseline) -> None:
    from pathlib import Path

    from autopeft.export import make_portable
    from autopeft.retrain import retrain

    protocol, chosen, base = retrain(study, record, Path(path), seeds=seeds, steps=steps, epochs=epochs,
                                     train_examples=train_examples, baseline=baseline,
                                     on_progress=lambda msg: console.print(f"  training {msg}"))
    make_portable(path, study)  # peft saved the weights with the local path of the base model
    m = protocol.metric
    for report in (chosen, base):
        if report is not None:
            mean, sd = report.mean_sd(m)
            console.print(f"{report.name:9s} {report.candidate.method:8s} {report.trainable_params:>10,} params  "
                          f"{m} {mean:.4f} ± {sd:.4f} over {len(report.runs)} seeds"
                          + (f"  [red]diverged[/]: {report.diverged}" if report.diverged else ""))
    if base is not None:
        from autopeft.retrain import comparison

        console.print(comparison(chosen, base, m, protocol).replace("**", ""))
    console.print(f"adapter (best seed) + model card -> {path}; load it with:")
    console.print(_load_snippet(study, record, path, weights=True), markup=False, highlight=False)
