"""Fixture batches in every health state, built through the repository like real batches.

Each builder returns the new ``cj_batch_id``. Ages are made by :func:`backdate`, which moves
every timestamp of a batch into the past, so the view sees a batch that has been idle that long.
Only the anchor-drift fixture uses raw SQL: the repository refuses to produce that state.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import JSON, Engine, bindparam, select, text

from cjlib.db import get_engine, session_scope, upgrade
from cjlib.db.models import (
    AnchorEssayReference,
    AssessmentInstruction,
    CJBatchState,
    CJBatchStateTransition,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    ComparisonWinner,
    CoreCJState,
    EventOutbox,
    GradeProjection,
    utc_now,
)
from cjlib.db.repository import (
    create_batch_upload,
    create_or_update_cj_processed_essay,
    record_state_transition,
    store_content,
)

ASSIGNMENT = "eng5-fixture"
MINUTE = 60.0
HOUR = 3600.0

_PATH = (
    CoreCJState.GENERATING_PAIRS,
    CoreCJState.WAITING_CALLBACKS,
    CoreCJState.SCORING,
    CoreCJState.COMPLETED,
)

#: Timestamp columns per table, with the column naming the batch.
_BATCH_TIMESTAMPS = (
    (CJBatchUpload, CJBatchUpload.id, ("created_at", "updated_at", "completed_at")),
    (CJBatchState, CJBatchState.batch_id, ("last_activity_at",)),
    (CJBatchStateTransition, CJBatchStateTransition.batch_id, ("at",)),
    (CJProcessedEssay, CJProcessedEssay.cj_batch_id, ("created_at", "updated_at")),
    (CJComparisonPair, CJComparisonPair.cj_batch_id, ("submitted_at", "completed_at")),
    (GradeProjection, GradeProjection.cj_batch_id, ("created_at",)),
)


def _path_to(state: CoreCJState) -> list[CoreCJState]:
    if state == CoreCJState.FAILED:
        return [CoreCJState.GENERATING_PAIRS, CoreCJState.WAITING_CALLBACKS, CoreCJState.FAILED]
    return list(_PATH[: _PATH.index(state) + 1]) if state in _PATH else []


def make_batch(
    engine: Engine,
    *,
    label: str,
    state: CoreCJState,
    upload_status: CJBatchStatusEnum,
    assignment_id: str = ASSIGNMENT,
    essays: int = 6,
    anchors: int = 2,
    pairs: int = 8,
    completed: int = 8,
    failed: int = 0,
    projections: int = 0,
    idle_seconds: float = 0.0,
    state_completed: int | None = None,
    completion_reason: str | None = None,
) -> int:
    """Create one batch with essays, pairs, projections and an outbox event, then age it.

    ``completed`` pairs get a winner, the next ``failed`` pairs an error, the rest are pending;
    every pair is submitted. The state row's counters match the pairs unless
    ``state_completed`` overrides its completed count.
    """
    with session_scope(engine) as session:
        upload = create_batch_upload(
            session,
            assignment_id=assignment_id,
            course_id="ENG5",
            batch_label=label,
            total_budget=pairs,
        )
        batch_id = upload.id
        essay_ids = []
        for i in range(essays):
            essay_id = f"{label}-E{i:02d}"
            body = f"essay {i} of {label}"
            create_or_update_cj_processed_essay(
                session,
                cj_batch_id=batch_id,
                els_essay_id=essay_id,
                text_storage_id=store_content(session, body),
                assessment_input_text=body,
                processing_metadata={"is_anchor": i < anchors},
            )
            essay_ids.append(essay_id)
        now = utc_now()
        for i in range(pairs):
            if i < completed:
                winner = ComparisonWinner.ESSAY_A
            elif i < completed + failed:
                winner = ComparisonWinner.ERROR
            else:
                winner = None
            session.add(
                CJComparisonPair(
                    cj_batch_id=batch_id,
                    essay_a_els_id=essay_ids[i % essays],
                    essay_b_els_id=essay_ids[(i + 1) % essays],
                    request_correlation_id=str(uuid.uuid4()),
                    winner=winner,
                    submitted_at=now,
                    completed_at=now if winner is not None else None,
                )
            )
        for essay_id in essay_ids[anchors : anchors + projections]:
            session.add(
                GradeProjection(
                    els_essay_id=essay_id,
                    cj_batch_id=batch_id,
                    primary_grade="C",
                    grade_scale="eng5_np_legacy",
                    confidence_score=0.7,
                    confidence_label="MID",
                    probabilities={"C": 0.7, "B": 0.3},
                )
            )
        session.add(
            EventOutbox(
                aggregate_id=str(batch_id),
                event_type="cj.batch.created",
                correlation_id=upload.event_correlation_id,
                payload={"cj_batch_id": batch_id},
            )
        )
        for step in _path_to(state):
            record_state_transition(session, batch_id, step, reason=f"fixture: {step}")
        state_row = session.get(CJBatchState, batch_id)
        state_row.total_comparisons = pairs
        state_row.submitted_comparisons = pairs
        state_row.completed_comparisons = completed if state_completed is None else state_completed
        state_row.failed_comparisons = failed
        upload.status = upload_status
        if upload_status.value.startswith("COMPLETE"):
            upload.completed_at = utc_now()
            upload.processing_metadata = {"completion_reason": completion_reason or "stable"}
    if idle_seconds:
        backdate(engine, batch_id, idle_seconds)
    return batch_id


def backdate(engine: Engine, batch_id: int, seconds: float) -> None:
    """Move every timestamp of one batch ``seconds`` into the past."""
    delta = timedelta(seconds=seconds)
    with session_scope(engine) as session:
        for model, batch_column, columns in _BATCH_TIMESTAMPS:
            for row in session.scalars(select(model).where(batch_column == batch_id)):
                for column in columns:
                    value = getattr(row, column)
                    if value is not None:
                        setattr(row, column, value - delta)


def introduce_anchor_drift(engine: Engine, batch_id: int, els_essay_id: str) -> None:
    """Make an essay's metadata say ``is_anchor: true`` while its column says false.

    Raw SQL on purpose: this is the pre-fix "Batch 20" state the repository can no longer write.
    """
    statement = text(
        "UPDATE cj_processed_essays SET is_anchor = :flag, processing_metadata = :meta "
        "WHERE cj_batch_id = :batch_id AND els_essay_id = :essay_id"
    ).bindparams(bindparam("meta", type_=JSON()))
    with engine.begin() as connection:
        connection.execute(
            statement,
            {
                "flag": False,
                "meta": {"is_anchor": True, "anchor_grade": "B"},
                "batch_id": batch_id,
                "essay_id": els_essay_id,
            },
        )


def _fixture(
    kind: str, state: CoreCJState, upload_status: CJBatchStatusEnum, defaults: dict, doc: str
):
    # Every fixture is make_batch with its own state, status and defaults; kwargs override them.
    def build(engine: Engine, label: str = kind, **kwargs) -> int:
        return make_batch(
            engine, label=label, state=state, upload_status=upload_status, **{**defaults, **kwargs}
        )

    build.__name__ = build.__qualname__ = f"{kind}_batch"
    build.__doc__ = doc
    return build


W, S = CoreCJState, CJBatchStatusEnum
completed_batch = _fixture(
    "completed", W.COMPLETED, S.COMPLETE_STABLE, {"projections": 4, "idle_seconds": 2 * HOUR},
    "Healthy: COMPLETED, COMPLETE_STABLE, a projection per student essay, idle for 2 h.",
)  # fmt: skip
in_progress_batch = _fixture(
    "in_progress", W.WAITING_CALLBACKS, S.PERFORMING_COMPARISONS, {"completed": 5},
    "Healthy: WAITING_CALLBACKS with 3 of 8 callbacks pending, active just now.",
)  # fmt: skip
stuck_batch = _fixture(
    "stuck", W.WAITING_CALLBACKS, S.COMPLETE_STABLE,
    {"idle_seconds": 20 * MINUTE, "state_completed": 6},
    "Stuck finalization: COMPLETE_STABLE + WAITING_CALLBACKS + 0 projections, idle 20 min; "
    "its state row also lags the pairs (6 completed recorded, 8 answered).",
)  # fmt: skip
long_scoring_batch = _fixture(
    "long_scoring", W.SCORING, S.PERFORMING_COMPARISONS,
    {"idle_seconds": 20 * MINUTE, "completed": 7, "failed": 1},
    "Long scoring: SCORING for 20 min with every callback in (7 answered, 1 error).",
)  # fmt: skip
stalled_batch = _fixture(
    "stalled", W.WAITING_CALLBACKS, S.PERFORMING_COMPARISONS,
    {"idle_seconds": HOUR, "completed": 3},
    "Stalled callbacks: WAITING_CALLBACKS with 5 of 8 pending and nothing for 1 h.",
)  # fmt: skip
quiet_batch = _fixture(
    "quiet", W.WAITING_CALLBACKS, S.PERFORMING_COMPARISONS,
    {"idle_seconds": MINUTE, "completed": 4},
    "WAITING_CALLBACKS idle for 1 min: in progress by default (2 min), stalled at a 30 s limit.",
)  # fmt: skip
failed_batch = _fixture(
    "failed", W.FAILED, S.ERROR_PROCESSING, {"idle_seconds": HOUR, "completed": 2},
    "Failed: state FAILED and upload ERROR_PROCESSING, 1 h ago.",
)  # fmt: skip


def anchor_drift_batch(engine: Engine, label: str = "anchor_drift", **kwargs) -> int:
    """A completed batch in which one student essay's metadata claims it is an anchor."""
    batch_id = completed_batch(engine, label=label, **kwargs)
    introduce_anchor_drift(engine, batch_id, f"{label}-E03")
    return batch_id


#: Builder and the health the view must give it, for every fixture.
FIXTURES = {
    "completed": (completed_batch, "ok"),
    "in_progress": (in_progress_batch, "in_progress"),
    "stuck": (stuck_batch, "stuck_finalization"),
    "long_scoring": (long_scoring_batch, "long_scoring"),
    "stalled": (stalled_batch, "stalled_callbacks"),
    "quiet": (quiet_batch, "in_progress"),
    "failed": (failed_batch, "failed"),
    "anchor_drift": (anchor_drift_batch, "ok"),
}
HEALTHY = ("completed", "in_progress")


def build_all(engine: Engine, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Build the named fixtures (all by default); returns ``{name: cj_batch_id}``."""
    return {name: FIXTURES[name][0](engine) for name in names or tuple(FIXTURES)}


def add_assignment_anchors(engine: Engine, assignment_id: str, count: int = 3) -> None:
    """Register ``count`` anchor references and the assessment instructions of an assignment."""
    with session_scope(engine) as session:
        session.add(
            AssessmentInstruction(
                assignment_id=assignment_id,
                course_id="ENG5",
                grade_scale="eng5_np_legacy",
                student_prompt_text="Write about a journey.",
            )
        )
        for i in range(count):
            body = f"anchor {i} of {assignment_id}"
            session.add(
                AnchorEssayReference(
                    assignment_id=assignment_id,
                    anchor_label=f"A{i}",
                    grade="ABCDEF"[i % 6],
                    grade_scale="eng5_np_legacy",
                    text_storage_id=store_content(session, body),
                )
            )


def fresh_database_url(request, backend: str, prefix: str = "cj_health") -> str:
    """URL of a migrated database of its own on ``backend`` for the scope of ``request``.

    On PostgreSQL it is leased (see ``tests.conftest.PostgresServer.lease``): emptied, then
    migrated, and given back when that scope (a test, or a module-scoped fixture's module) ends.
    """
    if backend == "sqlite":
        path = request.getfixturevalue("tmp_path_factory").mktemp(prefix) / "cj.sqlite3"
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_server").lease(request, prefix)
    engine = get_engine(url)
    upgrade(engine)
    engine.dispose()
    return url
