"""The values of ``space:``: what each searched setting may take.

A dimension is a scalar (``Fixed``), a list (``Choice``) or, for numbers,
``{log|range: [low, high]}`` (``Range``). Some keys have forms of their own: ``targets`` (sets
of module names, or the top k by importance), ``layers`` (a ``Placement``), ``rank`` (one per
layer, ``PerLayer``) and ``learning_rate`` (a band per method, ``PerMethod``).
"""

from __future__ import annotations

import json

from typing import Any

from autopeft.errors import SpaceError
from autopeft.space.nodes import Node, Reader, integer, number, show
from autopeft.space.schema import (
    Choice,
    Dimension,
    Fixed,
    PerLayer,
    PerMethod,
    Placement,
    Range,
    Targets,
)


def dimension(node: Node, item: Reader, *, numeric: bool, whole: bool = False) -> Dimension:
    """A scalar (fixed), a list (choice) or, for numbers, ``{log|range: [low, high]}``."""
    value = node.value
    if isinstance(value, list):
        items = [item(n) for n in node.list()]
        if len(set(map(_key, items))) != len(items):
            raise node.fail(f"expected distinct values, got duplicates in {value!r}")
        if len(items) == 1:
            return Fixed(items[0])
        return Choice(tuple(sorted(items) if numeric else items))
    if isinstance(value, dict):
        if not numeric:
            raise node.fail(f"expected a value or a list of values, got {show(value)}")
        (kind, bounds), *rest = list(node.mapping({"log", "range"}).items()) or [(None, None)]
        if kind is None or rest:
            raise node.fail("expected exactly one of 'log: [low, high]' or 'range: [low, high]'")
        low, high = _low_high(bounds, item)
        if kind == "log" and low <= 0:
            raise bounds.fail(f"a log range needs low > 0, got low={low}")
        return Range(low, high, log=(kind == "log"), integer=whole)
    return Fixed(item(node))


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _low_high(node: Node, item: Reader) -> tuple[Any, Any]:
    """``[low, high]`` with ``low <= high``, each read by ``item``."""
    pair = node.list()
    if len(pair) != 2:
        raise node.fail(f"expected [low, high], got {node.value!r}")
    low, high = (item(n) for n in pair)
    if low > high:
        raise node.fail(f"low <= high must hold, but got low={low}, high={high}")
    return low, high


def methods_of(method: Dimension) -> list[str]:
    """The methods a ``space.method`` dimension takes."""
    return list(method.values) if isinstance(method, Choice) else [method.value]


def targets(node: Node) -> tuple[Targets, ...]:
    def one(n: Node) -> Targets:
        if n.value == "all-linear":
            return Targets(())
        if isinstance(n.value, str):
            return Targets((n.str(),))
        names = tuple(m.str() for m in n.list())
        if len(set(names)) != len(names):
            raise n.fail(f"expected distinct module names, got {n.value!r}")
        return Targets(names)

    if isinstance(node.value, str):
        return (one(node),)
    items = node.list()
    if all(isinstance(n.value, str) for n in items) and "all-linear" not in node.value:
        # [query, value] is one set of modules, as in peft's target_modules; choices are
        # written as a list of sets: [[query, value], [query, key, value], all-linear].
        return (one(node),)
    choices = tuple(one(n) for n in items)
    if len({c.label for c in choices}) != len(choices):
        raise node.fail("expected distinct target choices")
    return choices


def targets_top_k(node: Node) -> tuple[int, int]:
    """``targets: {top_k: k or [low, high], by: importance}``: the k most important modules."""
    keys = node.mapping({"top_k", "by"}, required={"top_k", "by"})
    keys["by"].str(("importance",))
    n = keys["top_k"]
    if isinstance(n.value, int) and not isinstance(n.value, bool):
        return (n.int(low=1),) * 2
    return _low_high(n, integer(low=1))


def placement(node: Node) -> Placement:
    value = node.value
    if value == "all":
        return Placement("all")
    if isinstance(value, list):
        layers = tuple(n.int(low=0) for n in node.list())
        if len(set(layers)) != len(layers):
            raise node.fail(f"expected distinct layer indices, got {value!r}")
        return Placement("fixed", layers=tuple(sorted(layers)))
    keys = node.mapping({"top_k", "by", "per_layer", "range"})
    kinds = [k for k in ("top_k", "per_layer", "range") if k in keys]
    if len(kinds) != 1:
        raise node.fail("expected exactly one of 'top_k', 'per_layer', 'range' (or 'all', or a list of layers)")
    kind = kinds[0]
    if "by" in keys and kind != "top_k":
        raise keys["by"].fail("'by' only applies to top_k")
    if kind == "per_layer":
        if not keys["per_layer"].bool():
            raise keys["per_layer"].fail("expected true (use 'all' for every layer)")
        return Placement("per_layer")
    n = keys[kind]
    if isinstance(n.value, int) and not isinstance(n.value, bool) and kind == "top_k":
        low = high = n.int(low=1)
    else:
        low, high = _low_high(n, integer(low=0 if kind == "range" else 1))
    by = keys["by"].str(("top", "bottom", "importance")) if "by" in keys else "top"
    return Placement(kind, low=low, high=high, by=by)


def rank(node: Node, space: dict[str, Node]) -> Dimension:
    """A rank dimension, or ``{per_layer: [0, 2, 4, 8]}``: one rank per layer, 0 = no adapter."""
    if isinstance(node.value, dict) and "per_layer" in node.value:
        choices = node.mapping({"per_layer"})["per_layer"]
        values = tuple(sorted({n.int(low=0) for n in choices.list()}))
        if len(values) < 2 or values[-1] == 0:
            raise choices.fail(f"expected at least two ranks including one > 0, got {choices.value!r}")
        if "layers" in space and space["layers"].value != "all":
            raise space["layers"].fail("per-layer ranks already place adapters (rank 0 = off); use 'all' or drop 'layers'")
        return PerLayer(values)
    return dimension(node, integer(low=1), numeric=True, whole=True)


def learning_rate(node: Node, method: Dimension) -> Dimension:
    """One rate dimension for every method, or ``{method: band}`` for each method of the space.

    A band is ``{log: [low, high]}`` (searched on a log scale) or a number (that method's rate).
    """
    value = node.value
    if not isinstance(value, dict) or not value or set(value) & {"log", "range"}:
        return dimension(node, number(positive=True), numeric=True)
    methods = methods_of(method)
    for key in value:
        if key not in methods:
            raise SpaceError(node.source, f"{node.path}.{key}",
                             f"not a method of this space; expected a band for each of space.method {methods}")
    bands = []
    for name in methods:
        if name not in value:
            low, high = default_learning_rate(name)
            raise SpaceError(node.source, f"{node.path}.{name}",
                             f"missing: space.method has '{name}'; give its band, e.g. {{log: [{low:g}, {high:g}]}}")
        n = node.child(name)
        dim = dimension(n, number(positive=True), numeric=True)
        if isinstance(dim, Fixed):
            bands.append((name, dim.value, dim.value))
        elif isinstance(dim, Range) and dim.log:
            bands.append((name, dim.low, dim.high))
        else:
            raise n.fail("expected a number or {log: [low, high]}: a per-method band is searched on a log scale")
    return PerMethod(tuple(bands))


def built_in_learning_rate(method: Dimension) -> PerMethod:
    """The built-in band of each method of the space (each method's ``learning_rate_band``)."""
    return PerMethod(tuple((m, *default_learning_rate(m)) for m in methods_of(method)))


def default_learning_rate(method: str) -> tuple[float, float]:
    """The rate ``space.learning_rate`` takes for ``method`` when the space omits it: the band
    the method declares (``learning_rate_band``, ``autopeft.methods``), or ``MethodBase``'s
    for a method that declares none or is not registered."""
    from autopeft.methods import get_method, method_names
    from autopeft.methods.base import MethodBase

    found = get_method(method) if method in method_names() else None
    low, high = getattr(found, "learning_rate_band", MethodBase.learning_rate_band)
    return float(low), float(high)
