"""The test suite's own PostgreSQL databases: a leased database comes back as a new one."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, make_url, text

from cjlib.db import get_engine, upgrade

_FINGERPRINT = {
    "schemas": "SELECT nspname, nspowner::regrole::text, coalesce(nspacl::text, '') "
    "FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_temp\\_%' "
    "AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%' ORDER BY 1",
    "relations": "SELECT c.relname, c.relkind FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
    "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
    "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    "comment": "SELECT obj_description('public'::regnamespace, 'pg_namespace')",
}


def _fingerprint(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                key: [tuple(r) for r in conn.execute(text(sql))]
                for key, sql in _FINGERPRINT.items()
            }
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_emptied_database_looks_like_a_new_one(postgres_server, request):
    new = postgres_server.create_database("cj_reference")
    url = postgres_server.lease(request, "cj_pool_check")
    engine = get_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA other"))
        conn.execute(text("CREATE TABLE other.t (id serial PRIMARY KEY)"))
        conn.execute(text("CREATE TYPE mood AS ENUM ('sad', 'ok')"))
        conn.execute(text("CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'"))
        conn.execute(text("COMMENT ON SCHEMA public IS 'changed'"))
    # A connection left open by the previous user does not stop the emptying.
    idle = engine.connect()
    idle.execute(text("SELECT count(*) FROM cj_batch_uploads"))
    dirty = _fingerprint(url)
    assert dirty != _fingerprint(new)

    postgres_server._empty(make_url(url).database)

    assert _fingerprint(url) == _fingerprint(new)
    idle.invalidate()
    engine.dispose()
