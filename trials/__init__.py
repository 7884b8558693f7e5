"""The trial side: a proxy fine-tune (``proxy``) run in its own process (``executor``).

``TrialSpec`` in, ``TrialResult`` out (``spec``): plain JSON, so a trial can run in a
child process, on another machine, or be stored verbatim.
"""
