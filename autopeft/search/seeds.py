"""Seeds at the target: a trial that reaches ``target.steps`` is trained again over more seeds.

One run per point ranks points by luck as much as by merit (on the tweets at 150 steps the
seed-to-seed sd is ~1-3 pt, as large as most gaps on a front), so a study with a
``target:`` decides on means over ``target.seeds`` runs at the target:

- the trial's own run is seed ``proxy.seed``; when it completes at the target (and did not
  diverge), it is stored as a complete verification row and the other seeds are queued as
  pending rows of the *target protocol* (:func:`target_protocol`);
- each of the other seeds draws its training rows, by its seed, from every training row of
  the data set (``autopeft.search.runs.train``), not from the proxy's ``train_examples``: a
  target as long as the proxy's rows (the quickstart's 90 steps of 16 are its 1,440 rows)
  would otherwise train every seed on the same rows, and the answer's interval, which counts
  seeds and test rows, would miss what another draw of training data changes. Re-trained on rows
  drawn by seed, a "better" of that protocol fell within noise (benchmarks/README.md §21).
  The trial's own run and default LoRA's with the same seed read the same rows: the
  comparison stays paired;
- those rows are ledger rows like trials: any process serving the study claims one
  atomically, beats its heartbeat while it trains, and a row whose process died is queued
  again once its heartbeat is older than the grace (``autopeft.store.verifications``);
- each finished seed folds into the trial's record (:func:`fold`): the task metric in
  ``values`` becomes the mean over the seeds done so far, and ``extras["target"]`` holds the
  validation and test means and sds, the seeds, and whether a seed diverged. So the front,
  the knee, ``export --pick``, the dashboard and the API, which read ``values``, read the
  target means. optuna keeps the value it was told (the trial's own run): the sampler models
  single runs, as it always has.

The target protocol is computed from the space alone, so a worker can tell these rows from
``autopeft verify``'s without preparing the study.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

from autopeft.search.protocol import BY_SEED, RunProtocol
from autopeft.store import Store, StudyRecord, TrialRecord, trial_extras
from autopeft.store.verifications import VerificationRecord, Verifications

#: ``RunProtocol.fidelity`` of the rows this module queues.
TARGET = "target"


def target_protocol(space) -> RunProtocol | None:
    """The protocol of a study's seed runs at the target (None without a ``target:``): the
    target's steps with the proxy's batch and schedule, over :func:`seed_numbers`, each seed
    drawing its rows from every training row."""
    if space.target is None:
        return None
    p = space.proxy
    return RunProtocol(space.target.steps, p.batch_size, p.max_length, None, p.eval_examples,
                       seed_numbers(space), fidelity=TARGET, schedule=p.schedule, rows=BY_SEED)


def _protocol_before_rows_by_seed(space) -> RunProtocol:
    """The target protocol of studies whose seeds all trained on the proxy's rows: their stored
    rows keep its key, and are read (:func:`rows_of`) beside the current protocol's."""
    p = space.proxy
    return RunProtocol(space.target.steps, p.batch_size, p.max_length, p.train_examples, p.eval_examples,
                       seed_numbers(space), fidelity=TARGET, schedule=p.schedule)


def study_target_protocol(runs: Verifications, study: str, space) -> RunProtocol | None:
    """The protocol of ``study``'s seed runs (None without a target): :func:`target_protocol`,
    unless the study was searched before seeds drew their rows by seed: it holds seed rows of
    that protocol and none of the current one. Such a study keeps its protocol to the end, so
    that its pending rows are claimed, ``verify`` adds seeds to its rows instead of training
    every seed again, and its points and default LoRA are compared on one draw of data."""
    protocol = target_protocol(space)
    if protocol is None:
        return None
    before = _protocol_before_rows_by_seed(space)
    held = ("pending", "running", "complete", "failed")
    if runs.count(study, before.key(), held) and not runs.count(study, protocol.key(), held):
        return before
    return protocol


def study_target_key(runs: Verifications, study: StudyRecord) -> str | None:
    """The protocol key of ``study``'s seed runs, from its stored space (None: no target)."""
    from autopeft.space.stored import study_space

    protocol = study_target_protocol(runs, study.name, study_space(study))
    return protocol.key() if protocol is not None else None


def seed_numbers(space) -> tuple[int, ...]:
    """The seeds of a point at the target: the trial's own (``proxy.seed``) first."""
    first = space.proxy.seed
    return tuple(first + i for i in range(space.target.seeds))


def queue(runs: Verifications, study: StudyRecord, space, record: TrialRecord, test_metrics: dict) -> int:
    """Store ``record``'s own run (complete at the target) as its first seed and queue the
    others; returns how many rows were queued to train."""
    protocol = study_target_protocol(runs, study.name, space)
    seeds = protocol.seeds
    own = VerificationRecord(study=study.name, subject=f"trial:{record.number}", seed=seeds[0],
                             protocol=protocol.as_dict(), candidate=record.candidate, trial_number=record.number)
    # Inserted claimed: a pending own row could be claimed by another process first, which would
    # train seed 0 again on rows drawn by seed instead of keeping the trial's own run.
    inserted = runs.add([own], claimed_by="search")
    row = next((r for r in runs.of(study.name) if r.subject == own.subject and r.seed == own.seed
                and r.protocol_key == own.protocol_key), None)
    if not inserted:  # a row an interrupted process left: this run is it, if nobody has taken it
        row = runs.claim_id(row.id, "search") if row is not None and row.status == "pending" else None
    if row is not None:
        runs.finish(dataclasses.replace(row, status="complete", metrics=record.metrics, test_metrics=test_metrics,
                                        trainable_params=record.trainable_params, curve=record.curve,
                                        extras=trial_extras.own_run(record.extras)))
    others = [dataclasses.replace(own, seed=s) for s in seeds[1:]]
    return runs.add(others)


def rows_of(runs: Verifications, study: StudyRecord, space) -> list[VerificationRecord]:
    """The study's seed rows: of its target protocol, and of the one before seeds drew their
    rows by seed (a study searched before keeps that protocol, :func:`study_target_protocol`,
    and its rows train on the proxy's rows as they did)."""
    protocol = target_protocol(space)
    if protocol is None:
        return []
    keys = {protocol.key(), _protocol_before_rows_by_seed(space).key()}
    return [r for r in runs.of(study.name) if r.protocol_key in keys]


def fold(store: Store, study: StudyRecord, space, record: TrialRecord,
         rows: Sequence[VerificationRecord]) -> TrialRecord:
    """``record`` with its task metric in ``values`` the mean over its complete seed rows, and
    ``extras["target"]`` saying over what; saved when it changed. Idempotent: computed from
    the rows alone, so any process may fold, as often as it likes."""
    from autopeft.search.analysis.divergence import divergence

    metric = space.task.metric
    mine = [r for r in rows if r.trial_number == record.number]
    done = [r for r in mine if r.status == "complete" and metric in r.metrics]
    if not done or record.values is None:
        return record
    val = _mean_sd([r.metrics[metric] for r in done])
    tests = [r.test_metrics[metric] for r in done if metric in r.test_metrics]
    why = next((f"seed {r.seed}: {d}" for r in done if (d := divergence(r.metrics, r.diagnostics, r.curve))), None)
    summary = trial_extras.TargetSummary(
        seeds=tuple(sorted(r.seed for r in done)), of=space.target.seeds, val=val,
        test=_mean_sd(tests) if len(tests) == len(done) else None,
        failed=tuple(sorted(r.seed for r in mine if r.status == "failed")), own=_own(record, metric), diverged=why)
    values = [val[0] if name == metric else v for (name, _), v in zip(study.objectives, record.values)]
    folded = dataclasses.replace(record, values=values, extras=trial_extras.with_target(record.extras, summary))
    if folded != record:
        store.save_trial(folded)
    return folded


def fold_all(store: Store, study: StudyRecord, space) -> int:
    """Fold every trial with seed rows (the end of a search: a fold two processes raced on
    is settled here); returns how many records changed."""
    rows = rows_of(Verifications(store), study, space)
    numbers = {r.trial_number for r in rows}
    changed = 0
    for record in store.trials(study.name):
        if record.number in numbers and fold(store, study, space, record, rows) is not record:
            changed += 1
    return changed


def complete(record: TrialRecord) -> bool:
    """Whether ``record``'s means are over all its seeds (failed seeds count as done)."""
    return record.target is not None and record.target.complete


def _own(record: TrialRecord, metric: str) -> float | None:
    """The trial's own run's metric (the value optuna was told), as the first fold recorded it."""
    t = record.target
    return t.own if t is not None and t.own is not None else record.metrics.get(metric)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
