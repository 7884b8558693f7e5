"""Fidelity: trials as prefixes of the target run, and the decisions taken on the way.

``judge`` (one trial's rung decisions, as one object), ``signals`` (what a rung reads, with its
noise), ``placement`` (where the rungs fall), ``promotion`` (who goes on at a rung),
``checkpoints`` (where a promoted run resumes from).
"""

from autopeft.search.fidelity.promotion import promote, rung_objectives

__all__ = ["promote", "rung_objectives"]
