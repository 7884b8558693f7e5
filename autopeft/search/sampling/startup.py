"""The study's random start: enqueued, and stratified over methods.

A model-based sampler learns each method from the start-up trials it is given; a method the
random start happened to miss is one it has no data on, and after the reference trials (which
try LoRA once, at one learning rate) the model rarely goes looking. Measured: the quickstart on
tweet-sentiment drew IA3 for both of its random start-up trials, and every one of its
model-based trials was IA3 again; verified, the front it found lost to default LoRA by 4.7 pt
(benchmarks/README.md, "Verified fidelity"). So a new study enqueues its ``startup_trials``
after the references with only the method fixed, the methods taken in turn (in an order
shuffled by ``search.seed``): every method gets its share of the start before any model is
fitted. Every other parameter of these trials is drawn at random
(:class:`autopeft.search.sampling.dedup.Deduplicated` never lets a model complete an enqueued point).
On the tabular benchmark (20 seeds) this raised BoTorch's hypervolume after 20 trials from
0.787 to 0.824 (benchmarks/README.md, section 2).

Like the references, they are enqueued once, when the study is created, and count against
``search.trials``. In a space with one method they fix nothing; being enqueued still makes
them random draws, so a study has ``startup_trials`` random trials after its references
whatever its methods (a sampler's own start-up count would include the references).
"""

from __future__ import annotations

import random

#: optuna user attribute marking an enqueued start-up trial (value: the method it fixed, or "any").
STARTUP = "autopeft:startup"


def startup_methods(encoding, search, room: int) -> list[str | None]:
    """The method of each start-up trial, in order: ``min(search.startup_trials, room)`` of them
    (``encoding``: the space's ``SpaceEncoding``; ``search``: its ``SearchSpec``); None when the
    space has one method."""
    n = max(0, min(search.startup_trials, room))
    methods = list(encoding.choices("method"))
    if "method" not in encoding.distributions or len(methods) < 2:
        return [None] * n
    random.Random(search.seed).shuffle(methods)
    return [methods[i % len(methods)] for i in range(n)]


def enqueue_startup(ostudy, prep, room: int) -> list[str | None]:
    """Enqueue :func:`startup_methods` in ``ostudy`` (an optuna study); ``room``: trials left in
    the study's budget after the references."""
    methods = startup_methods(prep.encoding, prep.space.search, room)
    for method in methods:
        ostudy.enqueue_trial({} if method is None else {"method": method}, user_attrs={STARTUP: method or "any"})
    return methods
