"""Typed values read out of a parsed YAML document, each error naming where it is.

A ``Node`` is a value together with its key path (``proxy.steps``, ``space.rank[1]``) and the
file it came from; every reading method checks one expectation and fails with a
``SpaceError``: one line naming the file, the key path and what was expected. The readers
below (``integer(low=1)``, ``string(SCHEDULES)``, ``optional(...)``) are those checks as
values, so a section that is just known keys, each with a type, a range and a default, is a
table of them filled into its dataclass by ``read_into``.
"""

from __future__ import annotations

import math
import re

from typing import Any, Callable

from autopeft.errors import SpaceError

_YAML11_FLOAT = re.compile(r"[-+]?[0-9]*\.?[0-9]+[eE][-+]?[0-9]+")


class Node:
    """A value with the key path it came from, so every error can say where it is."""

    def __init__(self, value: Any, path: str, source: str) -> None:
        self.value, self.path, self.source = value, path, source

    def fail(self, problem: str) -> SpaceError:
        return SpaceError(self.source, self.path or "<top level>", problem)

    def child(self, key: str | int) -> "Node":
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return Node(self.value[key], path, self.source)

    def mapping(self, allowed: set[str], required: set[str] = frozenset()) -> dict[str, "Node"]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping with keys {sorted(allowed)}, got {show(self.value)}")
        for key in self.value:
            if key not in allowed:
                raise SpaceError(
                    self.source,
                    f"{self.path}.{key}" if self.path else str(key),
                    f"unknown key; expected one of {sorted(allowed)}",
                )
        for key in sorted(required):
            if key not in self.value:
                raise self.fail(f"missing required key '{key}'")
        return {k: self.child(k) for k in self.value}

    def list(self, nonempty: bool = True) -> list["Node"]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {show(self.value)}")
        if nonempty and not self.value:
            raise self.fail("expected a non-empty list")
        return [self.child(i) for i in range(len(self.value))]

    def str(self, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"expected a non-empty string, got {show(self.value)}")
        if choices is not None and self.value not in choices:
            raise self.fail(f"expected one of {list(choices)}, got {self.value!r}")
        return self.value

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {show(self.value)}")
        return self.value

    def int(self, low: int | None = None, high: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected an integer, got {show(self.value)}")
        self._bounds(self.value, low, high)
        return self.value

    def number(self, low: float | None = None, high: float | None = None, positive: bool = False) -> float:
        value = self.value
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads `1e-4` (no dot) as a string; accept it
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number, got {show(self.value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(f"expected a finite number, got {self.value!r}")
        if positive and value <= 0:
            raise self.fail(f"expected a number > 0, got {self.value!r}")
        self._bounds(value, low, high)
        return value

    def _bounds(self, value: float, low: float | None, high: float | None) -> None:
        if low is not None and value < low:
            raise self.fail(f"expected a value >= {low}, got {value!r}")
        if high is not None and value > high:
            raise self.fail(f"expected a value <= {high}, got {value!r}")


def show(value: Any) -> str:
    """``value`` as an error message names it: its type and a short repr (or "nothing (null)")."""
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


def first_line(e: Exception) -> str:
    """The first line of a YAML error's problem (or of the error), for a one-line message."""
    return str(getattr(e, "problem", None) or e).splitlines()[0]


# ---------------------------------------------------------------------------- readers

#: Reads one value out of a node (and fails naming it).
Reader = Callable[[Node], Any]


def integer(low: int | None = None, high: int | None = None) -> Reader:
    return lambda n: n.int(low=low, high=high)


def number(low: float | None = None, high: float | None = None, positive: bool = False) -> Reader:
    return lambda n: n.number(low=low, high=high, positive=positive)


def string(choices: tuple[str, ...] | None = None) -> Reader:
    return lambda n: n.str(choices)


def boolean(node: Node) -> bool:
    return node.bool()


def optional(read: Reader) -> Reader:
    """``read``, except that null is None (a key whose default is "none")."""
    return lambda n: None if n.value is None else read(n)


def read_into(node: Node, cls: type, table: dict[str, Reader], required: set[str] = frozenset()):
    """``cls`` from the mapping at ``node``: each key read by its reader in ``table`` (an
    unknown key is an error), each absent key left to the dataclass's default."""
    keys = node.mapping(set(table), required)
    return cls(**{k: table[k](n) for k, n in keys.items()})


def into(cls: type, table: dict[str, Reader]) -> Reader:
    """A reader of a nested section: ``read_into`` with ``cls`` and ``table``."""
    return lambda n: read_into(n, cls, table)
