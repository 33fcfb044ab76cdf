"""Diagnostics name the missing view or table and the command that fixes it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from cjlib.db import get_engine
from cjlib.diagnostics import batch_health, health_alerts, inspect_batch
from cjlib.errors import UsageError
from tests.conftest import BACKENDS
from tests.integration import health_fixtures as fx


@pytest.fixture(params=BACKENDS)
def own_engine(request):
    """A migrated database of this test's own: these tests damage the schema."""
    engine = get_engine(fx.fresh_database_url(request, request.param, prefix="cj_damaged"))
    yield engine
    engine.dispose()


def _drop(engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


@pytest.mark.parametrize("read", [batch_health, health_alerts, lambda e: inspect_batch(e, 1)])
def test_a_dropped_view_is_named_with_its_fix(own_engine, read):
    engine = own_engine
    fx.completed_batch(engine)
    _drop(engine, "DROP VIEW cj_batch_health")
    with pytest.raises(UsageError) as refused:
        read(engine)
    assert str(refused.value) == (
        "view cj_batch_health is missing: run `cj db upgrade` (it recreates the view)"
    )


def test_a_dropped_table_is_named(own_engine):
    engine = own_engine
    batch_id = fx.completed_batch(engine)
    # The view reads the table too, so it goes first (PostgreSQL would refuse otherwise).
    _drop(engine, "DROP VIEW cj_batch_health")
    _drop(engine, "DROP TABLE grade_projections")
    fx_view = "CREATE VIEW cj_batch_health AS SELECT id AS cj_batch_id FROM cj_batch_uploads"
    _drop(engine, fx_view)
    with pytest.raises(UsageError, match="table grade_projections is missing"):
        inspect_batch(engine, batch_id)
