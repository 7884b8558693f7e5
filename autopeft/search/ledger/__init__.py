"""Ledger: a study's trials in the store, each paired with optuna's, claimed, beaten and reaped.

``ledger`` (the one owner of that pairing: ask, finish, budget, reap), ``pairing`` (what a
record and optuna's trial say of each other), ``budget`` (how many trials count, and how many
may still start), ``heartbeat`` (how a running trial shows its process is alive), ``reaper``
(the trials of dead processes failed and queued again), ``wal`` (a final record kept in optuna
before the tell).
"""
