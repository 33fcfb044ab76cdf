"""cjlib.db engines: read-only opening, journal mode, schema status, forced upgrades."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc, inspect, text

from cjlib.db import get_engine, head_revision, schema_status, upgrade
from cjlib.errors import DatabaseURLError, UsageError
from tests.conftest import BACKENDS


def test_read_only_engine_on_a_missing_file_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "cj.sqlite3"
    with pytest.raises(DatabaseURLError, match=f"database file {missing} does not exist"):
        get_engine(f"sqlite:///{missing}", readonly=True)
    assert not missing.parent.exists()


def test_read_only_engine_reads_a_cj_database_and_cannot_write(db_url):
    engine = get_engine(db_url, readonly=True)
    assert schema_status(engine).up_to_date
    with pytest.raises(exc.DBAPIError, match=r"(?i)read.?only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM cj_batch_uploads"))
    engine.dispose()


def _foreign_file(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    return path


@pytest.mark.parametrize("readonly", [True, False])
def test_opening_a_foreign_file_keeps_its_journal_mode_and_bytes(tmp_path, readonly):
    path = _foreign_file(tmp_path / "notes.db")
    before = path.read_bytes()
    engine = get_engine(f"sqlite:///{path}", readonly=readonly)
    status = schema_status(engine)
    engine.dispose()
    assert status.kind == "foreign" and status.objects == ("notes",)
    assert "is not a cj database (it holds notes)" in status.describe()
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_new_cj_database_is_switched_to_wal(tmp_path):
    path = tmp_path / "cj.sqlite3"
    engine = get_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_upgrade_adds_cj_tables_to_a_foreign_file_only_when_forced(tmp_path):
    path = _foreign_file(tmp_path / "notes.db")
    engine = get_engine(f"sqlite:///{path}")
    with pytest.raises(UsageError, match="refusing to add cj tables"):
        upgrade(engine)
    assert inspect(engine).get_table_names() == ["notes"]
    assert upgrade(engine, force_foreign=True) == head_revision()
    assert {"notes", "cj_batch_uploads"} <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_schema_status_kinds(empty_db_url):
    engine = get_engine(empty_db_url)
    assert schema_status(engine).kind == "empty"
    upgrade(engine)
    status = schema_status(engine)
    assert (status.kind, status.revision, status.up_to_date) == ("cj", head_revision(), True)
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW cj_batch_health"))
    status = schema_status(engine)
    assert status.missing_views == ("cj_batch_health",) and not status.up_to_date
    upgrade(engine)
    assert schema_status(engine).up_to_date
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE event_outbox"))
    status = schema_status(engine)
    assert status.missing_tables == ("event_outbox",)
    assert "table event_outbox is missing" in status.describe()
    with pytest.raises(UsageError, match="table event_outbox is missing"):
        upgrade(engine)
    engine.dispose()


def test_in_memory_database_only_when_allowed():
    with pytest.raises(DatabaseURLError, match="in-memory"):
        get_engine("sqlite://")
    engine = get_engine("sqlite://", allow_memory=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
