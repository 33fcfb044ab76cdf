"""The CJ database schema as typed SQLAlchemy 2 models; Alembic migrations mirror it exactly.

Table and column names are the ones CJ engineers already query
(``SELECT * FROM grade_projections WHERE cj_batch_id = 20`` runs unchanged).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of timestamp we store)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are normalised to
    UTC on the way in and marked UTC on the way out. Naive datetimes are refused: they are the
    classic source of silent hour shifts.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CJBatchStatusEnum(enum.StrEnum):
    """Upload status of a batch as the outside world sees it."""

    PENDING = "PENDING"
    FETCHING_CONTENT = "FETCHING_CONTENT"
    PERFORMING_COMPARISONS = "PERFORMING_COMPARISONS"
    COMPLETE_STABLE = "COMPLETE_STABLE"
    COMPLETE_MAX_COMPARISONS = "COMPLETE_MAX_COMPARISONS"
    COMPLETE_FORCED_RECOVERY = "COMPLETE_FORCED_RECOVERY"
    COMPLETE_INSUFFICIENT_ESSAYS = "COMPLETE_INSUFFICIENT_ESSAYS"
    ERROR_PROCESSING = "ERROR_PROCESSING"


class CoreCJState(enum.StrEnum):
    """Internal state of the CJ state machine for one batch."""

    INITIALIZING = "INITIALIZING"
    GENERATING_PAIRS = "GENERATING_PAIRS"
    WAITING_CALLBACKS = "WAITING_CALLBACKS"
    SCORING = "SCORING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATES = frozenset({CoreCJState.COMPLETED, CoreCJState.FAILED, CoreCJState.CANCELLED})


class ComparisonWinner(enum.StrEnum):
    """Outcome of one comparison; NULL in the database while the callback is pending."""

    ESSAY_A = "essay_a"
    ESSAY_B = "essay_b"
    ERROR = "error"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR with a CHECK constraint: portable, and views and plain SQL read the
    # value itself (PostgreSQL native enums would need migrations for every new value).
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=40,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class CJBatchUpload(Base):
    __tablename__ = "cj_batch_uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bos_batch_id: Mapped[str] = mapped_column(String(36), unique=True)
    batch_label: Mapped[str | None] = mapped_column(String(255))
    event_correlation_id: Mapped[str] = mapped_column(String(36))
    assignment_id: Mapped[str | None] = mapped_column(String(100), index=True)
    course_id: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(20))
    course_code: Mapped[str | None] = mapped_column(String(50))
    expected_essay_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[CJBatchStatusEnum] = mapped_column(
        _enum(CJBatchStatusEnum, "cj_batch_status"), default=CJBatchStatusEnum.PENDING
    )
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    state: Mapped[CJBatchState | None] = relationship(
        back_populates="upload", uselist=False, passive_deletes=True
    )


class CJBatchState(Base):
    __tablename__ = "cj_batch_states"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[CoreCJState] = mapped_column(
        _enum(CoreCJState, "core_cj_state"), default=CoreCJState.INITIALIZING
    )
    total_budget: Mapped[int | None] = mapped_column(Integer)
    total_comparisons: Mapped[int] = mapped_column(Integer, default=0)
    submitted_comparisons: Mapped[int] = mapped_column(Integer, default=0)
    completed_comparisons: Mapped[int] = mapped_column(Integer, default=0)
    failed_comparisons: Mapped[int] = mapped_column(Integer, default=0)
    current_iteration: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utc_now)
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    upload: Mapped[CJBatchUpload] = relationship(back_populates="state")


class CJBatchStateTransition(Base):
    """Append-only log of every state change of a batch."""

    __tablename__ = "cj_batch_state_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[CoreCJState | None] = mapped_column(_enum(CoreCJState, "from_state"))
    to_state: Mapped[CoreCJState] = mapped_column(_enum(CoreCJState, "to_state"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    reason: Mapped[str | None] = mapped_column(Text)


class CJProcessedEssay(Base):
    __tablename__ = "cj_processed_essays"
    __table_args__ = (
        UniqueConstraint("cj_batch_id", "els_essay_id"),
        Index("ix_cj_processed_essays_batch_anchor", "cj_batch_id", "is_anchor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cj_batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"))
    els_essay_id: Mapped[str] = mapped_column(String(100))
    text_storage_id: Mapped[str] = mapped_column(String(64))
    assessment_input_text: Mapped[str] = mapped_column(Text)
    current_bt_score: Mapped[float | None] = mapped_column(Float)
    current_bt_se: Mapped[float | None] = mapped_column(Float)
    comparison_count: Mapped[int] = mapped_column(Integer, default=0)
    is_anchor: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


class CJComparisonPair(Base):
    __tablename__ = "cj_comparison_pairs"
    __table_args__ = (
        Index("ix_cj_comparison_pairs_batch_winner", "cj_batch_id", "winner"),
        Index("ix_cj_comparison_pairs_batch_claimed_by", "cj_batch_id", "claimed_by"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cj_batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"))
    essay_a_els_id: Mapped[str] = mapped_column(String(100))
    essay_b_els_id: Mapped[str] = mapped_column(String(100))
    request_correlation_id: Mapped[str] = mapped_column(String(36), unique=True)
    winner: Mapped[ComparisonWinner | None] = mapped_column(
        _enum(ComparisonWinner, "comparison_winner")
    )
    confidence: Mapped[float | None] = mapped_column(Float)
    justification: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(100))
    judge_id: Mapped[str | None] = mapped_column(String(100))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: ``cj_batch_workers.worker_id`` of the worker that sent this pair to its judge and owes
    #: its result; NULL until claimed. A dead worker's claims are taken over on resume.
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class CJBatchWorker(Base):
    """A process working on a batch: it claims pending pairs and heartbeats while alive."""

    __tablename__ = "cj_batch_workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cj_batch_id: Mapped[int] = mapped_column(
        ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[str] = mapped_column(String(100), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GradeProjection(Base):
    __tablename__ = "grade_projections"

    els_essay_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    cj_batch_id: Mapped[int] = mapped_column(
        ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    primary_grade: Mapped[str] = mapped_column(String(20))
    grade_scale: Mapped[str] = mapped_column(String(50))
    confidence_score: Mapped[float] = mapped_column(Float)
    confidence_label: Mapped[str] = mapped_column(String(10))
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    calculation_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class AnchorEssayReference(Base):
    __tablename__ = "anchor_essay_references"
    __table_args__ = (UniqueConstraint("assignment_id", "anchor_label", "grade_scale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[str] = mapped_column(String(100), index=True)
    anchor_label: Mapped[str] = mapped_column(String(100))
    grade: Mapped[str] = mapped_column(String(20))
    grade_scale: Mapped[str] = mapped_column(String(50))
    text_storage_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class AssessmentInstruction(Base):
    __tablename__ = "assessment_instructions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[str] = mapped_column(String(100), unique=True)
    course_id: Mapped[str | None] = mapped_column(String(100))
    grade_scale: Mapped[str] = mapped_column(String(50))
    student_prompt_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


class CJContent(Base):
    """Content store: text addressed by its SHA-256 hash."""

    __tablename__ = "cj_content"

    text_storage_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class EventOutbox(Base):
    """Transactional outbox: events written in the same transaction as the state they announce."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aggregate_id: Mapped[str] = mapped_column(String(100), index=True)
    event_type: Mapped[str] = mapped_column(String(100))
    correlation_id: Mapped[str] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CJJudgeCall(Base):
    """Audit trail of LLM judge calls: which prompt, model and answer produced a decision.

    One row per call (a pair re-sent after a crash has several); never holds the API key.
    """

    __tablename__ = "cj_judge_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cj_batch_id: Mapped[int] = mapped_column(
        ForeignKey("cj_batch_uploads.id", ondelete="CASCADE"), index=True
    )
    comparison_pair_id: Mapped[int] = mapped_column(
        ForeignKey("cj_comparison_pairs.id", ondelete="CASCADE"), index=True
    )
    request_correlation_id: Mapped[str] = mapped_column(String(36), index=True)
    essay_a_els_id: Mapped[str] = mapped_column(String(100))
    essay_b_els_id: Mapped[str] = mapped_column(String(100))
    judge_id: Mapped[str] = mapped_column(String(100))
    template_sha256: Mapped[str] = mapped_column(String(64))
    model_requested: Mapped[str] = mapped_column(String(200))
    model_reported: Mapped[str | None] = mapped_column(String(200))
    request_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_s: Mapped[float | None] = mapped_column(Float)
    total_s: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
    attempt_errors: Mapped[list[str]] = mapped_column(JSON)
    http_status: Mapped[int | None] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(40))
    response_content: Mapped[str | None] = mapped_column(Text)
    raw_response: Mapped[str | None] = mapped_column(Text)
    winner: Mapped[str | None] = mapped_column(String(20))
    confidence: Mapped[int | None] = mapped_column(Integer)
    justification: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_detail: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())
