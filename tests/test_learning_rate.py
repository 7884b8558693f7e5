"""``space.learning_rate``: one range for every method, or a band per method encoded as one
offset dimension (the rate's log-position inside the chosen method's band); and which keys
``space_hash`` ignores."""

from __future__ import annotations

import copy
import json
import math

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution

from autopeft.errors import SpaceError
from autopeft.space import load_space, parse_space, space_hash
from autopeft.space.encoding import LR_OFFSET, Candidate, NotInSpace, SpaceEncoding
from autopeft.space.dimensions import default_learning_rate
from autopeft.space.schema import Fixed, PerMethod, Range, Targets

from conftest import REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)

NUM_LAYERS = 6
ALL = ["lora", "adalora", "ia3", "loha", "lokr", "vera", "prefix", "bottleneck"]
BANDS = {
    "lora": {"log": [5.0e-4, 5.0e-3]},
    "adalora": {"log": [5.0e-4, 5.0e-3]},
    "ia3": {"log": [3.0e-3, 3.0e-2]},
    "loha": {"log": [4.0e-4, 4.0e-3]},
    "lokr": {"log": [4.0e-4, 4.0e-3]},
    "vera": {"log": [2.0e-3, 2.0e-2]},
    "prefix": {"log": [3.0e-3, 3.0e-2]},
    "bottleneck": 1.0e-4,  # a number: that method's rate is fixed
}
BASE = {
    "study": "lr",
    "model": "minilm-l6",
    "task": {"dataset": "tweet-sentiment"},
    "space": {"method": ["lora", "ia3"], "rank": [2, 8], "layers": {"top_k": [1, 6]},
              "learning_rate": {"lora": {"log": [5.0e-4, 5.0e-3]}, "ia3": {"log": [3.0e-3, 3.0e-2]}}},
    "proxy": {"steps": 10},
}


def document(**space) -> dict:
    d = copy.deepcopy(BASE)
    for key, value in space.items():
        if value is None:
            d["space"].pop(key, None)
        else:
            d["space"][key] = value
    return d


def encoding(**space) -> SpaceEncoding:
    return SpaceEncoding(parse_space(document(**space)).space, NUM_LAYERS)


def candidate(method: str, lr: float) -> Candidate:
    return Candidate(method, 8, 16.0, 0.0, Targets(("query", "value")), (5,), lr, False, False)


def base_params(enc: SpaceEncoding, method: str) -> dict:
    return {"method": method, "rank": 1, "top_k": 1} if "method" in enc.distributions else {"rank": 1, "top_k": 1}


# ---------------------------------------------------------------------------- loading


def test_a_mapping_loads_as_a_band_per_method_in_the_order_of_space_method():
    space = parse_space(document(learning_rate={"ia3": {"log": ["3e-3", 3.0e-2]}, "lora": {"log": [5.0e-4, 5.0e-3]}}))
    assert space.space.learning_rate == PerMethod((("lora", 5e-4, 5e-3), ("ia3", 3e-3, 3e-2)))
    fixed = parse_space(document(learning_rate={"lora": 1.0e-3, "ia3": {"log": [3.0e-3, 3.0e-2]}})).space.learning_rate
    assert fixed.band("lora") == (1e-3, 1e-3) and fixed.searched


def test_a_single_range_loads_as_before():
    assert parse_space(document(learning_rate={"log": [1.0e-4, 1.0e-2]})).space.learning_rate == Range(1e-4, 1e-2, log=True)
    assert parse_space(document(learning_rate=2.0e-3)).space.learning_rate == Fixed(2e-3)


@pytest.mark.parametrize("rates, path, words", [
    ({"lora": {"log": [5.0e-4, 5.0e-3]}, "ia3": {"log": [3.0e-3, 3.0e-2]}, "vera": {"log": [1.0e-3, 1.0e-2]}},
     "space.learning_rate.vera", ["not a method of this space", "lora", "ia3"]),
    ({"lora": {"log": [5.0e-4, 5.0e-3]}}, "space.learning_rate.ia3", ["missing", "ia3", "log"]),
    ({"lora": {"log": [5.0e-3, 5.0e-4]}, "ia3": 3.0e-3}, "space.learning_rate.lora.log", ["low <= high"]),
    ({"lora": {"log": [0, 5.0e-4]}, "ia3": 3.0e-3}, "space.learning_rate.lora.log[0]", ["> 0"]),
    ({"lora": {"log": [-1.0e-3, 5.0e-4]}, "ia3": 3.0e-3}, "space.learning_rate.lora.log[0]", ["> 0"]),
    ({"lora": -1.0e-3, "ia3": 3.0e-3}, "space.learning_rate.lora", ["> 0"]),
    ({"lora": {"range": [1.0e-4, 1.0e-3]}, "ia3": 3.0e-3}, "space.learning_rate.lora", ["log scale"]),
    ({"lora": [1.0e-4, 1.0e-3], "ia3": 3.0e-3}, "space.learning_rate.lora", ["log scale"]),
    ({"lora": {"log": [1.0e-4, 1.0e-3], "step": 2}, "ia3": 3.0e-3}, "space.learning_rate.lora.step", ["unknown key"]),
    ({"log": [1.0e-4, 1.0e-3], "lora": 1.0e-3}, "space.learning_rate.lora", ["unknown key"]),
])
def test_each_bad_mapping_is_a_one_line_error_naming_its_key_path(tmp_path, rates, path, words):
    file = tmp_path / "space.yaml"
    file.write_text(yaml.safe_dump(document(learning_rate=rates), sort_keys=False))
    with pytest.raises(SpaceError) as info:
        load_space(file)
    msg = str(info.value)
    assert "\n" not in msg and str(file) in msg
    assert info.value.path == path and f": {path}: " in msg, msg
    for word in words:
        assert word in msg, msg


#: The built-in bands (each method's ``learning_rate_band``) as a space that omits
#: ``space.learning_rate`` is hashed with them. A change here changes the hash of every such
#: space, so their studies no longer resume: change them on purpose only.
BUILT_IN = {
    "lora": [2.0e-4, 2.0e-3], "adalora": [2.0e-4, 2.0e-3], "loha": [2.0e-4, 2.0e-3], "lokr": [2.0e-4, 2.0e-3],
    "ia3": [1.0e-3, 1.0e-2], "vera": [1.0e-3, 1.0e-2], "prefix": [2.0e-3, 2.0e-2], "bottleneck": [1.0e-4, 1.0e-3],
}


def test_omitted_it_is_the_built_in_band_of_each_method():
    space = parse_space(document(method=ALL, learning_rate=None)).space
    assert space.learning_rate == PerMethod(tuple((m, *default_learning_rate(m)) for m in ALL))
    from autopeft.methods import get_method

    assert {m: list(get_method(m).learning_rate_band) for m in ALL} == BUILT_IN
    assert default_learning_rate("lora")[0] <= 1e-3 <= default_learning_rate("lora")[1], "default LoRA's 1e-3 fits"
    assert default_learning_rate("ia3")[0] > default_learning_rate("lora")[0]


def test_the_built_in_bands_hash_as_they_always_have():
    """A shipped space without its ``learning_rate`` hashes with the built-in bands, as the same
    JSON numbers as when the bands lived in one table of the schema."""
    from autopeft.space.identity import identity_document

    doc = yaml.safe_load((REPO / "search_spaces" / "bbc-news-all-methods.yaml").read_text())
    del doc["space"]["learning_rate"]
    sp = identity_document(parse_space(doc))["space"]
    assert sorted(sp["method"]) == sorted(ALL)
    assert json.dumps(sp["learning_rate"], sort_keys=True) == json.dumps({"built-in": BUILT_IN}, sort_keys=True)
    assert json.dumps(BUILT_IN["lora"]) == "[0.0002, 0.002]"
    # Every method with its built-in band: the hash this document had before the bands moved
    # from the schema into the methods.
    assert space_hash(parse_space(document(method=ALL, learning_rate=None))) == "2bcf1341963442d7"


def test_narrowing_space_method_on_the_command_line_keeps_the_bands_of_the_methods_left():
    space = load_space(REPO / "search_spaces" / "quickstart.yaml", ["space.method=lora"])
    assert space.space.learning_rate.bands == (("lora", 5e-4, 5e-3),)
    assert space.document["space"]["learning_rate"] == {"lora": {"log": [5.0e-4, 5.0e-3]}}
    both = load_space(REPO / "search_spaces" / "quickstart.yaml", ["space.method=[lora, ia3]"])
    assert [m for m, _, _ in both.space.learning_rate.bands] == ["lora", "ia3"]
    one = load_space(REPO / "search_spaces" / "quickstart.yaml", ["space.method=lora", "space.learning_rate=1e-3"])
    assert one.space.learning_rate == Fixed(1e-3)


# ---------------------------------------------------------------------------- encoding


def test_the_offset_is_a_dimension_only_for_a_mapping():
    mapped = encoding()
    assert mapped.distributions[LR_OFFSET] == FloatDistribution(0.0, 1.0)
    assert "learning_rate" not in mapped.distributions
    assert LR_OFFSET in encoding(learning_rate=None).distributions, "the built-in bands are searched"
    single = encoding(learning_rate={"log": [1.0e-4, 1.0e-2]})
    assert LR_OFFSET not in single.distributions
    fixed = encoding(learning_rate={"lora": 1.0e-3, "ia3": 5.0e-3})
    assert LR_OFFSET not in fixed.distributions and "learning_rate" not in fixed.distributions
    assert fixed.decode({"method": "ia3", "rank": 0, "top_k": 1}).learning_rate == 5e-3
    assert fixed.encode(candidate("ia3", 5e-3)) == {"method": "ia3", "rank": 1, "top_k": 1}
    with pytest.raises(NotInSpace, match="learning_rate"):
        fixed.encode(candidate("ia3", 1e-3))


def test_a_single_range_encodes_exactly_as_before():
    enc = encoding(learning_rate={"log": [1.0e-4, 1.0e-2]})
    assert enc.distributions["learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert list(enc.distributions) == ["method", "rank", "learning_rate", "top_k"]
    for method in ("lora", "ia3"):
        for lr in (1e-4, 3e-4, 1e-3, 1e-2):
            params = {**base_params(enc, method), "learning_rate": lr}
            assert enc.decode(params).learning_rate == lr
            assert enc.encode(enc.decode(params)) == params
    with pytest.raises(NotInSpace, match="learning_rate"):
        enc.encode(candidate("ia3", 2e-2))


@pytest.mark.parametrize("method", ALL)
def test_encode_and_decode_invert_each_other_in_every_band_ends_included(method):
    enc = encoding(method=ALL, learning_rate=BANDS, layers={"top_k": [1, 6]})
    low, high = enc.space.learning_rate.band(method)
    base = base_params(enc, method)
    if low == high:
        assert enc.decode({**base, LR_OFFSET: 0.7}).learning_rate == low
        assert enc.encode(candidate(method, low))[LR_OFFSET] == 0.0
        return
    assert enc.decode({**base, LR_OFFSET: 0.0}).learning_rate == low
    assert enc.decode({**base, LR_OFFSET: 1.0}).learning_rate == high
    assert math.isclose(enc.decode({**base, LR_OFFSET: 0.5}).learning_rate, math.sqrt(low * high), rel_tol=1e-12)
    for u in (0.0, 1e-9, 0.25, 0.5, 0.9, 1.0 - 1e-12, 1.0):
        lr = enc.decode({**base, LR_OFFSET: u}).learning_rate
        assert low <= lr <= high
        back = enc.encode(candidate(method, lr))
        assert abs(back[LR_OFFSET] - u) <= 1e-9
        assert math.isclose(enc.decode({**base, LR_OFFSET: back[LR_OFFSET]}).learning_rate, lr, rel_tol=1e-12)
    assert enc.encode(candidate(method, low))[LR_OFFSET] == 0.0
    assert enc.encode(candidate(method, high))[LR_OFFSET] == 1.0


def test_a_rate_outside_its_methods_band_is_not_in_the_space():
    enc = encoding()
    with pytest.raises(NotInSpace, match=r"learning_rate: .*\[0.003, 0.03\].*ia3"):
        enc.encode(candidate("ia3", 1e-3))  # inside LoRA's band, below IA3's
    with pytest.raises(NotInSpace, match=r"learning_rate: .*lora"):
        enc.encode(candidate("lora", 1e-2))
    with pytest.raises(NotInSpace, match="learning_rate"):
        enc.encode(candidate("lora", 4.9e-4))
    # nearest: clipped to the band's nearer end
    assert enc.encode(candidate("ia3", 1e-3), nearest=True)[LR_OFFSET] == 0.0
    assert enc.encode(candidate("lora", 1e-2), nearest=True)[LR_OFFSET] == 1.0
    assert enc.decode(enc.encode(candidate("ia3", 1e-3), nearest=True)).learning_rate == 3e-3
    # default LoRA's 1e-3 is inside LoRA's band: not snapped
    assert math.isclose(enc.decode(enc.encode(candidate("lora", 1e-3))).learning_rate, 1e-3, rel_tol=1e-12)


def test_decoding_is_deterministic_and_a_random_study_stays_inside_every_band():
    enc = encoding(method=ALL, learning_rate=BANDS)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    methods = set()
    for _ in range(50):
        trial = study.ask()
        cand = enc.suggest(trial)
        assert set(trial.params) == set(enc.distributions)
        low, high = enc.space.learning_rate.band(cand.method)
        assert low <= cand.learning_rate <= high, (cand.method, cand.learning_rate)
        assert enc.decode(dict(trial.params)) == cand
        methods.add(cand.method)
        study.tell(trial, [0.5, float(cand.rank)])
    assert len(methods) >= 6, "50 random points visit the methods"


# ---------------------------------------------------------------------------- space_hash


def _hash(**proxy) -> str:
    d = copy.deepcopy(BASE)
    d["proxy"].update(proxy)
    return space_hash(parse_space(d))


def test_space_hash_ignores_the_run_environment_not_what_a_trial_measures():
    base = _hash()
    assert _hash(timeout=60) == _hash(timeout=7200) == base
    assert _hash(memory_limit_mb=4096) == base
    assert _hash(device="cpu") == base
    assert _hash(threads=4) == base
    for changed in ({"steps": 11}, {"log_every": 2}, {"precision": "bf16"}, {"batch_size": 8},
                    {"prefix_cache": False}, {"gradient_checkpointing": True}, {"seed": 1}):
        assert _hash(**changed) != base, changed


def test_threads_count_when_train_time_is_an_objective():
    d = copy.deepcopy(BASE)
    d["objectives"] = {"accuracy": "max", "train_time": "min"}
    one, two = copy.deepcopy(d), copy.deepcopy(d)
    one["proxy"]["threads"], two["proxy"]["threads"] = 1, 2
    assert space_hash(parse_space(one)) != space_hash(parse_space(two))
    one["proxy"]["timeout"] = 99
    two["proxy"]["threads"] = 1
    assert space_hash(parse_space(one)) == space_hash(parse_space(two))


def test_an_omitted_learning_rate_hashes_as_the_built_in_bands(monkeypatch):
    d = document(learning_rate=None)
    before = space_hash(parse_space(d))
    assert "learning_rate" not in d["space"], "hashing must not mutate the document"
    import autopeft.space.identity as identity

    monkeypatch.setattr(identity, "default_learning_rate", lambda m: (1e-5, 1e-4))
    assert space_hash(parse_space(d)) != before, "other built-in bands are another space"
