"""``autopeft db upgrade``: autopeft's alembic history, beside optuna's, on SQLite and PostgreSQL.

Optuna keeps its schema revision in ``alembic_version``; autopeft's lives in
``autopeft_alembic_version``. Neither migration history may touch the other's tables.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from autopeft.cli import main
from test_store_contract import BACKENDS, backend_url, study_record

OURS = {"autopeft_studies", "autopeft_trials", "autopeft_verifications", "autopeft_alembic_version"}


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with backend_url(request.param, tmp_path, "migr") as u:
        yield u


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def scalar_rows(url: str, query: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [r[0] for r in c.execute(text(query))]
    finally:
        engine.dispose()


def head() -> str:
    from autopeft.store.schema import head_revision

    return head_revision()


def db(capsys, *args: str) -> str:
    code = main(["db", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_upgrade_from_an_empty_database_to_head(url, capsys):
    assert not tables(url) & OURS
    assert "not created" in db(capsys, "current", "--storage", url)
    assert not tables(url) & OURS, "db current must not change anything"
    out = db(capsys, "upgrade", "--storage", url)
    assert f"empty -> {head()} (head)" in out
    assert OURS <= tables(url)
    assert scalar_rows(url, "SELECT version_num FROM autopeft_alembic_version") == [head()]
    assert f"{head()} (head)" in db(capsys, "current", "--storage", url)


def test_upgrade_is_idempotent_and_keeps_data(url, capsys):
    from autopeft.store import Store

    db(capsys, "upgrade", "--storage", url)
    store = Store(url)
    store.add_study(study_record("kept"))
    store.close()
    for _ in range(2):
        assert f"already at revision {head()}" in db(capsys, "upgrade", "--storage", url)
    assert scalar_rows(url, "SELECT version_num FROM autopeft_alembic_version") == [head()]
    assert scalar_rows(url, "SELECT name FROM autopeft_studies") == ["kept"]


def test_optunas_alembic_version_is_untouched(url, capsys):
    import optuna

    storage = optuna.storages.RDBStorage(url)  # optuna first: its tables and its revision
    optuna.create_study(study_name="o", storage=storage)
    storage.engine.dispose()
    before = scalar_rows(url, "SELECT version_num FROM alembic_version")
    assert len(before) == 1
    optuna_tables = tables(url)

    db(capsys, "upgrade", "--storage", url)
    db(capsys, "upgrade", "--storage", url)
    assert scalar_rows(url, "SELECT version_num FROM alembic_version") == before
    assert tables(url) == optuna_tables | OURS
    assert head() not in before
    # and optuna still opens the database without complaint
    again = optuna.storages.RDBStorage(url)
    assert [s.study_name for s in again.get_all_studies()] == ["o"]
    again.engine.dispose()


def test_downgrade_to_base_and_back_only_touches_our_tables(url, capsys):
    """The previous revision of 0001 is the empty schema: down and up again, optuna unharmed."""
    import optuna
    from alembic import command
    from alembic.config import Config

    from autopeft.store.schema import MIGRATIONS

    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name="o", storage=storage)
    storage.engine.dispose()
    db(capsys, "upgrade", "--storage", url)
    optuna_version = scalar_rows(url, "SELECT version_num FROM alembic_version")

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")
    engine.dispose()
    assert not tables(url) & {"autopeft_studies", "autopeft_trials"}
    assert {"studies", "trials", "alembic_version"} <= tables(url)

    assert f"-> {head()} (head)" in db(capsys, "upgrade", "--storage", url)
    assert OURS <= tables(url)
    assert scalar_rows(url, "SELECT version_num FROM alembic_version") == optuna_version


def test_a_read_only_store_never_migrates_and_says_how_to(url, capsys):
    import optuna

    from autopeft.errors import StoreError
    from autopeft.store import Store

    storage = optuna.storages.RDBStorage(url)  # a database with optuna's tables but not ours
    storage.engine.dispose()
    with pytest.raises(StoreError, match="do not exist yet.*nothing was changed.*autopeft db upgrade"):
        Store(url, migrate=False)
    assert not tables(url) & OURS
    db(capsys, "upgrade", "--storage", url)
    store = Store(url, migrate=False)
    assert store.revision() == head() and store.studies() == []
    store.close()


def test_upgrade_of_an_unreachable_database_is_one_clear_line(capsys):
    from test_store_contract import SECRET, closed_port

    url = f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:{closed_port()}/x?connect_timeout=5"
    assert main(["db", "upgrade", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autopeft: error:") and err.count("\n") == 1 and SECRET not in err


def test_a_database_at_0001_upgrades_to_verifications_keeping_its_studies(url, capsys):
    """Databases made before ``autopeft verify`` existed (revision 0001) gain its table and lose nothing."""
    import dataclasses

    from alembic import command
    from alembic.config import Config

    from autopeft.store.schema import MIGRATIONS
    from autopeft.store.tables import studies

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0001")
        row = dataclasses.asdict(study_record("old"))
        row["objectives"] = [list(o) for o in row["objectives"]]
        row.pop("splits")  # a column of 0003
        connection.execute(studies.insert().values(**row))
    engine.dispose()
    assert "autopeft_verifications" not in tables(url)
    assert f"-> {head()} (head)" in db(capsys, "upgrade", "--storage", url)
    assert head() == "0004" and "autopeft_verifications" in tables(url)
    assert scalar_rows(url, "SELECT name FROM autopeft_studies") == ["old"]
    from autopeft.store import Store

    assert Store(url).get_study("old").splits is None  # 0003: recorded when a search next prepares its data
