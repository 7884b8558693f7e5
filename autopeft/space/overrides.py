"""``--set key.path=value`` overrides, applied onto the parsed YAML before it is validated.

Values are parsed as YAML (``--set space.rank=[4,8]``). A bad override fails against
``--set``; so does a bad value the document got from one (``set_by_override``).
"""

from __future__ import annotations

import json

from typing import Any

import yaml

from autopeft.errors import SpaceError
from autopeft.space.nodes import first_line, show


def apply_overrides(document: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``document``."""
    doc = json.loads(json.dumps(document)) if document is not None else {}
    for item in overrides:
        if "=" not in item:
            raise SpaceError("--set", item, "expected key.path=value, e.g. proxy.steps=10")
        path, _, raw = item.partition("=")
        parts = path.strip().split(".")
        if not all(parts):
            raise SpaceError("--set", path, "expected a dotted key path such as search.trials")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise SpaceError("--set", path, f"the value is not valid YAML: {first_line(e)}") from None
        if not isinstance(doc, dict):
            raise SpaceError("--set", path, "the document is not a mapping")
        node = doc
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise SpaceError("--set", ".".join(parts[: i + 1]), f"is {show(nxt)}, not a mapping; cannot set {path}")
            node = nxt
        node[parts[-1]] = value
    _narrow_learning_rates(doc, override_paths(overrides))
    return doc


def override_paths(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The key paths that ``overrides`` set (``proxy.steps`` of ``proxy.steps=10``)."""
    return [item.partition("=")[0].strip() for item in overrides]


def set_by_override(path: str, overrides: list[str] | tuple[str, ...]) -> bool:
    """Whether the value at ``path`` came from one of ``overrides`` (it is, or is inside, one they set)."""
    return any(path == p or path.startswith((p + ".", p + "[")) for p in override_paths(overrides))


def _narrow_learning_rates(doc: dict, paths: list[str]) -> None:
    """``--set space.method=lora`` on a space with a band per method keeps the bands of the
    methods still searched (a band for a method outside ``space.method`` is an error), unless
    ``space.learning_rate`` is overridden too."""
    if "space.method" not in paths or any(p == "space.learning_rate" or p.startswith("space.learning_rate.")
                                          for p in paths):
        return
    sp = doc.get("space")
    rates = sp.get("learning_rate") if isinstance(sp, dict) else None
    if not isinstance(rates, dict) or set(rates) & {"log", "range"}:
        return
    methods = sp.get("method")
    methods = methods if isinstance(methods, list) else [methods]
    kept = {k: v for k, v in rates.items() if k in methods}
    if kept:  # none left: the stale bands are reported as such
        sp["learning_rate"] = kept
