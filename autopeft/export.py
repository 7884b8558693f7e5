"""Write a trial's configuration as a peft adapter directory.

``adapter_config.json`` is written by peft itself (``PeftConfig.save_pretrained``), so it
loads with ``PeftConfig.from_pretrained(DIR)`` and nothing from autopeft. Beside it,
``autopeft.json`` records where it came from: study, trial, metrics, space hash, versions.

Exports travel: trials record the base model where this machine had it (a directory in
site-packages for a bundled model, in the cache for a converted GGUF). An adapter that
names that path loads nowhere else, so the exported config names the model's hub id when
known (``BundledModel.canonical_id``), else the name the user gave; the local directory
stays in ``autopeft.json``, and ``load_snippet`` shows how to load the bundled copy offline.
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
        as_: Another method to write the trial as, when its method converts to it
            (``Method.export_as``): ``"lora"`` turns an AdaLoRA trial into a plain LoRA
            config whose ``rank_pattern`` holds the ranks AdaLoRA learned.

    Raises:
        ExportError: the trial has no buildable config, or ``out`` cannot be written.
    """
    if record.peft_config is None:
        raise ExportError(f"trial {record.number} has no peft config ({record.error or record.status})")
    if record.status != "complete":
        raise ExportError(f"trial {record.number} is {record.status}, not complete; pick a completed trial")
    from autopeft.methods import get_method

    method, config = record.candidate.method, record.peft_config
    if as_ is not None:
        method, config = _convert(record, as_)
    location = base_model_of(config)
    config = with_base_model(config, portable_model_id(study.model))
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
            "converted": f"{record.candidate.method} -> {as_}" if as_ else None,
            "candidate": record.candidate.to_json(),
            "metrics": record.metrics,
            "objectives": {name: v for (name, _), v in zip(study.objectives, record.values or [])},
            "trainable_params": record.trainable_params,
            "model": study.model,
            "base_model_name_or_path": portable_model_id(study.model),
            "model_location": location,  # where the search read it on this machine
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


#: The keys a method's exported config names its base model under (peft's; the bottleneck module's).
_BASE_KEYS = ("base_model_name_or_path", "base_model")


def portable_model_id(model: str) -> str:
    """What an exported config should name as its base model: the hub id a bundled alias is a
    copy of (``minilm-l6`` -> ``sentence-transformers/all-MiniLM-L6-v2``), else ``model`` as
    the user gave it (a hub id, or their own path)."""
    from autopeft.assets.models import BUNDLED_MODELS

    bundled = BUNDLED_MODELS.get(model)
    return (bundled.canonical_id or model) if bundled else model


def base_model_of(config: dict | None) -> str | None:
    """The base model ``config`` names (None if none)."""
    return next((config[k] for k in _BASE_KEYS if (config or {}).get(k)), None)


def with_base_model(config: dict, model_id: str) -> dict:
    """``config`` naming ``model_id`` as its base model, under whichever key it uses."""
    keys = [k for k in _BASE_KEYS if k in config] or ["base_model_name_or_path"]
    return {**config, **{k: model_id for k in keys}}


def make_portable(out_dir: str | Path, study: StudyRecord) -> None:
    """Rewrite the base model named by the config files in ``out_dir`` (``export --train``:
    peft's ``save_pretrained`` writes the path the model was loaded from)."""
    model_id = portable_model_id(study.model)
    for name in ("adapter_config.json", "bottleneck_config.json"):
        path = Path(out_dir) / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            path.write_text(json.dumps(with_base_model(data, model_id), indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise ExportError(f"cannot rewrite {path}: {e.strerror or e}") from None


def load_snippet(study: StudyRecord, method: str, out_dir: str, task: str, num_labels: int, *, weights: bool) -> str:
    """Python that loads the export in ``out_dir``; for a bundled model, from autopeft's local
    copy (``resolve_model``), so it runs offline — the config itself names the hub id."""
    from autopeft.assets.models import BUNDLED_MODELS, base_model_lines
    from autopeft.methods import get_method

    bundled = BUNDLED_MODELS.get(study.model)
    if bundled is None:
        gguf = base_model_lines(study.model)  # a user's own .gguf: its converted copy in the cache
        if gguf is None:
            return get_method(method).load_snippet(out_dir, task, num_labels, weights)
        setup, expr = gguf
        lines = get_method(method).load_snippet(out_dir, task, num_labels, weights, base_expr=expr).splitlines()
        split = lines.index("") if "" in lines else 0
        return "\n".join([*lines[:split], *setup, *lines[split:]])
    lines = get_method(method).load_snippet(out_dir, task, num_labels, weights, base_expr="base_dir").splitlines()
    split = lines.index("") if "" in lines else 0
    copy_of = f"the local copy of {bundled.canonical_id}" if bundled.canonical_id else "the bundled model"
    return "\n".join([
        "from autopeft.assets.models import resolve_model",
        "from autopeft.space.schema import ModelSpec",
        *lines[:split], "",
        f"base_dir = resolve_model(ModelSpec({study.model!r})).location  # {copy_of}: no network needed",
        *lines[split + 1:],
    ])


def _convert(record: TrialRecord, as_: str) -> tuple[str, dict]:
    """The trial's config as one of method ``as_``, converted by the trial's own method."""
    from autopeft.errors import MethodError
    from autopeft.methods import get_method

    try:
        return as_, get_method(record.candidate.method).export_as(as_, record.peft_config, record.rank_allocation)
    except MethodError as e:
        raise ExportError(f"--as {as_}: trial {record.number}: {e}") from None


def select_trial(store: Store, study_name: str, trial: int | None, pick: str | None) -> tuple[StudyRecord, TrialRecord, str]:
    """The study and the trial chosen by ``--trial N`` or ``--pick ...`` (exactly one)."""
    from autopeft.search.analysis.pareto import pick as pick_trial
    from autopeft.search.analysis.pareto import trial_by_number

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
    from autopeft.assets.dataset_sources import resolve_dataset
    from autopeft.assets.dataset_tables import load_table
    from autopeft.space.stored import study_space

    space = study_space(study)
    if space.task.type != "classification":
        return space.task.type, 0
    return space.task.type, len(load_table(resolve_dataset(space.task.dataset), space.task).label_names)
