"""What the commands print: rich tables and lines on a console, from data the search has decided.

Nothing here decides which trial is optimal, verified or picked (``autopeft.search`` does);
these functions only lay results out. The commands (``study``, ``verify``) call them with
the console of ``autopeft.cli._common.make_console``.
"""

from __future__ import annotations

import typer


def warn(prep):
    """Print ``prep``'s warnings (one line each, on stderr) and return it."""
    for line in prep.warnings:
        typer.echo(f"warning: {line}", err=True)
    return prep


def data_warnings(sp, skipped: int, why, total: int | None, sizes) -> None:
    """Warn (on stderr, one line each) about rows of the data set that were skipped, and about
    train / validation splits smaller than the space asks (``sizes``: train, validation, test)."""
    from autopeft.assets.dataset_tables import describe_skipped

    name = sp.task.dataset
    if skipped:
        of = f" of {total:,}" if total else ""
        typer.echo(f"warning: {sp.source}: task.dataset: dataset '{name}': "
                   + describe_skipped(skipped, why).replace(" row", f"{of} row", 1), err=True)
    for got, key, what in ((sizes[0], "proxy.train_examples", "train"), (sizes[1], "proxy.eval_examples", "validation")):
        asked = getattr(sp.proxy, key.split(".")[1])
        if got < asked:
            typer.echo(f"warning: {sp.source}: {key}: dataset '{name}' gives {got:,} {what} examples, fewer than the "
                       f"{asked:,} asked; trials run on {got:,}", err=True)


def describe(dist) -> str:
    """One optuna distribution for reading: ``one of a, b``, ``int 1 .. 64 (log)``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    scale = " (log)" if dist.log else ""
    return f"{type(dist).__name__.replace('Distribution', '').lower()} {dist.low} .. {dist.high}{scale}"


def print_space(console, sp, prep) -> None:
    """``validate``: the search dimensions, the model, the parameter range, the objectives."""
    from rich.table import Table

    from autopeft.space.encoding import LR_OFFSET

    table = Table(title=f"{sp.study}: {prep.encoding.dimensions} search dimensions", title_justify="left")
    table.add_column("dimension")
    table.add_column("distribution")
    for name, dist in prep.encoding.distributions.items():
        # A per-method rate is one [0, 1] offset to the sampler; the user wants its bands.
        table.add_row(name, prep.encoding.describe_learning_rate() if name == LR_OFFSET else describe(dist))
    console.print(table)
    r = prep.params
    console.print(f"model {sp.model.name}: {prep.arch.model_type}, {prep.arch.num_layers} layers, {prep.arch.total_params:,} parameters")
    budget = f"budget {r.limit:,}" if r.limit is not None else "no budget"
    console.print(f"trainable parameters over the space: {r.low:,} .. {r.high:,}; {budget}; feasible {r.low:,} .. {r.feasible_high:,}")
    console.print(f"objectives: {', '.join(f'{o.name} ({o.direction})' for o in sp.objectives)}; "
                  f"sampler {sp.search.sampler}, {sp.search.trials} trials")


def print_studies(console, store) -> None:
    """``studies``: one row per study: trials done / failed / infeasible, front size."""
    from rich.table import Table

    from autopeft.search.analysis.pareto import pareto_front

    table = Table()
    for col in ("study", "model", "dataset", "complete", "failed", "infeasible", "target", "front", "created"):
        table.add_column(col)
    for s in store.studies():
        recs = store.trials(s.name)
        count = {k: sum(r.status == k for r in recs) for k in ("complete", "failed", "infeasible")}
        table.add_row(s.name, s.model, s.dataset, str(count["complete"]), str(count["failed"]), str(count["infeasible"]),
                      str(s.trials_target), str(len(pareto_front(recs, s.objectives))), f"{s.created_at:%Y-%m-%d %H:%M}")
    console.print(table if table.row_count else f"no studies in {store.display_url}")


def print_importance(console, study) -> None:
    """``show --importance``: the study's layer x module importance map, relative to its maximum."""
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


#: Objective names as a narrow table heads them (``--wide``: in full).
_SHORT_NAMES = {"trainable_params": "params", "train_time": "time", "peak_memory": "memory",
                "choice_accuracy": "choice acc", "exact_match": "exact"}


def print_trials(console, study, records, only_front: bool = False, verified: dict | None = None,
                 front_on_verified: bool = False, wide: bool = False) -> None:
    """The trials (or the front) as a table; ★ marks the Pareto-optimal rows, on the verified
    test means with ``front_on_verified``. ``verified``: ``{trial number: Verified}``.

    The table reads at 100 columns: module names are abbreviated (``q,v``), a method's rank
    rides with it (``lora r8``), objectives are headed by short names and arrows, and the
    seeds are said once (in the note). ``wide`` prints every field in full.
    """
    from rich import box
    from rich.table import Table

    from autopeft.methods.fields import used_config
    from autopeft.progress import fmt
    from autopeft.search.analysis.pareto import pareto_front
    from autopeft.search.prepare import stored_target

    verified = verified or {}
    if front_on_verified:  # the front of what held up at full fidelity, on the held-out test split
        from autopeft.search.analysis.trust import verified_records
        from autopeft.space import load_space_text

        metric = load_space_text(study.space_yaml, f"study '{study.name}'").task.metric
        front = {r.number for r in pareto_front(verified_records(study, records, list(verified.values()), metric),
                                                 study.objectives)}
        kind = "verified Pareto-optimal (test means)"
    else:
        front = {r.number for r in pareto_front(records, study.objectives)}
        kind = ("Pareto-optimal at the target: validation means over seeds" if stored_target(study) is not None
                else "Pareto-optimal on the proxy")
    rows = [r for r in records if r.number in front] if only_front else records
    metric, signal = _task_metric(study), _rung_signal(study)
    target = stored_target(study) is not None
    short = _ModuleNames([m for r in rows if not isinstance(r.candidate.get("targets"), str)
                          for m in r.candidate.get("targets") or ()])
    table = Table(title=f"{study.name}: {'Pareto front' if only_front else 'trials'} (★ = {kind})", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1 if wide else 0))
    # Narrow, a trial's status and role go to the note: "complete" needs no word there.
    heads = ["", "#", "status", "method", "rank", "targets", "layers", "lr"] if wide else \
        ["", "#", "method", "targets", "layers", "lr"]
    for col in heads:
        table.add_column(col, no_wrap=col not in ("#", "targets"), overflow="fold")
    for name, direction in study.objectives:
        head = f"{name} ({direction})" if wide else f"{_SHORT_NAMES.get(name, name)} {'↑' if direction == 'max' else '↓'}"
        table.add_column(head, justify="right", no_wrap=wide, overflow="fold")
    if verified:
        # mean ± sd (and, --wide, the seeds): of `verify`, or of the seed runs at the target
        table.add_column(("verified test" if not target else "test (mean ± sd, seeds)") if wide else
                         ("verified test" if not target else "test"), justify="right", no_wrap=not wide)
    table.add_column("note", min_width=24, overflow="fold")
    for r in rows:
        c = r.candidate
        used = used_config(c)  # '-' for what the method ignores (IA3's rank, prefix tuning's placement)
        values = r.values or [None] * len(study.objectives)
        show = fmt if wide else _compact
        cells = [show(n, v) for (n, _), v in zip(study.objectives, values)]
        if r.values is None and r.trainable_params is not None:
            names = [n for n, _ in study.objectives]
            if "trainable_params" in names:
                cells[names.index("trainable_params")] = show("trainable_params", r.trainable_params)
        v = verified.get(r.number)
        if wide:
            check = [f"{v.test[0]:.4f} ± {v.test[1]:.4f}, {len(v.seeds)}" + (" diverged" if v.diverged else "")
                     if v else ""] if verified else []
        else:
            check = [f"{v.test[0]:.3f} ± {v.test[1]:.3f}" + (" div." if v.diverged else "") if v else ""] \
                if verified else []
        why = note(r, metric, wide=wide, signal=signal)
        if not wide:
            if v and not target:  # the seeds of `verify`, said once, in the note
                why = f"{len(v.seeds)} seeds" + (f"; {why}" if why else "")
            if r.status != "complete":
                why = f"{r.status}: {why}" if why and not why.startswith("stopped") else (why or r.status)
            if role := r.extras.get("baseline"):
                why = f"{role}" + (f" · {why}" if why else "")
            why = why if len(why) <= 46 else why[:45] + "…"
        if wide:
            targets = c["targets"] if isinstance(c["targets"], str) else "+".join(c["targets"])
            config = [c["method"], str(c["rank"]) if "rank" in used else "-"]
        else:
            targets = short.describe(c["targets"])
            config = [c["method"] + (f" r{c['rank']}" if "rank" in used else "")]
        table.add_row("★" if r.number in front else "", *((number(r), r.status) if wide else (str(r.number),)), *config,
                      targets if "targets" in used else "-", layers(c["layers"]) if "layers" in used else "-",
                      _rate(c["learning_rate"], wide), *cells, *check, why)
    console.print(table)


def _compact(name: str, value) -> str:
    """An objective's value for a narrow table: parameter counts as ``75.0k`` / ``2.50M``."""
    from autopeft.progress import fmt

    if name != "trainable_params" or value is None or value < 10_000:
        return fmt(name, value)
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.3g}k"


class _ModuleNames:
    """Module names abbreviated for a narrow table: ``query, value`` as ``q,v``; ``q_proj`` as
    ``q``; each name the shortest prefix that tells it from the others in the table."""

    def __init__(self, names) -> None:
        stems = sorted({self._stem(n) for n in names})
        self.short = {}
        for stem in stems:
            others = [o for o in stems if o != stem]
            k = next((k for k in range(1, len(stem) + 1) if not any(o.startswith(stem[:k]) for o in others)), len(stem))
            self.short[stem] = stem[:k]

    @staticmethod
    def _stem(name: str) -> str:
        name = str(name)
        return name[:-5] if name.endswith("_proj") and len(name) > 5 else name

    def describe(self, targets) -> str:
        if isinstance(targets, str):
            return "all" if targets == "all-linear" else targets
        return ",".join(self.short.get(self._stem(t), str(t)) for t in targets)


def _rate(lr: float, wide: bool) -> str:
    """A learning rate: ``1.0e-03`` (wide) or ``1.0e-3``."""
    text = f"{lr:.1e}"
    return text if wide else text.replace("e-0", "e-").replace("e+0", "e+")


def _rung_signal(study) -> str | None:
    """What the study's rungs judged by (``proxy.signal``), from its stored space."""
    if not study.space_yaml:
        return None
    try:
        from autopeft.search.prepare import study_space

        return study_space(study).proxy.signal
    except Exception:  # an old or foreign stored space: the note names the task metric
        return None


def _task_metric(study) -> str | None:
    """The study's task metric (the signal its rungs judged), from its stored space."""
    if not study.space_yaml:
        return None
    try:
        from autopeft.search.prepare import study_space

        return study_space(study).task.metric
    except Exception:  # an old or foreign stored space: the note falls back to the first metric
        return None


def print_front(console, study, records, verified: dict | None = None, wide: bool = False) -> None:
    """The Pareto front as ``print_trials`` draws it, or why it is empty."""
    from autopeft.search.analysis.pareto import eligible

    if not any(r.status == "complete" for r in records):
        console.print("no trial completed; see `autopeft show` for the reasons")
        return
    if not eligible(records):  # a diverged trial is never on the front
        console.print("every completed trial diverged, so the front is empty; see `autopeft show` for the reasons")
        return
    print_trials(console, study, records, only_front=True, verified=verified, wide=wide)


def print_answer(console, store, study, records) -> None:
    """Default LoRA beside the front at the target, the paired comparisons, tau, the sentence."""
    from autopeft.search.analysis.answer import answer
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
    elif not space.proxy.rungs and not space.proxy.auto_rungs:
        say("Kendall tau between the lowest rung and the target: none (the proxy has no rungs)")
    elif n < 3:
        say(f"Kendall tau between the lowest rung and the target: none, only {n} trial{'' if n == 1 else 's'} "
            "reached both the rung and the target (it needs 3)")
    else:
        say(f"Kendall tau between the lowest rung and the target: undefined over {n} trials (their values tie)")
    say(rungs_line(store, study, space))
    say(f"answer: {a.sentence}")


def rungs_line(store, study, space) -> str:
    """Where the study's rungs fell, what they judged by, and why."""
    from autopeft.search.fidelity.placement import read_ladder

    signal = space.proxy.signal
    if space.proxy.auto_rungs:
        ladder = read_ladder(store.optuna_storage, study.name)
        if ladder is None:
            return f"rungs (judged by {signal}): not placed yet: no reference run has moved beyond its noise"
        return f"rungs (judged by {signal}): {ladder.why()}"
    if not space.proxy.rungs:
        return "rungs: none (every trial trained to the end)"
    return f"rungs (judged by {signal}): at {', '.join(map(str, space.proxy.rungs))} steps, as the space lists them"


def print_splits(console, study) -> None:
    """``show``: the study's splits, with what the space asked where a split is smaller, and the
    rows of the data set that were skipped."""
    from autopeft.assets.dataset_tables import describe_skipped

    sp = study.splits
    asked = {}
    if study.space_yaml:
        try:
            from autopeft.search.prepare import study_space

            proxy = study_space(study).proxy
            asked = {"train": proxy.train_examples, "eval": proxy.eval_examples}
        except Exception:  # an old or foreign stored space: the sizes alone
            asked = {}

    def size(key: str) -> str:
        short = asked.get(key, 0) > sp[key]
        return f"{sp[key]:,}" + (f" (of {asked[key]:,} asked)" if short else "")

    skipped = describe_skipped(sp.get("skipped", 0), [tuple(w) for w in sp.get("skipped_why", ())])
    console.print(f"splits: {size('train')} train · {size('eval')} validation (trials) · {sp['test']:,} test "
                  f"({sp['test_source']}, never read by the search) · seed {sp['seed']} · data {sp['fingerprint'][:12]}"
                  + (f" · data set: {skipped}" if skipped else ""), highlight=False)


def print_effort(console, store, study, records) -> None:
    """The study's CPU seconds and near-duplicates (``autopeft.search.analysis.effort``), in one line."""
    from autopeft.search.sampling.dedup import NEAR_FACTOR
    from autopeft.search.analysis.effort import effort
    from autopeft.store.verifications import Verifications

    e = effort(records, Verifications(store).of(study.name))
    if e.trials:
        console.print(e.describe(NEAR_FACTOR), markup=False, highlight=False)


def print_verification(console, store, study: str) -> None:
    """The verified table, the proxy's fidelity and the comparison with default LoRA."""
    from rich.table import Table

    from autopeft.search.analysis.trust import dominating_baseline, fidelity, summarize
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


def number(r) -> str:
    """The trial number, tagged when the trial is a reference the study enqueued (default LoRA,
    cheapest)."""
    role = r.extras.get("baseline")
    return f"{r.number} ({role})" if role else str(r.number)


def note(r, metric: str | None = None, wide: bool = True, signal: str | None = None) -> str:
    """The note column: why a trial stopped, diverged or failed; a target trial's seeds.

    A stopped trial says the signal its rung judged it on: ``stopped at step 30: eval_loss
    0.996`` (``signal``, the study's rung signal, where the rung recorded it; else ``metric``,
    the task's metric; the first one reported when neither is known).
    """
    from autopeft.search.analysis.pareto import diverged

    cut = (lambda text: text) if wide else (lambda text: text if len(text) <= 44 else text[:43] + "…")
    if r.status == "pruned":
        step = r.extras.get("fidelity")
        entry = next((e for e in reversed(r.extras.get("rungs") or []) if e[0] == step), None)
        judged = signal is not None and entry is not None and len(entry) >= 4 and entry[2] is not None
        name = signal if judged else metric
        signal = (entry[2] if judged else entry[1]) if entry is not None else None
        if signal is None:
            metrics = r.metrics or {}
            name = metric if metric in metrics else next((k for k, v in metrics.items()
                                                          if isinstance(v, (int, float))), None)
            signal = metrics.get(name) if name else None
        said = f": {name or 'signal'} {signal:.3f}" if isinstance(signal, (int, float)) else ""
        return f"stopped at step {step}{said}"
    if r.status == "complete":
        why = diverged(r)
        if why:
            return cut(f"diverged: {why}")
        t = r.extras.get("target")
        if t:  # the values are means over these seeds at the target, on validation
            return (f"{len(t['seeds'])}/{t['of']} seeds, val sd {t['val'][1]:.4f}"
                    + (" (a seed diverged)" if t["diverged"] else ""))
        return ""
    return cut(r.error or "")


def layers(indices: list) -> str:
    """Layer indices, a run of three or more as ``first-last``."""
    if indices and indices == list(range(indices[0], indices[-1] + 1)) and len(indices) > 2:
        return f"{indices[0]}-{indices[-1]}"
    return ",".join(map(str, indices))
