"""Storing and reading the audit trail of LLM judge calls (table ``cj_judge_calls``).

:func:`record_judge_calls` writes :class:`~cjlib.llm.audit.JudgeCall` records (from
``JudgeResult.call``) linked to their comparison pairs by correlation id;
:func:`load_judge_calls` reads a batch's calls back, :func:`load_replay` turns them into a
:class:`~cjlib.llm.replay.ReplayJudge`, and :func:`judge_call_summary` totals calls,
retries, tokens and cost for ``cj batch inspect``. The functions never commit: they run in
the caller's transaction, so a result and its call are stored together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cjlib.db.models import CJComparisonPair, CJJudgeCall
from cjlib.errors import NotFoundError
from cjlib.llm.audit import JudgeCall
from cjlib.llm.replay import ReplayJudge

# Stays well under SQLite's bound-parameter limit in the IN (...) lookup.
_CHUNK = 500


def _pairs_by_correlation_id(session: Session, ids: list[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = session.execute(
            select(
                CJComparisonPair.request_correlation_id,
                CJComparisonPair.id,
                CJComparisonPair.cj_batch_id,
            ).where(CJComparisonPair.request_correlation_id.in_(chunk))
        )
        found.update({cid: (pair_id, batch_id) for cid, pair_id, batch_id in rows})
    return found


def _row(call: JudgeCall, pair_id: int, batch_id: int) -> dict[str, object]:
    return {
        "cj_batch_id": batch_id,
        "comparison_pair_id": pair_id,
        "request_correlation_id": call.request_correlation_id,
        "essay_a_els_id": call.essay_a_id,
        "essay_b_els_id": call.essay_b_id,
        "judge_id": call.judge_id,
        "template_sha256": call.template_sha256,
        # A server chooses what it reports: cut to the column widths rather than fail the insert.
        "model_requested": call.model_requested[:200],
        "model_reported": None if call.model_reported is None else call.model_reported[:200],
        "request_params": dict(call.request_params),
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "latency_s": call.latency_s,
        "total_s": call.total_s,
        "attempts": call.attempts,
        "attempt_errors": list(call.attempt_errors),
        "http_status": call.http_status,
        "finish_reason": None if call.finish_reason is None else call.finish_reason[:40],
        "response_content": call.response_content,
        "raw_response": call.raw_response,
        "winner": call.winner,
        "confidence": call.confidence,
        "justification": call.justification,
        "error_code": call.error_code,
        "error_detail": call.error_detail,
        "cost_usd": call.cost_usd,
        "started_at": call.started_at,
        "completed_at": call.completed_at,
    }


def record_judge_calls(session: Session, calls: Iterable[JudgeCall]) -> int:
    """Insert ``calls`` into ``cj_judge_calls`` in one statement, each linked to its pair.

    Parameters
    ----------
    session : Session
        Open session inside the caller's transaction (not committed here).
    calls : iterable of JudgeCall
        Typically ``[r.call for r in results if r.call is not None]``.

    Returns
    -------
    int
        Rows inserted.

    Raises
    ------
    NotFoundError
        A call's correlation id has no comparison pair; nothing is written.
    """
    calls = list(calls)
    if not calls:
        return 0
    pairs = _pairs_by_correlation_id(session, sorted({c.request_correlation_id for c in calls}))
    missing = sorted({c.request_correlation_id for c in calls} - pairs.keys())
    if missing:
        raise NotFoundError(
            f"{len(missing)} judge call(s) have no comparison pair (first: {missing[0]}); "
            "store the pairs before their calls"
        )
    rows = [_row(c, *pairs[c.request_correlation_id]) for c in calls]
    session.execute(insert(CJJudgeCall), rows)
    return len(rows)


def _call(row: CJJudgeCall) -> JudgeCall:
    return JudgeCall(
        request_correlation_id=row.request_correlation_id,
        essay_a_id=row.essay_a_els_id,
        essay_b_id=row.essay_b_els_id,
        judge_id=row.judge_id,
        template_sha256=row.template_sha256,
        model_requested=row.model_requested,
        started_at=row.started_at,
        completed_at=row.completed_at,
        total_s=row.total_s,
        attempts=row.attempts,
        request_params=dict(row.request_params or {}),
        model_reported=row.model_reported,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        latency_s=row.latency_s,
        attempt_errors=tuple(row.attempt_errors or ()),
        http_status=row.http_status,
        finish_reason=row.finish_reason,
        response_content=row.response_content,
        raw_response=row.raw_response,
        winner=row.winner,
        confidence=row.confidence,
        justification=row.justification,
        error_code=row.error_code,
        error_detail=row.error_detail,
        cost_usd=row.cost_usd,
    )


def load_judge_calls(session: Session, cj_batch_id: int) -> list[JudgeCall]:
    """Every stored call of a batch, in the order they were recorded."""
    rows = session.scalars(
        select(CJJudgeCall).where(CJJudgeCall.cj_batch_id == cj_batch_id).order_by(CJJudgeCall.id)
    )
    return [_call(r) for r in rows]


def load_replay(session: Session, cj_batch_id: int, *, judge_id: str = "replay") -> ReplayJudge:
    """A :class:`~cjlib.llm.replay.ReplayJudge` answering from batch ``cj_batch_id``'s calls.

    Raises
    ------
    NotFoundError
        The batch has no stored LLM calls (it was not LLM-judged, or does not exist).
    """
    calls = load_judge_calls(session, cj_batch_id)
    if not calls:
        raise NotFoundError(
            f"batch {cj_batch_id} has no stored LLM judge calls to replay; "
            "pass the id of a batch run with --judge llm"
        )
    return ReplayJudge(calls, judge_id=judge_id)


@dataclass(frozen=True)
class JudgeCallSummary:
    """Totals over a batch's calls (for ``cj batch inspect``)."""

    calls: int
    retries: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


def judge_call_summary(session: Session, cj_batch_id: int) -> JudgeCallSummary:
    """Calls, retries, failed calls, tokens and estimated cost of a batch.

    ``cost_usd`` is None when some answered call has no cost estimate.
    """
    c = CJJudgeCall
    row = session.execute(
        select(
            func.count(c.id),
            func.coalesce(func.sum(c.attempts - 1), 0),
            func.count(c.id).filter(c.error_code.is_not(None)),
            func.coalesce(func.sum(c.prompt_tokens), 0),
            func.coalesce(func.sum(c.completion_tokens), 0),
            func.sum(c.cost_usd),
            func.count(c.id).filter(c.cost_usd.is_(None), c.http_status.between(200, 299)),
        ).where(c.cj_batch_id == cj_batch_id)
    ).one()
    calls, retries, failed, prompt, completion, cost, unpriced = row
    return JudgeCallSummary(
        calls=int(calls),
        retries=int(retries),
        failed=int(failed),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cost_usd=None if unpriced else float(cost or 0.0),
    )


def judge_calls_frame(session: Session, cj_batch_id: int) -> pd.DataFrame:
    """A batch's calls as a DataFrame, with ``model`` = reported model (else requested).

    Columns fit :func:`cjlib.llm.orders.order_agreement` (``essay_a_id``, ``essay_b_id``,
    ``winner``, ``model``) plus the audit fields.
    """
    calls = load_judge_calls(session, cj_batch_id)
    frame = pd.DataFrame([c.as_dict() for c in calls])
    if frame.empty:
        return frame
    frame["model"] = frame["model_reported"].fillna(frame["model_requested"])
    return frame
