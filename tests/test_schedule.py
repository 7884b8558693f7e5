"""The learning-rate schedule: with ``constant`` (and a warm-up in steps) a short run is the
prefix of a long one, which ``linear`` decay (its rate depends on the run's length) is not."""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.errors import SpaceError
from autopeft.space import load_space_text

SPACE = """
study: s
model: minilm-l6
task: {dataset: bbc-news}
space: {method: lora, rank: 4, targets: [[query, value]]}
proxy: {steps: 8, %s}
"""


@pytest.mark.parametrize("proxy, key", [("schedule: cosine", "proxy.schedule"),
                                        ("warmup_steps: 9", "proxy.warmup_steps"),
                                        ("warmup_steps: -1", "proxy.warmup_steps")])
def test_a_bad_schedule_names_its_key(proxy, key):
    with pytest.raises(SpaceError) as e:
        load_space_text(SPACE % proxy, "s.yaml")
    assert e.value.path == key and "\n" not in str(e.value)


def test_the_schedule_loads_and_changes_the_space_identity():
    from autopeft.space import space_hash

    constant = load_space_text(SPACE % "schedule: constant, warmup_steps: 2", "s.yaml")
    assert (constant.proxy.schedule, constant.proxy.warmup_steps) == ("constant", 2)
    assert load_space_text(SPACE % "seed: 0", "s.yaml").proxy.schedule == "linear"
    assert space_hash(constant) != space_hash(load_space_text(SPACE % "seed: 0", "s.yaml"))


def losses(curve):
    return [loss for _, loss in curve]


@pytest.mark.slow
def test_a_short_constant_run_is_the_prefix_of_a_long_one_and_a_linear_one_is_not():
    from test_checkpoint import spec_for

    from autopeft.trials.proxy import run_proxy

    def run(steps, **proxy):
        spec = spec_for("lora")
        return run_proxy(dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, steps=steps, rungs=(), **proxy)))

    short, long = run(4, schedule="constant", warmup_steps=2), run(8, schedule="constant", warmup_steps=2)
    assert losses(short.curve) == pytest.approx(losses(long.curve)[:4], abs=1e-6)
    linear_short, linear_long = run(4), run(8)
    assert losses(linear_short.curve) != pytest.approx(losses(linear_long.curve)[:4], abs=1e-6)
