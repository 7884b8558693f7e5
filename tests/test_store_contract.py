"""One contract for the store, run against every backend: SQLite and PostgreSQL.

PostgreSQL comes from ``AUTOPEFT_TEST_POSTGRES_URL`` (``eval "$(bash .ci/postgres.sh | tail -1)"``
starts a private cluster and sets it). Each test gets a fresh, uniquely named database that
is dropped afterwards, so runs never see each other's studies. Without the variable the
PostgreSQL cases fail, saying how to set it: a green run must mean both backends passed.
``AUTOPEFT_SKIP_POSTGRES=1`` skips them on purpose.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from autopeft.errors import StoreError
from autopeft.store import Store, StudyRecord, TrialRecord, mask_url

BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


# --------------------------------------------------------------------------- PostgreSQL fixture
def postgres_admin_url() -> str:
    """The server URL from the environment; fails (or skips, if asked to) when it is not set."""
    if os.environ.get("AUTOPEFT_SKIP_POSTGRES") == "1":
        pytest.skip("AUTOPEFT_SKIP_POSTGRES=1: PostgreSQL tests skipped on request")
    url = os.environ.get("AUTOPEFT_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "AUTOPEFT_TEST_POSTGRES_URL is not set. Start a private server with "
            "`eval \"$(bash .ci/postgres.sh | tail -1)\"`, or point it at your own: "
            "export AUTOPEFT_TEST_POSTGRES_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB "
            "(the user needs CREATEDB). Set AUTOPEFT_SKIP_POSTGRES=1 to skip these tests.",
            pytrace=False,
        )
    return url


@contextmanager
def fresh_postgres_database(tag: str = "t"):
    """Create a uniquely named database on the test server; yield its URL; drop it."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_admin_url())
    name = f"autopeft_{tag}_{uuid.uuid4().hex[:12]}"
    # psycopg speaks libpq URIs: the same URL without SQLAlchemy's "+psycopg" driver suffix.
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as c:
            # FORCE: a test that failed may have left a connection open (PostgreSQL >= 13).
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def backend_url(backend: str, tmp_path, tag: str = "t"):
    """A URL to an empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    else:
        with fresh_postgres_database(tag) as url:
            yield url


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with backend_url(request.param, tmp_path, "contract") as u:
        yield u


@pytest.fixture
def store(url):
    s = Store(url)
    yield s
    s.close()


# --------------------------------------------------------------------------- helpers
T0 = datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=timezone.utc)


def study_record(name: str = "s1", created: datetime = T0, **kw) -> StudyRecord:
    base = dict(
        name=name, created_at=created, space_yaml="study: %s\nmodel: minilm-l6\n" % name, space_hash="0123456789abcdef",
        objectives=(("accuracy", "max"), ("trainable_params", "min")), trials_target=8, model="minilm-l6",
        model_fingerprint="m" * 64, dataset="tweet-sentiment", data_fingerprint="d" * 64, budget_params=123456,
        importance=None, autopeft_version="0.1.0",
    )
    base.update(kw)
    return StudyRecord(**base)


#: A whole candidate as the store keeps it (``Candidate.to_json()``), for records whose
#: configuration a test does not look at.
CANDIDATE = {"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"], "layers": [4, 5],
             "learning_rate": 1e-3, "dora": False, "rslora": False, "layer_ranks": None}


def trial_record(study: str = "s1", number: int = 0, **kw) -> TrialRecord:
    """A record; a ``candidate`` dict given names the fields that differ from :data:`CANDIDATE`."""
    base = dict(study=study, number=number, status="running", params={"method": "lora", "rank_index": 1},
                started_at=T0 + timedelta(seconds=number))
    base.update(kw)
    changes = base.get("candidate", {})
    base["candidate"] = {**CANDIDATE, **changes} if isinstance(changes, dict) else changes
    return TrialRecord(**base)


def same_instant(a: datetime, b: datetime) -> bool:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    norm = lambda d: d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)  # noqa: E731
    return norm(a) == norm(b)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- studies
def test_add_find_and_get_study_round_trip(store):
    record = study_record(importance={"layers": [0.1, 0.9], "by": "spt"})
    store.add_study(record)
    for got in (store.find_study("s1"), store.get_study("s1")):
        assert same_instant(got.created_at, record.created_at)
        assert got.objectives == record.objectives and isinstance(got.objectives[0], tuple)
        for field in ("name", "space_yaml", "space_hash", "trials_target", "model", "model_fingerprint", "dataset",
                      "data_fingerprint", "budget_params", "importance", "autopeft_version"):
            assert getattr(got, field) == getattr(record, field), field
    assert store.find_study("nope") is None


def test_studies_are_listed_oldest_first(store):
    store.add_study(study_record("later", T0 + timedelta(hours=1)))
    store.add_study(study_record("earlier", T0))
    store.add_study(study_record("latest", T0 + timedelta(hours=2)))
    assert [s.name for s in store.studies()] == ["earlier", "later", "latest"]


def test_duplicate_study_name_is_refused(store):
    store.add_study(study_record("dup"))
    with pytest.raises(Exception):
        store.add_study(study_record("dup"))
    assert [s.name for s in store.studies()] == ["dup"]


def test_unknown_study_error_lists_the_studies_there_are(store):
    with pytest.raises(StoreError, match="no study 'ghost'.*no studies yet"):
        store.get_study("ghost")
    store.add_study(study_record("alpha"))
    store.add_study(study_record("beta", T0 + timedelta(minutes=1)))
    with pytest.raises(StoreError, match="no study 'ghost'.*studies here: alpha, beta"):
        store.get_study("ghost")


def test_set_trials_target(store):
    store.add_study(study_record())
    store.set_trials_target("s1", 40)
    assert store.get_study("s1").trials_target == 40


# --------------------------------------------------------------------------- trials
def test_save_trial_inserts_then_updates_the_same_row(store):
    store.add_study(study_record())
    store.save_trial(trial_record(number=0))
    assert [(r.number, r.status) for r in store.trials("s1")] == [(0, "running")]
    done = trial_record(number=0, status="complete", values=[0.8, 1000.0], metrics={"accuracy": 0.8},
                        finished_at=T0 + timedelta(minutes=1), trainable_params=1000, sampler_time=0.25)
    store.save_trial(done)
    (got,) = store.trials("s1")
    assert (got.status, got.values, got.metrics, got.trainable_params, got.sampler_time) == (
        "complete", [0.8, 1000.0], {"accuracy": 0.8}, 1000, 0.25)
    assert same_instant(got.finished_at, done.finished_at) and same_instant(got.started_at, done.started_at)


def test_trials_come_back_ordered_by_number_and_per_study(store):
    store.add_study(study_record("a"))
    store.add_study(study_record("b", T0 + timedelta(seconds=1)))
    for n in (2, 0, 1):
        store.save_trial(trial_record("a", n))
    store.save_trial(trial_record("b", 0, status="failed", error="timeout: no result after 5 s"))
    assert [r.number for r in store.trials("a")] == [0, 1, 2]
    assert [(r.study, r.status, r.error) for r in store.trials("b")] == [("b", "failed", "timeout: no result after 5 s")]
    assert store.trials("nobody") == []


def test_save_trial_of_unknown_study_is_a_store_error(store):
    with pytest.raises(StoreError, match="no study 'ghost'"):
        store.save_trial(trial_record("ghost"))


def test_json_columns_round_trip(store):
    store.add_study(study_record())
    record = trial_record(
        number=3, status="complete",
        candidate={"rank": 8, "learning_rate": 1.5e-3, "layer_ranks": [8, 2]},
        params={"rank": 8, "lr": 0.0015, "bits": [True, False], "note": "ünïcødé ✓"},
        peft_config={"peft_type": "LORA", "r": 8, "target_modules": ["query", "value"], "rank_pattern": {},
                     "layers_to_transform": [4, 5], "lora_dropout": 0.0, "modules_to_save": None},
        metrics={"accuracy": 0.8125, "loss": 0.4}, values=[0.8125, 73728.0], curve=[[5, 0.69], [10, 0.5]],
        resources={"wall_time": 12.5, "train_time": 10.0, "peak_rss_mb": 812.3},
        extras={"rank_allocation": {"layer.0.query": 4, "layer.1.value": 0}, "nested": {"deep": [1, {"x": None}]}},
    )
    store.save_trial(record)
    (got,) = store.trials("s1")
    for field in ("candidate", "params", "peft_config", "metrics", "values", "curve", "resources", "extras"):
        assert getattr(got, field) == getattr(record, field), field


# --------------------------------------------------------------------------- optuna in the same database
def test_optuna_storage_shares_the_database(store, url):
    import optuna
    from sqlalchemy import inspect

    store.add_study(study_record())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(study_name="s1", storage=store.optuna_storage, directions=["maximize", "minimize"])
    trial = ostudy.ask()
    trial.suggest_int("rank", 1, 8)
    ostudy.tell(trial, [0.5, 10.0])
    store.save_trial(trial_record(number=trial.number, status="complete", values=[0.5, 10.0]))

    # Reopening runs our migrations again: neither side may disturb the other.
    again = Store(url)
    try:
        loaded = optuna.load_study(study_name="s1", storage=again.optuna_storage)
        assert [t.values for t in loaded.trials] == [[0.5, 10.0]]
        assert [r.number for r in again.trials("s1")] == [trial.number]
        tables = set(inspect(again.engine).get_table_names())
        assert {"autopeft_studies", "autopeft_trials", "autopeft_alembic_version", "studies", "trials",
                "alembic_version"} <= tables
    finally:
        again.close()


OPEN_TOGETHER = """
import sys, time
from autopeft.store import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at the same moment
Store(sys.argv[1]).close()
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_opening_a_fresh_database_together_all_succeed(backend, tmp_path):
    """Two searches (or N workers) started at once on a new database all create the tables."""
    import subprocess
    import sys
    import time

    with backend_url(backend, tmp_path, "together") as url:
        start = f"{time.time() + 8:.3f}"  # after every interpreter has imported autopeft
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, url, start], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
        store = Store(url, migrate=False)  # at head, or this refuses
        store.close()


# --------------------------------------------------------------------------- passwords and bad URLs
SECRET = "pa55-Secr3t-word"


def test_mask_url_hides_passwords():
    for raw in (f"postgresql+psycopg://alice:{SECRET}@db.example:5432/autopeft",
                f"postgresql://alice:{SECRET}@db.example/autopeft?sslmode=require",
                f"not a url://alice:{SECRET}@somewhere"):
        masked = mask_url(raw)
        assert SECRET not in masked and "***" in masked, masked
    assert mask_url("sqlite:///autopeft.db") == "sqlite:///autopeft.db"


def test_unreachable_server_error_names_the_server_but_not_the_password():
    raw = f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:{closed_port()}/autopeft?connect_timeout=5"
    with pytest.raises(StoreError) as info:
        Store(raw)
    message = str(info.value)
    assert SECRET not in message and "127.0.0.1" in message and "***" in message
    assert "\n" not in message


def test_cli_errors_never_print_the_password(capsys):
    from autopeft.cli import main

    raw = f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:{closed_port()}/autopeft?connect_timeout=5"
    assert main(["studies", "--storage", raw]) == 2
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err and "autopeft: error:" in out.err


@pytest.mark.parametrize("backend", BACKENDS)
def test_messages_of_a_working_store_never_contain_its_password(backend, tmp_path):
    """``display_url`` and every StoreError use the masked URL, on a live server too."""
    from sqlalchemy.engine import make_url

    with backend_url(backend, tmp_path, "mask") as raw:
        parsed = make_url(raw)
        if backend == "postgres" and not parsed.password:
            # The test server trusts loopback, so a password it never asked for is ignored.
            parsed = parsed.set(password=SECRET)
        elif backend == "sqlite":
            parsed = parsed.set(password=SECRET)  # meaningless for SQLite, must still be hidden
        secret = parsed.password
        with_password = parsed.render_as_string(hide_password=False)
        store = Store(with_password)
        try:
            assert secret not in store.display_url
            with pytest.raises(StoreError) as info:
                store.get_study("ghost")
            assert secret not in str(info.value)
            with pytest.raises(StoreError) as info:
                store.save_trial(trial_record("ghost"))
            assert secret not in str(info.value)
        finally:
            store.close()


def test_malformed_url_is_a_clear_store_error():
    with pytest.raises(StoreError, match="not a database URL; expected e.g. sqlite:///"):
        Store("just-a-file.db")


def test_unknown_driver_is_a_clear_store_error():
    with pytest.raises(StoreError, match="unknown database dialect or driver"):
        Store(f"postgresql+nosuchdriver://alice:{SECRET}@127.0.0.1/x")


def test_missing_driver_package_is_a_clear_store_error():
    # pg8000 is a real SQLAlchemy dialect whose package autopeft does not install.
    pytest.importorskip("sqlalchemy.dialects.postgresql.pg8000")
    try:
        import pg8000  # noqa: F401
        pytest.skip("pg8000 is installed here")
    except ImportError:
        pass
    with pytest.raises(StoreError, match="needs the Python package 'pg8000'") as info:
        Store(f"postgresql+pg8000://alice:{SECRET}@127.0.0.1/x")
    assert SECRET not in str(info.value)


def test_sqlite_in_a_missing_directory_is_a_clear_store_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{tmp_path}/no/such/dir/a.db")


def test_resources_are_a_typed_record_whatever_shape_they_arrive_in():
    from autopeft.store import Resources

    from_json = trial_record(number=1, status="complete", resources={"wall_time": 3.0, "peak_rss_mb": 700.0,
                                                                       "written_by_a_newer_version": 1})
    assert from_json.resources == Resources(wall_time=3.0, peak_rss_mb=700.0)
    assert from_json.resources.to_json() == {"wall_time": 3.0, "peak_rss_mb": 700.0}  # nothing unmeasured is stored
    assert trial_record(number=2, status="running", resources=None).resources == Resources()
    assert from_json.peak_memory_mib == 700.0  # no device figure: the process's peak
    assert Resources(peak_rss_mb=700.0, peak_memory_mb=120.0).peak_memory_mib == 120.0


def test_the_loser_of_the_race_to_create_optunas_tables_opens_them_on_a_retry(tmp_path, monkeypatch):
    """Two processes on a fresh database both create optuna's tables; the loser's duplicate key
    (SQLite: ``UNIQUE constraint failed: alembic_version.version_num``) is retried, not raised."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    from autopeft.store import optuna_storage

    real, calls = optuna.storages.RDBStorage, []

    def losing_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", losing_once)
    monkeypatch.setattr("autopeft.store.retry.time.sleep", lambda seconds: None)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    storage = optuna_storage.open_storage(url, url)
    assert len(calls) == 2 and storage.get_all_studies() == []


def test_a_store_that_cannot_open_optunas_tables_says_so_in_one_error(tmp_path, monkeypatch):
    import optuna
    from sqlalchemy.exc import OperationalError

    from autopeft.store import optuna_storage

    def never(*args, **kwargs):
        raise OperationalError("CREATE TABLE studies", {}, Exception("disk I/O error"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", never)
    monkeypatch.setattr("autopeft.store.retry.time.sleep", lambda seconds: None)
    with pytest.raises(StoreError, match="cannot open optuna's tables in shown-url"):
        optuna_storage.open_storage("sqlite:///unused.db", "shown-url", attempts=2)
