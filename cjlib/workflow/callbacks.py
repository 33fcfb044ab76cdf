"""Submitting comparison pairs and recording judge callbacks, idempotently.

A callback is keyed by its ``request_correlation_id``: the first one for a pending pair is
applied; a duplicate, a late one (pair already decided or batch final) or an unknown one
changes nothing. Counters move under the batch's row lock.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cjlib.db import session_scope
from cjlib.db.models import (
    FINAL_STATES,
    CJComparisonPair,
    ComparisonWinner,
    utc_now,
)
from cjlib.db.repository import lock_batch_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmittedPair:
    """A pair as sent to a judge."""

    request_correlation_id: str
    essay_a_id: str
    essay_b_id: str
    wave: int


def submit_pairs(
    session: Session,
    batch_id: int,
    pairs: Sequence[tuple[str, str]],
    *,
    wave: int,
    judge_id: str,
) -> list[SubmittedPair]:
    """Store ``pairs`` as pending comparisons with fresh ``request_correlation_id``s.

    Updates ``total_comparisons``, ``submitted_comparisons`` and ``current_iteration`` under the
    batch lock, in the caller's transaction.
    """
    state = lock_batch_state(session, batch_id)
    now = utc_now()
    submitted = []
    for a, b in pairs:
        rid = str(uuid.uuid4())
        session.add(
            CJComparisonPair(
                cj_batch_id=batch_id,
                essay_a_els_id=a,
                essay_b_els_id=b,
                request_correlation_id=rid,
                judge_id=judge_id,
                submitted_at=now,
                processing_metadata={"wave": wave},
            )
        )
        submitted.append(SubmittedPair(rid, a, b, wave))
    state.total_comparisons += len(pairs)
    state.submitted_comparisons += len(pairs)
    state.current_iteration = wave
    state.last_activity_at = now
    session.flush()
    return submitted


class CallbackOutcome(enum.StrEnum):
    """What :func:`record_callback` did with one callback."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    UNKNOWN = "unknown"


def record_callback(
    engine: Engine,
    request_correlation_id: str,
    *,
    winner: str | None,
    confidence: float | None = None,
    justification: str | None = None,
    error_code: str | None = None,
    judge_id: str | None = None,
) -> CallbackOutcome:
    """Record one judge result for a pending pair, in its own transaction.

    ``winner`` is ``essay_a`` / ``essay_b``; None (or ``error``) records a failed comparison
    with ``error_code``. Successful callbacks count in ``completed_comparisons``, failed ones in
    ``failed_comparisons``; ``last_activity_at`` is touched.
    """
    if winner not in (None, "essay_a", "essay_b", "error"):
        raise ValueError(f"winner must be essay_a, essay_b or None, got {winner!r}")
    with session_scope(engine) as session:
        batch_id = session.scalars(
            select(CJComparisonPair.cj_batch_id).where(
                CJComparisonPair.request_correlation_id == request_correlation_id
            )
        ).one_or_none()
        if batch_id is None:
            log.warning("callback for unknown request %s ignored", request_correlation_id)
            return CallbackOutcome.UNKNOWN
        state = lock_batch_state(session, batch_id)
        pair = session.scalars(
            select(CJComparisonPair)
            .where(CJComparisonPair.request_correlation_id == request_correlation_id)
            .execution_options(populate_existing=True)
        ).one()
        # Late first: a finalized batch has closed its pending pairs, so every pair has a
        # winner then, and a callback for one is late rather than a duplicate.
        if state.state in FINAL_STATES:
            return CallbackOutcome.LATE
        if pair.winner is not None:
            return CallbackOutcome.DUPLICATE
        now = utc_now()
        failed = winner in (None, "error")
        pair.winner = ComparisonWinner.ERROR if failed else ComparisonWinner(winner)
        pair.confidence = confidence
        pair.justification = justification
        pair.error_code = (error_code or "judge_error") if failed else None
        pair.completed_at = now
        if judge_id:
            pair.judge_id = judge_id
        if failed:
            state.failed_comparisons += 1
        else:
            state.completed_comparisons += 1
        state.last_activity_at = now
    return CallbackOutcome.APPLIED
