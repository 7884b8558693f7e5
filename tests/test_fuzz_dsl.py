"""Fuzzing the DSL loader and --set overrides: the only outcomes allowed are a valid space or
an ``AutoPeftError`` (a ``SpaceError`` with a key path). Any other exception is a bug.

CI runs 2,000 examples per property (``AUTOPEFT_FUZZ_EXAMPLES`` changes it);
``benchmarks/fuzz_dsl.py`` runs 10,000.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.errors import AutoPeftError, SpaceError
from autopeft.space import load_space_text, parse_space
from autopeft.space.schema import SearchSpace

QUICKSTART = yaml.safe_load((Path(__file__).resolve().parent.parent / "search_spaces" / "quickstart.yaml").read_text())
EXAMPLES = int(os.environ.get("AUTOPEFT_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**9), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["lora", "ia3", "all-linear", "1%", "250k", "1e-4", "max", "min", "top", "query"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _paths(doc, prefix=()):
    """Every key path into ``doc`` (mappings and lists)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(QUICKSTART) if p]


def _check(outcome) -> None:
    if isinstance(outcome, SearchSpace):
        return
    assert isinstance(outcome, AutoPeftError), f"{type(outcome).__name__}: {outcome}"
    if isinstance(outcome, SpaceError):
        assert outcome.source and isinstance(outcome.path, str)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except AutoPeftError as e:
        return e


@FUZZ
@given(st.data())
def test_mutated_quickstart_documents_load_or_fail_with_a_key_path(data):
    doc = copy.deepcopy(QUICKSTART)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(ALL_PATHS))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = data.draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = data.draw(values)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[data.draw(st.text(max_size=8))] = data.draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the path
    _check(_outcome(parse_space, doc, "fuzz.yaml"))


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_loads_or_fails_with_a_key_path(text):
    _check(_outcome(load_space_text, text, "fuzz.yaml"))


keys = st.sampled_from(["study", "model", "task.metric", "space.rank", "space.method", "space.layers", "space.layers.top_k",
                        "proxy.steps", "proxy.rungs", "proxy.ist", "budget.max_trainable_params", "search.trials",
                        "objectives", "space.targets", "a.b.c", "", "space..rank", "task"])
override_values = st.sampled_from(["10", "0", "-1", "[1, 2]", "{log: [1, 0]}", "x", "", "null", "[", "{a: 1}",
                                   "1%", "[lora, nope]", "true", "1e-4", "{per_layer: [0, 2]}"])


@FUZZ
@given(st.lists(st.tuples(keys, override_values), max_size=4), st.booleans())
def test_set_overrides_load_or_fail_with_a_key_path(pairs, no_equals):
    overrides = [k if no_equals and i == 0 else f"{k}={v}" for i, (k, v) in enumerate(pairs)]
    _check(_outcome(load_space_text, yaml.safe_dump(QUICKSTART), "quickstart.yaml", overrides))
