"""The end of ``search``: the tau line says why there is no tau, and no export is suggested
when no trial can be exported."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console

from test_render_width import _study


@pytest.mark.parametrize("n, words", [(2, "only 2 trials reached both the rung and the target"),
                                      (1, "only 1 trial reached both")])
def test_the_tau_line_says_why_there_is_no_tau(monkeypatch, n, words):
    import autopeft.search.analysis.answer as answer_module
    import autopeft.search.seeds as seeds
    import autopeft.store.verifications as verifications
    from autopeft.cli.comparison import print_answer

    monkeypatch.setattr(answer_module, "answer", lambda *a: SimpleNamespace(reference=None, paired=[], tau=(None, n),
                                                                           sentence="no comparison"))
    monkeypatch.setattr(seeds, "rows_of", lambda *a: [])
    monkeypatch.setattr(verifications, "Verifications", lambda store: None)
    study = _study(target=True)
    doc = yaml.safe_load(study.space_yaml)
    doc["proxy"]["rungs"] = [10]
    study = SimpleNamespace(**{**study.__dict__, "space_yaml": yaml.safe_dump(doc)})
    console = Console(file=io.StringIO(), width=200)
    print_answer(console, None, study, [])
    out = console.file.getvalue()
    assert "Kendall tau" in out and words in out


def test_no_export_is_suggested_without_an_eligible_trial(tmp_path, monkeypatch, capsys):
    """An interrupted search whose only trial failed ends without `export ... --pick knee`."""
    import autopeft.cli.study as cli_study
    import autopeft.search.loop as loop
    import autopeft.search.prepare as prepare
    from autopeft.cli import main
    from autopeft.store import Store
    from test_render_width import _trial

    url = f"sqlite:///{tmp_path}/s.db"
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**yaml.safe_load(_study(False).space_yaml),
                                                          "study": "quickstart"}))

    def fake_search(prep, store, **kw):
        study = _study(False)
        store.add_study(study)
        store.save_trial(_trial(0, status="failed", error="interrupted"))
        return SimpleNamespace(study=store.get_study("quickstart"), records=store.trials("quickstart"),
                               interrupted=True, signal=2)

    monkeypatch.setattr(loop, "run_search", fake_search)
    monkeypatch.setattr(prepare, "prepare_search", lambda sp, **kw: SimpleNamespace(warnings=(), data=None))
    code = main(["search", str(tmp_path / "space.yaml"), "--storage", url])
    out = capsys.readouterr().out
    assert code == 130 and "autopeft show quickstart" in out
    assert "--pick knee" not in out and "autopeft export" not in out
    Store(url).close()
