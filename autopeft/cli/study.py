"""Commands on one search and its results: ``validate``, ``search``, ``studies``, ``show``, ``export``.

Plain functions: ``autopeft.cli`` registers them on its app.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from autopeft.cli._common import SET, STORAGE, make_console, print_verification, storage_url
from autopeft.errors import AutoPeftError


def validate(space: str = typer.Argument(..., help="Search-space YAML."), set_: Optional[List[str]] = SET) -> None:
    """Check a space against its model and data; print its dimensions and parameter range."""
    from rich.table import Table

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.space.encoding import LR_OFFSET

    sp = load_space(space, set_ or ())
    prep = _warn(prepare_search(sp, with_data=False))
    console = make_console()
    table = Table(title=f"{sp.study}: {prep.encoding.dimensions} search dimensions", title_justify="left")
    table.add_column("dimension")
    table.add_column("distribution")
    for name, dist in prep.encoding.distributions.items():
        # A per-method rate is one [0, 1] offset to the sampler; the user wants its bands.
        table.add_row(name, prep.encoding.describe_learning_rate() if name == LR_OFFSET else _describe(dist))
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
) -> None:
    """Run (or resume) a search and print its Pareto front."""
    from autopeft.events import Tee, log_to_events
    from autopeft.progress import RichEvents
    from autopeft.search.ledger import LedgerSettings
    from autopeft.search.loop import open_study, run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
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
        study = open_study(store, _warn(prepare_search(sp, with_data=False)), trials)
        flag = f" --storage '{store.display_url}'"
        console.print(f"submitted study {study.name} ({study.trials_target} trials) to {store.display_url}; run it with:\n"
                      f"  autopeft worker {study.name}{flag}")
        return
    gpu_of = _gpu_assignment(sp.proxy.device, workers, gpus, per_gpu)
    prep = _warn(prepare_search(sp))
    if workers > 1:
        outcome = _run_workers(console, store, prep, trials, workers, gpu_of)
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
    target = _stored_target(outcome.study)
    if target is None:
        _print_front(console, outcome.study, outcome.records)
    else:
        records = store.trials(outcome.study.name)  # with the seeds folded in at the end
        _print_front(console, outcome.study, records, verified=_verified(store, outcome.study))
        console.print(f"target: {target.describe()}", highlight=False)
        _print_answer(console, store, outcome.study, records)
    url = store.display_url
    flag = "" if url == "sqlite:///autopeft.db" else f" --storage '{url}'"
    console.print(f"\nstored in {url}\n"
                  f"  inspect:  autopeft show {outcome.study.name}{flag}\n"
                  f"  explore:  autopeft dashboard{flag}\n"
                  f"  export:   autopeft export {outcome.study.name}{flag} --pick knee --out ./{outcome.study.name}-adapter")
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: the running trial was recorded as failed; run the same command to resume")
        raise typer.Exit(128 + (outcome.signal or 2))  # 130 for Ctrl-C, 143 for SIGTERM


def _gpu_assignment(device: str, workers: int, gpus: Optional[str], per_gpu: int) -> list:
    """``CUDA_VISIBLE_DEVICES`` per local worker (None: leave it alone).

    A study that may use CUDA (device auto / cuda) spreads its workers over the visible GPUs,
    or over ``--gpus``; asking for GPUs where CUDA is absent is an error, never a CPU run.
    """
    from autopeft.trials.device import DeviceUnavailable, assign_gpus, check, visible_gpus

    try:
        if gpus is not None:
            try:
                check("cuda", "fp32")  # the trials must not run on the CPU instead
            except DeviceUnavailable as e:
                raise DeviceUnavailable(f"--gpus {gpus}: {str(e).split(';')[0]}; leave out --gpus") from e
            chosen = tuple(g.strip() for g in gpus.split(",") if g.strip())
            if not chosen:
                raise DeviceUnavailable(f"--gpus: expected device numbers like 0,2,5, got '{gpus}'")
        elif device == "auto" or device == "cuda":
            chosen = visible_gpus()
        else:  # cpu, mps, or one named cuda:N device: the space decides
            chosen = ()
        return assign_gpus(workers, chosen, per_gpu)
    except DeviceUnavailable as e:
        raise AutoPeftError(str(e)) from e


def _run_workers(console, store, prep, trials, workers: int, gpu_of: list):
    """N local ``autopeft worker`` processes on the study, each with cores / N torch threads and
    its own GPU when there are GPUs (``CUDA_VISIBLE_DEVICES``; its trials see it as cuda:0)."""
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
    on_gpus = f", GPUs {','.join(g for g in gpu_of)}" if gpu_of[0] is not None else ""
    console.print(f"running study {study.name} with {workers} workers ({env['AUTOPEFT_THREADS']} threads each{on_gpus})")
    procs = [subprocess.Popen(cmd, env=env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpu_of]
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


def studies(storage: Optional[str] = STORAGE) -> None:
    """One row per study: trials done / failed / infeasible, front size."""
    from rich.table import Table

    from autopeft.search.pareto import pareto_front
    from autopeft.store import Store

    store = Store(storage_url(storage))
    table = Table()
    for col in ("study", "model", "dataset", "complete", "failed", "infeasible", "target", "front", "created"):
        table.add_column(col)
    for s in store.studies():
        recs = store.trials(s.name)
        count = {k: sum(r.status == k for r in recs) for k in ("complete", "failed", "infeasible")}
        table.add_row(s.name, s.model, s.dataset, str(count["complete"]), str(count["failed"]), str(count["infeasible"]),
                      str(s.trials_target), str(len(pareto_front(recs, s.objectives))), f"{s.created_at:%Y-%m-%d %H:%M}")
    make_console().print(table if table.row_count else f"no studies in {store.display_url}")


def show(
    study: str = typer.Argument(...),
    storage: Optional[str] = STORAGE,
    importance: bool = typer.Option(False, "--importance", help="Print the study's layer x module importance map."),
    proxy: bool = typer.Option(False, "--proxy", help="Mark the proxy front even when verified means exist."),
) -> None:
    """The trials of a study; Pareto-optimal rows are marked with ★ (on verified means once
    `autopeft verify` has run, unless --proxy). Diverged trials are listed, noted, never starred."""
    from autopeft.store import Store

    store = Store(storage_url(storage))
    s = store.get_study(study)
    if importance:
        _print_importance(make_console(), s)
        return
    records = store.trials(study)
    verified = _verified(store, s)
    console = make_console()
    target = _stored_target(s)
    # With a target the trials' values are the target means over seeds on validation: the
    # front is decided there, as the search decided it; the test means stand beside it.
    _print_trials(console, s, records, verified=verified,
                  front_on_verified=bool(verified) and not proxy and target is None)
    if target is not None:
        console.print(f"target: {target.describe()}", highlight=False)
        _print_answer(console, store, s, records)
    if s.splits:
        sp = s.splits
        console.print(f"splits: {sp['train']:,} train · {sp['eval']:,} validation (trials) · {sp['test']:,} test "
                      f"({sp['test_source']}, never read by the search) · seed {sp['seed']} · data {sp['fingerprint'][:12]}",
                      highlight=False)
    if verified:
        print_verification(console, store, study)
    else:
        from autopeft.store.verifications import Verifications

        queued = sum(1 for r in Verifications(store).of(study) if r.status in ("pending", "running"))
        if queued:  # `verify --enqueue-only` before any worker finished a run
            console.print(f"{queued} verification run(s) pending or running (run `autopeft verify {study}` "
                          "or `autopeft worker` to finish them)")


def _verified(store, study) -> dict:
    """``{trial number: Verified}`` of the study's verified trials (empty before ``autopeft verify``)."""
    from autopeft.search.trust import summarize
    from autopeft.space import load_space_text
    from autopeft.store.verifications import Verifications

    runs = Verifications(store).of(study.name)
    if not runs:
        return {}
    metric = load_space_text(study.space_yaml, f"study '{study.name}'").task.metric
    return {v.trial_number: v for v in summarize(runs, metric) if v.trial_number is not None}


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


def _print_trials(console, study, records, only_front: bool = False, verified: dict | None = None,
                  front_on_verified: bool = False) -> None:
    from rich.table import Table

    from autopeft.methods.fields import used_config
    from autopeft.progress import fmt
    from autopeft.search.pareto import pareto_front

    verified = verified or {}
    if front_on_verified:  # the front of what held up at full fidelity, on the held-out test split
        from autopeft.search.trust import verified_records
        from autopeft.space import load_space_text

        metric = load_space_text(study.space_yaml, f"study '{study.name}'").task.metric
        front = {r.number for r in pareto_front(verified_records(study, records, list(verified.values()), metric),
                                                 study.objectives)}
        kind = "verified Pareto-optimal (test means)"
    else:
        front = {r.number for r in pareto_front(records, study.objectives)}
        kind = ("Pareto-optimal at the target: validation means over seeds" if _stored_target(study) is not None
                else "Pareto-optimal on the proxy")
    rows = [r for r in records if r.number in front] if only_front else records
    table = Table(title=f"{study.name}: {'Pareto front' if only_front else 'trials'} (★ = {kind})", title_justify="left")
    for col in ("", "#", "status", "method", "rank", "targets", "layers", "lr"):
        table.add_column(col)
    for name, direction in study.objectives:
        table.add_column(f"{name} ({direction})", justify="right")
    if verified:
        # mean ± sd, seeds: of `verify`, or of the seed runs at the target
        table.add_column("verified test" if _stored_target(study) is None else "test (mean ± sd, seeds)", justify="right")
    table.add_column("note")
    for r in rows:
        c = r.candidate
        used = used_config(c)  # '-' for what the method ignores (IA3's rank, prefix tuning's placement)
        targets = c["targets"] if isinstance(c["targets"], str) else "+".join(c["targets"])
        values = r.values or [None] * len(study.objectives)
        cells = [fmt(n, v) for (n, _), v in zip(study.objectives, values)]
        if r.values is None and r.trainable_params is not None:
            names = [n for n, _ in study.objectives]
            if "trainable_params" in names:
                cells[names.index("trainable_params")] = fmt("trainable_params", r.trainable_params)
        v = verified.get(r.number)
        check = [f"{v.test[0]:.4f} ± {v.test[1]:.4f}, {len(v.seeds)}" + (" diverged" if v.diverged else "")
                 if v else ""] if verified else []
        table.add_row("★" if r.number in front else "", _number(r), r.status, c["method"],
                      str(c["rank"]) if "rank" in used else "-", targets if "targets" in used else "-",
                      _layers(c["layers"]) if "layers" in used else "-",
                      f"{c['learning_rate']:.1e}", *cells, *check, _note(r))
    console.print(table)


def _number(r) -> str:
    """The trial number, tagged when the trial is a reference the study enqueued (default LoRA, cheapest)."""
    role = r.extras.get("baseline")
    return f"{r.number} ({role})" if role else str(r.number)


def _note(r) -> str:
    from autopeft.search.pareto import diverged

    if r.status == "pruned":
        return f"stopped at step {r.extras.get('fidelity')}: {r.metrics}"[:60]
    if r.status == "complete":
        why = diverged(r)
        if why:
            return f"diverged: {why}"[:60]
        t = r.extras.get("target")
        if t:  # the values are means over these seeds at the target, on validation
            return f"{len(t['seeds'])}/{t['of']} seeds, val sd {t['val'][1]:.4f}" + (" (a seed diverged)" if t["diverged"] else "")
        return ""
    return (r.error or "")[:60]


def _layers(layers: list) -> str:
    if layers and layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


def _select_verified(store, study: str, trial: Optional[int], pick: Optional[str]):
    """Like ``select_trial``, among the verified points and on their verified test means."""
    from autopeft.errors import ExportError
    from autopeft.search.pareto import pick as pick_trial
    from autopeft.search.pareto import trial_by_number
    from autopeft.search.trust import verified_records
    from autopeft.space import load_space_text

    if (trial is None) == (pick is None):
        raise ExportError("give exactly one of --trial N or --pick (knee | best:OBJECTIVE | budget:PARAMS)")
    s = store.get_study(study)
    verified = _verified(store, s)
    if not verified:
        raise ExportError(f"study '{study}' has no verified point; run `autopeft verify {study}` first")
    metric = load_space_text(s.space_yaml, f"study '{study}'").task.metric
    records = store.trials(study)
    candidates = verified_records(s, records, list(verified.values()), metric)
    if trial is not None:
        if trial not in verified:
            raise ExportError(f"trial {trial} was not verified; verified: {sorted(verified)}")
        chosen, how = trial_by_number(candidates, trial), f"trial:{trial} (verified)"
    else:
        chosen, how = pick_trial(s, candidates, pick), f"{pick} among verified points (test means)"
    return s, trial_by_number(records, chosen.number), how


def _stored_target(study):
    """The study's ``target:`` (None: the proxy is the target, or no space is stored with it)."""
    from autopeft.search.prepare import study_space

    return study_space(study).target if study.space_yaml else None


def _print_answer(console, store, study, records) -> None:
    """Default LoRA beside the front at the target, the paired comparisons, tau, the sentence."""
    from autopeft.search.answer import answer
    from autopeft.search.prepare import study_space
    from autopeft.search.seeds import rows_of
    from autopeft.store.verifications import Verifications

    space = study_space(study)
    a = answer(study, records, rows_of(Verifications(store), study, space), space.task.metric)
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    if a.reference is not None:
        t = a.reference.extras.get("target", {})
        test = t.get("test")
        say(f"default LoRA (trial {a.reference.number}, lr {a.reference.candidate['learning_rate']:.1e}, its best "
            f"of the rates it was tried at): {space.task.metric} {t.get('val', [float('nan')])[0]:.4f} validation"
            + (f", {test[0]:.4f} ± {test[1]:.4f} test" if test else "") + f" over {len(t.get('seeds', []))} seed(s), "
            f"{a.reference.trainable_params:,} trainable parameters")
    for p in a.paired:
        say(f"  trial {p.trial} vs default LoRA on the test split: {p.describe()}")
    tau, n = a.tau
    if tau is not None:
        say(f"Kendall tau between the lowest rung and the target: {tau:.2f} over {n} trials that reached both")
    say(f"answer: {a.sentence}")


def _print_front(console, study, records, verified: dict | None = None) -> None:
    from autopeft.search.pareto import eligible

    if not any(r.status == "complete" for r in records):
        console.print("no trial completed; see `autopeft show` for the reasons")
        return
    if not eligible(records):  # a diverged trial is never on the front
        console.print("every completed trial diverged, so the front is empty; see `autopeft show` for the reasons")
        return
    _print_trials(console, study, records, only_front=True, verified=verified)


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
    from autopeft.store import Store

    # Every refusal comes before anything is opened or written: a refused export leaves no files.
    _check_export_flags(as_, train, seeds, steps, epochs, train_examples, baseline)
    store = Store(storage_url(storage))
    s, record, how = (_select_verified if verified else select_trial)(store, study, trial, pick)
    if trial is not None and not verified:  # a pick never lands on a diverged trial; one asked for by number may be
        from autopeft.search.pareto import diverged

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
    if train and as_:
        raise AutoPeftError("--train with --as is not supported: train the AdaLoRA trial, or export --as lora alone")
    if steps is not None and epochs is not None:
        raise AutoPeftError("give --steps or --epochs, not both")
    given = {"--seeds": seeds is not None, "--steps": steps is not None, "--epochs": epochs is not None,
             "--train-examples": train_examples is not None, "--baseline": baseline}
    without_train = [flag for flag, set_ in given.items() if set_]
    if without_train and not train:
        raise AutoPeftError(f"{', '.join(without_train)} only apply with --train (re-training); add --train or drop them")


def _load_snippet(study, record, path, weights: bool) -> str:
    from autopeft.export import load_snippet, study_task

    task, num_labels = study_task(study)
    return load_snippet(study, record.candidate["method"], str(path), task, num_labels, weights=weights)


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
            console.print(f"{report.name:9s} {report.candidate['method']:8s} {report.trainable_params:>10,} params  "
                          f"{m} {mean:.4f} ± {sd:.4f} over {len(report.runs)} seeds"
                          + (f"  [red]diverged[/]: {report.diverged}" if report.diverged else ""))
    if base is not None:
        from autopeft.retrain import comparison

        console.print(comparison(chosen, base, m, protocol).replace("**", ""))
    console.print(f"adapter (best seed) + model card -> {path}; load it with:")
    console.print(_load_snippet(study, record, path, weights=True), markup=False, highlight=False)
