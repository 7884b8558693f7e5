"""Loading from the store into plain data and pandas frames for the dashboard's pages: the
studies, their trials, the front on a pair of objectives, the verified runs.

Nothing here draws; nothing here decides what is optimal (``autopeft.search`` does); nothing
here writes (``autopeft.dashboard.actions`` creates studies). Importance maps are framed in
``autopeft.dashboard.importance_frames``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from autopeft.candidate import Targets
from autopeft.errors import AutoPeftError, StoreError
from autopeft.store import StudyRecord, TrialRecord


# ---------------------------------------------------------------------- store
def open_store(url: str, *, create: bool = False, read_only: bool = False):
    """The ``Store`` at ``url`` (``read_only``: never migrates; an old schema is an error).

    A SQLite file that does not exist is reported rather than silently created (opening a
    store creates its tables), unless ``create`` (the New search page).

    Raises:
        StoreError: malformed or unreachable URL, or a missing SQLite file.
    """
    from autopeft.store import Store, mask_url, sqlite_file

    if not create:
        path = sqlite_file(url)
        if path is not None and not path.exists():
            raise StoreError(f"no database at {mask_url(url)} (the file {path} does not exist yet); "
                             "run `autopeft search` or create a study on the New search page")
    return Store(url, migrate=not read_only)  # StoreError (a message for the page) for what a user can fix


# ---------------------------------------------------------------------- studies
@dataclass(frozen=True)
class StudyData:
    """One study and its trial records, as read at one moment."""

    study: StudyRecord
    records: tuple[TrialRecord, ...]


def load_study(store, name: str) -> StudyData:
    return StudyData(store.get_study(name), tuple(store.trials(name)))


def status_counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    from autopeft.store import TRIAL_STATUSES

    return {s: sum(r.status == s for r in records) for s in TRIAL_STATUSES}


def best_values(study: StudyRecord, records: Sequence[TrialRecord]) -> dict[str, float | None]:
    """The best value reached for each objective (None without completed trials)."""
    from autopeft.search.analysis.pareto import best

    out: dict[str, float | None] = {}
    for i, (name, _) in enumerate(study.objectives):
        try:
            out[name] = best(records, study.objectives, name).values[i]
        except AutoPeftError:
            out[name] = None
    return out


def studies_frame(studies: Sequence[StudyData]):
    """One row per study for the Studies page."""
    import pandas as pd

    from autopeft.search.analysis.hypervolume import hypervolume_report
    from autopeft.search.analysis.pareto import pareto_front

    rows = []
    for sd in studies:
        s, recs = sd.study, sd.records
        hv = hypervolume_report(recs, s.objectives)
        finished = [r.finished_at for r in recs if r.finished_at is not None]
        row = {"study": s.name, "model": s.model, "dataset": s.dataset, **status_counts(recs),
               "target": s.trials_target, "front": len(pareto_front(recs, s.objectives)),
               "hypervolume": None if hv is None else round(hv.value, 4)}
        row.update({f"best {k}": v for k, v in best_values(s, recs).items()})
        row["created"] = s.created_at
        row["updated"] = max(finished) if finished else s.created_at
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- trials
def layers_text(layers: Sequence[int]) -> str:
    """``[6, 7, 8, 11]`` -> ``"6-8,11 (4)"``: compact enough for a hover label."""
    layers = sorted(int(x) for x in layers)
    if not layers:
        return "none"
    runs, start, prev = [], layers[0], layers[0]
    for x in layers[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return f"{','.join(runs)} ({len(layers)})"


def targets_text(targets: Targets) -> str:
    """``query,value``, or ``all-linear``."""
    return "all-linear" if targets.all_linear else ",".join(targets.modules)


def _chosen_reference(study, records) -> int | None:
    """The trial number of default LoRA at its best rate at the target (``autopeft.search.analysis.answer.reference``);
    None when none got there."""
    from autopeft.search.analysis.answer import reference
    from autopeft.tasks import METRIC_DIRECTIONS

    index = next((i for i, (n, _) in enumerate(study.objectives) if n in METRIC_DIRECTIONS), None)
    if index is None:
        return None
    sign = 1 if study.objectives[index][1] == "max" else -1
    ref = reference(records, sign, index)
    return ref.number if ref is not None else None


def trials_frame(study: StudyRecord, records: Sequence[TrialRecord]):
    """One row per trial: state, candidate, objectives, resources, Pareto membership.

    Objective columns are named after the objectives (a pruned trial's task metric is the one
    it had at the rung it stopped at, ``fidelity`` the step); ``pareto`` marks the front over all
    objectives (never a diverged trial: ``autopeft.search.analysis.pareto.eligible``); ``diverged`` says
    why a complete trial counts as diverged ("" otherwise); ``role`` names a reference trial the
    study enqueued (``default LoRA``, ``cheapest``; ``autopeft.search.sampling.baseline``); ``baseline``
    marks default LoRA: the study's own default-LoRA reference when it enqueued one, else a
    trial that is default LoRA by ``autopeft.space.default_lora.is_default_lora``. ``peak_memory_mib``
    is the API's column (``TrialRecord.peak_memory_mib``): this table is for reading, the API's for code.
    """
    import pandas as pd

    from autopeft.methods.fields import used_config
    from autopeft.search.analysis.pareto import diverged, pareto_front
    from autopeft.space.default_lora import DEFAULT_LORA, is_default_lora

    front = {r.number for r in pareto_front(records, study.objectives)}
    num_layers = 1 + max((max(r.candidate.layers, default=0) for r in records), default=0)
    has_reference = any(r.role == DEFAULT_LORA for r in records)
    # Towards a target default LoRA is tried at several rates; the reference is the best of them
    # there (the one the answer compares with), drawn once.
    chosen = _chosen_reference(study, records) if has_reference else None
    rows = []
    for r in records:
        c = r.candidate
        # A field the trial's method ignores (IA3's rank, prefix tuning's placement) is missing,
        # shown as '-', like `autopeft show`: a number there would read as a setting that mattered.
        used = used_config(c)
        row = {
            "number": r.number, "status": r.status, "method": c.method, "rank": used.get("rank"),
            "layers": layers_text(c.layers) if "layers" in used else None,
            "n_layers": len(c.layers) if "layers" in used else None,
            "targets": targets_text(c.targets) if "targets" in used else None,
            "learning_rate": c.learning_rate, "trainable_params": r.trainable_params,
        }
        for i, (name, _) in enumerate(study.objectives):
            # an infeasible trial has no objective values, but its parameter count is known (as in `show`);
            # a pruned one has its task metric at the rung it stopped at (``fidelity`` says which step)
            if r.values:
                row[name] = r.values[i]
            elif r.status == "pruned" and name in (r.metrics or {}):
                row[name] = r.metrics[name]
            else:
                row[name] = row.get(name)
        for k, v in (r.metrics or {}).items():
            row.setdefault(k, v)
        row["wall_time"] = r.resources.wall_time
        row["peak_memory_mib"] = r.peak_memory_mib  # the API's column, the same figure
        row["pareto"] = r.number in front
        row["role"] = r.role or ""
        if chosen is not None:
            row["baseline"] = r.number == chosen
        else:
            row["baseline"] = row["role"] == DEFAULT_LORA if has_reference else is_default_lora(c, num_layers)
        row["fidelity"] = r.stopped_at or ("full" if r.status == "complete" else None)
        row["diverged"] = diverged(r) or ""
        row["error"] = r.error or ""
        rows.append(row)
    head = ["number", "status", "method", "rank", "layers", "n_layers", "targets", "learning_rate", "trainable_params"]
    head += [n for n, _ in study.objectives if n not in head]  # trainable_params is often an objective too
    tail = ["wall_time", "peak_memory_mib", "fidelity", "pareto", "baseline", "role", "diverged", "error"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=head + tail)
    for col in ("rank", "n_layers"):  # integers with gaps, not floats
        frame[col] = frame[col].astype("Int64")
    extra = [c for c in frame.columns if c not in head and c not in tail]
    return frame[head + extra + tail]


def pair_front(frame, x: str, y: str, directions: dict[str, str], *, stopped: bool = False):
    """Rows of completed trials, with ``front_xy`` = non-dominated on the pair (x, y) among the
    completed trials that did not diverge (a diverged row is kept, never on the front), and
    ``rung_only``. With ``stopped``, also the trials stopped at a lower rung (``rung_only``
    true, their metric from there: drawn as such, never on the front, since with a
    ``target:`` the front is decided at the target)."""
    import numpy as np

    from autopeft.search.analysis.hypervolume import front_mask

    shown = ("complete", "pruned") if stopped else ("complete",)
    done = frame[frame["status"].isin(shown) & frame[x].notna() & frame[y].notna()].copy()
    done["rung_only"] = done["status"] == "pruned"
    healthy = ~done["rung_only"].to_numpy()
    if "diverged" in done:
        healthy &= (done["diverged"].fillna("") == "").to_numpy()
    mask = np.zeros(len(done), dtype=bool)
    mask[healthy] = front_mask(done.loc[healthy, [x, y]].to_numpy(dtype=float), [directions[x], directions[y]])
    done["front_xy"] = mask
    return done


def trial(records: Sequence[TrialRecord], number: int) -> TrialRecord | None:
    return next((r for r in records if r.number == number), None)


# ---------------------------------------------------------------------- verified runs
def verified_view(store, study: StudyRecord, records: Sequence[TrialRecord]):
    """``(frame, fidelity, baseline)`` of ``autopeft verify``'s results, or None before any.

    ``frame``: one row per verified trial with its proxy metric and verified validation/test
    means and sds; ``fidelity``: ``autopeft.search.analysis.trust.Fidelity``; ``baseline``: default LoRA's
    ``Verified`` (or None).
    """
    import pandas as pd

    from autopeft.errors import SpaceError
    from autopeft.search.analysis.trust import fidelity, summarize
    from autopeft.space.schema import ProxySpec
    from autopeft.space.stored import study_space
    from autopeft.store.verifications import Verifications
    from autopeft.tasks import METRIC_DIRECTIONS

    runs = Verifications(store).of(study.name)
    if not runs:
        return None
    metric = next(n for n, _ in study.objectives if n in METRIC_DIRECTIONS)
    try:  # only for the advice's figures: a study stored by an older autopeft may not parse any more
        proxy = study_space(study).proxy
    except SpaceError:
        proxy = ProxySpec()
    verified = summarize(runs, metric)
    by_number = {r.number: r for r in records}
    rows = []
    for v in verified:
        r = by_number.get(v.trial_number)
        if r is None:
            continue
        rows.append({"number": v.trial_number, "method": v.candidate.method, "trainable_params": v.trainable_params,
                     "proxy": r.metrics.get(metric), "validation": v.val[0], "validation_sd": v.val[1],
                     "test": v.test[0], "test_sd": v.test[1], "seeds": len(v.seeds), "diverged": v.diverged or ""})
    trials_only = [v for v in verified if v.trial_number is not None]
    fid = fidelity(study, records, trials_only, metric, proxy.steps, proxy.eval_examples)
    base = next((v for v in verified if v.subject == "baseline"), None)
    return pd.DataFrame(rows), fid, base
