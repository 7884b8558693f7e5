"""Where autopeft caches what it derives: model structure, tokenised splits, converted
models and frozen-prefix states. A leaf: every cache user imports the directory from here."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where autopeft caches derived data (model structure, tokenised splits, converted models).

    ``$AUTOPEFT_CACHE`` if set, else ``$XDG_CACHE_HOME/autopeft``, else ``~/.cache/autopeft``.
    """
    if os.environ.get("AUTOPEFT_CACHE"):
        return Path(os.environ["AUTOPEFT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "autopeft"
