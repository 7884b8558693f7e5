"""``autopeft verify``: re-train chosen points at full fidelity over seeds, on validation and test.

A search selects on one short proxy run per point, scored on the validation split it
selects on. Verification re-trains the chosen points — the whole proxy front, or the K
points nearest the knee — on all the training rows for an epoch (or ``--steps``), once per
seed, and scores each run on validation *and* on the test split that no trial ever read
(``autopeft.assets.splits.three_way_split``, or the file of ``task.test``). The study's
completed reference trials (default LoRA and the cheapest point,
``autopeft.search.sampling.baseline``) are always verified with them, so that the verified front
shows them too. With ``--baseline``, default LoRA is also verified under the same protocol
(``autopeft.search.protocol``) at the learning rate its own sweep picks
(``autopeft.space.default_lora``, as ``export --train --baseline`` does). A study whose every
completed trial diverged has no front (a diverged run is never on one): ``verify`` says so, and
with ``--baseline`` verifies only its reference trials and default LoRA.

Runs are rows in the database (``autopeft.store.verifications``): planning them is this
module, which creates them (idempotently); any process runs them (:mod:`autopeft.search.runs`:
``run_pending`` in this command, or an ``autopeft worker``: ``autopeft.search.worker``, through
the same ``run_one``/``train``), so a killed ``verify`` resumes where it stopped, many machines
can share the work, and ``verify --enqueue-only`` leaves all of it to the workers.
Nothing here changes a trial's proxy record.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable

from autopeft.errors import AutoPeftError
from autopeft.search.protocol import RunProtocol
from autopeft.search.runs import run_pending
from autopeft.store import Store, StudyRecord, TrialRecord
from autopeft.store.verifications import VerificationRecord, Verifications

logger = logging.getLogger("autopeft")

class VerifyError(AutoPeftError):
    """A verification cannot be planned as asked (one line, exit 2 in the CLI)."""


@dataclass(frozen=True)
class VerifyPlan:
    """What ``verify`` will train.

    Attributes:
        study: The study.
        trials: The trials whose configurations are verified.
        protocol: Steps, batch size, the split sizes and the seeds (the same for every run).
        baseline: Whether default LoRA is verified too.
    """

    study: StudyRecord
    trials: tuple[TrialRecord, ...]
    protocol: RunProtocol
    baseline: bool

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds of every configuration."""
        return self.protocol.seeds


def full_fidelity(study: StudyRecord):
    """The study's search prepared for verification: all training rows (``train_examples`` lifted)."""
    from autopeft.search.prepare import EVERY_ROW, prepare_search
    from autopeft.space.stored import study_space

    space = study_space(study)
    space = dataclasses.replace(space, proxy=dataclasses.replace(space.proxy, train_examples=EVERY_ROW))
    return prepare_search(space)


def plan(store: Store, name: str, *, top: int | None = None, seeds: int | None = None, steps: int | None = None,
         epochs: float | None = None, baseline: bool = False, prep=None) -> tuple[VerifyPlan, object]:
    """Choose the points and the protocol; check everything a user can get wrong first.

    Returns:
        ``(plan, prep)``: ``prep`` is the full-fidelity ``PreparedSearch`` the runs use.

    Raises:
        VerifyError: no completed trial, every completed trial diverged (unless ``baseline`` and the
            study has reference trials: then those are verified, with default LoRA), ``top`` < 1,
            or a test split too small for the task's classes.
        AutoPeftError: both ``steps`` and ``epochs`` (``RunProtocol``).
    """
    from autopeft.search.analysis.pareto import knee, pareto_front

    study = store.get_study(name)  # StoreError naming the studies if missing
    if top is not None and top < 1:
        raise VerifyError(f"--top must be at least 1, got {top}")
    asked = RunProtocol(steps=steps, epochs=epochs)  # AutoPeftError for both
    records = store.trials(name)
    front = pareto_front(records, study.objectives)
    if not front:
        _all_diverged(study, records, baseline)  # raises, unless default LoRA can still be verified
    if top is not None and top < len(front):
        front = sorted(_nearest_knee(front, knee(front, study.objectives), study)[:top], key=lambda r: r.number)
    chosen = {r.number for r in front}
    references = [r for r in records if r.status == "complete" and r.role and r.number not in chosen]
    front = sorted([*front, *references], key=lambda r: r.number)
    from autopeft.space.stored import study_space

    at_target = steps is None and epochs is None and study_space(study).target is not None
    if prep is None:
        prep = at_target_prep(study) if at_target else full_fidelity(study)
    space = prep.space
    if prep.data.n_test < 1:
        raise VerifyError(f"study '{name}' has no test split (verify.test_examples is 0): nothing held out to verify on")
    given = prep.data.test_source == "given"
    if space.task.type == "classification" and prep.data.n_test < prep.data.num_labels:
        raise VerifyError(f"the test split has {prep.data.n_test} examples for {prep.data.num_labels} classes; "
                          + ("give a larger task.test file" if given else "raise verify.test_examples"))
    if at_target:  # the study's own target: the rows the search made for its seeds, and more seeds if asked
        from autopeft.search.seeds import study_target_protocol
        from autopeft.store.verifications import Verifications

        target = study_target_protocol(Verifications(store), name, space)
        first = target.seeds[0]
        protocol = dataclasses.replace(target, seeds=tuple(range(first, first + (seeds or len(target.seeds)))))
        return VerifyPlan(study, tuple(front), protocol, baseline), prep
    protocol = asked.resolved(batch_size=space.proxy.batch_size, max_length=space.proxy.max_length,
                              train_examples=prep.data.n_train, eval_examples=prep.data.n_eval,
                              test_examples=prep.data.n_test, seeds=tuple(range(seeds or space.verify.seeds)),
                              # the split is the user's file (task.test), not carved
                              test_split=f"given: {space.task.test}" if given else None)
    return VerifyPlan(study, tuple(front), protocol, baseline), prep


def at_target_prep(study: StudyRecord):
    """The study's search prepared as it searched: its seed runs at the target train on that
    (each on the rows its protocol says: ``autopeft.search.runs.train``)."""
    from autopeft.search.prepare import prepare_search
    from autopeft.space.stored import study_space

    return prepare_search(study_space(study))


def _all_diverged(study: StudyRecord, records: list[TrialRecord], baseline: bool) -> None:
    """An empty proxy front: refuse with the reason, unless ``--baseline`` can verify default
    LoRA beside the study's reference trials (which then are the plan's only points: they stand
    for the search in the verified table, and default LoRA's sweep takes its template from them).

    A diverged trial is never on a front (``autopeft.search.analysis.pareto.eligible``), so a study whose
    every trial diverged has nothing to verify of its own; default LoRA at the rate of its own
    sweep says whether the task and the model can be learned at all under the full protocol.

    Raises:
        VerifyError: no trial completed; or every completed trial diverged, without ``--baseline``
            or without a reference trial.
    """
    from autopeft.search.analysis.pareto import completed, diverged

    name = study.name
    done = completed(records)
    if not done:
        raise VerifyError(f"study '{name}' has no completed trial to verify; run `autopeft search` first")
    references = [r for r in done if r.role]
    if baseline and references:
        logger.warning("every completed trial of study '%s' diverged (%d): verifying only its reference trials and "
                       "default LoRA", name, len(done))
        return
    first = done[0]
    hint = ("; or verify only the reference trials and default LoRA at the rate of its own sweep with --baseline"
            if references else "")
    raise VerifyError(f"every completed trial of study '{name}' diverged ({len(done)}; trial {first.number}: "
                      f"{diverged(first)}), so there is nothing to verify: lower the learning rates "
                      f"(space.learning_rate) or lengthen the proxy (proxy.steps) and search again{hint}")


def _nearest_knee(front: list[TrialRecord], k: TrialRecord, study: StudyRecord) -> list[TrialRecord]:
    """``front`` ordered by distance to the knee ``k`` in the knee's own normalised space."""
    import numpy as np

    from autopeft.search.analysis.pareto import _losses

    losses = _losses(front, study.objectives)
    span = np.ptp(losses, axis=0)
    span[span == 0] = 1.0
    norm = (losses - losses.min(axis=0)) / span
    at = norm[[r.number for r in front].index(k.number)]
    order = np.argsort(np.linalg.norm(norm - at, axis=1), kind="stable")
    return [front[i] for i in order]


def jobs(p: VerifyPlan) -> list[VerificationRecord]:
    """The verification rows of the searched points (the baseline's come after its sweep)."""
    return [VerificationRecord(study=p.study.name, subject=f"trial:{r.number}", seed=s, protocol=p.protocol.as_dict(),
                               candidate=r.candidate, trial_number=r.number)
            for r in p.trials for s in p.seeds]


def sweep_jobs(p: VerifyPlan, prep, *, rates=None) -> list[VerificationRecord]:
    """Default LoRA's learning-rate sweep: one row per rate (seed 0, subject ``sweep:<rate>``).

    Ordinary verification rows: ``verify`` trains them itself, and a worker may take some."""
    from autopeft.space.default_lora import BASELINE_RATES, baseline_candidate

    chosen = p.trials[0].candidate
    return [VerificationRecord(study=p.study.name, subject=f"sweep:{lr:g}", seed=0, protocol=p.protocol.as_dict(),
                               candidate=baseline_candidate(chosen, prep.arch, learning_rate=lr))
            for lr in rates or BASELINE_RATES]


def baseline_jobs(p: VerifyPlan, prep, *, rates=None, log: Callable[[str], None] = lambda line: None,
                  runs: Verifications | None = None, worker: str | None = None,
                  poll: float = 5.0) -> list[VerificationRecord]:
    """Default LoRA's rows at the learning rate its own sweep picked (one seed per rate, on
    validation, each sweep run stored as subject ``sweep:<rate>`` and reused on a rerun).

    The sweep's rows are queued like any other, so a worker serving the study may train
    some of them: this process trains the rest and waits for those before it picks.
    """
    sweep = sweep_jobs(p, prep, rates=rates)
    runs.add(sweep)
    subjects = {s.subject for s in sweep}
    waiting = False
    while True:
        run_pending(runs, p.study.name, prep, worker=worker, log=log, subjects=subjects, protocol=p.protocol)
        busy = [r for r in _sweep_rows(runs, sweep) if r.status in ("pending", "running")]
        if not busy:
            break
        if not waiting:
            log(f"waiting for {len(busy)} sweep run(s) another process is training")
            waiting = True
        time.sleep(poll)
    return baseline_rows(p, prep, runs, sweep, log=log)


def enqueue_baseline(p: VerifyPlan, prep, runs: Verifications, *,
                     log: Callable[[str], None] = lambda line: None) -> int:
    """``verify --baseline --enqueue-only``: queue the sweep for the workers, and the baseline's
    seeds too once the sweep has finished (its rate is not known before); returns how many
    rows were new. Nothing is trained here."""
    sweep = sweep_jobs(p, prep)
    new = runs.add(sweep)
    rows = baseline_rows(p, prep, runs, sweep, log=log)
    if rows is None:
        left = sum(1 for r in _sweep_rows(runs, sweep) if r.status in ("pending", "running"))
        log(f"default LoRA: {left} of {len(sweep)} learning-rate sweep run(s) queued or running; its "
            f"{len(p.seeds)} seed(s) are queued by `autopeft verify {p.study.name} --baseline` once the sweep "
            "is done (with --enqueue-only again to leave them to the workers)")
        return new
    return new + runs.add(rows)


def baseline_rows(p: VerifyPlan, prep, runs: Verifications, sweep: list[VerificationRecord], *,
                  log: Callable[[str], None] = lambda line: None) -> list[VerificationRecord] | None:
    """The baseline's seeds at the rate the finished ``sweep`` picked; None while a sweep run
    is still pending or running.

    Raises:
        VerifyError: every sweep run failed.
    """
    from autopeft.search.analysis.divergence import divergence
    from autopeft.space.default_lora import baseline_candidate, best_rate
    from autopeft.tasks import METRIC_DIRECTIONS

    metric = prep.space.task.metric
    rows = {r.subject: r for r in _sweep_rows(runs, sweep)}
    if any(r.status in ("pending", "running") for r in rows.values()):
        return None
    done = {subject: r for subject, r in rows.items() if r.status == "complete"}
    scored = [(float(s.subject.split(":", 1)[1]), done[s.subject]) for s in sweep if s.subject in done]
    if not scored:
        raise VerifyError(f"default LoRA failed at every learning rate of its sweep; see `autopeft show {p.study.name}`")
    lr = best_rate([(rate, r.metrics[metric], divergence(r.metrics, r.diagnostics, r.curve)) for rate, r in scored],
                   maximise=METRIC_DIRECTIONS[metric] == "max")
    log(f"baseline learning rate {lr:g} (sweep: " + ", ".join(
        f"{rate:g} {r.metrics[metric]:.4f}" for rate, r in scored) + ")")
    cand = baseline_candidate(p.trials[0].candidate, prep.arch, learning_rate=lr)
    return [VerificationRecord(study=p.study.name, subject="baseline", seed=s, protocol=p.protocol.as_dict(),
                               candidate=cand)
            for s in p.seeds]


def _sweep_rows(runs: Verifications, sweep: list[VerificationRecord]) -> list[VerificationRecord]:
    """The stored rows of ``sweep`` (same subjects, same protocol)."""
    subjects, key = {s.subject for s in sweep}, sweep[0].protocol_key
    return [r for r in runs.of(sweep[0].study) if r.subject in subjects and r.protocol_key == key]
