"""Repository functions: the only writes to CJ tables that carry business rules.

Rules kept here so that every caller (workflow, CLI, notebooks, tests) obeys them:

* ``is_anchor`` on ``cj_processed_essays`` is the one source of truth about anchors; metadata
  may set it, but stored metadata never disagrees with the column.
* a state change updates ``cj_batch_states`` and appends to ``cj_batch_state_transitions`` in
  the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cjlib.db.bulk import insert_rows, timestamp_text
from cjlib.db.models import (
    CJBatchState,
    CJBatchStateTransition,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJContent,
    CJProcessedEssay,
    CoreCJState,
    utc_now,
)
from cjlib.errors import InvalidStateTransition, NotFoundError

_TRUE_STRINGS = {"true", "1", "yes"}
_FALSE_STRINGS = {"false", "0", "no"}

#: Allowed CJ state changes; anything else is a bug in the caller.
ALLOWED_TRANSITIONS: Mapping[CoreCJState | None, frozenset[CoreCJState]] = {
    None: frozenset({CoreCJState.INITIALIZING}),
    CoreCJState.INITIALIZING: frozenset(
        {CoreCJState.GENERATING_PAIRS, CoreCJState.FAILED, CoreCJState.CANCELLED}
    ),
    CoreCJState.GENERATING_PAIRS: frozenset(
        {CoreCJState.WAITING_CALLBACKS, CoreCJState.FAILED, CoreCJState.CANCELLED}
    ),
    CoreCJState.WAITING_CALLBACKS: frozenset(
        {
            CoreCJState.GENERATING_PAIRS,
            CoreCJState.SCORING,
            CoreCJState.FAILED,
            CoreCJState.CANCELLED,
        }
    ),
    CoreCJState.SCORING: frozenset({CoreCJState.COMPLETED, CoreCJState.FAILED}),
    CoreCJState.COMPLETED: frozenset(),
    CoreCJState.FAILED: frozenset(),
    CoreCJState.CANCELLED: frozenset(),
}


def parse_anchor_flag(value: Any) -> bool | None:
    """Read an ``is_anchor`` metadata value: booleans, 0/1 and "true"/"false"/"yes"/"no"/"1"/"0".

    Returns None for anything else. Diagnostics use the same reading as the writer, so an essay
    is never reported as drifting merely because of how its metadata spelled the flag.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_STRINGS | _FALSE_STRINGS:
        return value.strip().lower() in _TRUE_STRINGS
    return None


def _coerce_anchor_flag(value: Any) -> bool:
    flag = parse_anchor_flag(value)
    if flag is not None:
        return flag
    raise ValueError(
        f"processing_metadata['is_anchor'] must be true or false, got {value!r}; pass a boolean"
    )


def create_or_update_cj_processed_essay(
    session: Session,
    *,
    cj_batch_id: int,
    els_essay_id: str,
    text_storage_id: str,
    assessment_input_text: str,
    processing_metadata: Mapping[str, Any] | None = None,
) -> CJProcessedEssay:
    """Insert or update one processed essay of a batch, keeping ``is_anchor`` correct.

    Rules (the "Batch 20" fix):

    * insert with ``processing_metadata["is_anchor"]`` → the column takes that value; insert
      without the key → ``False``;
    * update with the key → the column follows it (True or False); update without the key →
      the column keeps its value;
    * metadata on update is merged into the stored metadata (new keys win), never replaced;
    * afterwards the stored metadata's ``is_anchor`` always equals the column.

    Raises
    ------
    ValueError
        ``is_anchor`` in the metadata is not a boolean-like value.
    """
    incoming = dict(processing_metadata or {})
    explicit = _coerce_anchor_flag(incoming["is_anchor"]) if "is_anchor" in incoming else None
    essay = session.scalars(
        select(CJProcessedEssay)
        .where(
            CJProcessedEssay.cj_batch_id == cj_batch_id,
            CJProcessedEssay.els_essay_id == els_essay_id,
        )
        .with_for_update()
    ).one_or_none()
    if essay is None:
        flag = bool(explicit) if explicit is not None else False
        essay = CJProcessedEssay(
            cj_batch_id=cj_batch_id,
            els_essay_id=els_essay_id,
            text_storage_id=text_storage_id,
            assessment_input_text=assessment_input_text,
            is_anchor=flag,
            processing_metadata={**incoming, "is_anchor": flag},
        )
        session.add(essay)
    else:
        flag = explicit if explicit is not None else essay.is_anchor
        essay.text_storage_id = text_storage_id
        essay.assessment_input_text = assessment_input_text
        essay.is_anchor = flag
        # A new dict, so SQLAlchemy sees the JSON change.
        essay.processing_metadata = {
            **(essay.processing_metadata or {}),
            **incoming,
            "is_anchor": flag,
        }
    session.flush()
    return essay


def create_processed_essays(
    session: Session, cj_batch_id: int, essays: list[Mapping[str, Any]]
) -> None:
    """Insert a fresh batch's processed essays in one statement, by the insert rule above.

    The bulk form of :func:`create_or_update_cj_processed_essay` for essays that do not exist
    yet (a new batch): the column takes ``processing_metadata["is_anchor"]`` (default false)
    and the stored metadata carries the same value. Each mapping has ``els_essay_id``,
    ``text_storage_id``, ``assessment_input_text`` and optional ``processing_metadata``.

    Raises
    ------
    ValueError
        ``is_anchor`` in a metadata is not a boolean-like value.
    """
    rows = []
    for essay in essays:
        incoming = dict(essay.get("processing_metadata") or {})
        flag = _coerce_anchor_flag(incoming["is_anchor"]) if "is_anchor" in incoming else False
        rows.append(
            {
                "cj_batch_id": cj_batch_id,
                "els_essay_id": essay["els_essay_id"],
                "text_storage_id": essay["text_storage_id"],
                "assessment_input_text": essay["assessment_input_text"],
                "is_anchor": flag,
                "processing_metadata": {**incoming, "is_anchor": flag},
            }
        )
    if rows:
        session.execute(insert(CJProcessedEssay), rows)


def lock_batch_state(session: Session, batch_id: int) -> CJBatchState:
    """Load a batch's state row under a write lock for the rest of the transaction.

    PostgreSQL: ``SELECT … FOR UPDATE``. SQLite has no row locks, so a no-op UPDATE takes the
    database write lock first; either way a concurrent writer waits for our commit.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(CJBatchState)
            .where(CJBatchState.batch_id == batch_id)
            .values(batch_id=CJBatchState.batch_id)
            .execution_options(synchronize_session=False)
        )
    state = session.scalars(
        select(CJBatchState)
        .where(CJBatchState.batch_id == batch_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if state is None:
        raise NotFoundError(f"no CJ batch with id {batch_id}")
    return state


def record_state_transition(
    session: Session,
    batch_id: int,
    to_state: CoreCJState,
    *,
    reason: str | None = None,
    state_row: CJBatchState | None = None,
) -> CJBatchStateTransition:
    """Change a batch's CJ state and append the change to the transition log, atomically.

    Both writes happen in ``session``'s transaction; ``last_activity_at`` is touched.

    Raises
    ------
    InvalidStateTransition
        The state machine does not allow ``from → to``.
    """
    state = state_row if state_row is not None else lock_batch_state(session, batch_id)
    from_state = state.state
    if to_state not in ALLOWED_TRANSITIONS[from_state]:
        raise InvalidStateTransition(
            f"batch {batch_id}: state {from_state} cannot change to {to_state}"
        )
    now = utc_now()
    state.state = to_state
    state.last_activity_at = now
    transition = CJBatchStateTransition(
        batch_id=batch_id, from_state=from_state, to_state=to_state, at=now, reason=reason
    )
    session.add(transition)
    session.flush()
    return transition


def text_storage_id_for(text: str) -> str:
    """The content-store key of ``text``: its SHA-256 hex digest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def insert_ignoring_duplicates(session: Session, model: type, rows: list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were inserted.

    Safe when another transaction inserts the same row at the same moment.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(model).on_conflict_do_nothing()
    result = session.connection().execute(statement, rows[0] if len(rows) == 1 else rows)
    return max(result.rowcount, 0)


def store_contents(session: Session, texts: list[str]) -> list[str]:
    """Put ``texts`` in the content store in one statement; their ``text_storage_id`` in order.

    Idempotent and race-free: a text another transaction stores at the same moment is not an
    error (the system this replaces failed on ``pk_cj_content`` when two batches ran at once).
    """
    keys = [text_storage_id_for(text) for text in texts]
    unique = {key: text for key, text in zip(keys, texts, strict=True)}
    insert_ignoring_duplicates(
        session, CJContent, [{"text_storage_id": k, "content": t} for k, t in unique.items()]
    )
    return keys


def store_content(session: Session, text: str) -> str:
    """Put ``text`` in the content store (idempotent) and return its ``text_storage_id``."""
    return store_contents(session, [text])[0]


def fetch_content(session: Session, text_storage_id: str) -> str | None:
    """The text stored under ``text_storage_id``, or None when it does not resolve."""
    row = session.get(CJContent, text_storage_id)
    return row.content if row is not None else None


def create_batch_upload(
    session: Session,
    *,
    assignment_id: str | None,
    course_id: str | None = None,
    batch_label: str | None = None,
    language: str | None = "en",
    course_code: str | None = None,
    expected_essay_count: int | None = None,
    total_budget: int | None = None,
    processing_metadata: Mapping[str, Any] | None = None,
) -> CJBatchUpload:
    """Create a batch upload with a fresh ``bos_batch_id`` and ``event_correlation_id``.

    Also creates its state row in INITIALIZING and logs that first transition.
    """
    upload = CJBatchUpload(
        bos_batch_id=str(uuid.uuid4()),
        batch_label=batch_label,
        event_correlation_id=str(uuid.uuid4()),
        assignment_id=assignment_id,
        course_id=course_id,
        language=language,
        course_code=course_code,
        expected_essay_count=expected_essay_count,
        status=CJBatchStatusEnum.PENDING,
        processing_metadata=dict(processing_metadata or {}),
    )
    session.add(upload)
    session.flush()
    now = utc_now()
    session.add(
        CJBatchState(
            batch_id=upload.id,
            state=CoreCJState.INITIALIZING,
            total_budget=total_budget,
            last_activity_at=now,
            processing_metadata={},
        )
    )
    session.add(
        CJBatchStateTransition(
            batch_id=upload.id,
            from_state=None,
            to_state=CoreCJState.INITIALIZING,
            at=now,
            reason="batch created",
        )
    )
    session.flush()
    return upload


#: Columns :func:`bulk_create_cj_processed_essays` writes, in order.
_BULK_ESSAY_COLUMNS = (
    "cj_batch_id", "els_essay_id", "text_storage_id", "assessment_input_text",
    "comparison_count", "is_anchor", "processing_metadata", "created_at", "updated_at",
)  # fmt: skip


def bulk_create_cj_processed_essays(
    session: Session, *, cj_batch_id: int, essays: Iterable[Mapping[str, Any]]
) -> int:
    """Insert many new processed essays of one batch at once, with the anchor rule of inserts.

    The bulk path of :func:`create_or_update_cj_processed_essay` for a batch being created
    (an import of 50 000 essays): each item has ``els_essay_id``, ``text_storage_id``,
    ``assessment_input_text`` and ``processing_metadata``; the ``is_anchor`` column takes
    ``processing_metadata["is_anchor"]`` (default false) and the stored metadata carries the
    same value, exactly as an insert through the single-row function. Insert only: an essay
    already in the batch violates the ``(cj_batch_id, els_essay_id)`` unique constraint;
    update existing essays with :func:`create_or_update_cj_processed_essay`.

    Returns
    -------
    int
        Essays written.

    Raises
    ------
    ValueError
        ``is_anchor`` in some metadata is not a boolean-like value.
    """
    dialect = session.get_bind().dialect.name
    now = timestamp_text(dialect, utc_now())
    rows = []
    for essay in essays:
        meta = dict(essay.get("processing_metadata") or {})
        flag = _coerce_anchor_flag(meta["is_anchor"]) if "is_anchor" in meta else False
        meta["is_anchor"] = flag
        rows.append(
            (
                cj_batch_id,
                essay["els_essay_id"],
                essay["text_storage_id"],
                essay["assessment_input_text"],
                0,
                flag,
                json.dumps(meta),
                now,
                now,
            )
        )
    return insert_rows(session, CJProcessedEssay.__table__, _BULK_ESSAY_COLUMNS, rows)
