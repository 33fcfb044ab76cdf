"""Database access: engines, Alembic upgrades and transactional session scopes.

The schema is created only by the Alembic migrations shipped in ``cjlib/db/migrations``.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, exc, inspect, make_url, text
from sqlalchemy.orm import Session

from cjlib import config
from cjlib.errors import DatabaseURLError, UsageError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


#: Views the migrations create, each with the revision whose module holds its SQL; ``upgrade``
#: recreates one that is missing although ``alembic_version`` says head.
CJ_VIEWS: dict[str, str] = {"cj_batch_health": "0003"}

SchemaKind = Literal["empty", "cj", "foreign"]


def _cj_tables() -> frozenset[str]:
    from cjlib.db.models import Base  # the models import nothing from here, but keep it lazy

    return frozenset(Base.metadata.tables)


def _sqlite_user_objects(cursor: sqlite3.Cursor) -> set[str]:
    rows = cursor.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite~_%' ESCAPE '~'"
    )
    return {row[0] for row in rows}


def _sqlite_pragmas(readonly: bool):
    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if readonly:
                cursor.execute("PRAGMA query_only=ON")
                return
            objects = _sqlite_user_objects(cursor)
            # WAL lets readers (notebooks, `cj health`) run beside the writer, and NORMAL sync
            # keeps a per-callback commit cheap. The journal mode is stored in the file, so it
            # is set only on a cj database (or a new, empty one): a foreign file stays as it was.
            if not objects or objects & _cj_tables():
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return on_connect


def _postgres_read_only(dbapi_connection, _record: object) -> None:
    # Belt and braces for read-only commands: the server refuses any write in this session.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


# Greedy up to the last "@": masking too much is harmless, leaking part of a password is not.
_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@]*@")


def safe_url(url: str | URL) -> str:
    """``url`` with any password masked, for messages and logs (also when it does not parse)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (exc.ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", url)


def _unparsable(resolved: str) -> DatabaseURLError:
    shown = safe_url(resolved)
    try:
        # Split the masked text: a password with a stray "/" must not pass for a port.
        parts = urlsplit(shown)
    except ValueError:
        return DatabaseURLError(
            f"database URL {shown!r} has an invalid host: write an IPv6 address in brackets, "
            "e.g. postgresql+psycopg://user@[::1]:5432/dbname"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        return _bad_port(shown, port)
    return DatabaseURLError(
        f"cannot parse database URL {shown!r}: use e.g. sqlite:///data/cj.sqlite3 "
        "or postgresql+psycopg://user@host:5432/dbname"
    )


def _bad_port(shown: str, port: object) -> DatabaseURLError:
    return DatabaseURLError(
        f"database URL {shown!r} has an invalid port {str(port)!r}: use a number from 1 to "
        "65535, e.g. postgresql+psycopg://user@host:5432/dbname"
    )


def parse_database_url(url: str | None = None) -> URL:
    """Resolve ``url`` (or ``CJ_DATABASE_URL``, or the embedded SQLite file) and parse it.

    An explicitly empty ``url`` is an error, not the default. A SQLite path starting with
    ``~`` is expanded once here, so the folder created and the file opened are the same.

    Raises
    ------
    DatabaseURLError
        The URL is empty or cannot be parsed (bad port, unbalanced IPv6 brackets, no
        scheme); the message shows what a valid one looks like.
    """
    if url is not None and not url.strip():
        raise DatabaseURLError(
            "the database URL is empty: give one such as sqlite:///data/cj.sqlite3, or leave "
            "--database-url out to use CJ_DATABASE_URL or data/cj.sqlite3"
        )
    resolved = config.resolve_database_url(url)
    try:
        parsed = make_url(resolved)
    except (exc.ArgumentError, ValueError) as err:
        raise _unparsable(resolved) from err
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise _bad_port(safe_url(parsed), parsed.port)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database.startswith("~"):
        try:
            parsed = parsed.set(database=str(Path(database).expanduser()))
        except RuntimeError as err:
            raise DatabaseURLError(
                f"cannot expand ~ in {safe_url(parsed)}: no home folder; write the full path"
            ) from err
    return parsed


def is_memory_database(url: URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database (gone when its connection closes)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or "mode=memory" in database
        or url.query.get("mode") == "memory"
    )


def _sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for in-memory and ``file:`` URI forms)."""
    database = url.database or ""
    if is_memory_database(url) or database.startswith("file:"):
        return None
    return Path(database)


def _require_existing_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise DatabaseURLError(
            f"database file {path} does not exist: check --database-url or CJ_DATABASE_URL, "
            "or run `cj db upgrade` to create it"
        )
    if not path.is_file():
        raise DatabaseURLError(
            f"{shown} names {path}, which is not a file: point it at a SQLite database file"
        )


def _prepare_writable_file(path: Path, shown: str) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatabaseURLError(
            f"cannot create the folder {folder} for {shown}: {err.strerror}; check "
            "--database-url or CJ_DATABASE_URL"
        ) from err
    if path.exists() and not path.is_file():
        raise DatabaseURLError(
            f"{shown} names {path}, which is not a file: point it at a SQLite database file"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise DatabaseURLError(
            f"database file {path} is read-only: make it writable or copy it; read-only "
            "commands (cj db current, cj health, cj batch inspect) can still read it"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseURLError(
            f"folder {folder} is not writable, and SQLite keeps its journal next to {path.name}: "
            "make the folder writable or move the database"
        )


def _read_only_connector(path: Path):
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        # SQLite's own read-only mode: it cannot create the file or change it.
        return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)

    return connect


def get_engine(
    url: str | None = None,
    *,
    check: bool = True,
    readonly: bool = False,
    allow_memory: bool = False,
) -> Engine:
    """Create an engine for ``url`` (or ``CJ_DATABASE_URL``, or the embedded SQLite file).

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/cj``.
    check : bool
        Open one connection now so an unusable URL fails here with a clear message.
    readonly : bool
        For commands that only read (``cj db current``, ``cj health``, ``cj batch inspect``):
        a SQLite file must exist and is opened in SQLite's read-only mode (no folder, file,
        journal-mode change); a PostgreSQL session is set to READ ONLY.
    allow_memory : bool
        Accept an in-memory SQLite database (``sqlite://``). cj commands refuse it: what
        they write would vanish when they exit.

    Raises
    ------
    DatabaseURLError
        The URL is empty, cannot be parsed, names an unknown driver, an in-memory database,
        a missing file (``readonly``), a read-only file (not ``readonly``), or the server
        cannot be reached.
    """
    parsed = parse_database_url(url)
    shown = safe_url(parsed)
    kwargs: dict = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if is_memory_database(parsed) and not allow_memory:
            raise DatabaseURLError(
                f"{shown} is an in-memory database, which vanishes when the command ends: "
                "give a file, e.g. sqlite:///data/cj.sqlite3"
            )
        path = _sqlite_path(parsed)
        if path is not None and readonly:
            _require_existing_file(path, shown)
            kwargs["creator"] = _read_only_connector(path)
        else:
            if path is not None:
                _prepare_writable_file(path, shown)
            kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(parsed, **kwargs)
    except (exc.NoSuchModuleError, exc.ArgumentError, ImportError) as err:
        raise DatabaseURLError(
            f"unsupported database URL {shown}: {err}; use sqlite:/// or postgresql+psycopg://"
        ) from err
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas(readonly))
    elif readonly and engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_read_only)
    if check:
        try:
            with engine.connect():
                pass
        except exc.DBAPIError as err:
            first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            engine.dispose()
            raise DatabaseURLError(
                f"cannot connect to {shown}: {first}; check --database-url or CJ_DATABASE_URL"
            ) from err
    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def known_revisions() -> frozenset[str]:
    """Every revision shipped with this version of cjlib."""
    return frozenset(script.revision for script in _script().walk_revisions())


@dataclass(frozen=True)
class SchemaStatus:
    """What a database holds, judged against this cjlib's migrations.

    Attributes
    ----------
    url : str
        The database URL with the password masked.
    kind : {"empty", "cj", "foreign"}
        ``empty``: no tables or views; ``cj``: a cj table or a cj revision in
        ``alembic_version``; ``foreign``: tables that are not cj's.
    revision, head : str or None
        The revision in ``alembic_version`` and the newest one shipped.
    known_revision : bool
        ``revision`` is one this cjlib ships.
    objects : tuple of str
        The tables and views present (sorted).
    missing_tables, missing_views : tuple of str
        cj tables and views absent from a database whose revision is head.
    """

    url: str
    kind: SchemaKind
    revision: str | None
    head: str | None
    known_revision: bool
    objects: tuple[str, ...]
    missing_tables: tuple[str, ...] = ()
    missing_views: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """A cj database at head with every table and view present."""
        return (
            self.kind == "cj"
            and self.revision == self.head
            and not self.missing_tables
            and not self.missing_views
        )

    def describe(self) -> str:
        """One line saying what the database is and, when it is not usable, what to do."""
        where = f"database {self.url}"
        if self.kind == "empty":
            return f"{where} is empty (no cj schema): run `cj db upgrade` to create it"
        if self.kind == "foreign":
            shown = ", ".join(self.objects[:5]) + (", …" if len(self.objects) > 5 else "")
            return (
                f"{where} is not a cj database (it holds {shown}): check --database-url or "
                "CJ_DATABASE_URL"
            )
        if self.revision is None:
            return (
                f"{where} has cj tables but no schema revision in alembic_version: restore it "
                "from a backup or, on a development database, run `cj db reset --yes`"
            )
        if not self.known_revision:
            return (
                f"{where} is at schema revision {self.revision} that this cjlib does not know "
                f"(written by a newer cjlib?): upgrade cjlib; it knows revisions up to {self.head}"
            )
        if self.revision != self.head:
            return (
                f"{where} is at schema revision {self.revision}; this cjlib needs {self.head}: "
                "run `cj db upgrade` first"
            )
        if self.missing_tables:
            return (
                f"{where}: table {', '.join(self.missing_tables)} is missing: the schema is "
                "damaged; restore it from a backup or, on a development database, run "
                "`cj db reset --yes`"
            )
        if self.missing_views:
            return f"{where}: view {', '.join(self.missing_views)} is missing: run `cj db upgrade`"
        return f"{where} is at {self.head} (up to date)"


def _revision_of(connection: Connection, tables: set[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    return MigrationContext.configure(connection).get_current_revision()


def schema_status(engine: Engine) -> SchemaStatus:
    """Classify the database behind ``engine`` (reads only; works on a read-only engine).

    Returns
    -------
    SchemaStatus
        Its kind (empty, cj, foreign), revision, and the cj tables and views missing at head.
    """
    with engine.connect() as connection:
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        views = set(inspector.get_view_names())
        revision = _revision_of(connection, tables)
    head, known = head_revision(), known_revisions()
    cj_tables = _cj_tables()
    is_known = revision in known
    if not (tables - {"alembic_version"}) and not views and revision is None:
        kind: SchemaKind = "empty"
    elif is_known or tables & cj_tables:
        kind = "cj"
    else:
        kind = "foreign"
    at_head = kind == "cj" and revision == head
    return SchemaStatus(
        url=safe_url(engine.url),
        kind=kind,
        revision=revision,
        head=head,
        known_revision=is_known,
        objects=tuple(sorted(tables | views)),
        missing_tables=tuple(sorted(cj_tables - tables)) if at_head else (),
        missing_views=tuple(sorted(set(CJ_VIEWS) - views)) if at_head else (),
    )


def _restore_missing_views(connection: Connection) -> list[str]:
    # A view dropped by hand leaves alembic_version at head, so Alembic would do nothing;
    # recreate it from the very SQL of the migration that made it.
    present = set(inspect(connection).get_view_names())
    script = _script()
    restored = []
    for view, revision in CJ_VIEWS.items():
        if view in present:
            continue
        module = script.get_revision(revision).module
        connection.execute(text(module._view_sql(connection.dialect.name)))
        log.warning("recreated the missing view %s from migration %s", view, revision)
        restored.append(view)
    return restored


def _check_upgradable(status: SchemaStatus, force_foreign: bool) -> None:
    if status.kind == "foreign":
        if status.revision is not None:
            raise UsageError(
                f"database {status.url} is not a cj database: its alembic_version is at "
                f"{status.revision}, a revision of another project; use another database"
            )
        if not force_foreign:
            raise UsageError(
                f"database {status.url} is not a cj database (it holds "
                f"{', '.join(status.objects[:5])}): refusing to add cj tables to it; check "
                "--database-url or pass --force-foreign"
            )
    if status.kind == "cj" and status.revision is not None and not status.known_revision:
        raise UsageError(status.describe())


def upgrade(
    engine_or_url: Engine | str | None = None,
    revision: str = "head",
    *,
    force_foreign: bool = False,
) -> str | None:
    """Migrate the database to ``revision`` (head by default) and return the new revision.

    At head, a cj view that is missing (dropped by hand) is recreated from its migration.

    Parameters
    ----------
    engine_or_url : Engine, str or None
    revision : str
    force_foreign : bool
        Add cj tables to a database that already holds other tables (refused otherwise).

    Raises
    ------
    UsageError
        The database is not a cj database (and ``force_foreign`` is false), belongs to
        another Alembic project, is at a revision this cjlib does not know, or a cj table is
        missing at head.
    """
    engine = engine_or_url if isinstance(engine_or_url, Engine) else get_engine(engine_or_url)
    _check_upgradable(schema_status(engine), force_foreign)
    cfg = _alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        if revision == "head":
            _restore_missing_views(connection)
    status = schema_status(engine)
    if status.missing_tables:
        raise UsageError(status.describe())
    return status.revision


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: Engine) -> Engine:
    """Return ``engine`` if it is a cj database at this cjlib's head with every view present.

    Raises
    ------
    DatabaseURLError
        The database is empty, not a cj database, at another (or an unknown) revision, or
        misses a cj table or view; the message says which and what to run.
    """
    status = schema_status(engine)
    if not status.up_to_date:
        raise DatabaseURLError(status.describe())
    return engine


def head_revision() -> str | None:
    """The newest revision shipped with this version of cjlib."""
    return _script().get_current_head()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises.

    SQLAlchemy's documented form, ``with Session(engine) as session, session.begin():``;
    objects stay readable after the commit (``expire_on_commit=False``) so callers can return
    them.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
