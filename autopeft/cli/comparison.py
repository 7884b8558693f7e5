"""The answer a study gives: default LoRA beside the front at the target (``show --answer``, the
end of a search), where the rungs fell, and the verified runs beside default LoRA (``verify``).

Nothing here decides; ``autopeft.search.analysis`` computes the comparisons and these
functions lay them out on the console of ``autopeft.cli._common.make_console``.
"""

from __future__ import annotations


def print_answer(console, store, study, records) -> None:
    """Default LoRA beside the front at the target, the paired comparisons, tau, the sentence."""
    from autopeft.search.analysis.answer import answer
    from autopeft.search.seeds import rows_of
    from autopeft.space.stored import study_space
    from autopeft.store.verifications import Verifications

    space = study_space(study)
    a = answer(study, records, rows_of(Verifications(store), study, space), space.task.metric)
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    if a.reference is not None:
        t = a.reference.target
        test = t.test if t else None
        say(f"default LoRA (trial {a.reference.number}, lr {a.reference.candidate.learning_rate:.1e}, its best "
            f"of the rates it was tried at): {space.task.metric} {(t.val[0] if t else float('nan')):.4f} validation"
            + (f", {test[0]:.4f} ± {test[1]:.4f} test" if test else "") + f" over {len(t.seeds) if t else 0} seed(s), "
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


def print_verification(console, store, study: str) -> None:
    """The verified table, the proxy's fidelity and the comparison with default LoRA."""
    from rich.table import Table

    from autopeft.search.analysis.trust import dominating_baseline, fidelity, summarize
    from autopeft.space.stored import study_space
    from autopeft.store.verifications import Verifications

    s = store.get_study(study)
    space = study_space(s)
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
        table.add_row(v.subject, v.candidate.method, f"{v.trainable_params:,}", str(len(v.seeds)),
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
