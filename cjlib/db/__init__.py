"""Database access: engines, Alembic upgrades and transactional session scopes.

The schema is created only by the Alembic migrations shipped in ``cjlib/db/migrations``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session

from cjlib import config
from cjlib.errors import DatabaseURLError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL lets readers (notebooks, `cj health`) run beside the writer, and NORMAL sync keeps a
    # per-callback commit cheap; both are durable across application crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def parse_database_url(url: str | None = None) -> URL:
    """Resolve ``url`` (or ``CJ_DATABASE_URL``, or the embedded SQLite file) and parse it.

    Raises
    ------
    DatabaseURLError
        The URL cannot be parsed; the message shows what a valid one looks like.
    """
    resolved = config.resolve_database_url(url)
    try:
        return make_url(resolved)
    except exc.ArgumentError as err:
        raise DatabaseURLError(
            f"cannot parse database URL {resolved!r}: use e.g. sqlite:///data/cj.sqlite3 "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from err


def get_engine(url: str | None = None, *, check: bool = True) -> Engine:
    """Create an engine for ``url`` (or ``CJ_DATABASE_URL``, or the embedded SQLite file).

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/cj``.
    check : bool
        Open one connection now so an unusable URL fails here with a clear message.

    Raises
    ------
    DatabaseURLError
        The URL cannot be parsed, names an unknown driver, or the server cannot be reached.
    """
    parsed = parse_database_url(url)
    resolved = parsed.render_as_string(hide_password=False)
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DatabaseURLError(
                    f"cannot create the folder {folder} for {safe_url(resolved)}: "
                    f"{err.strerror}; check --database-url or CJ_DATABASE_URL"
                ) from err
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(parsed, **kwargs)
    except (exc.NoSuchModuleError, exc.ArgumentError, ImportError) as err:
        raise DatabaseURLError(
            f"unsupported database URL {safe_url(resolved)}: {err}; use sqlite:/// or "
            "postgresql+psycopg://"
        ) from err
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    if check:
        try:
            with engine.connect():
                pass
        except exc.DBAPIError as err:
            first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            engine.dispose()
            raise DatabaseURLError(
                f"cannot connect to {safe_url(resolved)}: {first}; check --database-url "
                "or CJ_DATABASE_URL"
            ) from err
    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine_or_url: Engine | str | None = None, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (head by default) and return the new revision."""
    engine = engine_or_url if isinstance(engine_or_url, Engine) else get_engine(engine_or_url)
    cfg = _alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: Engine) -> Engine:
    """Return ``engine`` if its schema is at this cjlib's head revision.

    Raises
    ------
    DatabaseURLError
        The database is empty or at another revision; the message says to run
        ``cj db upgrade``.
    """
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "empty (no CJ schema)" if current is None else f"at schema revision {current}"
        raise DatabaseURLError(
            f"database {safe_url(engine.url.render_as_string(False))} is {where}; this cjlib "
            f"needs {head}: run `cj db upgrade --database-url …` first"
        )
    return engine


def head_revision() -> str | None:
    """The newest revision shipped with this version of cjlib."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises.

    SQLAlchemy's documented form, ``with Session(engine) as session, session.begin():``;
    objects stay readable after the commit (``expire_on_commit=False``) so callers can return
    them.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
