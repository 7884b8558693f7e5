"""Analysis: what a study's finished trials and runs say, computed from their records.

``pareto`` (fronts, the knee and the other ways to pick one trial), ``hypervolume`` (of the
front, its history over trials, 2-D sub-fronts), ``divergence`` (whether a run collapsed: never
a point to compare against), ``paired`` (a point against a reference on the test split, paired
by seed and by test example), ``answer`` (a target study's front against default LoRA),
``trust`` (how far the proxy held, from the verified runs) and ``effort`` (what a study spent,
and how much of it re-probed one configuration).
"""
