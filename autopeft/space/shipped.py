"""The search spaces shipped with autopeft (the repository's ``search_spaces/`` folder)."""

from __future__ import annotations


def shipped_spaces() -> dict[str, str]:
    """``{file name: YAML text}`` of the shipped search spaces, the quickstart first.

    Read as package data of ``autopeft.search_spaces`` through ``importlib.resources``, so an
    installed (non-editable) autopeft finds them as well as a source checkout does.
    """
    from importlib.resources import files

    found = [f for f in files("autopeft.search_spaces").iterdir()
             if f.is_file() and f.name.endswith((".yaml", ".yml"))]
    # The quickstart first: it is the one a new user should start from.
    found.sort(key=lambda f: (f.name.rsplit(".", 1)[0] != "quickstart", f.name))
    return {f.name: f.read_text(encoding="utf-8") for f in found}
