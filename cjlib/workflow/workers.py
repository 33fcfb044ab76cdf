"""Workers on a batch: registration, heartbeats, liveness, and claims on pending pairs.

A worker is one process running a batch's waves (``cj batch execute`` or ``cj batch resume``).
It registers in ``cj_batch_workers``, heartbeats while alive, and claims the pending pairs it
sends to its judge (``cj_comparison_pairs.claimed_by``). The database is the shared queue:

- a pair with a result is never sent again;
- a pair claimed by a live worker is left to it;
- a pair claimed by a dead worker (finished, silent past ``stale_after``, or a process that no
  longer exists on this host) is claimed again and re-sent with the same correlation id, so a
  late answer to the original request is still recognised.

On PostgreSQL claims take rows with ``FOR UPDATE SKIP LOCKED``, so several workers on several
machines share a batch without sending a pair twice. SQLite has no row locks: one live worker
per batch, and a second one is refused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from cjlib.db import session_scope
from cjlib.db.models import CJBatchState, CJBatchWorker, CJComparisonPair, utc_now
from cjlib.errors import UsageError

log = logging.getLogger(__name__)

#: Seconds between heartbeats of a live worker.
HEARTBEAT_SECONDS = 5.0
#: A worker silent for longer than this is dead (several missed heartbeats).
STALE_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class Worker:
    """This process's registration on one batch."""

    worker_id: str
    cj_batch_id: int
    hostname: str
    pid: int


@dataclass(frozen=True)
class ClaimedPair:
    """A pending pair this worker now owes a result for."""

    pair_id: int
    request_correlation_id: str
    essay_a_id: str
    essay_b_id: str
    wave: int | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def worker_alive(row: CJBatchWorker, now: datetime, stale_after: float) -> bool:
    """Whether a registered worker still counts as working on its batch."""
    if row.finished_at is not None:
        return False
    if row.heartbeat_at < now - timedelta(seconds=stale_after):
        return False
    if row.hostname == socket.gethostname() and row.pid != os.getpid():
        return _pid_alive(row.pid)
    return True


def live_workers(
    session: Session, batch_id: int, *, stale_after: float = STALE_AFTER_SECONDS
) -> list[CJBatchWorker]:
    """The batch's workers that are alive now."""
    now = utc_now()
    rows = session.scalars(select(CJBatchWorker).where(CJBatchWorker.cj_batch_id == batch_id))
    return [row for row in rows if worker_alive(row, now, stale_after)]


def register_worker(
    engine: Engine, batch_id: int, *, stale_after: float = STALE_AFTER_SECONDS
) -> Worker:
    """Register this process as a worker on ``batch_id``.

    Raises
    ------
    UsageError
        SQLite, and another live worker is already running this batch.
    """
    worker = Worker(
        worker_id=f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}",
        cj_batch_id=batch_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
    )
    with session_scope(engine) as session:
        if session.get_bind().dialect.name == "sqlite":
            # Serialise registrations, then refuse a second live worker.
            session.execute(
                update(CJBatchState)
                .where(CJBatchState.batch_id == batch_id)
                .values(batch_id=CJBatchState.batch_id)
            )
            others = live_workers(session, batch_id, stale_after=stale_after)
            if others:
                other = others[0]
                raise UsageError(
                    f"batch {batch_id} is being run by worker {other.worker_id} (pid "
                    f"{other.pid} on {other.hostname}); SQLite allows one worker per batch: "
                    "wait for it, or use PostgreSQL to run several workers"
                )
        now = utc_now()
        session.add(
            CJBatchWorker(
                cj_batch_id=batch_id,
                worker_id=worker.worker_id,
                hostname=worker.hostname,
                pid=worker.pid,
                started_at=now,
                heartbeat_at=now,
            )
        )
    return worker


def heartbeat(engine: Engine, worker: Worker) -> None:
    """Record that ``worker`` is alive (its row and the batch's last activity)."""
    now = utc_now()
    with session_scope(engine) as session:
        session.execute(
            update(CJBatchWorker)
            .where(CJBatchWorker.worker_id == worker.worker_id)
            .values(heartbeat_at=now)
        )
        session.execute(
            update(CJBatchState)
            .where(CJBatchState.batch_id == worker.cj_batch_id)
            .values(last_activity_at=now)
        )


def finish_worker(engine: Engine, worker: Worker) -> None:
    """Mark ``worker`` finished: its unanswered claims may be taken over at once."""
    with session_scope(engine) as session:
        session.execute(
            update(CJBatchWorker)
            .where(CJBatchWorker.worker_id == worker.worker_id)
            .values(finished_at=utc_now())
        )


class Heartbeat:
    """Heartbeats ``worker`` from a background thread while the ``with`` block runs."""

    def __init__(self, engine: Engine, worker: Worker, interval: float = HEARTBEAT_SECONDS):
        self.engine, self.worker, self.interval = engine, worker, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cj-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                heartbeat(self.engine, self.worker)
            except Exception:  # a missed beat is not fatal; the next one may pass
                log.warning("heartbeat of %s failed", self.worker.worker_id, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        finish_worker(self.engine, self.worker)


def claim_pairs(
    session: Session,
    worker: Worker,
    limit: int,
    *,
    stale_after: float = STALE_AFTER_SECONDS,
) -> list[ClaimedPair]:
    """Claim up to ``limit`` pending pairs of the worker's batch, in the caller's transaction.

    Pending pairs without a claim, or claimed by a dead worker, are taken; on PostgreSQL rows
    another transaction is claiming are skipped (``FOR UPDATE SKIP LOCKED``).
    """
    batch_id = worker.cj_batch_id
    now = utc_now()
    dead = [
        row.worker_id
        for row in session.scalars(
            select(CJBatchWorker).where(
                CJBatchWorker.cj_batch_id == batch_id,
                CJBatchWorker.worker_id != worker.worker_id,
            )
        )
        if not worker_alive(row, now, stale_after)
    ]
    claimable = or_(CJComparisonPair.claimed_by.is_(None), CJComparisonPair.claimed_by.in_(dead))
    query = (
        select(
            CJComparisonPair.id,
            CJComparisonPair.request_correlation_id,
            CJComparisonPair.essay_a_els_id,
            CJComparisonPair.essay_b_els_id,
            CJComparisonPair.processing_metadata,
        )
        .where(
            CJComparisonPair.cj_batch_id == batch_id,
            CJComparisonPair.winner.is_(None),
            claimable if dead else CJComparisonPair.claimed_by.is_(None),
        )
        .order_by(CJComparisonPair.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=CJComparisonPair)
    rows = session.execute(query).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 1000):
        session.execute(
            update(CJComparisonPair)
            .where(CJComparisonPair.id.in_(ids[start : start + 1000]))
            .values(claimed_by=worker.worker_id)
            .execution_options(synchronize_session=False)
        )
    return [
        ClaimedPair(
            pair_id=row.id,
            request_correlation_id=row.request_correlation_id,
            essay_a_id=row.essay_a_els_id,
            essay_b_id=row.essay_b_els_id,
            wave=(row.processing_metadata or {}).get("wave"),
        )
        for row in rows
    ]


def pending_claimed_by_others(
    session: Session, worker: Worker, *, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Pending pairs live workers other than ``worker`` still owe a result for."""
    others = [
        row.worker_id
        for row in live_workers(session, worker.cj_batch_id, stale_after=stale_after)
        if row.worker_id != worker.worker_id
    ]
    if not others:
        return 0
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count()).where(
                CJComparisonPair.cj_batch_id == worker.cj_batch_id,
                CJComparisonPair.winner.is_(None),
                CJComparisonPair.claimed_by.in_(others),
            )
        )
        or 0
    )
