"""``autopeft validate`` shows a per-method learning rate as the bands it searches, not as the
[0, 1] offset the sampler sees."""

from __future__ import annotations

import yaml

from autopeft.cli import main
from conftest import REPO

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"


def validate(capsys, path) -> str:
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.split("│")[1:2] and line.split("│")[1].strip() == name)


def test_a_band_per_method_is_printed_as_the_bands(capsys):
    out = validate(capsys, QUICKSTART)  # lora, adalora 5e-4..5e-3; ia3 3e-3..3e-2
    line = row(out, "learning_rate_offset")
    assert "lora 5e-04..5e-03" in line and "ia3 3e-03..3e-02" in line and "adalora 5e-04..5e-03" in line, out
    assert "0.0 .. 1.0" not in line, out


def test_an_omitted_learning_rate_prints_the_built_in_bands(capsys, tmp_path):
    from autopeft.space.dimensions import default_learning_rate

    doc = yaml.safe_load(QUICKSTART.read_text())
    del doc["space"]["learning_rate"]
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = row(validate(capsys, path), "learning_rate_offset")
    for method in ("lora", "ia3"):
        low, high = default_learning_rate(method)
        assert f"{method} {low:.0e}..{high:.0e}" in line, line


def test_one_band_for_every_method_is_still_its_own_dimension(capsys, tmp_path):
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["space"]["learning_rate"] = {"log": [1.0e-4, 1.0e-2]}
    path = tmp_path / "one-band.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = validate(capsys, path)
    assert "float 0.0001 .. 0.01 (log)" in row(out, "learning_rate") and "learning_rate_offset" not in out
