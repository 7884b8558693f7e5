"""The search: the loop that runs a study, on top, and its rooms.

``fidelity`` (where to stop a trial), ``sampling`` (what to try next), ``analysis`` (what is
computed from finished trials) and ``ledger`` (a study's trials in the store: claims,
heartbeats, reaping, budget). The public function that runs a search is ``autopeft.run_study``
(``autopeft.api``).
"""
