"""Everything a search needs before its first trial, resolved once per study.

Assets are resolved, the model's structure read, the data split and tokenised, and the
space checked against the model, so that every problem a user can fix is reported before
any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autopeft.assets.architecture import ModelInfo
from autopeft.assets.datasets import DatasetRef, PreparedData
from autopeft.assets.models import ModelRef
from autopeft.space.check import ParamRange
from autopeft.space.encoding import SpaceEncoding
from autopeft.space.schema import SearchSpace


@dataclass(frozen=True)
class PreparedSearch:
    space: SearchSpace
    model: ModelRef
    dataset: DatasetRef
    data: PreparedData | None
    arch: ModelInfo
    encoding: SpaceEncoding
    params: ParamRange

    @property
    def budget_limit(self) -> int | None:
        return self.params.limit

    def with_importance(self, importance) -> "PreparedSearch":
        """The same search with ``top_k`` placement ranked by ``importance`` (an ``ImportanceMap``)."""
        if self.space.space.layers.by != "importance":
            return self
        order = importance.layer_order()
        return replace(self, encoding=SpaceEncoding(self.space.space, self.arch.num_layers, layer_order=order))


def prepare_search(space: SearchSpace, *, with_data: bool = True) -> PreparedSearch:
    """Resolve and check ``space``. ``with_data=False`` skips tokenising (``validate``)."""
    from autopeft.assets.architecture import inspect_model
    from autopeft.assets.datasets import load_table, prepare_data, resolve_dataset
    from autopeft.assets.models import quiet_transformers, resolve_model
    from autopeft.space.check import check_against_model

    quiet_transformers()
    model = resolve_model(space.model)
    dataset = resolve_dataset(space.task.dataset)
    if with_data:
        data = prepare_data(model, dataset, space.task, space.proxy)
        num_labels = data.num_labels
    else:
        data = None
        num_labels = len(load_table(dataset, space.task).label_names)  # also checks the columns
    arch = inspect_model(model, num_labels, space.task.type)
    encoding = SpaceEncoding(space.space, arch.num_layers)
    params = check_against_model(space, arch, encoding)
    return PreparedSearch(space, model, dataset, data, arch, encoding, params)
