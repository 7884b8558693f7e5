"""The runner contract (``autopeft.trials.spec.Runner``): what the search calls to train a trial."""

from __future__ import annotations

import inspect

from autopeft.trials.executor import run_isolated


def test_the_shipped_runner_takes_a_spec_and_an_optional_rung_callback():
    params = inspect.signature(run_isolated).parameters
    assert next(iter(params)) == "spec"
    assert params["on_rung"].default is None  # the session passes it only to a trial with rungs
