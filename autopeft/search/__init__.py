"""The search: samplers, the ask/tell loop, objectives, and Pareto picks.

The public function that runs a search is ``autopeft.run_study`` (``autopeft.api``).
"""
