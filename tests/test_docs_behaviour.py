"""Sentences of the user documentation that state what the code does, checked against it."""

from __future__ import annotations

from conftest import REPO


def _doc(name: str) -> str:
    return " ".join((REPO / "docs" / name).read_text().split())


def test_workers_doc_gives_the_verification_heartbeat_and_its_grace():
    from autopeft.search.runs import HEARTBEAT, STALE_AFTER

    doc = _doc("workers.md")
    assert "no heartbeat" not in doc and "6 hours" not in doc
    assert f"heartbeat every {HEARTBEAT:g} s" in doc and f"more than {STALE_AFTER:g} s old" in doc
