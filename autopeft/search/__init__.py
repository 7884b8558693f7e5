"""The search: samplers, the ask/tell loop, objectives, and Pareto picks."""
