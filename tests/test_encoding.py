"""The fixed-dimensional encoding: every dimension in every trial, exact round trips, and
proof that the BO samplers model every dimension (the BO caveat in DESIGN.md)."""

from __future__ import annotations

import json
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from autopeft.space import parse_space
from autopeft.space.encoding import Candidate, SpaceEncoding
from autopeft.space.schema import SearchSpec, Targets
from autopeft.search.sampling.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

NUM_LAYERS = 6


def make_space(**space_changes):
    space = {
        "method": ["lora", "ia3", "adalora"],
        "rank": [2, 4, 8, 16],
        "alpha": [8, 16, 32],
        "targets": [["query", "value"], ["query", "key", "value"], "all-linear"],
        "layers": {"top_k": [1, 6]},
        "learning_rate": {"log": [1.0e-4, 1.0e-2]},
        "dropout": {"range": [0.0, 0.2]},
        "dora": [False, True],
        "rslora": [False, True],
    }
    space.update(space_changes)
    return parse_space(
        {"study": "enc", "model": "minilm-l6", "task": {"dataset": "tweet-sentiment"}, "space": space}
    ).space


def run_trials(encoding, n, sampler=None, seed=0):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler or optuna.samplers.RandomSampler(seed))
    seen = []
    for i in range(n):
        trial = study.ask()
        cand = encoding.suggest(trial)
        seen.append((trial, cand))
        # Fake objective values that depend on the candidate (a real search tells real ones).
        study.tell(trial, [0.5 + 0.01 * cand.rank - 0.1 * (cand.method == "ia3"), cand.rank * len(cand.layers)])
    return study, seen


# ------------------------------------------------------------------------------ round trips


def test_suggest_then_decode_the_params_gives_the_same_candidate():
    enc = SpaceEncoding(make_space(), NUM_LAYERS)
    _, seen = run_trials(enc, 15)
    for trial, cand in seen:
        assert enc.decode(trial.params) == cand


def test_candidate_json_round_trip():
    enc = SpaceEncoding(make_space(), NUM_LAYERS)
    _, seen = run_trials(enc, 15)
    for _, cand in seen:
        text = json.dumps(cand.to_json())  # must be plain JSON
        assert Candidate.from_json(json.loads(text)) == cand
    all_linear = Candidate("lora", 4, 8.0, 0.0, Targets(()), (0, 5), 1e-3, True, False)
    assert all_linear.to_json()["targets"] == "all-linear"
    assert Candidate.from_json(json.loads(json.dumps(all_linear.to_json()))) == all_linear


def test_every_dimension_is_suggested_in_every_trial_whatever_the_method():
    enc = SpaceEncoding(make_space(layers={"per_layer": True}), NUM_LAYERS)
    _, seen = run_trials(enc, 30)
    methods = set()
    for trial, cand in seen:
        assert set(trial.params) == set(enc.distributions), cand.method
        assert set(trial.distributions.values()) <= set(enc.distributions.values())
        methods.add(cand.method)
    assert methods == {"lora", "ia3", "adalora"}, "30 random trials should visit every method"


def test_fixed_values_are_not_dimensions():
    space = make_space(method="lora", rank=[8], dora=False, targets=[["query", "value"]], layers="all")
    enc = SpaceEncoding(space, NUM_LAYERS)
    assert "method" not in enc.distributions and "rank" not in enc.distributions
    assert "targets" not in enc.distributions and "dora" not in enc.distributions
    cand = enc.decode({name: _any_value(d) for name, d in enc.distributions.items()})
    assert (cand.method, cand.rank, cand.dora) == ("lora", 8, False)
    assert cand.targets == Targets(("query", "value"))
    assert cand.layers == tuple(range(NUM_LAYERS))


def _any_value(dist):
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    return dist.low


def test_ordinal_numeric_choices_become_integer_indices():
    enc = SpaceEncoding(make_space(), NUM_LAYERS)
    space = enc.space
    assert enc.distributions["rank"] == IntDistribution(0, len(space.rank.values) - 1)
    assert enc.distributions["alpha"] == IntDistribution(0, len(space.alpha.values) - 1)
    assert isinstance(enc.distributions["method"], CategoricalDistribution)
    assert isinstance(enc.distributions["dora"], CategoricalDistribution)
    assert enc.distributions["learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    base = {name: _any_value(d) for name, d in enc.distributions.items()}
    for i, rank in enumerate(space.rank.values):
        assert enc.decode({**base, "rank": i}).rank == rank
    # alpha given as absolute values is not scaled by the rank
    assert enc.decode({**base, "alpha": 2, "rank": 3}).alpha == space.alpha.values[2]


def test_alpha_ratio_scales_with_the_rank():
    enc = SpaceEncoding(make_space(alpha={"ratio": 2}), NUM_LAYERS)
    base = {name: _any_value(d) for name, d in enc.distributions.items()}
    for i, rank in enumerate(enc.space.rank.values):
        assert enc.decode({**base, "rank": i}).alpha == 2 * rank


# ------------------------------------------------------------------------------ placement


def _decode_layers(enc, **params):
    base = {name: _any_value(d) for name, d in enc.distributions.items()}
    return enc.decode({**base, **params}).layers


def test_top_k_by_top_takes_the_layers_nearest_the_output():
    enc = SpaceEncoding(make_space(layers={"top_k": [1, 6], "by": "top"}), NUM_LAYERS)
    assert enc.distributions["top_k"] == IntDistribution(1, 6)
    for k in range(1, 7):
        assert _decode_layers(enc, top_k=k) == tuple(range(NUM_LAYERS - k, NUM_LAYERS))


def test_top_k_by_bottom_takes_the_layers_nearest_the_input():
    enc = SpaceEncoding(make_space(layers={"top_k": [2, 4], "by": "bottom"}), NUM_LAYERS)
    assert _decode_layers(enc, top_k=3) == (0, 1, 2)


def test_top_k_follows_a_given_layer_order():
    order = (3, 0, 5, 1, 4, 2)  # e.g. by importance
    enc = SpaceEncoding(make_space(layers={"top_k": [1, 6]}), NUM_LAYERS, layer_order=order)
    for k in range(1, 7):
        assert _decode_layers(enc, top_k=k) == tuple(sorted(order[:k]))


def test_a_single_top_k_is_fixed():
    enc = SpaceEncoding(make_space(layers={"top_k": 2}), NUM_LAYERS)
    assert "top_k" not in enc.distributions
    assert _decode_layers(enc) == (4, 5)


def test_per_layer_bits():
    enc = SpaceEncoding(make_space(layers={"per_layer": True}), NUM_LAYERS)
    bits = {f"layer_{i:02d}": IntDistribution(0, 1) for i in range(NUM_LAYERS)}
    assert {k: v for k, v in enc.distributions.items() if k.startswith("layer_")} == bits
    chosen = {f"layer_{i:02d}": int(i in (0, 2, 5)) for i in range(NUM_LAYERS)}
    assert _decode_layers(enc, **chosen) == (0, 2, 5)


def test_range_is_contiguous_whatever_the_order_of_its_ends():
    enc = SpaceEncoding(make_space(layers={"range": [1, 4]}), NUM_LAYERS)
    assert enc.distributions["layer_first"] == enc.distributions["layer_last"] == IntDistribution(1, 4)
    assert _decode_layers(enc, layer_first=2, layer_last=4) == (2, 3, 4)
    assert _decode_layers(enc, layer_first=4, layer_last=2) == (2, 3, 4)
    assert _decode_layers(enc, layer_first=3, layer_last=3) == (3,)


def test_fixed_and_all_placements():
    enc = SpaceEncoding(make_space(layers=[5, 1, 3]), NUM_LAYERS)
    assert not any(k.startswith(("layer", "top_k")) for k in enc.distributions)
    assert _decode_layers(enc) == (1, 3, 5)
    enc = SpaceEncoding(make_space(layers="all"), NUM_LAYERS)
    assert _decode_layers(enc) == tuple(range(NUM_LAYERS))


def test_extreme_layer_sets_bound_every_decoded_set():
    for layers in ({"top_k": [2, 5]}, {"range": [1, 4]}, {"per_layer": True}, [0, 2], "all"):
        enc = SpaceEncoding(make_space(layers=layers), NUM_LAYERS)
        small, large = enc.extreme_layer_sets()[0], enc.extreme_layer_sets()[-1]
        _, seen = run_trials(enc, 12, seed=1)
        for _, cand in seen:
            assert len(small) <= max(len(cand.layers), 1) and len(cand.layers) <= len(large), layers


# ------------------------------------------------------------------------------ BO models every dimension


@pytest.mark.parametrize("sampler_name", ["botorch", "gp"])
@pytest.mark.parametrize("layers", [{"top_k": [1, 6]}, {"per_layer": True}, {"range": [0, 5]}])
def test_bo_samplers_model_every_dimension(sampler_name, layers):
    enc = SpaceEncoding(make_space(layers=layers), NUM_LAYERS)
    sampler = make_sampler(SearchSpec(sampler=sampler_name, trials=20, startup_trials=10, seed=0))
    study, _ = run_trials(enc, 5, sampler=sampler)  # within the random start-up: no GP fit needed
    trial = study.ask()
    modelled = sampler.infer_relative_search_space(study, trial)
    assert set(modelled) == set(enc.distributions)
    for name, dist in enc.distributions.items():
        assert modelled[name] == dist, name


def test_botorch_uses_the_noisy_acquisition(monkeypatch):
    import botorch.acquisition.multi_objective.logei as logei
    import torch

    from autopeft.search.sampling.acquisition import QLogNEHVICandidates

    sampler = make_sampler(SearchSpec(sampler="botorch", trials=5, startup_trials=3, seed=0))
    assert isinstance(sampler.base._candidates_func, QLogNEHVICandidates)
    generate = sampler.base._candidates_func
    built = []
    real = logei.qLogNoisyExpectedHypervolumeImprovement
    monkeypatch.setattr(logei, "qLogNoisyExpectedHypervolumeImprovement",
                        lambda *a, **k: built.append(k) or real(*a, **k))  # qLogNEHVI: proxies are noisy
    torch.manual_seed(0)
    x = torch.rand(8, 3, dtype=torch.float64)
    obj = torch.stack([x.sum(-1), -x[:, 0]], dim=-1)
    con = (x[:, 1:2] - 0.8)  # feasible below 0.8, optuna's sign convention
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64)
    candidate = generate(x, obj, con, bounds, None)
    assert built and built[0]["prune_baseline"] and len(built[0]["constraints"]) == 1
    assert candidate.shape == (1, 3) and bool(((candidate >= 0) & (candidate <= 1)).all())


@pytest.mark.slow  # dozens of GP fits
def test_botorch_refits_gp_hyperparameters_every_few_trials_and_conditions_on_all_data():
    import torch

    from autopeft.search.sampling.acquisition import QLogNEHVICandidates

    generate = QLogNEHVICandidates(refit_every=3)
    torch.manual_seed(0)
    x = torch.rand(14, 3, dtype=torch.float64)
    obj = torch.stack([x.sum(-1), -x[:, 0]], dim=-1)
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64)
    fits = []
    for n in range(8, 15):  # one more told trial per ask
        generate(x[:n], obj[:n], None, bounds, None)
        fits.append(generate.fits)
    # fitted at 8 points, kept for 9 and 10, refitted at 11 (3 new), kept, refitted at 14
    assert fits == [1, 1, 1, 2, 2, 2, 3]
    kept = dict(generate._kept)
    model = generate._model(x[:13], torch.cat([obj[:13]], dim=-1))  # 13 - 14 < 3: kept, not refitted
    assert generate.fits == 3
    for key, value in kept.items():
        assert torch.equal(model.state_dict()[key], value), key
    # ... but the GP is conditioned on all 13 points, not on the 14 of the fit
    assert model.train_inputs[0].shape[-2] == 13
    # A new outcome (a constraint column appears) changes the shapes: fitted afresh, no error.
    generate(x, obj, x[:, 1:2] - 0.8, bounds, None)
    assert generate.fits == 4


@pytest.mark.slow  # GP fits
def test_search_noise_fixes_the_gp_observation_noise_instead_of_inferring_it():
    import torch
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood

    from autopeft.search.sampling.acquisition import QLogNEHVICandidates

    torch.manual_seed(0)
    x = torch.rand(10, 3, dtype=torch.float64)
    obj = torch.stack([x.sum(-1), -x[:, 0]], dim=-1)
    con = x[:, 1:2] - 0.8
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64)
    inferred = QLogNEHVICandidates()._model(x, torch.cat([obj, con], -1))
    assert isinstance(inferred.likelihood, GaussianLikelihood)
    assert not isinstance(inferred.likelihood, FixedNoiseGaussianLikelihood)
    told = QLogNEHVICandidates(noise_sd=(0.05, 0.0))
    model = told._model(x, torch.cat([obj, con], -1))
    assert isinstance(model.likelihood, FixedNoiseGaussianLikelihood)
    # sd**2 for the noisy objective, the floor for the exact one and the constraint, on the
    # told scale before the GP's outcome standardisation (which divides by each outcome's var)
    stdvs = model.outcome_transform.stdvs.squeeze(0)
    raw = model.likelihood.noise * stdvs.unsqueeze(-1) ** 2
    assert torch.allclose(raw[0], torch.full((10,), 0.05 ** 2, dtype=torch.float64))
    assert torch.allclose(raw[1:], torch.full((2, 10), 1e-6, dtype=torch.float64))
    # the hyper-parameters fitted once are still kept between refits (no noise to restore)
    assert told._model(x, torch.cat([obj, con], -1)) is not None and told.fits == 1
    assert told(x, obj, con, bounds, None).shape == (1, 3)
    with pytest.raises(ValueError):
        QLogNEHVICandidates(noise_sd=(-0.1,))


def test_the_botorch_sampler_reads_search_noise():
    noise = (("accuracy", 0.05), ("trainable_params", 0.0))
    sampler = make_sampler(SearchSpec(sampler="botorch", trials=5, startup_trials=3, seed=0, noise=noise))
    assert sampler.base._candidates_func.noise_sd == (0.05, 0.0)
    assert make_sampler(SearchSpec(sampler="botorch")).base._candidates_func.noise_sd is None


def test_botorch_trials_after_startup_sample_nothing_independently():
    # The strongest form of "BO models every dimension": once past the start-up trials,
    # no parameter of a BoTorch trial comes from the independent (random) fallback.
    # The acquisition optimisation is replaced by a stub returning the centre of the
    # bounds (a real qLogNEHVI fit takes 15 s to minutes on 2 cores); everything else --
    # the search space optuna hands to BoTorch and the decoding of its answer -- is real.
    enc = SpaceEncoding(make_space(), NUM_LAYERS)
    sampler = make_sampler(SearchSpec(sampler="botorch", trials=5, startup_trials=3, seed=0))
    study, _ = run_trials(enc, 3, sampler=sampler)
    calls, independent = [], []

    def centre(train_x, train_obj, train_con, bounds, pending_x):
        calls.append((tuple(train_x.shape), tuple(bounds.shape)))
        return ((bounds[0] + bounds[1]) / 2).unsqueeze(0)

    original = sampler.sample_independent

    def spy(study, trial, name, dist):
        independent.append(name)
        return original(study, trial, name, dist)

    sampler.base._candidates_func = centre
    sampler.sample_independent = spy
    _, seen = run_trials_on(study, enc, 1)
    assert independent == [], f"sampled at random instead of by BO: {independent}"
    assert len(calls) == 1
    (n_train, width), (_, bounds_width) = calls[0]
    assert n_train == 3
    # Categoricals are one-hot encoded, so BO sees at least one column per dimension.
    assert width == bounds_width >= enc.dimensions
    trial, cand = seen[0]
    assert set(trial.params) == set(enc.distributions)
    assert enc.decode(trial.params) == cand


def run_trials_on(study, encoding, n):
    seen = []
    for _ in range(n):
        trial = study.ask()
        cand = encoding.suggest(trial)
        seen.append((trial, cand))
        study.tell(trial, [0.5, cand.rank])
    return study, seen


# ------------------------------------------------------------------------------ the inverse: candidate -> params


@pytest.mark.parametrize("changes", [
    {},
    {"alpha": {"ratio": [1, 2, 4]}, "layers": {"per_layer": True}},
    {"layers": {"range": [1, 4]}, "rank": {"range": [2, 16]}, "alpha": {"log": [4.0, 64.0]}},
    {"rank": {"per_layer": [0, 2, 8]}, "alpha": {"ratio": 2}, "layers": "all"},
    {"layers": [1, 3], "method": "lora", "targets": ["query", "value"]},
])
def test_encode_inverts_decode(changes):
    enc = SpaceEncoding(make_space(**changes), NUM_LAYERS)
    _, seen = run_trials(enc, 12, seed=3)
    for trial, cand in seen:
        params = enc.encode(cand)
        assert _close(enc.decode(params), cand)
        ordered = {k: v for k, v in trial.params.items()}
        if "layer_first" in ordered:  # a range decodes its ends sorted; the inverse gives them sorted
            ordered["layer_first"], ordered["layer_last"] = sorted((ordered["layer_first"], ordered["layer_last"]))
        assert params.keys() == ordered.keys()
        assert all(_same_value(params[k], ordered[k]) for k in params), (params, ordered)


def _same_value(a, b) -> bool:
    return a == b if isinstance(a, (str, bool)) or isinstance(b, (str, bool)) else abs(a - b) <= 1e-9 * max(1, abs(b))


def _close(a: Candidate, b: Candidate) -> bool:
    ja, jb = a.to_json(), b.to_json()
    return ja.keys() == jb.keys() and all(
        _same_value(ja[k], jb[k]) if isinstance(ja[k], float) else ja[k] == jb[k] for k in ja)


def test_encode_refuses_what_the_space_cannot_express_unless_nearest():
    from autopeft.space.encoding import NotInSpace

    enc = SpaceEncoding(make_space(rank=[2, 64], layers={"top_k": [1, 4]}), NUM_LAYERS)
    default = Candidate("lora", 8, 16.0, 0.0, Targets(("value", "query")), tuple(range(NUM_LAYERS)), 1e-3, False, False)
    with pytest.raises(NotInSpace, match="rank"):
        enc.encode(default)
    snapped = enc.decode(enc.encode(default, nearest=True))
    assert snapped.rank == 2                      # 8 is nearer 2 than 64 on a log scale
    assert snapped.layers == (2, 3, 4, 5)         # as many layers as top_k allows
    assert snapped.targets == Targets(("query", "value")) and snapped.learning_rate == 1e-3
    with pytest.raises(NotInSpace, match="targets"):
        enc.encode(Candidate("lora", 8, 16.0, 0.0, Targets(("key",)), (5,), 1e-3, False, False), nearest=True)
    with pytest.raises(NotInSpace, match="method"):
        enc.encode(Candidate("vera", 8, 16.0, 0.0, Targets(()), (5,), 1e-3, False, False), nearest=True)
