"""Resuming an interrupted search: the interrupted point is trained again after the points the
study had already queued (its references and start-up design), as docs/troubleshooting.md says;
and a resume refused for a changed space says which keys changed."""

from __future__ import annotations

import pytest

from autopeft.errors import StoreError
from autopeft.search.loop import run_search
from autopeft.store import Store
from conftest import REPO
from test_loop import ok_runner, prep


def test_the_interrupted_point_is_retrained_after_the_queued_points_as_documented(tmp_path):
    calls = []

    def interrupting(spec):
        calls.append(spec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ok_runner([])(spec)

    url = f"sqlite:///{tmp_path}/o.db"
    out = run_search(prep(budget="100%", trials=6, study="order"), Store(url), runner=interrupting)
    stopped = next(r for r in out.records if r.status == "failed")
    retry = stopped.extras["retried_as"]
    resumed_calls = []
    run_search(prep(budget="100%", trials=6, study="order"), Store(url), runner=ok_runner(resumed_calls))
    order = [s.trial for s in resumed_calls]
    assert retry in order
    # what was queued before the interruption runs first; the retried point comes after it
    assert order.index(retry) > 0 and all(n < retry for n in order[:order.index(retry)])
    doc = " ".join((REPO / "docs" / "troubleshooting.md").read_text().split())
    assert "trains the interrupted point first" not in doc
    assert "after the points the study had already queued" in doc


def test_a_refused_resume_says_what_changed(tmp_path):
    url = f"sqlite:///{tmp_path}/d.db"
    run_search(prep(budget="100%", trials=1, study="same"), Store(url), runner=ok_runner([]))
    with pytest.raises(StoreError, match="different search space") as refused:
        run_search(prep(budget="50%", trials=1, study="same"), Store(url), runner=ok_runner([]))
    message = str(refused.value)
    assert "budget.max_trainable_params: 100% vs 50%" in message, message
    assert "\n" not in message
