"""The search-space DSL: every error names the file, the key path and what was expected.

Documents are built from a small valid base, broken in exactly one place, written to a
real file and loaded with ``load_space``, so the file name in the message is the real one.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from autopeft.errors import AutoPeftError, SpaceError
from autopeft.space import apply_overrides, load_space, load_space_text, space_hash
from autopeft.space.check import check_against_model
from autopeft.space.encoding import SpaceEncoding
from autopeft.space.schema import Choice, Fixed, Range

from conftest import REPO

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"

BASE = {
    "study": "unit",
    "model": "minilm-l6",
    "task": {"dataset": "tweet-sentiment", "text": "text", "label": "label", "metric": "accuracy"},
    "objectives": {"accuracy": "max", "trainable_params": "min"},
    "budget": {"max_trainable_params": "1%"},
    "space": {
        "method": ["lora", "ia3"],
        "rank": [2, 8],
        "targets": [["query", "value"], "all-linear"],
        "layers": {"top_k": [1, 3], "by": "top"},
        "learning_rate": {"log": [1.0e-4, 1.0e-2]},
    },
    "proxy": {"steps": 10, "train_examples": 100, "eval_examples": 50},
    "search": {"sampler": "random", "trials": 4, "startup_trials": 2, "seed": 0},
}


def doc(**changes) -> dict:
    """BASE with dotted-path changes applied (``None`` deletes the key)."""
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = d
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return d


def write(tmp_path, document, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False) if not isinstance(document, str) else document)
    return path


def load_error(tmp_path, document, name="space.yaml") -> SpaceError:
    path = write(tmp_path, document, name)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    err = info.value
    assert isinstance(err, AutoPeftError)
    assert str(path) in str(err), "the message must name the file"
    assert "\n" not in str(err), "the CLI prints one line"
    return err


def assert_names(err: SpaceError, key_path: str, *expected_words: str) -> None:
    msg = str(err)
    assert err.path == key_path, msg
    assert f": {key_path}: " in msg, msg
    for word in expected_words:
        assert word in msg, f"{word!r} not in {msg!r}"


# ------------------------------------------------------------------------------ valid input


def test_base_document_is_valid(tmp_path):
    # Every error test below breaks this document in one place; it must be valid itself.
    space = load_space(write(tmp_path, BASE))
    assert space.study == "unit"
    assert space.space.method == Choice(("lora", "ia3"))


def test_quickstart_parses_and_mirrors_its_yaml():
    raw = yaml.safe_load(QUICKSTART.read_text())
    space = load_space(QUICKSTART)
    assert space.study == raw["study"]
    assert space.model.name == raw["model"]
    assert space.space.method.values == tuple(raw["space"]["method"])
    assert space.space.rank.values == tuple(sorted(raw["space"]["rank"]))
    assert len(space.space.targets) == len(raw["space"]["targets"])
    assert space.objective_names == tuple(raw["objectives"])
    assert space.search.trials == raw["search"]["trials"]
    # The trials train to the target; the rungs are placed while the study runs.
    assert space.proxy.steps == raw["target"]["steps"] and space.proxy.rungs == ()
    assert space.proxy.auto_rungs and raw["proxy"]["rungs"] == "auto" and space.proxy.signal == raw["proxy"]["signal"]
    assert space.source == str(QUICKSTART)


@pytest.mark.parametrize("text", ["1e-4", "1E-4", "1.0e-4", "0.0001"])
def test_scientific_numbers_without_a_dot_are_numbers(tmp_path, text):
    # PyYAML (YAML 1.1) reads `1e-4` as a string; the DSL must still accept it.
    body = yaml.safe_dump(doc(space__learning_rate="LR", space__dropout="DR"), sort_keys=False)
    body = body.replace("LR", f"{{log: [{text}, 1e-2]}}").replace("DR", "[0, 1e-1]")
    space = load_space(write(tmp_path, body))
    assert space.space.learning_rate == Range(1e-4, 1e-2, log=True)
    assert space.space.dropout == Choice((0.0, 0.1))


def test_a_single_value_list_is_fixed_and_choices_of_numbers_are_sorted(tmp_path):
    space = load_space(write(tmp_path, doc(space__rank=[16, 2, 4], space__method=["lora"])))
    assert space.space.method == Fixed("lora")
    assert space.space.rank == Choice((2, 4, 16))
    assert space.space.rank.ordinal


def test_space_hash_ignores_the_trial_count_only(tmp_path):
    a = load_space(write(tmp_path, doc(search__trials=4), "a.yaml"))
    b = load_space(write(tmp_path, doc(search__trials=40), "b.yaml"))
    c = load_space(write(tmp_path, doc(proxy__steps=11), "c.yaml"))
    assert space_hash(a) == space_hash(b)
    assert space_hash(a) != space_hash(c)
    assert a.document["search"]["trials"] == 4, "hashing must not mutate the document"


# ------------------------------------------------------------------------------ key errors


def test_unknown_top_level_key(tmp_path):
    err = load_error(tmp_path, doc(sapce={"method": "lora"}))
    assert_names(err, "sapce", "unknown key", "expected one of", "'space'")


def test_unknown_nested_key(tmp_path):
    d = doc()
    d["space"]["rnak"] = [2]
    err = load_error(tmp_path, d)
    assert_names(err, "space.rnak", "unknown key", "'rank'")


def test_unknown_key_deep_in_placement(tmp_path):
    err = load_error(tmp_path, doc(space__layers={"top_k": [1, 2], "bye": "top"}))
    assert_names(err, "space.layers.bye", "unknown key", "'by'")


def test_missing_required_key(tmp_path):
    err = load_error(tmp_path, doc(space=None))
    assert_names(err, "<top level>", "missing required key 'space'")


@pytest.mark.parametrize(
    "change, key_path, expected",
    [
        ({"proxy__steps": "ten"}, "proxy.steps", "expected an integer"),
        ({"proxy__steps": 2.5}, "proxy.steps", "expected an integer"),
        ({"study": 12}, "study", "expected a non-empty string"),
        ({"space__rank": [2, "four"]}, "space.rank[1]", "expected an integer"),
        ({"space__learning_rate": "fast"}, "space.learning_rate", "expected a number"),
        ({"space__dora": "yes"}, "space.dora", "expected true or false"),
        ({"task": "tweet-sentiment"}, "task", "expected a mapping"),
        ({"proxy__batch_size": True}, "proxy.batch_size", "expected an integer"),
    ],
)
def test_wrong_type(tmp_path, change, key_path, expected):
    err = load_error(tmp_path, doc(**change))
    assert_names(err, key_path, expected)


def test_empty_choice_list(tmp_path):
    err = load_error(tmp_path, doc(space__method=[]))
    assert_names(err, "space.method", "expected a non-empty list")


def test_duplicate_choices(tmp_path):
    err = load_error(tmp_path, doc(space__rank=[4, 4]))
    assert_names(err, "space.rank", "distinct")


def test_log_range_low_above_high(tmp_path):
    err = load_error(tmp_path, doc(space__learning_rate={"log": [1.0e-2, 1.0e-4]}))
    assert_names(err, "space.learning_rate.log", "low <= high", "low=0.01", "high=0.0001")


def test_log_range_needs_positive_low(tmp_path):
    err = load_error(tmp_path, doc(space__alpha={"log": [0, 16]}))
    assert_names(err, "space.alpha.log[0]", "> 0")


def test_unknown_method(tmp_path):
    err = load_error(tmp_path, doc(space__method=["lora", "lorra"]))
    assert_names(err, "space.method[1]", "'lorra'", "expected one of", "'lora'", "'ia3'", "'adalora'")


def test_bad_metric(tmp_path):
    err = load_error(tmp_path, doc(task__metric="precision"))
    assert_names(err, "task.metric", "'precision'", "accuracy", "macro_f1")


def test_objective_direction_wrong(tmp_path):
    err = load_error(tmp_path, doc(objectives={"accuracy": "min", "trainable_params": "min"}))
    assert_names(err, "objectives.accuracy", "'max'")
    err = load_error(tmp_path, doc(objectives={"accuracy": "max", "trainable_params": "max"}))
    assert_names(err, "objectives.trainable_params", "'min'")


def test_objective_not_matching_task_metric(tmp_path):
    err = load_error(tmp_path, doc(task__metric="macro_f1"))  # objectives still say accuracy
    assert_names(err, "objectives.accuracy", "macro_f1", "task.metric")


def test_objectives_without_the_task_metric(tmp_path):
    err = load_error(tmp_path, doc(objectives={"trainable_params": "min", "train_time": "min"}))
    assert_names(err, "objectives", "task metric 'accuracy'")


@pytest.mark.parametrize("budget", ["1 percent", "150%", "0%", "-5", "lots"])
def test_bad_budget_string(tmp_path, budget):
    err = load_error(tmp_path, doc(budget__max_trainable_params=budget))
    assert_names(err, "budget.max_trainable_params", "expected")
    assert repr(budget) in str(err)


@pytest.mark.parametrize("text, params, fraction", [("250k", 250_000, None), ("1.5M", 1_500_000, None), ("2%", None, 0.02)])
def test_budget_units(tmp_path, text, params, fraction):
    b = load_space(write(tmp_path, doc(budget__max_trainable_params=text))).budget
    assert (b.max_params, b.max_fraction) == (params, fraction)


def test_top_k_below_one(tmp_path):
    err = load_error(tmp_path, doc(space__layers={"top_k": [0, 3]}))
    assert_names(err, "space.layers.top_k[0]", ">= 1")


def test_top_k_low_above_high(tmp_path):
    err = load_error(tmp_path, doc(space__layers={"top_k": [4, 2]}))
    assert_names(err, "space.layers.top_k", "low <= high", "low=4", "high=2")


def test_top_k_by_importance_needs_importance(tmp_path):
    err = load_error(tmp_path, doc(space__layers={"top_k": [1, 3], "by": "importance"}))
    assert_names(err, "space.layers.by", "importance")
    # ... and is accepted when importance is declared.
    ok = load_space(write(tmp_path, doc(space__layers={"top_k": [1, 3], "by": "importance"}, importance="spt"), "ok.yaml"))
    assert ok.space.layers.by == "importance"


def test_unknown_sampler(tmp_path):
    err = load_error(tmp_path, doc(search__sampler="bayes"))
    assert_names(err, "search.sampler", "'botorch'")


def test_search_noise_names_objectives_and_is_kept_in_objective_order(tmp_path):
    ok = load_space(write(tmp_path, doc(search__noise={"accuracy": 0.05})))
    assert ok.search.noise == (("accuracy", 0.05), ("trainable_params", 0.0))  # unlisted: exact
    assert load_space(write(tmp_path, doc(), "plain.yaml")).search.noise == ()  # default: inferred
    assert_names(load_error(tmp_path, doc(search__noise={"acc": 0.05})), "search.noise.acc", "'accuracy'")
    assert_names(load_error(tmp_path, doc(search__noise={"accuracy": -0.1})), "search.noise.accuracy", ">= 0")
    assert_names(load_error(tmp_path, doc(search__noise=0.05)), "search.noise", "mapping")


# ------------------------------------------------------------------------------ file errors


def test_malformed_yaml_gives_line_and_column(tmp_path):
    lines = ["study: unit", "model: minilm-l6", "  task: {dataset: tweet-sentiment}"]
    # The third line's ':' after "task" is where PyYAML notices the bad mapping.
    err = load_error(tmp_path, "\n".join(lines) + "\n")
    line, column = 3, lines[2].index(":") + 1
    assert f"line {line}, column {column}" in str(err)
    assert "not valid YAML" in str(err)


def test_empty_file(tmp_path):
    err = load_error(tmp_path, "# only a comment\n")
    assert "empty" in str(err) and "study" in str(err)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value) and "no such file" in str(info.value)


def test_a_document_that_is_not_a_mapping(tmp_path):
    err = load_error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in str(err)


# ------------------------------------------------------------------------------ --set


def test_overrides_create_nested_keys_and_parse_yaml_values():
    d = {"study": "x"}
    out = apply_overrides(d, ["proxy.steps=10", "space.rank=[2, 4]", "search.seed=null", "search.sampler=tpe",
                              "space.dora=true", "space.learning_rate=1e-4"])
    assert out["proxy"] == {"steps": 10}
    assert out["space"]["rank"] == [2, 4]
    assert out["search"] == {"seed": None, "sampler": "tpe"}
    assert out["space"]["dora"] is True
    assert d == {"study": "x"}, "the input document must not be mutated"


def test_overrides_replace_existing_values(tmp_path):
    space = load_space(QUICKSTART, ["proxy.steps=7", "search.trials=3", "space.method=lora", "target=null"])
    assert space.proxy.steps == 7 and space.search.trials == 3
    assert space.space.method == Fixed("lora")
    # Everything not overridden is as in the file.
    assert space.space.rank == load_space(QUICKSTART).space.rank


def test_override_learning_rate_in_scientific_notation():
    space = load_space(QUICKSTART, ["space.learning_rate=1e-4"])
    assert space.space.learning_rate == Fixed(1e-4)


@pytest.mark.parametrize(
    "override, key",
    [("proxy.steps", "proxy.steps"), ("proxy..steps=3", "proxy..steps"), ("=3", ""), ("study.name=x", "study")],
)
def test_invalid_override_paths(override, key):
    with pytest.raises(SpaceError) as info:
        apply_overrides(dict(BASE), [override])
    err = info.value
    assert err.source == "--set"
    assert str(err).startswith("--set")
    if key:
        assert key in str(err)


def test_override_with_invalid_yaml_value():
    with pytest.raises(SpaceError) as info:
        apply_overrides(dict(BASE), ["space.rank=[2, 4"])
    assert info.value.source == "--set" and "space.rank" in str(info.value) and "YAML" in str(info.value)


def test_override_that_makes_the_space_invalid_names_the_key():
    with pytest.raises(SpaceError) as info:
        load_space(QUICKSTART, ["proxy.steps=0"])
    assert info.value.path == "proxy.steps"
    assert ">= 1" in str(info.value)


def test_override_with_unknown_key_is_rejected():
    with pytest.raises(SpaceError) as info:
        load_space(QUICKSTART, ["proxy.stepz=5"])
    assert info.value.path == "proxy.stepz" and "unknown key" in str(info.value)


def test_override_that_makes_the_space_invalid_says_it_came_from_set():
    with pytest.raises(SpaceError) as info:
        load_space(QUICKSTART, ["proxy.steps=0"])
    assert "--set" in str(info.value)


# ------------------------------------------------------------------------------ against the model


def _space(tmp_path, **changes):
    return load_space(write(tmp_path, doc(**changes)))


def _check(space, model_info):
    return check_against_model(space, model_info, SpaceEncoding(space.space, model_info.num_layers))


def test_valid_space_fits_the_model_and_reports_its_parameter_range(tmp_path, model_info):
    space = _space(tmp_path)
    r = _check(space, model_info)
    assert 0 < r.low < r.high
    assert r.limit == int(0.01 * model_info.total_params)
    assert r.low <= r.feasible_high <= r.limit


def test_target_module_the_model_lacks(tmp_path, model_info):
    space = _space(tmp_path, space__targets=[["query", "gate_proj"]])
    with pytest.raises(SpaceError) as info:
        _check(space, model_info)
    err = info.value
    assert err.path == "space.targets"
    assert "'gate_proj'" in str(err) and str(space.source) in str(err)
    for spec in model_info.linears:  # the message lists what is there
        assert spec.name in str(err)


def test_target_module_the_model_lacks_in_the_second_choice(tmp_path, model_info):
    space = _space(tmp_path, space__targets=[["query"], ["c_attn"]])
    with pytest.raises(SpaceError) as info:
        _check(space, model_info)
    assert info.value.path == "space.targets[1]" and "'c_attn'" in str(info.value)


def test_top_k_above_the_number_of_layers(tmp_path, model_info):
    n = model_info.num_layers
    space = _space(tmp_path, space__layers={"top_k": [1, n + 1]})
    with pytest.raises(SpaceError) as info:
        _check(space, model_info)
    assert info.value.path == "space.layers.top_k"
    assert f"at most {n}" in str(info.value) and str(n + 1) in str(info.value)
    # Exactly n layers is fine.
    _check(_space(tmp_path, space__layers={"top_k": [1, n]}), model_info)


def test_layer_range_beyond_the_model(tmp_path, model_info):
    n = model_info.num_layers
    space = _space(tmp_path, space__layers={"range": [0, n]})
    with pytest.raises(SpaceError) as info:
        _check(space, model_info)
    assert info.value.path == "space.layers.range" and f"[0, {n - 1}]" in str(info.value)


def test_budget_that_excludes_the_whole_space(tmp_path, model_info):
    # The classification head alone is trained in full by every method, so a budget below
    # it excludes every candidate.
    budget = max(1, model_info.head_params - 1)
    space = _space(tmp_path, budget__max_trainable_params=budget)
    with pytest.raises(SpaceError) as info:
        _check(space, model_info)
    err = info.value
    assert err.path == "budget.max_trainable_params"
    assert "excludes the whole space" in str(err) and f"{budget:,}" in str(err)


def test_budget_between_the_extremes_is_accepted(tmp_path, model_info):
    full = _check(_space(tmp_path, budget=None), model_info)
    mid = (full.low + full.high) // 2
    r = _check(_space(tmp_path, budget__max_trainable_params=mid), model_info)
    assert (r.low, r.high, r.limit) == (full.low, full.high, mid)
    assert r.feasible_high == mid


def test_load_space_text_names_its_source():
    with pytest.raises(SpaceError) as info:
        load_space_text("study: [", "<dashboard>")
    assert str(info.value).startswith("<dashboard>: line")


@pytest.mark.parametrize(
    "targets, labels",
    [
        (["query", "value"], ["query+value"]),  # a flat list is one set, as in peft's target_modules
        ([["query", "value"], "all-linear"], ["query+value", "all-linear"]),
        ([["query"], ["value"]], ["query", "value"]),
        ("all-linear", ["all-linear"]),
    ],
)
def test_a_flat_target_list_is_one_set_and_a_list_of_sets_is_a_choice(targets, labels):
    from autopeft.space import parse_space

    space = parse_space({"study": "s", "model": "m", "task": {"dataset": "d"}, "space": {"method": "lora", "targets": targets}})
    assert [t.label for t in space.space.targets] == labels
