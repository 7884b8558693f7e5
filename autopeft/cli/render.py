"""What the commands print besides the trials table (``autopeft.cli.trial_table``) and the
study's answer (``autopeft.cli.comparison``): the space, the studies, the importance map, the
splits, the effort, and warnings about the space and the data.

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


def print_splits(console, study) -> None:
    """``show``: the study's splits, with what the space asked where a split is smaller, and the
    rows of the data set that were skipped."""
    from autopeft.assets.dataset_tables import describe_skipped

    sp = study.splits
    asked = {}
    if study.space_yaml:
        try:
            from autopeft.space.stored import study_space

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
