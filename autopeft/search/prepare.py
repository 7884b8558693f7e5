"""Everything a search needs before its first trial, resolved once per study.

Assets are resolved, the model's structure read, the data split and tokenised, and the
space checked against the model, so that every problem a user can fix is reported before
any training starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from autopeft.assets.architecture import ModelInfo
from autopeft.assets.dataset_sources import DatasetRef
from autopeft.assets.models import ModelRef
from autopeft.assets.prepared_data import PreparedData
from autopeft.space.check import ParamRange
from autopeft.space.encoding import SpaceEncoding
from autopeft.space.schema import SearchSpace
from autopeft.trials.spec import ProxySpec, TrialSpec


#: ``proxy.train_examples`` that means every training row the data set holds (the validation
#: and test splits do not move with it: ``autopeft.assets.splits``).
EVERY_ROW = 10**9


@dataclass(frozen=True)
class PreparedSearch:
    space: SearchSpace
    model: ModelRef
    dataset: DatasetRef
    data: PreparedData | None
    arch: ModelInfo
    encoding: SpaceEncoding
    params: ParamRange
    #: Methods of the space the model cannot take (``autopeft.methods.capability.Refusal``):
    #: left out of the encoding, reported once as a warning.
    dropped: tuple = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per thing the user should know before the search starts."""
        from autopeft.methods.capability import installed_versions

        lines = tuple(
            f"{self.space.source}: space.method: dropped '{r.method}': model '{self.model.name}' "
            f"({self.arch.model_type}) cannot take it under {installed_versions()}: {r.reason}"
            for r in self.dropped
        )
        if self.data is not None and self.data.too_long:
            lines += (f"{self.space.source}: proxy.max_length: skipped {self.data.too_long} drawn examples whose "
                      f"completion alone fills {self.space.proxy.max_length} tokens (prompts are cut from the left, "
                      "completions never); raise proxy.max_length to keep them",)
        return lines

    @property
    def budget_limit(self) -> int | None:
        return self.params.limit

    def with_importance(self, importance) -> "PreparedSearch":
        """The same search with ``top_k`` placement ranked by ``importance`` (an ``ImportanceMap``)."""
        by_layers = self.space.space.layers.by == "importance"
        if not by_layers and not self.space.space.targets_top_k:
            return self
        modules = _module_info(self.arch)
        if self.space.space.targets_top_k:
            scores = importance.module_scores()
            modules["module_order"] = tuple(sorted(modules["module_order"], key=lambda m: -scores.get(m, 0.0)))
        order = importance.layer_order() if by_layers else None
        return replace(self, encoding=SpaceEncoding(self.space.space, self.arch.num_layers, layer_order=order, **modules))

    def with_every_training_row(self) -> "PreparedSearch":
        """The same search (model, encoding, importance) with its data prepared on every training
        row: the validation and test rows are the same, only the training split grows (what runs
        that draw their rows by seed train on). Tokenised once, then read from the cache."""
        from autopeft.assets.prepared_data import prepare_data

        space = replace(self.space, proxy=replace(self.space.proxy, train_examples=EVERY_ROW))
        data = prepare_data(self.model, self.dataset, space.task, space.proxy, space.verify.test_examples,
                            space.verify.max_test_examples, test=_given_test(space))
        return replace(self, space=space, data=data)


_PROXY_FIELDS = frozenset(f.name for f in fields(ProxySpec))


def trial_spec(prep: PreparedSearch, candidate, peft_config: dict, *, study: str, trial: int,
               **overrides) -> TrialSpec:
    """The ``TrialSpec`` that trains ``candidate`` (with its built ``peft_config``) in ``prep``.

    The one mapping from a prepared search to a trial: the search loop, ``export --train``
    and the benchmarks all call it, so a field added to the trial is added here once. The
    space's ``proxy`` settings travel whole (nested), with these adjustments: ``threads``
    unset means ``$AUTOPEFT_THREADS`` if set (local ``--workers`` share the cores), and only
    rungs below the trial's steps are kept.

    Args:
        overrides: ``ProxySpec`` fields (``steps=``, ``seed=`` ...) or ``TrialSpec`` fields
            (``learning_rate=``, ``save_dir=`` ...) to replace.

    Raises:
        TypeError: for a name that is neither.
    """
    spec_fields = {f.name for f in fields(TrialSpec)}
    unknown = set(overrides) - _PROXY_FIELDS - spec_fields
    if unknown:
        raise TypeError(f"trial_spec() got unknown overrides: {sorted(unknown)}")
    proxy = replace(prep.space.proxy, **{k: v for k, v in overrides.items() if k in _PROXY_FIELDS})
    threads = proxy.threads or int(os.environ.get("AUTOPEFT_THREADS") or 0) or None
    proxy = replace(proxy, threads=threads, rungs=tuple(r for r in proxy.rungs if r < proxy.steps))
    fixed = dict(
        study=study, trial=trial, method=candidate.method, model=prep.model.location,
        num_labels=prep.data.num_labels, data_path=prep.data.path, peft_config=peft_config,
        learning_rate=candidate.learning_rate, proxy=proxy, metric=prep.space.task.metric,
        task=prep.space.task.type, trust_remote_code=prep.model.trust_remote_code, revision=prep.model.revision,
        max_new_tokens=prep.space.task.max_new_tokens,
    )
    return TrialSpec(**{**fixed, **{k: v for k, v in overrides.items() if k in spec_fields}})



def full_run_spec(prep: PreparedSearch, candidate, *, study: str, trial: int, steps: int, batch_size: int,
                  seed: int, **overrides) -> TrialSpec:
    """The ``TrialSpec`` of one full-length training of ``candidate``: what ``verify``, the seeds
    at a target's protocol and ``export --train`` run. No rungs (nothing is judged on the way),
    a log point every 5 % of the steps, and a timeout of at least a day (the proxy's timeout is
    sized for a proxy).

    Raises:
        AutoPeftError: the method cannot build ``candidate`` on this model.
    """
    from autopeft.methods import BuildContext, get_method

    method = get_method(candidate.method)
    config = method.config_json(method.build(candidate, BuildContext(prep.arch, steps, base_model=prep.model.location)))
    return trial_spec(prep, candidate, config, study=study, trial=trial, steps=steps, batch_size=batch_size, seed=seed,
                      log_every=max(1, steps // 20), timeout=max(prep.space.proxy.timeout, 24 * 3600.0), rungs=(),
                      **overrides)

def check_placement(space: SearchSpace) -> None:
    """``SpaceError`` at ``proxy.device`` / ``proxy.precision`` when this machine cannot run
    trials there: the one-line answer comes before any trial, never a silent CPU fall-back.

    Workers on other hosts check again when they prepare the study (their devices differ).
    """
    from autopeft.errors import SpaceError
    from autopeft.trials.device import DeviceUnavailable, check

    try:
        check(space.proxy.device, space.proxy.precision)
    except DeviceUnavailable as e:
        key = "proxy.precision" if str(e).startswith("precision") else "proxy.device"
        raise SpaceError(space.source, key, str(e)) from e


def check_runner(space: SearchSpace) -> None:
    """``SpaceError`` at ``proxy.runner`` when it names no importable function here (trial
    processes import it again; a worker on another host checks when it prepares the study)."""
    from autopeft.errors import SpaceError
    from autopeft.trials.user_runner import RunnerNotFound, load_runner

    if space.proxy.runner:
        try:
            load_runner(space.proxy.runner)
        except RunnerNotFound as e:
            raise SpaceError(space.source, "proxy.runner", str(e)) from e


def check_gradient_checkpointing(space: SearchSpace, model_ref, arch: ModelInfo) -> None:
    """``SpaceError`` at ``proxy.gradient_checkpointing`` for a model transformers cannot checkpoint."""
    from autopeft.assets.architecture import build_on_meta
    from autopeft.errors import SpaceError

    model = build_on_meta(model_ref, arch.num_labels, arch.task)
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise SpaceError(space.source, "proxy.gradient_checkpointing",
                         f"model '{model_ref.name}' ({type(model).__name__}) does not support gradient checkpointing; "
                         "set it to false")


def _with_template(space: SearchSpace, model: ModelRef) -> SearchSpace:
    """``space`` with ``task.template`` decided (``chat`` when the tokenizer has one), so that
    every consumer (the prepared data's key, the trials, export) sees the same rendering.

    Raises:
        SpaceError: ``template: chat`` or a messages column for a model without a chat template.
    """
    from autopeft.assets.instruct import resolve_template
    from autopeft.assets.tokenizer import load_tokenizer

    template = resolve_template(space.task, load_tokenizer(model), model.name, space.source)
    return replace(space, task=replace(space.task, template=template))


def _given_test(space: SearchSpace):
    """The ``DatasetRef`` of ``task.test`` (None when the test split is carved from the data set).

    Raises:
        SpaceError: at ``task.test``, for a missing file or one of an unsupported type.
    """
    from autopeft.assets.dataset_sources import GivenTestError, resolve_test_file
    from autopeft.errors import SpaceError

    if space.task.test is None:
        return None
    try:
        return resolve_test_file(space.task.test)
    except GivenTestError as e:
        raise SpaceError(space.source, "task.test", str(e)) from None


def _module_info(arch: ModelInfo) -> dict:
    return {"module_order": tuple(s.name for s in arch.linears),
            "module_sizes": {s.name: s.in_features + s.out_features for s in arch.linears}}


def prepare_search(space: SearchSpace, *, with_data: bool = True) -> PreparedSearch:
    """Resolve and check ``space``. ``with_data=False`` skips tokenising (``validate``)."""
    from autopeft.assets.architecture import inspect_model
    from autopeft.assets.dataset_sources import GivenTestError, resolve_dataset
    from autopeft.assets.dataset_tables import load_table, load_test_table
    from autopeft.assets.prepared_data import prepare_data
    from autopeft.errors import SpaceError
    from autopeft.assets.models import quiet_transformers, resolve_model
    from autopeft.space.check import check_against_model, drop_refused_methods

    quiet_transformers()
    check_placement(space)
    check_runner(space)
    model = resolve_model(space.model)
    dataset = resolve_dataset(space.task.dataset)
    if space.task.instruction:
        space = _with_template(space, model)
    test = _given_test(space)
    try:
        if with_data:
            data = prepare_data(model, dataset, space.task, space.proxy, space.verify.test_examples,
                                space.verify.max_test_examples, test=test)
            num_labels = data.num_labels
        else:
            data = None
            table = load_table(dataset, space.task)  # also checks the columns
            num_labels = len(table.label_names)
            if test is not None:
                load_test_table(test, space.task, table)
    except GivenTestError as e:
        raise SpaceError(space.source, "task.test", str(e)) from None
    arch = inspect_model(model, num_labels, space.task.type)
    encoding = SpaceEncoding(space.space, arch.num_layers, **_module_info(arch))
    space, dropped = drop_refused_methods(space, model, arch, encoding)
    if dropped:
        encoding = SpaceEncoding(space.space, arch.num_layers, **_module_info(arch))
    params = check_against_model(space, arch, encoding)
    if space.proxy.gradient_checkpointing:
        check_gradient_checkpointing(space, model, arch)
    return PreparedSearch(space, model, dataset, data, arch, encoding, params, dropped)

