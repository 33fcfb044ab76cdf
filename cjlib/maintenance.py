"""Destructive maintenance for development and test databases: reset, batch and assignment cleanup.

Every function here first calls :func:`ensure_disposable_database`, which refuses anything but
a local database outside protected environments; remote or production databases are never
touched. Production remediation is out of scope (see ``docs/runbook.md``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, MetaData, delete, inspect, select, text
from sqlalchemy.engine import URL

from cjlib import config
from cjlib.db import parse_database_url, session_scope, upgrade
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

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _parse(url_or_engine: str | URL | Engine) -> URL:
    if isinstance(url_or_engine, Engine):
        return url_or_engine.url
    if isinstance(url_or_engine, URL):
        return url_or_engine
    return parse_database_url(url_or_engine)


def _postgres_hosts(url: URL) -> list[str]:
    # libpq connects to every host it is given: the URL host, ?host=... (psycopg accepts a
    # comma list or repeats) and ?hostaddr=...; with none of them it falls back to $PGHOST,
    # then to the local unix socket. All of them must be local.
    hosts = [url.host] if url.host else []
    for key in ("host", "hostaddr"):
        value = url.query.get(key)
        values = value if isinstance(value, tuple) else (value,) if value else ()
        hosts += [h.strip() for v in values for h in v.split(",")]
    if not hosts:
        hosts = [h.strip() for h in os.environ.get("PGHOST", "").split(",")]
    return hosts


def _is_local_host(host: str) -> bool:
    host = unquote(host)
    return host == "" or host.startswith("/") or host.lower() in LOCAL_HOSTS


def ensure_disposable_database(url_or_engine: str | URL | Engine | None) -> None:
    """Refuse unless the database is safe to wipe: local, and not a protected environment.

    Allowed: a SQLite file or ``:memory:``; PostgreSQL on ``localhost``, ``127.0.0.1``, ``::1``
    or a unix socket (empty host, or a host that is a path starting with ``/``). Refused:
    any other host or backend, and any database while ``CJ_ENVIRONMENT`` is ``production``,
    ``prod`` or ``staging``. Nothing is connected to or changed.

    Parameters
    ----------
    url_or_engine : str, sqlalchemy URL, Engine or None
        None means the configured default (``CJ_DATABASE_URL`` or the embedded SQLite file).

    Raises
    ------
    GuardRefused
        The database is not disposable; the message says why.
    DatabaseURLError
        The URL cannot be parsed.
    """
    environment = config.environment()
    url = _parse(url_or_engine)
    shown = url.render_as_string(hide_password=True)
    if environment in config.PROTECTED_ENVIRONMENTS:
        raise GuardRefused(
            f"refusing to modify {shown}: CJ_ENVIRONMENT={environment} is protected; "
            "destructive commands run only in development or test"
        )
    backend = url.get_backend_name()
    if backend == "sqlite":
        return
    if backend == "postgresql":
        remote = [h for h in _postgres_hosts(url) if not _is_local_host(h)]
        if not remote:
            return
        raise GuardRefused(
            f"refusing to modify {shown}: host {remote[0]} is not local; destructive commands "
            "run only on localhost, 127.0.0.1, ::1 or a unix socket"
        )
    raise GuardRefused(
        f"refusing to modify {shown}: backend {backend} is not a local SQLite or PostgreSQL "
        "database"
    )


def reset_database(engine: Engine) -> str | None:
    """Drop every view and table (``alembic_version`` too), then migrate to head.

    Returns
    -------
    str or None
        The revision the database is at afterwards.

    Raises
    ------
    GuardRefused
        The database is not disposable (see :func:`ensure_disposable_database`).
    """
    ensure_disposable_database(engine)
    with engine.begin() as connection:
        preparer = connection.dialect.identifier_preparer
        cascade = " CASCADE" if connection.dialect.name == "postgresql" else ""
        # Views first: they depend on the tables, and SQLite would keep them dangling.
        for view in inspect(connection).get_view_names():
            connection.execute(text(f"DROP VIEW IF EXISTS {preparer.quote(view)}{cascade}"))
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    log.info("dropped all tables of %s", engine.url.render_as_string(hide_password=True))
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


def cleanup_batch(engine: Engine, cj_batch_id: int) -> CleanupSummary:
    """Delete one batch and every row that belongs to it, in one transaction.

    Removes its upload, state, transitions, processed essays, comparison pairs, grade
    projections and outbox events (``aggregate_id = str(cj_batch_id)``). Content in
    ``cj_content`` is shared by hash and stays.

    Raises
    ------
    GuardRefused
        The database is not disposable.
    NotFoundError
        No batch has this id.
    """
    ensure_disposable_database(engine)
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
    engine: Engine, assignment_id: str, *, keep_anchors: bool = True
) -> CleanupSummary:
    """Delete every batch of an assignment (and, optionally, its anchors), in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    assignment_id : str
    keep_anchors : bool
        False also deletes the assignment's ``anchor_essay_references`` and
        ``assessment_instructions``.

    Returns
    -------
    CleanupSummary
        Zero counts when the assignment has nothing to delete (running it twice is safe).

    Raises
    ------
    GuardRefused
        The database is not disposable.
    """
    ensure_disposable_database(engine)
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
