"""Recording judge results in bulk, with the idempotency of single callbacks.

:func:`cjlib.workflow.callbacks.record_callback` writes one result per transaction: right for a
callback arriving from outside, far too slow for a runner deciding thousands of pairs a second.
:class:`ResultWriter` buffers results and writes them every ``flush_size`` results or
``flush_seconds``, whichever comes first, one transaction per flush under the batch's row lock:

- only pairs still pending are updated (a duplicate or a result for a decided pair changes
  nothing), and a result arriving after the batch is final is dropped as late;
- the counters move by exactly the rows updated, so they always equal the rows;
- the audit record of an LLM (or replayed) result, ``JudgeResult.call``, is inserted into
  ``cj_judge_calls`` in the same transaction as its pair's update, and only for results that
  were applied. The call of a result that changed nothing (a duplicate answer, e.g. a pair
  re-sent by a second worker after the first was presumed dead, or a late one after the
  batch is final) is dropped and counted in ``counts.calls_dropped``: so each decided pair has
  exactly the one call that decided it, and a replay of the batch gives the same decisions.
  (The dropped call's tokens were still spent; they stay in the judge's in-memory cost total
  of that run and are logged.)

On PostgreSQL a flush is one ``UPDATE … FROM unnest(…) … RETURNING`` statement: the pending
check, the update and the list of rows applied in a single round trip, however many results
it carries. SQLite (in-process, no round trips) selects the pending pairs, then updates them
with one ``executemany`` of plain values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, select, text
from sqlalchemy.orm import Session

from cjlib.db import session_scope
from cjlib.db.bulk import timestamp_text
from cjlib.db.judge_calls import record_judge_calls
from cjlib.db.models import (
    FINAL_STATES,
    CJComparisonPair,
    ComparisonWinner,
    UTCDateTime,
    utc_now,
)
from cjlib.db.repository import lock_batch_state
from cjlib.judges import JudgeResult

log = logging.getLogger(__name__)

#: Results buffered before a flush.
FLUSH_SIZE = 500
#: Seconds a result may wait in the buffer.
FLUSH_SECONDS = 1.0
_IN_CHUNK = 1000


@dataclass
class WriteCounts:
    """What the writer did so far."""

    applied: int = 0
    decided: int = 0
    failed: int = 0
    duplicates: int = 0
    late: int = 0
    calls_stored: int = 0
    calls_dropped: int = 0


def _values(result: JudgeResult) -> tuple[str, float | None, str | None, str | None]:
    """(winner, confidence, justification, error_code) as the pair's columns store them."""
    failed = result.winner is None
    winner = ComparisonWinner.ERROR if failed else ComparisonWinner(result.winner)
    error_code = (result.error_code or "judge_error") if failed else None
    return winner.value, result.confidence, result.justification, error_code


#: Only pairs still pending are updated; the correlation ids of those updated come back.
_APPLY_POSTGRESQL = text(
    """
    UPDATE cj_comparison_pairs AS p
    SET winner = v.winner, confidence = v.confidence, justification = v.justification,
        error_code = v.error_code, judge_id = COALESCE(:judge_id, p.judge_id),
        completed_at = :completed_at
    FROM unnest(CAST(:rids AS varchar[]), CAST(:winners AS varchar[]),
                CAST(:confidences AS float8[]), CAST(:justifications AS text[]),
                CAST(:error_codes AS varchar[]))
         AS v(rid, winner, confidence, justification, error_code)
    WHERE p.cj_batch_id = :batch_id AND p.request_correlation_id = v.rid
      AND p.winner IS NULL
    RETURNING p.request_correlation_id
    """
).bindparams(bindparam("completed_at", type_=UTCDateTime()))


def _apply_postgresql(
    session: Session,
    batch_id: int,
    results: dict[str, JudgeResult],
    judge_id: str | None,
    now: datetime,
) -> list[str]:
    """Record ``results`` on the pairs still pending, in one statement; returns their ids."""
    winners, confidences, justifications, error_codes = zip(
        *map(_values, results.values()), strict=True
    )
    return list(
        session.execute(
            _APPLY_POSTGRESQL,
            {
                "rids": list(results),
                "winners": list(winners),
                "confidences": list(confidences),
                "justifications": list(justifications),
                "error_codes": list(error_codes),
                "judge_id": judge_id or None,
                "completed_at": now,
                "batch_id": batch_id,
            },
        ).scalars()
    )


#: Positional update of one pair by id (SQLite's paramstyle), values as the columns store them.
_UPDATE_SQLITE = (
    "UPDATE cj_comparison_pairs SET winner = ?, confidence = ?, justification = ?, "
    "error_code = ?, judge_id = COALESCE(?, judge_id), completed_at = ? WHERE id = ?"
)


def _apply_sqlite(
    session: Session,
    batch_id: int,
    results: dict[str, JudgeResult],
    judge_id: str | None,
    now: datetime,
) -> list[str]:
    """:func:`_apply_postgresql` as a select of the pending pairs and one ``executemany``.

    The update bypasses SQLAlchemy's per-row type processing (as :mod:`cjlib.db.bulk` does):
    the enum goes in as its value and the timestamp as :func:`~cjlib.db.bulk.timestamp_text`.
    """
    ids = list(results)
    pending: dict[str, int] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        rows = session.execute(
            select(CJComparisonPair.request_correlation_id, CJComparisonPair.id).where(
                CJComparisonPair.cj_batch_id == batch_id,
                CJComparisonPair.request_correlation_id.in_(ids[start : start + _IN_CHUNK]),
                CJComparisonPair.winner.is_(None),
            )
        ).all()
        pending.update({rid: pair_id for rid, pair_id in rows})
    if pending:
        completed_at = timestamp_text("sqlite", now)
        params = [
            (*_values(results[rid]), judge_id or None, completed_at, pair_id)
            for rid, pair_id in pending.items()
        ]
        session.connection().exec_driver_sql(_UPDATE_SQLITE, params)
    return list(pending)


class ResultWriter:
    """Buffers judge results for one batch and writes them in bulk.

    Parameters
    ----------
    engine : Engine
    batch_id : int
    judge_id : str, optional
        Stored on each decided pair.
    flush_size, flush_seconds
        When to write the buffer.
    on_applied : callable, optional
        Called with the number of results applied by each flush (progress bars).
    """

    def __init__(
        self,
        engine: Engine,
        batch_id: int,
        *,
        judge_id: str | None = None,
        flush_size: int = FLUSH_SIZE,
        flush_seconds: float = FLUSH_SECONDS,
        on_applied: Callable[[int], None] | None = None,
    ):
        self.engine, self.batch_id, self.judge_id = engine, batch_id, judge_id
        self.flush_size, self.flush_seconds = flush_size, flush_seconds
        self.on_applied = on_applied
        self.counts = WriteCounts()
        self._buffer: dict[str, JudgeResult] = {}
        self._oldest = 0.0

    def add(self, result: JudgeResult) -> None:
        """Buffer ``result`` (the first result for a correlation id wins); flush when due."""
        if result.request_correlation_id in self._buffer:
            self.counts.duplicates += 1
            return
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer[result.request_correlation_id] = result
        if len(self._buffer) >= self.flush_size or self.due():
            self.flush()

    def due(self) -> bool:
        """Whether the oldest buffered result has waited ``flush_seconds``."""
        return bool(self._buffer) and time.monotonic() - self._oldest >= self.flush_seconds

    def flush(self) -> int:
        """Write the buffer in one transaction; returns how many results were applied."""
        if not self._buffer:
            return 0
        results, self._buffer = self._buffer, {}
        applied = self._write(results)
        if self.on_applied is not None and applied:
            self.on_applied(applied)
        return applied

    def _drop_calls(self, results) -> None:
        dropped = sum(1 for r in results if r.call is not None)
        if dropped:
            self.counts.calls_dropped += dropped
            log.info("batch %s: %d judge call(s) of results that changed nothing not stored",
                     self.batch_id, dropped)  # fmt: skip

    def _write(self, results: dict[str, JudgeResult]) -> int:
        with session_scope(self.engine) as session:
            state = lock_batch_state(session, self.batch_id)
            if state.state in FINAL_STATES:
                self.counts.late += len(results)
                self._drop_calls(results.values())
                log.warning("batch %s is final: %d results dropped as late", self.batch_id,
                            len(results))  # fmt: skip
                return 0
            now = utc_now()
            apply = (
                _apply_postgresql
                if session.get_bind().dialect.name == "postgresql"
                else _apply_sqlite
            )
            applied = apply(session, self.batch_id, results, self.judge_id, now)
            applied_set = set(applied)
            self.counts.duplicates += len(results) - len(applied)
            self._drop_calls(r for rid, r in results.items() if rid not in applied_set)
            if not applied:
                return 0
            calls = [results[rid].call for rid in applied if results[rid].call is not None]
            stored = record_judge_calls(session, calls)
            failed = sum(1 for rid in applied if results[rid].winner is None)
            state.completed_comparisons += len(applied) - failed
            state.failed_comparisons += failed
            state.last_activity_at = now
        self.counts.applied += len(applied)
        self.counts.calls_stored += stored
        self.counts.decided += len(applied) - failed
        self.counts.failed += failed
        return len(applied)
