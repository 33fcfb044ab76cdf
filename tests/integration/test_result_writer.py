"""Bulk result writing: one statement per flush, and the idempotency of single callbacks."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from cjlib.db.models import CJComparisonPair, utc_now
from cjlib.judges import JudgeResult
from cjlib.workflow import execute_batch
from cjlib.workflow.results import ResultWriter
from tests.integration.workflow_helpers import ASSIGNMENT, count, register, rows, small_dataset


def _pending_batch(engine, tmp_path) -> tuple[int, list]:
    """A batch whose first wave was generated and judged, then its pairs set pending again."""
    register(engine, small_dataset(tmp_path, n_students=12))
    result = execute_batch(
        engine, assignment_id=ASSIGNMENT, course_id="ENG5", batch_label="writer",
        max_comparisons=12, output_dir=None, finalize=False,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE cj_comparison_pairs SET winner = NULL, confidence = NULL, "
            "justification = NULL, error_code = NULL, completed_at = NULL"
        )
        conn.exec_driver_sql(
            "UPDATE cj_batch_states SET completed_comparisons = 0, failed_comparisons = 0"
        )
    pairs = rows(
        engine,
        "SELECT request_correlation_id AS cid FROM cj_comparison_pairs WHERE cj_batch_id = :b "
        "ORDER BY id",
        b=result.cj_batch_id,
    )
    return result.cj_batch_id, [p.cid for p in pairs]


def _state(engine, batch_id: int) -> tuple[int, int]:
    return tuple(
        rows(
            engine,
            "SELECT completed_comparisons, failed_comparisons FROM cj_batch_states "
            "WHERE batch_id = :b",
            b=batch_id,
        )[0]
    )


def test_a_flush_applies_pending_results_once_and_counters_equal_rows(engine, tmp_path):
    batch_id, cids = _pending_batch(engine, tmp_path)
    writer = ResultWriter(engine, batch_id, judge_id="bulk-judge", flush_size=10_000)
    for cid in cids[:8]:
        writer.add(JudgeResult(cid, winner="essay_b", confidence=0.75, justification="why"))
    writer.add(JudgeResult(cids[8], error_code="judge_exception", justification="boom"))
    writer.add(JudgeResult(str(uuid.uuid4()), winner="essay_a"))  # no such pair
    before = utc_now()
    assert writer.flush() == 9
    after = utc_now()
    assert (writer.counts.applied, writer.counts.decided, writer.counts.failed) == (9, 8, 1)
    assert writer.counts.duplicates == 1
    assert _state(engine, batch_id) == (8, 1)
    decided = {
        r.cid: r
        for r in rows(
            engine,
            "SELECT request_correlation_id AS cid, winner, confidence, justification, "
            "error_code, judge_id, completed_at FROM cj_comparison_pairs "
            "WHERE cj_batch_id = :b AND winner IS NOT NULL",
            b=batch_id,
        )
    }
    assert set(decided) == set(cids[:9])
    assert {(r.winner, r.confidence, r.justification, r.error_code, r.judge_id)
            for cid, r in decided.items() if cid != cids[8]} == {
        ("essay_b", 0.75, "why", None, "bulk-judge")
    }  # fmt: skip
    failed = decided[cids[8]]
    assert (failed.winner, failed.error_code, failed.justification) == (
        "error", "judge_exception", "boom",
    )  # fmt: skip
    # Read back through the ORM's type: the bulk write stores what it parses, to the moment.
    with Session(engine) as session:
        stamps = session.scalars(
            select(CJComparisonPair.completed_at).where(
                CJComparisonPair.request_correlation_id.in_(cids[:9])
            )
        ).all()
    assert len(stamps) == 9 and all(before <= t <= after for t in stamps)

    # A second answer for a decided pair changes nothing; the rest are applied.
    again = ResultWriter(engine, batch_id, flush_size=10_000)
    for cid in cids[:2]:
        again.add(JudgeResult(cid, winner="essay_a"))
    for cid in cids[9:]:
        again.add(JudgeResult(cid, winner="essay_a", confidence=0.6))
    assert again.flush() == len(cids) - 9
    assert again.counts.duplicates == 2
    assert _state(engine, batch_id) == (8 + len(cids) - 9, 1)
    assert count(engine, "cj_comparison_pairs", "winner = 'essay_a'") == len(cids) - 9
    assert count(engine, "cj_comparison_pairs", "winner IS NULL") == 0
    # Without a judge id of its own the writer keeps the pair's judge.
    kept = rows(
        engine,
        "SELECT DISTINCT judge_id FROM cj_comparison_pairs WHERE request_correlation_id = :c",
        c=cids[-1],
    )
    assert kept[0].judge_id == "simulated"
