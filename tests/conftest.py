"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL tests connect to ``CJ_TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), create databases with unique names
for this test session and drop them at the end (in the background: see
:meth:`PostgresServer.drop_all`). When the server cannot be reached they are
skipped with a one-line reason, unless ``CJ_REQUIRE_POSTGRES=1`` (CI), where they fail.

A test that needs a database of its own leases one (:meth:`PostgresServer.lease`): a database
a finished test gave back is emptied (every schema dropped, ``public`` made again) and handed
out instead of a new one. PostgreSQL forces a checkpoint on every ``DROP DATABASE``; with a
database per test, dropping them at the end of a session took 60-90 s of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from cjlib.db import get_engine, upgrade
from cjlib.db.models import Base

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

_SESSION_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def test_database_url() -> str:
    """PostgreSQL server the tests create throw-away databases on (``CJ_TEST_DATABASE_URL``)."""
    return os.environ.get("CJ_TEST_DATABASE_URL", "").strip() or DEFAULT_TEST_DATABASE_URL


def require_postgres() -> bool:
    """Whether PostgreSQL tests must run (``CJ_REQUIRE_POSTGRES=1``) instead of skipping."""
    return os.environ.get("CJ_REQUIRE_POSTGRES", "").strip() in {"1", "true", "yes"}


class PostgresServer:
    """Creates, lends out, empties and drops throw-away databases on the test PostgreSQL server."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self._admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []
        self._free: list[str] = []

    def create_database(self, prefix: str = "cj_test") -> str:
        """URL of a new empty database, kept to the end of the session."""
        name = f"{prefix}_{_SESSION_TAG}_{len(self.created)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self._url_of(name)

    def lease(self, request: pytest.FixtureRequest, prefix: str = "cj_test") -> str:
        """URL of an empty database (no schema but an empty ``public``) for ``request``'s scope.

        The database goes back to the pool when the scope of ``request`` ends (the test, or
        the module of a module-scoped fixture); whoever leases it next gets it emptied.
        """
        if self._free:
            name = self._free.pop()
            self._empty(name)
        else:
            name = make_url(self.create_database(prefix)).database
        request.addfinalizer(lambda: self._free.append(name))
        return self._url_of(name)

    def _url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def _empty(self, name: str) -> None:
        # Connections a finished test left open (a killed subprocess's, an engine not
        # disposed) would hold locks; DROP DATABASE ... WITH (FORCE) ended them the same way.
        with self._admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        engine = create_engine(self._url_of(name), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(_EMPTY_DATABASE))
        finally:
            engine.dispose()

    def drop_all(self) -> None:
        """Drop this session's databases, in a process of their own the session does not wait for.

        Each ``DROP DATABASE`` makes the server checkpoint, writing out every page the tests
        dirtied: 20-90 s at the end of a session on a busy machine, for nothing the tests check.
        ``CJ_TEST_DROP_DATABASES=wait`` drops them before the session ends.
        """
        self._admin.dispose()
        if not self.created:
            return
        args = [sys.executable, "-c", _DROP_DATABASES, *self.created]
        # The URL goes through the environment: it may hold a password.
        env = {**os.environ, "CJ_TEST_ADMIN_URL": self.url.render_as_string(hide_password=False)}
        if os.environ.get("CJ_TEST_DROP_DATABASES", "").strip() == "wait":
            subprocess.run(args, env=env, check=True)
            return
        subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives pytest, and a Ctrl-C of it
        )


_DROP_DATABASES = """
import os, sys
from sqlalchemy import create_engine, text
engine = create_engine(os.environ["CJ_TEST_ADMIN_URL"], isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    for name in sys.argv[1:]:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
engine.dispose()
"""


#: Back to what CREATE DATABASE gives: no schema but ``public``, owned and granted as in a new
#: database (PostgreSQL 15 and later grant only USAGE on it; earlier versions CREATE as well).
_EMPTY_DATABASE = """
DO $$
DECLARE
    schema_name text;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
        WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    CREATE SCHEMA public;
    COMMENT ON SCHEMA public IS 'standard public schema';
    IF current_setting('server_version_num')::int >= 150000 THEN
        ALTER SCHEMA public OWNER TO pg_database_owner;
        GRANT USAGE ON SCHEMA public TO PUBLIC;
    ELSE
        GRANT ALL ON SCHEMA public TO PUBLIC;
    END IF;
END
$$
"""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = test_database_url()
    try:
        server = PostgresServer(url)
        with server._admin.connect():
            pass
    except Exception as err:  # any failure to reach the server decides skip-or-fail
        reason = f"PostgreSQL not reachable at {url}: {str(err).splitlines()[0]}"
        if require_postgres():
            pytest.fail(f"CJ_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    yield server
    server.drop_all()


@pytest.fixture
def empty_db_url(request, tmp_path) -> str:
    """URL of an empty database (no tables) on the backend of the test's parameter."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    server = request.getfixturevalue("postgres_server")
    return server.lease(request, "cj_empty")


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory) -> dict[str, str]:
    return {}


def _truncate_all(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path, tmp_path_factory, _migrated_templates) -> str:
    """URL of a migrated, empty-of-rows database on SQLite and on PostgreSQL."""
    backend = request.param
    if backend == "sqlite":
        template = _migrated_templates.get("sqlite")
        if template is None:
            path = tmp_path_factory.mktemp("template") / "template.sqlite3"
            engine = get_engine(f"sqlite:///{path}")
            upgrade(engine)
            engine.dispose()
            template = _migrated_templates["sqlite"] = str(path)
        target = tmp_path / "cj.sqlite3"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    server = request.getfixturevalue("postgres_server")
    url = _migrated_templates.get("postgresql")
    if url is None:
        url = _migrated_templates["postgresql"] = server.create_database()
        engine = get_engine(url)
        upgrade(engine)
        engine.dispose()
    engine = create_engine(url)
    _truncate_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    """A migrated engine (SQLite file or PostgreSQL database), rows emptied before the test."""
    eng = get_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def backend(engine) -> str:
    return engine.dialect.name


#: Files of the longest tests (notebook kernels, subprocesses, whole batches), started right
#: after the wheel test so that `pytest -n N` does not end with one worker running them alone.
LONG_FIRST = frozenset(
    {
        "test_pipeline.py",
        "test_pipeline_import.py",
        "test_batch_design.py",
        "test_llm_batch.py",
        "test_resume.py",
        "test_runner_workers.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The wheel test takes longest; run it first, then the files above, then the rest.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("wheel") is None,
            item.path.name not in LONG_FIRST,
        )
    )
