"""Destructive maintenance for development and test databases: reset, batch and assignment cleanup.

Every function here first calls :func:`ensure_disposable_database`, which fails closed: it
refuses unless ``CJ_ENVIRONMENT`` names a development or test environment, every host the
connection could reach is local, and the database is a cj database (or empty). Remote or
production databases are never touched. Production remediation is out of scope (see
``docs/runbook.md``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, MetaData, delete, inspect, select, text
from sqlalchemy.engine import URL

from cjlib import config
from cjlib.db import (
    SchemaStatus,
    get_engine,
    is_memory_database,
    parse_database_url,
    safe_url,
    schema_status,
    session_scope,
    upgrade,
)
from cjlib.db.models import (
    AnchorEssayReference,
    AssessmentInstruction,
    CJBatchState,
    CJBatchStateTransition,
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    EventOutbox,
    GradeProjection,
)
from cjlib.errors import GuardRefused, NotFoundError
from cjlib.validation import integer_range

log = logging.getLogger(__name__)

LOCAL_HOSTNAMES = frozenset({"localhost"})
SQLITE_HEADER = b"SQLite format 3\x00"
#: Where libpq may look for the system-wide service file when PGSYSCONFDIR is unset (its
#: compiled-in default differs between builds, so every usual place is read).
SYSTEM_SERVICE_FILES = (
    Path("/etc/pg_service.conf"),
    Path("/etc/postgresql-common/pg_service.conf"),
    Path("/etc/sysconfig/pgsql/pg_service.conf"),
    Path("/usr/local/pgsql/etc/pg_service.conf"),
    Path("/usr/local/etc/pg_service.conf"),
)


def _parse(url_or_engine: str | URL | Engine | None) -> URL:
    if isinstance(url_or_engine, Engine):
        return url_or_engine.url
    if isinstance(url_or_engine, URL):
        return url_or_engine
    return parse_database_url(url_or_engine)


def _refuse(url: URL, reason: str) -> GuardRefused:
    return GuardRefused(f"refusing to modify {safe_url(url)}: {reason}")


# --- the environment ----------------------------------------------------------------------


def _check_environment(url: URL) -> None:
    if config.is_disposable_environment():
        return
    raw = os.environ.get("CJ_ENVIRONMENT", "").strip(" \t\r\n")
    raise _refuse(
        url,
        f"CJ_ENVIRONMENT={raw!a} is not a development or test environment; destructive "
        f"commands run only when it is one of {', '.join(sorted(config.DISPOSABLE_ENVIRONMENTS))}",
    )


# --- where a PostgreSQL connection really goes --------------------------------------------


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` is an IP literal on the loopback network (``127.0.0.0/8``, ``::1``).

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) count as their IPv4 address.
    """
    candidate = address.strip().strip("[]").split("%", 1)[0].split("/", 1)[0]
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _is_local_host(host: str) -> bool:
    # libpq reads a host starting with "/" as a unix-socket folder and one starting with "@"
    # as an abstract unix socket; both stay on this machine.
    host = unquote(host).strip()
    return (
        host == ""
        or host.startswith(("/", "@"))
        or host.lower() in LOCAL_HOSTNAMES
        or is_loopback_address(host)
    )


def _is_local_hostaddr(hostaddr: str) -> bool:
    hostaddr = unquote(hostaddr).strip()
    return hostaddr == "" or is_loopback_address(hostaddr)


def _split(value: str | tuple[str, ...] | None) -> list[str]:
    values = value if isinstance(value, tuple) else (value,) if value else ()
    return [part.strip() for item in values for part in item.split(",")]


def _read_service_file(path: Path) -> dict[str, dict[str, str]]:
    """The sections of a libpq service file (``[name]`` then ``key=value`` lines)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def _service_files(url: URL, environ: Mapping[str, str]) -> list[Path]:
    # libpq reads the user file (PGSERVICEFILE, else ~/.pg_service.conf) and then the system
    # file; every candidate is read, so a service defined in any of them is seen.
    user = url.query.get("servicefile") or environ.get("PGSERVICEFILE")
    files = [Path(str(user))] if user else [Path.home() / ".pg_service.conf"]
    sysconf = environ.get("PGSYSCONFDIR")
    files += [Path(sysconf) / "pg_service.conf"] if sysconf else list(SYSTEM_SERVICE_FILES)
    return files


def _service_targets(
    url: URL, environ: Mapping[str, str]
) -> tuple[list[tuple[str, str, str]], str | None]:
    name = url.query.get("service") or environ.get("PGSERVICE")
    if not name:
        return [], None
    name = str(name)
    found: list[tuple[str, str, str]] = []
    defined = False
    for path in _service_files(url, environ):
        try:
            sections = _read_service_file(path)
        except OSError:
            continue
        if name not in sections:
            continue
        defined = True
        for key in ("host", "hostaddr"):
            found += [
                (key, h, f"service {name} in {path}") for h in _split(sections[name].get(key))
            ]
    if not defined:
        return [], name
    return found, None


def postgres_targets(
    url: URL, environ: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Every host and host address a libpq connection for ``url`` could use.

    libpq takes ``host`` and ``hostaddr`` from the URL (also as ``?host=`` / ``?hostaddr=``,
    comma lists included), else from the service named by ``?service=`` or ``PGSERVICE``
    (service files: ``?servicefile=``/``PGSERVICEFILE`` or ``~/.pg_service.conf``, then the
    system file), else from ``PGHOST``/``PGHOSTADDR``. Which source wins depends on which
    parameters each one sets, so all of them are returned: the guard needs every one local.

    Returns
    -------
    list of (kind, value, source)
        ``kind`` is ``host`` or ``hostaddr``; ``source`` says where the value came from.

    Raises
    ------
    GuardRefused
        A service is named but defined in no service file this process can read, or the
        database name is itself a connection string.
    """
    environ = os.environ if environ is None else environ
    database = url.database or ""
    if "=" in database or database.startswith(("postgres://", "postgresql://")):
        raise _refuse(url, "its database name is a connection string; give a plain name")
    targets = [("host", url.host, "the URL")] if url.host else []
    for key in ("host", "hostaddr"):
        targets += [(key, h, f"?{key}= in the URL") for h in _split(url.query.get(key))]
    service, undefined = _service_targets(url, environ)
    if undefined is not None:
        raise _refuse(
            url,
            f"service {undefined} is not defined in any service file readable here, so its "
            "host is unknown; give the host in the URL",
        )
    targets += service
    for key, variable in (("host", "PGHOST"), ("hostaddr", "PGHOSTADDR")):
        targets += [(key, h, variable) for h in _split(environ.get(variable))]
    return targets


def _check_postgres_targets(url: URL) -> None:
    for kind, value, source in postgres_targets(url):
        local = _is_local_host(value) if kind == "host" else _is_local_hostaddr(value)
        if not local:
            raise _refuse(
                url,
                f"host {value} ({kind} from {source}) is not local; destructive commands run only "
                "on localhost, 127.0.0.1, ::1 or a unix socket",
            )


def server_address(engine: Engine) -> str | None:
    """The address the PostgreSQL server accepted this connection on (None: unix socket)."""
    with engine.connect() as connection:
        value = connection.execute(text("SELECT inet_server_addr()")).scalar()
    return None if value is None else str(value)


def _check_server_is_local(engine: Engine) -> None:
    # Whatever the URL, service files and PG* variables said, ask the server where it is.
    address = server_address(engine)
    if address is not None and not is_loopback_address(address):
        raise _refuse(
            engine.url,
            f"the server answered on {address}, which is not a loopback address; destructive "
            "commands run only on a local server",
        )


# --- what the database holds --------------------------------------------------------------


def _foreign(url: URL, status: SchemaStatus) -> GuardRefused:
    shown = ", ".join(status.objects[:5]) + (", …" if len(status.objects) > 5 else "")
    return _refuse(
        url,
        f"it is not a cj database (it holds {shown}); pass --force-foreign to drop it anyway",
    )


def _sqlite_status(url: URL) -> SchemaStatus | None:
    path = Path(url.database or "")
    if not path.exists():
        return None  # nothing to lose; a reset creates it
    if not path.is_file():
        raise _refuse(url, f"{path} is not a file")
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise _refuse(url, f"{path} is not a SQLite database file")
    engine = get_engine(url.render_as_string(hide_password=False), readonly=True)
    try:
        return schema_status(engine)
    finally:
        engine.dispose()


def _check_sqlite(url: URL, force_foreign: bool) -> None:
    if is_memory_database(url):
        return
    if (url.database or "").startswith("file:"):
        raise _refuse(url, "a file: URI may name any file; give the database as a plain path")
    status = _sqlite_status(url)
    if status is not None and status.kind == "foreign" and not force_foreign:
        raise _foreign(url, status)


def ensure_disposable_database(
    url_or_engine: str | URL | Engine | None, *, force_foreign: bool = False
) -> None:
    """Refuse unless the database is safe to wipe; fails closed.

    Accepted only when all of these hold:

    1. ``CJ_ENVIRONMENT`` is unset (``development``) or one of ``development``, ``dev``,
       ``test``, ``testing``, ``local`` (see :func:`cjlib.config.is_disposable_environment`).
    2. SQLite: an in-memory database, a missing file, or a SQLite file that is empty or a
       cj database (a foreign one only with ``force_foreign``). PostgreSQL: every host and
       host address from the URL, its service file entry and ``PGHOST``/``PGHOSTADDR`` is
       ``localhost``, a loopback address or a unix socket (:func:`postgres_targets`); given an
       Engine, the server must also answer ``inet_server_addr()`` with NULL (unix socket) or a
       loopback address, and the database must be empty or a cj database (or
       ``force_foreign``).
    3. Any other backend is refused.

    Given a URL nothing is changed and PostgreSQL is not connected to (a SQLite file is read
    in read-only mode to classify it).

    Parameters
    ----------
    url_or_engine : str, sqlalchemy URL, Engine or None
        None means the configured default (``CJ_DATABASE_URL`` or the embedded SQLite file).
    force_foreign : bool
        Also accept a database that holds tables but is not a cj database.

    Raises
    ------
    GuardRefused
        The database is not disposable; the one-line message says why.
    DatabaseURLError
        The URL cannot be parsed.
    """
    url = _parse(url_or_engine)
    _check_environment(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _check_sqlite(url, force_foreign)
        return
    if backend != "postgresql":
        raise _refuse(url, f"backend {backend} is not a local SQLite or PostgreSQL database")
    _check_postgres_targets(url)
    if isinstance(url_or_engine, Engine):
        _check_server_is_local(url_or_engine)
        status = schema_status(url_or_engine)
        if status.kind == "foreign" and not force_foreign:
            raise _foreign(url, status)


def reset_database(engine: Engine, *, force_foreign: bool = False) -> str | None:
    """Drop every view and table (``alembic_version`` too), then migrate to head.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    force_foreign : bool
        Also reset a database that is not a cj database (``cj db reset --force-foreign``).

    Returns
    -------
    str or None
        The revision the database is at afterwards.

    Raises
    ------
    GuardRefused
        The database is not disposable (see :func:`ensure_disposable_database`).
    """
    ensure_disposable_database(engine, force_foreign=force_foreign)
    with engine.begin() as connection:
        preparer = connection.dialect.identifier_preparer
        cascade = " CASCADE" if connection.dialect.name == "postgresql" else ""
        # Views first: they depend on the tables, and SQLite would keep them dangling.
        for view in inspect(connection).get_view_names():
            connection.execute(text(f"DROP VIEW IF EXISTS {preparer.quote(view)}{cascade}"))
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    log.info("dropped all tables of %s", safe_url(engine.url))
    return upgrade(engine)


@dataclass(frozen=True)
class CleanupSummary:
    """Rows deleted per table by a cleanup, and the batches it removed."""

    cj_batch_ids: tuple[int, ...]
    deleted: dict[str, int] = field(default_factory=dict)
    assignment_id: str | None = None

    @property
    def total(self) -> int:
        """Rows deleted over all tables."""
        return sum(self.deleted.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "assignment_id": self.assignment_id,
            "cj_batch_ids": list(self.cj_batch_ids),
            "deleted": dict(self.deleted),
            "total": self.total,
        }


# Children before parents, so the counts are the rows each table lost (not cascade leftovers).
_BATCH_TABLES = (
    (GradeProjection.__table__, GradeProjection.cj_batch_id),
    (CJComparisonPair.__table__, CJComparisonPair.cj_batch_id),
    (CJProcessedEssay.__table__, CJProcessedEssay.cj_batch_id),
    (CJBatchStateTransition.__table__, CJBatchStateTransition.batch_id),
    (CJBatchState.__table__, CJBatchState.batch_id),
)


def _delete_batches(session: Any, batch_ids: list[int]) -> dict[str, int]:
    deleted: dict[str, int] = {}
    for table, column in _BATCH_TABLES:
        result = session.execute(delete(table).where(column.in_(batch_ids)))
        deleted[table.name] = result.rowcount
    outbox = EventOutbox.__table__
    result = session.execute(
        delete(outbox).where(outbox.c.aggregate_id.in_([str(i) for i in batch_ids]))
    )
    deleted[outbox.name] = result.rowcount
    uploads = CJBatchUpload.__table__
    result = session.execute(delete(uploads).where(uploads.c.id.in_(batch_ids)))
    deleted[uploads.name] = result.rowcount
    return deleted


def cleanup_batch(
    engine: Engine, cj_batch_id: int, *, force_foreign: bool = False
) -> CleanupSummary:
    """Delete one batch and every row that belongs to it, in one transaction.

    Removes its upload, state, transitions, processed essays, comparison pairs, grade
    projections and outbox events (``aggregate_id = str(cj_batch_id)``). Content in
    ``cj_content`` is shared by hash and stays.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    cj_batch_id : int
    force_foreign : bool
        Passed to :func:`ensure_disposable_database`.

    Raises
    ------
    GuardRefused
        The database is not disposable.
    NotFoundError
        No batch has this id.
    """
    ensure_disposable_database(engine, force_foreign=force_foreign)
    low, high = integer_range(CJBatchUpload.id)
    if not low <= cj_batch_id <= high:
        # No row can have it, and PostgreSQL would refuse the comparison with an error.
        raise NotFoundError(f"no CJ batch with id {cj_batch_id}")
    with session_scope(engine) as session:
        exists = session.execute(
            select(CJBatchUpload.id).where(CJBatchUpload.id == cj_batch_id)
        ).scalar_one_or_none()
        if exists is None:
            raise NotFoundError(f"no CJ batch with id {cj_batch_id}")
        deleted = _delete_batches(session, [cj_batch_id])
    log.info("cleaned up batch %d: %s", cj_batch_id, deleted)
    return CleanupSummary(cj_batch_ids=(cj_batch_id,), deleted=deleted)


def cleanup_assignment(
    engine: Engine, assignment_id: str, *, keep_anchors: bool = True, force_foreign: bool = False
) -> CleanupSummary:
    """Delete every batch of an assignment (and, optionally, its anchors), in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    assignment_id : str
    keep_anchors : bool
        False also deletes the assignment's ``anchor_essay_references`` and
        ``assessment_instructions``.
    force_foreign : bool
        Passed to :func:`ensure_disposable_database`.

    Returns
    -------
    CleanupSummary
        Zero counts when the assignment has nothing to delete (running it twice is safe).

    Raises
    ------
    GuardRefused
        The database is not disposable.
    """
    ensure_disposable_database(engine, force_foreign=force_foreign)
    with session_scope(engine) as session:
        batch_ids = list(
            session.scalars(
                select(CJBatchUpload.id)
                .where(CJBatchUpload.assignment_id == assignment_id)
                .order_by(CJBatchUpload.id)
            )
        )
        # With no batches every count is simply 0: same keys, same order.
        deleted = _delete_batches(session, batch_ids)
        if not keep_anchors:
            for table in (AnchorEssayReference.__table__, AssessmentInstruction.__table__):
                result = session.execute(
                    delete(table).where(table.c.assignment_id == assignment_id)
                )
                deleted[table.name] = result.rowcount
    log.info("cleaned up assignment %s: %s", assignment_id, deleted)
    return CleanupSummary(
        cj_batch_ids=tuple(batch_ids), deleted=deleted, assignment_id=assignment_id
    )
