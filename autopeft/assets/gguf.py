"""Turn a GGUF checkpoint into a plain Hugging Face model directory, once, and cache it.

transformers can read a GGUF file (``from_pretrained(dir, gguf_file=name)``, with the
``gguf`` package) by de-quantising every tensor to torch weights, which takes tens of
seconds; a trial process that did this on every start would spend most of its time there.
So the file is converted once into a normal directory (``config.json``, safetensors, the
tokenizer with its chat template) and every consumer -- ``inspect_model``, the trials,
export -- reads that directory like any other local model.

The directory is ``<cache>/models/<stem>-<fingerprint>``. It appears atomically: the
conversion writes into a temporary sibling and renames it into place, so a killed
conversion never leaves a half directory behind (its temporary is swept by the next
conversion), and of two processes converting at once the loser discards its copy. A file
lock keeps concurrent workers from doing the same 25 s of work twice.

The fingerprint is a sha256 of the whole file: 98 MB hash in ~0.1 s (1 GB/s), cheap
beside any use of the model, and unlike a head/tail sample it tells apart two fine-tunes
of one base model at the same quantisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from autopeft.assets.cache import cache_dir
from autopeft.errors import AssetError

#: Bump when the converted layout changes: old directories are then ignored, not misread.
CONVERT_VERSION = 1
#: Written last into a converted directory: its presence means the directory is complete.
MARKER = "autopeft-gguf.json"
_MAGIC = b"GGUF"
#: The module transformers needs to read GGUF files (a name, so tests can point it elsewhere).
GGUF_MODULE = "gguf"


def models_cache() -> Path:
    """Where converted models live: ``<autopeft cache>/models``."""
    return cache_dir() / "models"


def gguf_fingerprint(path: str | os.PathLike) -> str:
    """16 hex digits that change with the file's content or the converter's version."""
    digest = hashlib.sha256(f"autopeft-gguf:{CONVERT_VERSION}:".encode())
    try:
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
    except OSError as e:
        raise AssetError(f"{path}: cannot read the GGUF file ({e.strerror or e})") from None
    return digest.hexdigest()[:16]


def converted_path(gguf_path: str | os.PathLike, fingerprint: str | None = None) -> Path:
    """The directory ``convert_gguf`` produces (or produced) for ``gguf_path``."""
    path = Path(gguf_path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "model"
    return models_cache() / f"{stem}-{fingerprint or gguf_fingerprint(path)}"


def is_converted(directory: Path) -> bool:
    """Whether ``directory`` is a complete conversion (its marker is written last)."""
    return (directory / MARKER).is_file()


def convert_gguf(gguf_path: str | os.PathLike, fingerprint: str | None = None) -> Path:
    """Convert ``gguf_path`` into a Hugging Face model directory in the cache, once.

    Args:
        gguf_path: A ``.gguf`` file of an architecture transformers can de-quantise
            (Llama, Mistral, Qwen2, Phi-3, GPT-2 ...).
        fingerprint: ``gguf_fingerprint(gguf_path)`` if the caller already has it.

    Returns:
        The converted directory: load it with ``from_pretrained(dir)``, no ``gguf_file``.

    Raises:
        AssetError: one line naming the file and the reason (not a GGUF file, corrupt,
            an architecture transformers cannot read, the ``gguf`` package missing).
    """
    src = Path(gguf_path).expanduser().resolve()
    if not src.is_file():
        raise AssetError(f"{src}: no such GGUF file")
    _check_magic(src)
    final = converted_path(src, fingerprint)
    if is_converted(final):
        return final
    if importlib.util.find_spec(GGUF_MODULE) is None:
        raise AssetError(f"{src}: reading a GGUF file needs the package gguf: pip install 'gguf>=0.10'")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with _lock(final.parent / f".{final.name}.lock"):
            if is_converted(final):  # another process finished while we waited for the lock
                return final
            _sweep_dead_temporaries(final)
            _convert_and_publish(src, final)
    except OSError as e:  # disk full, read-only cache: the user can fix it, so no traceback
        raise AssetError(
            f"{src}: cannot write its converted model into {final.parent} ({e.strerror or e}); "
            "free some space (fp32 weights: 4-8x the GGUF file) or point AUTOPEFT_CACHE elsewhere"
        ) from None
    return final


def _convert_and_publish(src: Path, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_owner()}.", suffix=".tmp", dir=final.parent))
    try:
        started = time.perf_counter()
        _convert_into(src, tmp)
        (tmp / MARKER).write_text(json.dumps({
            "source": str(src),
            "source_bytes": src.stat().st_size,
            "fingerprint": final.name.rsplit("-", 1)[-1],
            "convert_version": CONVERT_VERSION,
            "seconds": round(time.perf_counter() - started, 1),
        }, indent=1))
        _publish(tmp, final)
    finally:
        if tmp.exists():  # failed, or lost the race: the temporary goes
            shutil.rmtree(tmp, ignore_errors=True)


def _check_magic(src: Path) -> None:
    try:
        with open(src, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise AssetError(f"{src}: cannot read the GGUF file ({e.strerror or e})") from None
    if head != _MAGIC:
        raise AssetError(f"{src}: not a GGUF file (it starts with {head!r}, a GGUF file with b'GGUF')")


def _convert_into(src: Path, out: Path) -> None:
    """De-quantise ``src`` with transformers and save it as a normal model into ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": src.name, "local_files_only": True}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(src.parent), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), **kwargs)
    except (ValueError, KeyError, IndexError, TypeError, OSError, NotImplementedError, RuntimeError, EOFError) as e:
        # A corrupt file, an architecture transformers has no GGUF mapping for, a
        # quantisation it cannot de-quantise: all mean "cannot use this file".
        raise AssetError(f"{src}: {_diagnose(src, e)}") from None
    # A GGUF-loaded model refuses save_pretrained (it carries a gguf quantization_config):
    # rebuild it from a clean config on the meta device, then adopt the de-quantised
    # tensors (no second copy of the weights in memory).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    model.tie_weights()
    _materialise_buffers(model, loaded)
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(str(out))
    # Loading arguments are not properties of the tokenizer: keep them out of its config.
    for key in ("local_files_only", "is_local", "gguf_file"):
        tokenizer.init_kwargs.pop(key, None)
    context = getattr(config, "max_position_embeddings", None)
    if context and tokenizer.model_max_length > 1e12:  # the "unknown" sentinel; the model's context is known
        tokenizer.model_max_length = context
    tokenizer.save_pretrained(str(out))
    # mkdtemp makes the directory private; a converted model is as readable as any saved one.
    os.chmod(out, 0o755)
    for f in out.iterdir():
        os.chmod(f, 0o644)


def _diagnose(src: Path, error: BaseException) -> str:
    """Why transformers failed: the file itself is damaged, or transformers cannot use it.

    Only on the failure path: parsing the file apart costs ~2 s (the vocabulary metadata).
    """
    import gguf

    try:
        gguf.GGUFReader(str(src))
    except Exception as e:  # any parse failure at all means the file is damaged
        return f"corrupt or truncated GGUF file ({_one_line(e)})"
    return f"transformers cannot convert this GGUF file ({_one_line(error)})"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0][:300] if str(e).strip() else "no detail"
    return f"{type(e).__name__}: {text}"


def _materialise_buffers(model, loaded) -> None:
    """Buffers outside the state dict (rotary ``inv_freq``) are still on meta: take the loaded ones."""
    real = dict(loaded.named_buffers())
    for name, buf in list(model.named_buffers()):
        if buf.is_meta and name in real:
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner)._buffers[attr] = real[name]


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if is_converted(final):
            return  # lost the race: the caller's finally removes our copy
        # A directory without a marker was not made by a completed conversion: replace it.
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)


def _owner() -> str:
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def _sweep_dead_temporaries(final: Path) -> None:
    """Remove temporaries of ``final`` left by killed conversions on this host."""
    host = _owner().rsplit("-", 1)[0]
    for tmp in final.parent.glob(f".{final.name}.{host}-*.tmp"):
        pid = tmp.name[len(f".{final.name}.{host}-"):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive advisory lock where the platform has one (POSIX); correctness does not need it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
