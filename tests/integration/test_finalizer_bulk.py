"""The finalizer's bulk paths: decided pairs read in bulk, scores and projections written in bulk.

Each result is checked against a reference built here the slow, obvious way (ORM rows, one
essay at a time), on SQLite and on PostgreSQL (whose paths differ: COPY out, COPY into a
temporary table and ``UPDATE … FROM``).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cjlib.db import session_scope
from cjlib.db.bulk import update_columns
from cjlib.db.models import (
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    ComparisonWinner,
    EventOutbox,
    GradeProjection,
)
from cjlib.db.queries import decided_comparisons
from cjlib.db.repository import create_batch_upload, store_content
from cjlib.scoring import fit_bradley_terry
from cjlib.workflow import BatchFinalizer, execute_batch
from cjlib.workflow.finalizer import STEPS
from tests.integration.workflow_helpers import ASSIGNMENT, COURSE, as_dict, register, small_dataset

A, B, ERROR = ComparisonWinner.ESSAY_A, ComparisonWinner.ESSAY_B, ComparisonWinner.ERROR
OLD = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)


def _batch(engine, essays: list[str], pairs: list[tuple]) -> int:
    """A batch of ``essays`` with ``pairs`` (a, b, winner or None, judge) made with the ORM."""
    with session_scope(engine) as session:
        upload = create_batch_upload(session, assignment_id="bulk", batch_label="bulk")
        key = store_content(session, "")
        for essay in essays:
            session.add(
                CJProcessedEssay(
                    cj_batch_id=upload.id, els_essay_id=essay, text_storage_id=key,
                    assessment_input_text="", processing_metadata={}, updated_at=OLD,
                )
            )  # fmt: skip
        for a, b, winner, judge in pairs:
            session.add(
                CJComparisonPair(
                    cj_batch_id=upload.id, essay_a_els_id=a, essay_b_els_id=b,
                    request_correlation_id=str(uuid.uuid4()), winner=winner, judge_id=judge,
                )
            )  # fmt: skip
            session.flush()  # ids in list order
        return upload.id


def _decided(engine, batch_id: int):
    with session_scope(engine) as session:
        return decided_comparisons(session, batch_id)


def test_decided_comparisons_reads_decided_pairs_in_order_with_their_judges(engine):
    odd = 'e"1,\tx\\N'  # quote, comma, tab and backslash: CSV and COPY escapes must hold
    batch = _batch(
        engine,
        ["e1", "e2", odd],
        [
            ("e1", "e2", A, "j1"),
            ("e2", odd, B, None),
            (odd, "e1", ERROR, "j1"),
            ("e1", odd, None, "j2"),
            (odd, "e2", A, ""),
            ("e1", "e2", B, 'j,"x\\N'),
            ("e2", "e1", A, "\\N"),
        ],
    )
    frame = _decided(engine, batch)
    assert list(frame.columns) == ["essay_a_id", "essay_b_id", "winner", "judge_id"]
    assert frame.astype(object).to_numpy().tolist() == [
        ["e1", "e2", "essay_a", "j1"],
        ["e2", odd, "essay_b", "unknown"],
        [odd, "e2", "essay_a", ""],
        ["e1", "e2", "essay_b", 'j,"x\\N'],
        ["e2", "e1", "essay_a", "\\N"],
    ]


def test_decided_comparisons_without_judges_has_no_judge_column(engine):
    batch = _batch(engine, ["e1", "e2"], [("e1", "e2", B, None), ("e2", "e1", None, None)])
    frame = _decided(engine, batch)
    assert frame.astype(object).to_numpy().tolist() == [["e1", "e2", "essay_b"]]
    assert list(frame.columns) == ["essay_a_id", "essay_b_id", "winner"]
    empty = _batch(engine, ["e1", "e2"], [("e1", "e2", ERROR, "j")])
    assert _decided(engine, empty).empty


def test_decided_comparisons_sees_results_still_pending_in_the_session(engine):
    batch = _batch(engine, ["e1", "e2"], [("e1", "e2", None, "j")])
    with Session(engine) as session, session.begin():
        pair = session.scalars(
            select(CJComparisonPair).where(CJComparisonPair.cj_batch_id == batch)
        ).one()
        pair.winner = B  # not flushed yet: the bulk read must still see it
        frame = decided_comparisons(session, batch)
    assert frame.astype(object).to_numpy().tolist() == [["e1", "e2", "essay_b", "j"]]


def _essay_rows(engine, batch_id: int) -> dict[str, tuple]:
    with session_scope(engine) as session:
        essays = session.scalars(
            select(CJProcessedEssay).where(CJProcessedEssay.cj_batch_id == batch_id)
        ).all()
        return {
            e.els_essay_id: (e.current_bt_score, e.current_bt_se, e.comparison_count, e.updated_at)
            for e in essays
        }


def _ids(engine, batch_id: int) -> dict[str, int]:
    with session_scope(engine) as session:
        return dict(
            session.execute(
                select(CJProcessedEssay.els_essay_id, CJProcessedEssay.id).where(
                    CJProcessedEssay.cj_batch_id == batch_id
                )
            ).all()
        )


def test_update_columns_sets_changed_rows_only_and_writes_nan_as_null(engine):
    batch = _batch(engine, ["e1", "e2", "e3", "e4"], [])
    ids = _ids(engine, batch)
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        changed = update_columns(
            session,
            CJProcessedEssay.__table__,
            "id",
            {
                "id": [ids["e1"], ids["e2"], ids["e3"]],
                "current_bt_score": [1.25, math.nan, None],
                "current_bt_se": [0.5, 0.75, None],
                "comparison_count": [3, 2, 0],
            },
            on_change={"updated_at": now},
        )
        # A second update in the same transaction (its own temporary table on PostgreSQL).
        again = update_columns(
            session,
            CJProcessedEssay.__table__,
            "id",
            {"id": [ids["e2"]], "comparison_count": [7]},
        )
    assert (changed, again) == (2, 1)
    stored = _essay_rows(engine, batch)
    assert stored["e1"] == (1.25, 0.5, 3, now)
    assert stored["e2"] == (None, 0.75, 7, now)
    # e3's values equal the new ones (None, None, 0): untouched, as an ORM flush leaves it.
    assert stored["e3"] == (None, None, 0, OLD)
    assert stored["e4"] == (None, None, 0, OLD)


def test_update_columns_is_rolled_back_with_its_transaction(engine):
    batch = _batch(engine, ["e1"], [])
    ids = _ids(engine, batch)
    with pytest.raises(RuntimeError, match="after"), Session(engine) as session, session.begin():
        update_columns(
            session, CJProcessedEssay.__table__, "id",
            {"id": [ids["e1"]], "current_bt_score": [2.0]},
        )  # fmt: skip
        raise RuntimeError("after the update")
    assert _essay_rows(engine, batch)["e1"] == (None, None, 0, OLD)
    with pytest.raises(ValueError, match="key column 'id'"), Session(engine) as session:
        update_columns(session, CJProcessedEssay.__table__, "id", {"current_bt_score": [1.0]})


# --------------------------------------------------------------------------------------------
# A whole finalization against a per-essay reference
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("bulk"), n_students=16)


def _finalized_batch(engine, dataset):
    """A judged batch with anchors, plus a student and an anchor that were never compared."""
    register(engine, dataset)
    run = execute_batch(
        engine, assignment_id=ASSIGNMENT, course_id=COURSE, batch_label="bulk",
        max_comparisons=80, dataset=dataset, seed=5, output_dir=None,
        judge_params={"error_rate": 0.0}, finalize=False,
    )  # fmt: skip
    batch = run.cj_batch_id
    with session_scope(engine) as session:
        key = store_content(session, "")
        for essay, anchor, meta in (
            ("zz-lonely-student", False, {}),
            ("zz-lonely-anchor", True, {"is_anchor": True, "anchor_grade": "B"}),
        ):
            session.add(
                CJProcessedEssay(
                    cj_batch_id=batch, els_essay_id=essay, text_storage_id=key,
                    assessment_input_text="", is_anchor=anchor, processing_metadata=meta,
                )
            )  # fmt: skip
    with session_scope(engine) as session:
        reference = _reference(session, batch)
    result = BatchFinalizer(engine).finalize_scoring(batch)
    return batch, result, reference


def _reference(session: Session, batch: int) -> dict:
    """Essays and the fit, read the slow, obvious way before finalizing."""
    import pandas as pd

    pairs = session.scalars(
        select(CJComparisonPair)
        .where(CJComparisonPair.cj_batch_id == batch)
        .order_by(CJComparisonPair.id)
    ).all()
    decided = pd.DataFrame(
        [
            (p.essay_a_els_id, p.essay_b_els_id, p.winner.value, p.judge_id or "unknown")
            for p in pairs
            if p.winner in (A, B)
        ],
        columns=["essay_a_id", "essay_b_id", "winner", "judge_id"],
    )
    essays = session.scalars(
        select(CJProcessedEssay).where(CJProcessedEssay.cj_batch_id == batch)
    ).all()
    return {
        "fit": fit_bradley_terry(decided, method="firth"),
        "anchor": {e.els_essay_id: bool(e.is_anchor) for e in essays},
    }


def test_finalized_batch_matches_a_per_essay_reference(engine, dataset):
    batch, result, reference = _finalized_batch(engine, dataset)
    scores = reference["fit"].scores
    anchor = reference["anchor"]
    assert result.scored_essays == len(scores) == len(anchor) - 2
    assert list(result.step_seconds) == [
        *STEPS[:2],
        "read_decisions",
        "fit",
        "split_half",
        *STEPS[3:],
    ]
    assert STEPS[2] == "fit" and all(seconds >= 0 for seconds in result.step_seconds.values())

    stored = _essay_rows(engine, batch)
    assert set(stored) == set(anchor)
    for essay, (theta, se, n, _) in stored.items():
        if essay in scores.index:
            assert theta == pytest.approx(scores.loc[essay, "theta"], abs=1e-9)
            assert se == pytest.approx(scores.loc[essay, "se"], abs=1e-9)
            assert n == scores.loc[essay, "n_comparisons"]
        else:
            assert (theta, se, n) == (None, None, 0)

    with session_scope(engine) as session:
        projections = {
            g.els_essay_id: g
            for g in session.scalars(
                select(GradeProjection).where(GradeProjection.cj_batch_id == batch)
            )
        }
        events = {e.event_type: as_dict(e.payload) for e in session.scalars(select(EventOutbox))}
        meta = as_dict(session.get_one(CJBatchUpload, batch).processing_metadata)
    students = [e for e in anchor if not anchor[e]]
    assert result.projection_count == len(projections) == len(students) - 1
    assert set(projections) == {e for e in students if e in scores.index}
    for essay, g in projections.items():
        assert g.calculation_metadata["bt_score"] == pytest.approx(scores.loc[essay, "theta"])
        assert g.calculation_metadata["bt_se"] == pytest.approx(scores.loc[essay, "se"])
        assert sum(g.probabilities.values()) == pytest.approx(1.0)
        assert g.probabilities[g.primary_grade] == max(g.probabilities.values())
        assert g.created_at.tzinfo is not None

    assert meta["unscored_essays"] == ["zz-lonely-anchor", "zz-lonely-student"]
    assert meta["unscored_anchors"] == ["zz-lonely-anchor"]
    completed = events["cj_assessment.completed.v1"]
    assert sorted(completed["scored_student_ids"]) == sorted(
        e for e in students if e in scores.index
    )
    assert completed["failed_student_ids"] == ["zz-lonely-student"]

    published = events["assessment.result.published.v1"]["essays"]
    ranks = scores["theta"].rank(ascending=False, method="min")
    assert [p["els_essay_id"] for p in published] == sorted(anchor)
    for p in published:
        essay = p["els_essay_id"]
        assert p["is_anchor"] is anchor[essay]
        if essay in scores.index:
            assert p["bt_score"] == pytest.approx(scores.loc[essay, "theta"], abs=1e-9)
            assert p["bt_se"] == pytest.approx(scores.loc[essay, "se"], abs=1e-9)
            assert p["rank"] == int(ranks.loc[essay])
            assert p["comparison_count"] == scores.loc[essay, "n_comparisons"]
        else:
            assert (p["bt_score"], p["bt_se"], p["rank"], p["comparison_count"]) == (
                None, None, None, 0,
            )  # fmt: skip
        g = projections.get(essay)
        if g is None:
            assert p["projected_grade"] is None
        else:
            assert p["projected_grade"] == {
                "primary_grade": g.primary_grade,
                "confidence_score": pytest.approx(g.confidence_score),
                "confidence_label": g.confidence_label,
                "probabilities": pytest.approx(g.probabilities),
            }
    by_id = {p["els_essay_id"]: p for p in published}
    assert by_id["zz-lonely-anchor"]["anchor_grade"] == "B"  # from its metadata
    assert by_id["zz-lonely-student"]["anchor_grade"] is None
    assert sum(p["anchor_grade"] is not None for p in published) == sum(anchor.values())


def test_read_model_streams_comparisons_across_chunks_in_id_order(engine, monkeypatch):
    from cjlib.db import queries
    from cjlib.db.queries import load_batch

    pairs = [("e1", "e2", A, "j1"), ("e2", "e3", B, None), ("e3", "e1", None, "j2")] * 3
    batch = _batch(engine, ["e1", "e2", "e3"], pairs)
    whole = load_batch(engine, batch).comparisons
    monkeypatch.setattr(queries, "_COMPARISON_CHUNK", 2)
    chunked = load_batch(engine, batch).comparisons
    assert list(chunked.columns) == list(queries.COMPARISON_COLUMNS)
    assert chunked["id"].is_monotonic_increasing and len(chunked) == len(pairs)
    assert chunked[["essay_a_id", "essay_b_id", "judge_id"]].to_numpy().tolist() == [
        [a, b, judge] for a, b, _, judge in pairs
    ]
    assert chunked["winner"].tolist() == [
        None if winner is None else winner.value for _, _, winner, _ in pairs
    ]
    pd.testing.assert_frame_equal(chunked, whole)
