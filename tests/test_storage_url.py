"""Which database a command, the Python API and the dashboard open (``autopeft.store.url``)."""

from __future__ import annotations

import pytest

from autopeft.store.url import DEFAULT_URL, mask_url, sqlite_file, storage_url

DASHBOARD_ENV = ("AUTOPEFT_DASHBOARD_STORAGE", "AUTOPEFT_STORAGE")


@pytest.fixture(autouse=True)
def _no_ambient_url(monkeypatch):
    for name in DASHBOARD_ENV:
        monkeypatch.delenv(name, raising=False)


def test_given_url_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOPEFT_STORAGE", "sqlite:///env.db")
    assert storage_url("sqlite:///given.db") == "sqlite:///given.db"
    assert storage_url("sqlite:///given.db", env=DASHBOARD_ENV) == "sqlite:///given.db"


def test_environment_in_order_then_the_default(monkeypatch):
    assert storage_url(None) == DEFAULT_URL == "sqlite:///autopeft.db"
    monkeypatch.setenv("AUTOPEFT_STORAGE", "sqlite:///env.db")
    assert storage_url(None) == "sqlite:///env.db"
    assert storage_url(None, env=DASHBOARD_ENV) == "sqlite:///env.db"
    monkeypatch.setenv("AUTOPEFT_DASHBOARD_STORAGE", "sqlite:///dash.db")
    assert storage_url(None, env=DASHBOARD_ENV) == "sqlite:///dash.db"
    assert storage_url(None) == "sqlite:///env.db"  # only the dashboard reads its own variable


def test_empty_values_count_as_unset(monkeypatch):
    monkeypatch.setenv("AUTOPEFT_STORAGE", "")
    monkeypatch.setenv("AUTOPEFT_DASHBOARD_STORAGE", "")
    assert storage_url("") == DEFAULT_URL
    assert storage_url("", env=DASHBOARD_ENV) == DEFAULT_URL


def test_the_cli_uses_the_same_function():
    from autopeft.cli import _common

    assert _common.storage_url is storage_url


def test_sqlite_file_only_for_a_file_backed_sqlite_url(tmp_path):
    assert sqlite_file(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u:p@host/db") is None
    assert sqlite_file("not a url") is None


def test_mask_url_hides_the_password():
    assert "s3cret" not in mask_url("postgresql+psycopg://user:s3cret@host:5432/db")
    assert "s3cret" not in mask_url("postgresql+psycopg://user:s3cret@host:notaport/db")
