"""Alembic builds the whole schema, and the ORM models and migrations agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cjlib.db import current_revision, get_engine, head_revision, upgrade
from cjlib.db.models import Base
from tests.conftest import BACKENDS

EXPECTED_TABLES = {
    "cj_batch_uploads",
    "cj_batch_states",
    "cj_batch_state_transitions",
    "cj_processed_essays",
    "cj_comparison_pairs",
    "grade_projections",
    "anchor_essay_references",
    "assessment_instructions",
    "cj_content",
    "event_outbox",
    "cj_judge_calls",
}


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_upgrade_on_empty_database_creates_every_table(empty_db_url):
    engine = get_engine(empty_db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert tables >= EXPECTED_TABLES
    engine.dispose()


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_models_and_migrations_agree(empty_db_url):
    engine = get_engine(empty_db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_upgrade_twice_is_a_no_op(empty_db_url):
    engine = get_engine(empty_db_url)
    first = upgrade(engine)
    assert upgrade(engine) == first
    engine.dispose()


def test_sqlite_connections_enforce_foreign_keys(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'fk.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()
