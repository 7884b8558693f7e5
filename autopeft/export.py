"""Write a trial's configuration as a peft adapter directory.

``adapter_config.json`` is written by peft itself (``PeftConfig.save_pretrained``), so it
loads with ``PeftConfig.from_pretrained(DIR)`` and nothing from autopeft. Beside it,
``autopeft.json`` records where it came from: study, trial, metrics, space hash, versions.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from autopeft.errors import ExportError
from autopeft.store import Store, StudyRecord, TrialRecord


def export_trial(study: StudyRecord, record: TrialRecord, out: str | Path, *, picked_by: str, as_: str | None = None) -> Path:
    """Write ``record``'s peft config and provenance into the directory ``out``.

    Args:
        as_: ``"lora"`` turns an AdaLoRA trial into a plain LoRA config whose
            ``rank_pattern`` holds the ranks AdaLoRA learned.

    Raises:
        ExportError: the trial has no buildable config, or ``out`` cannot be written.
    """
    if record.peft_config is None:
        raise ExportError(f"trial {record.number} has no peft config ({record.error or record.status})")
    if record.status != "complete":
        raise ExportError(f"trial {record.number} is {record.status}, not complete; pick a completed trial")
    from autopeft.methods import get_method

    method, config = record.candidate["method"], record.peft_config
    if as_ is not None:
        method, config = _convert(record, as_)
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        get_method(method).export(config, str(out_dir))
        provenance = {
            "study": study.name,
            "trial": record.number,
            "picked_by": picked_by,
            "converted": f"{record.candidate['method']} -> {as_}" if as_ else None,
            "candidate": record.candidate,
            "metrics": record.metrics,
            "objectives": {name: v for (name, _), v in zip(study.objectives, record.values or [])},
            "trainable_params": record.trainable_params,
            "model": study.model,
            "model_fingerprint": study.model_fingerprint,
            "dataset": study.dataset,
            "data_fingerprint": study.data_fingerprint,
            "space_hash": study.space_hash,
            "versions": {p: _version(p) for p in ("autopeft", "peft", "transformers", "torch", "optuna")},
        }
        (out_dir / "autopeft.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    except OSError as e:
        raise ExportError(f"cannot write to --out {out_dir}: {e.strerror or e}") from None
    return out_dir


def _convert(record: TrialRecord, as_: str) -> tuple[str, dict]:
    if as_ != "lora":
        raise ExportError(f"--as {as_}: only 'lora' is supported (from an AdaLoRA trial)")
    allocation = record.extras.get("rank_allocation")
    if record.candidate["method"] != "adalora" or not allocation:
        raise ExportError(f"--as lora needs an AdaLoRA trial with a recorded rank allocation; trial {record.number} is {record.candidate['method']}")
    from autopeft.errors import MethodError
    from autopeft.methods.adalora import as_lora

    try:
        return "lora", as_lora(record.peft_config, allocation)
    except MethodError as e:
        raise ExportError(str(e)) from None


def select_trial(store: Store, study_name: str, trial: int | None, pick: str | None) -> tuple[StudyRecord, TrialRecord, str]:
    """The study and the trial chosen by ``--trial N`` or ``--pick ...`` (exactly one)."""
    from autopeft.search.pareto import pick as pick_trial
    from autopeft.search.pareto import trial_by_number

    if (trial is None) == (pick is None):
        raise ExportError("give exactly one of --trial N or --pick (knee | best:OBJECTIVE | budget:PARAMS)")
    study = store.get_study(study_name)
    records = store.trials(study_name)
    if trial is not None:
        return study, trial_by_number(records, trial), f"trial:{trial}"
    return study, pick_trial(study, records, pick), pick


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def study_task(study: StudyRecord) -> tuple[str, int]:
    """The study's task kind and number of classes (0 for language modelling); the data set
    is read again for the classes: a second or two."""
    from autopeft.assets.datasets import load_table, resolve_dataset
    from autopeft.space import load_space_text

    space = load_space_text(study.space_yaml, f"study {study.name}")
    if space.task.type != "classification":
        return space.task.type, 0
    return space.task.type, len(load_table(resolve_dataset(space.task.dataset), space.task).label_names)
