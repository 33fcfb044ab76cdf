"""The disposable-database guard, batch/assignment cleanup and database reset."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import URL, Column, Integer, MetaData, Table, func, inspect, make_url, select, text

from cjlib import maintenance
from cjlib.cli.main import main
from cjlib.db import current_revision, get_engine, head_revision, session_scope, upgrade
from cjlib.db.models import (
    AnchorEssayReference,
    AssessmentInstruction,
    Base,
    CJBatchState,
    CJBatchStateTransition,
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    EventOutbox,
    GradeProjection,
)
from cjlib.errors import DatabaseURLError, GuardRefused, NotFoundError
from cjlib.maintenance import (
    cleanup_assignment,
    cleanup_batch,
    ensure_disposable_database,
    reset_database,
)
from tests.conftest import BACKENDS
from tests.integration import health_fixtures as fx

#: Each batch-owned table and the column naming the batch (the outbox stores it as text).
BATCH_OWNED = {
    "cj_batch_uploads": CJBatchUpload.id,
    "cj_batch_states": CJBatchState.batch_id,
    "cj_batch_state_transitions": CJBatchStateTransition.batch_id,
    "cj_processed_essays": CJProcessedEssay.cj_batch_id,
    "cj_comparison_pairs": CJComparisonPair.cj_batch_id,
    "grade_projections": GradeProjection.cj_batch_id,
    "event_outbox": EventOutbox.aggregate_id,
}


def _rows_of(engine, batch_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(
                select(func.count()).where(
                    column == (str(batch_id) if table == "event_outbox" else batch_id)
                )
            ).scalar_one()
            for table, column in BATCH_OWNED.items()
        }


def _count(engine, model, **where) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return conn.execute(query).scalar_one()


# --- guard --------------------------------------------------------------------------------


@pytest.fixture
def development(monkeypatch):
    monkeypatch.setenv("CJ_ENVIRONMENT", "development")
    monkeypatch.delenv("PGHOST", raising=False)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/cj.sqlite3",
        "sqlite:////tmp/cj.sqlite3",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg://postgres@localhost:5432/cj",
        "postgresql+psycopg://postgres@127.0.0.1/cj",
        "postgresql+psycopg://postgres@[::1]:5432/cj",
        "postgresql+psycopg://postgres@/cj",
        "postgresql+psycopg://postgres@/cj?host=/var/run/postgresql",
        "postgresql+psycopg://postgres@%2Fvar%2Frun%2Fpostgresql/cj",
    ],
)
def test_guard_allows_local_databases(development, url):
    assert ensure_disposable_database(url) is None


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("postgresql+psycopg://postgres@db.example.com:5432/cj", "db.example.com"),
        ("postgresql+psycopg://postgres@10.0.0.5/cj", "10.0.0.5"),
        ("postgresql+psycopg://postgres@/cj?host=db.example.com", "db.example.com"),
        ("postgresql+psycopg://postgres@localhost/cj?host=localhost,db2.example.com", "db2"),
        ("postgresql+psycopg://postgres@localhost/cj?hostaddr=192.0.2.7", "192.0.2.7"),
    ],
)
def test_guard_refuses_remote_postgres_hosts(development, url, host):
    with pytest.raises(GuardRefused, match=f"host {host}.* is not local"):
        ensure_disposable_database(url)


def test_guard_refuses_socketless_url_when_pghost_points_elsewhere(development, monkeypatch):
    monkeypatch.setenv("PGHOST", "db.example.com")
    with pytest.raises(GuardRefused, match=re.escape("db.example.com")):
        ensure_disposable_database("postgresql+psycopg://postgres@/cj")


def test_guard_refuses_other_backends(development):
    with pytest.raises(GuardRefused, match="backend mysql"):
        ensure_disposable_database("mysql://root@localhost/cj")


@pytest.mark.parametrize("env", ["production", "prod", "staging", " Production "])
def test_guard_refuses_protected_environments_even_for_local_sqlite(monkeypatch, env):
    monkeypatch.setenv("CJ_ENVIRONMENT", env)
    expected = f"CJ_ENVIRONMENT='{env.strip()}' is not a development or test environment"
    with pytest.raises(GuardRefused, match=re.escape(expected)):
        ensure_disposable_database("sqlite:///data/cj.sqlite3")


def test_guard_hides_the_password_in_its_message(development):
    with pytest.raises(GuardRefused) as refused:
        ensure_disposable_database("postgresql+psycopg://cj:s3cret@db.example.com/cj")
    assert "s3cret" not in str(refused.value)


def test_cli_cleanup_in_production_exits_2_and_touches_nothing(db_url, engine, monkeypatch, capsys):
    batch_id = fx.completed_batch(engine)
    monkeypatch.setenv("CJ_ENVIRONMENT", "production")
    assert main(["batch", "cleanup", str(batch_id), "--database-url", db_url]) == 2
    assert "is not a development or test environment" in capsys.readouterr().err
    assert _rows_of(engine, batch_id)["cj_batch_uploads"] == 1


def test_cli_reset_of_remote_database_is_refused_before_connecting(development, capsys):
    url = "postgresql+psycopg://postgres@db.example.invalid:5432/cj"
    assert main(["db", "reset", "--yes", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert "refusing to modify" in err and "cannot connect" not in err


# --- cleanup ------------------------------------------------------------------------------


def test_cleanup_batch_removes_exactly_its_rows_and_keeps_another_batch(development, engine):
    doomed = fx.completed_batch(engine, label="doomed")
    kept = fx.stuck_batch(engine, label="kept")
    before = _rows_of(engine, doomed)
    kept_before = _rows_of(engine, kept)
    assert all(before.values())  # the fixture fills every batch-owned table
    summary = cleanup_batch(engine, doomed)
    assert summary.cj_batch_ids == (doomed,)
    assert summary.deleted == before
    assert summary.total == sum(before.values())
    assert set(_rows_of(engine, doomed).values()) == {0}
    assert _rows_of(engine, kept) == kept_before


def test_cleanup_batch_runs_in_one_transaction(development, engine, monkeypatch):
    batch_id = fx.completed_batch(engine)
    before = _rows_of(engine, batch_id)
    missing = Table("no_such_table", MetaData(), Column("cj_batch_id", Integer))
    # Fail after projections, pairs and essays were already deleted.
    broken = (*maintenance._BATCH_TABLES[:3], (missing, missing.c.cj_batch_id))
    monkeypatch.setattr(maintenance, "_BATCH_TABLES", broken)
    with pytest.raises(Exception, match="no_such_table"):
        cleanup_batch(engine, batch_id)
    assert _rows_of(engine, batch_id) == before


def test_cleanup_missing_batch_raises_not_found(development, engine):
    with pytest.raises(NotFoundError, match="no CJ batch with id 4242"):
        cleanup_batch(engine, 4242)


def _two_assignments(engine) -> dict[str, int]:
    ids = {
        "a1": fx.completed_batch(engine, label="a1", assignment_id="A"),
        "a2": fx.stalled_batch(engine, label="a2", assignment_id="A"),
        "b1": fx.completed_batch(engine, label="b1", assignment_id="B"),
    }
    fx.add_assignment_anchors(engine, "A", count=3)
    fx.add_assignment_anchors(engine, "B", count=2)
    return ids


def test_cleanup_assignment_keeps_anchors_by_default(development, engine):
    ids = _two_assignments(engine)
    b_before = _rows_of(engine, ids["b1"])
    summary = cleanup_assignment(engine, "A")
    assert summary.cj_batch_ids == (ids["a1"], ids["a2"])
    assert summary.deleted["cj_batch_uploads"] == 2
    assert "anchor_essay_references" not in summary.deleted
    assert _count(engine, CJBatchUpload, assignment_id="A") == 0
    assert _count(engine, AnchorEssayReference, assignment_id="A") == 3
    assert _count(engine, AssessmentInstruction, assignment_id="A") == 1
    assert _rows_of(engine, ids["b1"]) == b_before


def test_cleanup_assignment_drop_anchors_removes_only_that_assignments_anchors(development, engine):
    ids = _two_assignments(engine)
    summary = cleanup_assignment(engine, "A", keep_anchors=False)
    assert summary.deleted["anchor_essay_references"] == 3
    assert summary.deleted["assessment_instructions"] == 1
    assert _count(engine, AnchorEssayReference, assignment_id="A") == 0
    assert _count(engine, AssessmentInstruction, assignment_id="A") == 0
    assert _count(engine, AnchorEssayReference, assignment_id="B") == 2
    assert _rows_of(engine, ids["b1"])["cj_batch_uploads"] == 1


def test_cleanup_assignment_without_batches_deletes_nothing(development, engine):
    fx.completed_batch(engine, assignment_id="B")
    summary = cleanup_assignment(engine, "nobody")
    assert summary.cj_batch_ids == ()
    assert summary.total == 0
    assert _count(engine, CJBatchUpload) == 1


def test_cli_cleanup_by_batch_id_prints_counts(development, db_url, engine, capsys):
    batch_id = fx.completed_batch(engine)
    assert main(["batch", "cleanup", str(batch_id), "--database-url", db_url]) == 0
    assert "cj_comparison_pairs" in capsys.readouterr().out
    assert _count(engine, CJBatchUpload) == 0


def test_cli_cleanup_by_assignment_json_drop_anchors(development, db_url, engine, capsys):
    _two_assignments(engine)
    args = ["batch", "cleanup", "--assignment-id", "A", "--drop-anchors", "--json"]
    assert main([*args, "--database-url", db_url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deleted"]["anchor_essay_references"] == 3
    assert len(data["cj_batch_ids"]) == 2


@pytest.mark.parametrize(
    "args",
    [["batch", "cleanup"], ["batch", "cleanup", "1", "--assignment-id", "A"]],
    ids=["neither", "both"],
)
def test_cli_cleanup_needs_exactly_one_target(development, args, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    assert main([*args, "--database-url", url]) == 2
    assert "exactly one" in capsys.readouterr().err


# --- reset --------------------------------------------------------------------------------


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_reset_gives_an_empty_database_at_head(development, empty_db_url):
    engine = get_engine(empty_db_url)
    upgrade(engine)
    fx.stuck_batch(engine)
    fx.add_assignment_anchors(engine, "A")
    assert reset_database(engine) == head_revision()
    assert current_revision(engine) == head_revision()
    names = inspect(engine)
    assert set(names.get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    assert names.get_view_names() == ["cj_batch_health"]
    with session_scope(engine) as s:
        assert all(
            s.execute(select(func.count()).select_from(table)).scalar_one() == 0
            for table in Base.metadata.sorted_tables
        )
    engine.dispose()


def test_cli_reset_without_yes_refuses_and_keeps_data(development, db_url, engine, capsys):
    fx.completed_batch(engine)
    assert main(["db", "reset", "--database-url", db_url]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert _count(engine, CJBatchUpload) == 1


def test_cli_reset_with_yes_empties_a_sqlite_database(development, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    engine = get_engine(url)
    upgrade(engine)
    fx.completed_batch(engine)
    assert main(["db", "reset", "--yes", "--database-url", url]) == 0
    assert "reset" in capsys.readouterr().out
    assert _count(engine, CJBatchUpload) == 0
    assert current_revision(engine) == head_revision()
    engine.dispose()


# --- the server's own answer --------------------------------------------------------------


@pytest.fixture
def local_postgres(postgres_server, request) -> str:
    url = postgres_server.lease(request, "cj_guard")
    engine = get_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.mark.postgres
def test_server_answers_loopback_over_tcp_and_null_over_a_unix_socket(development, local_postgres):
    tcp = get_engine(local_postgres)
    assert maintenance.server_address(tcp) == "127.0.0.1"
    ensure_disposable_database(tcp)
    tcp.dispose()
    tcp_url = make_url(local_postgres)
    url = URL.create(tcp_url.drivername, username=tcp_url.username, database=tcp_url.database)
    try:
        unix = get_engine(url.render_as_string(hide_password=False))
    except DatabaseURLError as err:
        pytest.skip(f"no unix socket to the test server here: {err}")
    assert maintenance.server_address(unix) is None
    ensure_disposable_database(unix)
    unix.dispose()


@pytest.mark.postgres
def test_guard_refuses_when_the_server_answers_on_a_non_loopback_address(
    development, local_postgres, monkeypatch
):
    # No remote server is reachable from the tests; what the guard does with the answer is.
    monkeypatch.setattr(maintenance, "server_address", lambda engine: "192.0.2.7")
    engine = get_engine(local_postgres)
    with pytest.raises(GuardRefused, match=re.escape("the server answered on 192.0.2.7")):
        reset_database(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


@pytest.mark.postgres
def test_reset_of_a_foreign_postgres_database_needs_force_foreign(
    development, postgres_server, request
):
    url = postgres_server.lease(request, "cj_foreign")
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id integer)"))
    with pytest.raises(GuardRefused, match=r"not a cj database \(it holds invoices\)"):
        reset_database(engine)
    assert inspect(engine).get_table_names() == ["invoices"]
    assert reset_database(engine, force_foreign=True) == head_revision()
    assert "invoices" not in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.parametrize("batch_id", [2**31, 3_000_000_000, 2**63 - 1])
def test_cleanup_of_an_id_beyond_the_column_is_not_found_on_both_backends(
    development, engine, batch_id
):
    fx.completed_batch(engine)
    with pytest.raises(NotFoundError, match=f"no CJ batch with id {batch_id}"):
        cleanup_batch(engine, batch_id)
    assert _count(engine, CJBatchUpload) == 1
