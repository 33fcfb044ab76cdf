"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL tests connect to ``CJ_TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), create databases with unique names
for this test session and drop them at the end. When the server cannot be reached they are
skipped with a one-line reason, unless ``CJ_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
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
    """Creates and drops throw-away databases on the test PostgreSQL server."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self._admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create_database(self, prefix: str = "cj_test") -> str:
        name = f"{prefix}_{_SESSION_TAG}_{len(self.created)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self._admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


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
    return server.create_database("cj_empty")


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The wheel test takes longest; run it first so `pytest -n 2` does not end waiting for it.
    items.sort(key=lambda item: item.get_closest_marker("wheel") is None)
