"""BatchFinalizer: score a batch, project grades and complete it, all in one transaction.

Why one transaction: the system this replaces committed scores, projections and the final
state separately, so a failure left batches half-written (COMPLETE_STABLE with the state still
WAITING_CALLBACKS and no projections) and a retry collided with projections already written.
Here either everything is written, or nothing is and the batch is marked FAILED with the reason.

Why bulk reads and writes: a national session (10⁶ decisions over 50,000 essays) spent ~2 min
here loading ORM rows, looking essays up one by one in DataFrames and flushing 50,000 ORM
UPDATEs. Decisions are read in one bulk select (:func:`cjlib.db.queries.decided_comparisons`),
essays as plain columns, per-essay work is done on whole columns, and scores and projections
are written in bulk (:mod:`cjlib.db.bulk`), all still in the one transaction.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from cjlib import __version__
from cjlib.db import session_scope
from cjlib.db.bulk import insert_columns, timestamp_text, update_columns
from cjlib.db.models import (
    FINAL_STATES,
    CJBatchState,
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
from cjlib.db.queries import anchor_grade, anchor_references, decided_comparisons, grade_scale_for
from cjlib.db.repository import lock_batch_state, record_state_transition
from cjlib.errors import (
    CJError,
    DisconnectedComparisonsError,
    NotFoundError,
    ProjectionUnavailable,
)
from cjlib.projection import Projection, project_grades, scored_anchors
from cjlib.reliability import split_half
from cjlib.scoring import DEFAULT_METHOD, BTResult, fit_bradley_terry

log = logging.getLogger(__name__)

#: L2 penalty used when the plain MLE does not exist (comparison graph not strongly
#: connected, e.g. an essay that won every comparison — about 1 essay in 10 at 10
#: comparisons each). Equivalent to a N(0, 4.1²) prior on θ: it leaves well-measured essays
#: where the MLE would put them and keeps the others finite. 0.03 gave the best-calibrated
#: projections in the simulation study of docs/projection.md (mean ECE 0.062 vs 0.074 at 0.01).
FALLBACK_ALPHA = 0.03
#: Split-half reliability is computed at finalization up to this many essays (each split
#: fits the model twice); above it the report computes it on demand.
SPLIT_HALF_MAX_ESSAYS = 3000
#: Random splits of the split-half reliability stored with a batch.
SPLIT_HALF_SPLITS = 20

#: Why a batch was finalized. ``interrupted``: finalized after a crash without finishing its
#: waves (``cj batch resume --finalize-now``, or a hand-called finalizer with budget left);
#: ``target_reliability`` / ``target_grade_certainty``: a stopping rule fired;
#: ``max_cost``: the judge's cost limit stopped new pairs; ``imported``: decisions imported
#: from a judging session.
COMPLETION_REASONS = (
    "stable",
    "budget_exhausted",
    "all_pairs_compared",
    "interrupted",
    "target_reliability",
    "target_grade_certainty",
    "max_cost",
    "imported",
)
#: Error code of a pair still pending when its batch was finalized.
CLOSED_AT_FINALIZATION = "closed_at_finalization"

EVENT_COMPLETED = "cj_assessment.completed.v1"
EVENT_RESULT_PUBLISHED = "assessment.result.published.v1"

#: Names of the finalization steps, in order; a fault hook is called before each.
STEPS = ("lock", "to_scoring", "fit", "store_scores", "project", "store_projections", "events",
         "complete")  # fmt: skip


class FinalizationError(CJError):
    """Finalization failed; the batch was marked FAILED / ERROR_PROCESSING with the reason."""


@dataclass(frozen=True)
class FinalizationResult:
    """What :meth:`BatchFinalizer.finalize_scoring` did."""

    cj_batch_id: int
    already_final: bool
    status: str
    state: str
    completion_reason: str | None = None
    projection_count: int = 0
    projection_unavailable_reason: str | None = None
    scored_essays: int = 0
    reliability: float | None = None
    bt_alpha: float | None = None
    bt_method: str | None = None
    #: Whether the BT fit met its tolerance (a fit that did not is still stored, and says so).
    bt_converged: bool | None = None
    #: Wall seconds of each step of :data:`STEPS`, in order, with ``fit`` split into
    #: ``read_decisions``, ``fit`` and ``split_half`` (empty when already final).
    step_seconds: Mapping[str, float] = field(default_factory=dict)


def _fit(comparisons: pd.DataFrame, method: str | None = None) -> tuple[BTResult, str]:
    """The batch's BT fit with ``method`` (default: the library's, Firth) and why it was used.

    Firth's estimate exists whenever the comparisons connect the essays, including essays that
    won or lost everything (36% of published real sessions have one); only comparisons in
    separate groups fall back to ridge, which then says so.
    """
    method = method or DEFAULT_METHOD
    try:
        bt = fit_bradley_terry(comparisons, method=method)
    except DisconnectedComparisonsError as err:
        if method == "ridge":
            raise
        log.info("%s fit impossible (%s); refitting ridge alpha=%s", method, err, FALLBACK_ALPHA)
        bt = fit_bradley_terry(comparisons, method="ridge", alpha=FALLBACK_ALPHA)
        return bt, f"{method} impossible (essays in unconnected groups): ridge α={FALLBACK_ALPHA}"
    reason = "the library default (see docs/scoring.md)" if method == DEFAULT_METHOD else "asked"
    return bt, reason


def _split_half(comparisons: pd.DataFrame, n_essays: int) -> dict[str, Any] | None:
    """Split-half reliability stored with the batch, or None when too large or impossible."""
    if n_essays > SPLIT_HALF_MAX_ESSAYS:
        return None
    try:
        result = split_half(comparisons, n_splits=SPLIT_HALF_SPLITS, seed=0)
    except (ValueError, CJError) as err:
        log.info("split-half reliability not computed: %s", err)
        return None
    return {
        "median": _finite(result.median),
        "spearman_brown": _finite(result.spearman_brown),
        "split_by": result.split_by,
        "n_splits": len(result.correlations),
    }


class BatchFinalizer:
    """Finalizes CJ batches: WAITING_CALLBACKS → SCORING → COMPLETED in one transaction.

    Parameters
    ----------
    engine : Engine
        From :func:`cjlib.db.get_engine`.
    method : str, optional
        Bradley–Terry estimator (:data:`cjlib.scoring.METHODS`); default the library's
        (:data:`cjlib.scoring.DEFAULT_METHOD`, chosen by the study in docs/scoring.md).
    fault_hook : callable, optional
        Called with each step name of :data:`STEPS` before that step runs; tests raise from it
        to prove that a failure at any step leaves nothing half-written.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        method: str | None = None,
        fault_hook: Callable[[str], None] | None = None,
    ):
        self.engine = engine
        self.method = method
        self._fault_hook = fault_hook

    def _step(self, name: str) -> None:
        if self._fault_hook is not None:
            self._fault_hook(name)

    def _enter(self, name: str, clock: _StepClock) -> None:
        clock.lap(name)
        self._step(name)

    def finalize_scoring(
        self, cj_batch_id: int, *, completion_reason: str | None = None
    ) -> FinalizationResult:
        """Score, project and complete batch ``cj_batch_id``; idempotent.

        The batch row is taken under a lock; a batch that is already final is returned as is,
        with nothing written (so a second call, or a racing process, does nothing). Pairs
        still pending are closed as failed (``closed_at_finalization``), so none stays pending
        after COMPLETED.

        Parameters
        ----------
        completion_reason : str, optional
            One of :data:`COMPLETION_REASONS`. Default: what the counters say —
            ``budget_exhausted`` when the budget was used, else ``interrupted``.

        Raises
        ------
        NotFoundError
            No such batch.
        FinalizationError
            A step failed: everything was rolled back, then the batch was marked FAILED with
            status ERROR_PROCESSING and the reason, in a separate committed transaction.
        """
        if completion_reason is not None and completion_reason not in COMPLETION_REASONS:
            raise ValueError(f"completion_reason must be one of {COMPLETION_REASONS}")
        try:
            with session_scope(self.engine) as session:
                return self._finalize(session, cj_batch_id, completion_reason)
        except NotFoundError:
            raise
        except Exception as err:
            self._mark_failed(cj_batch_id, err)
            detail = str(err) if isinstance(err, CJError) else f"{type(err).__name__}: {err}"
            raise FinalizationError(
                f"finalization of batch {cj_batch_id} failed: {detail}"
            ) from err

    def _finalize(
        self, session: Session, batch_id: int, completion_reason: str | None
    ) -> FinalizationResult:
        clock = _StepClock()
        self._enter("lock", clock)
        state = lock_batch_state(session, batch_id)
        upload = session.get(CJBatchUpload, batch_id, populate_existing=True)
        if state.state in FINAL_STATES:
            return FinalizationResult(
                cj_batch_id=batch_id,
                already_final=True,
                status=upload.status.value,
                state=state.state.value,
                completion_reason=(upload.processing_metadata or {}).get("completion_reason"),
            )
        if completion_reason is None:
            used = state.total_comparisons >= (state.total_budget or 0) > 0
            completion_reason = "budget_exhausted" if used else "interrupted"
        self._enter("to_scoring", clock)
        _close_pending_pairs(session, state)
        record_state_transition(
            session, batch_id, CoreCJState.SCORING, reason=f"finalize: {completion_reason}",
            state_row=state,
        )  # fmt: skip

        self._step("fit")
        clock.lap("read_decisions")
        essays = _batch_essays(session, batch_id)
        comparisons = _decided(session, batch_id)
        clock.lap("fit")
        bt, method_reason = _fit(comparisons, self.method)
        clock.lap("split_half")
        split = _split_half(comparisons, len(bt.scores))

        self._enter("store_scores", clock)
        _store_scores(session, essays, bt.scores)

        self._enter("project", clock)
        outcome = _project(session, upload, essays, bt.scores)

        self._enter("store_projections", clock)
        n_projections = _store_projections(session, batch_id, outcome, bt.scores)

        self._enter("events", clock)
        now = utc_now()
        for event in _events(upload, essays, bt, outcome, completion_reason, now):
            session.add(event)

        self._enter("complete", clock)
        upload.status = CJBatchStatusEnum.COMPLETE_STABLE
        upload.completed_at = now
        upload.processing_metadata = {
            **(upload.processing_metadata or {}),
            **_completion_metadata(essays, bt, method_reason, split, outcome, completion_reason),
        }
        record_state_transition(
            session, batch_id, CoreCJState.COMPLETED,
            reason=f"scored {len(bt.scores)} essays, {n_projections} projections "
            f"({completion_reason})",
            state_row=state,
        )  # fmt: skip
        session.flush()
        seconds = clock.stop()
        log.info(
            "batch %s finalized: %s",
            batch_id,
            ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()),
        )
        return FinalizationResult(
            cj_batch_id=batch_id,
            already_final=False,
            status=CJBatchStatusEnum.COMPLETE_STABLE.value,
            state=CoreCJState.COMPLETED.value,
            completion_reason=completion_reason,
            projection_count=n_projections,
            projection_unavailable_reason=outcome.unavailable_reason,
            scored_essays=len(bt.scores),
            reliability=_finite(bt.reliability),
            bt_alpha=bt.alpha,
            bt_method=bt.method,
            bt_converged=bool(bt.converged),
            step_seconds=seconds,
        )

    def _mark_failed(self, batch_id: int, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {err}"[:2000]
        try:
            with session_scope(self.engine) as session:
                state = lock_batch_state(session, batch_id)
                if state.state in FINAL_STATES:
                    return
                upload = session.get(CJBatchUpload, batch_id, populate_existing=True)
                record_state_transition(
                    session, batch_id, CoreCJState.FAILED, reason=reason, state_row=state
                )
                upload.status = CJBatchStatusEnum.ERROR_PROCESSING
                upload.processing_metadata = {
                    **(upload.processing_metadata or {}),
                    "failure_reason": reason,
                    "failed_at": utc_now().isoformat(),
                }
        except Exception:  # the original error matters more; keep it, log this one
            log.exception("could not mark batch %s as FAILED", batch_id)


class _StepClock:
    """Wall seconds per finalization step: each lap ends the step before it."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._current: str | None = None
        self._started = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self._seconds[self._current] = now - self._started
        self._current, self._started = name, now

    def stop(self) -> dict[str, float]:
        self.lap("")
        return dict(self._seconds)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


@dataclass(frozen=True)
class _BatchEssays:
    """The batch's essays as columns, in creation order.

    ``frame``: ``id``, ``els_essay_id``, ``is_anchor``. ``anchor_metadata``: the
    ``processing_metadata`` of the anchors only, the one rule that reads it
    (:func:`cjlib.db.queries.anchor_grade`) ignores it for students.
    """

    frame: pd.DataFrame
    anchor_metadata: dict[str, Any]

    @property
    def ids(self) -> pd.Series:
        return self.frame["els_essay_id"]

    def scored(self, scores: pd.DataFrame) -> np.ndarray:
        """Mask of the essays that have a score."""
        return self.ids.isin(scores.index).to_numpy()


def _batch_essays(session: Session, batch_id: int) -> _BatchEssays:
    table = CJProcessedEssay
    rows = session.execute(
        select(table.id, table.els_essay_id, table.is_anchor)
        .where(table.cj_batch_id == batch_id)
        .order_by(table.id)
    ).all()
    columns = [list(values) for values in zip(*rows, strict=True)] or [[], [], []]
    frame = pd.DataFrame(
        {
            "id": np.asarray(columns[0], dtype=np.int64),
            "els_essay_id": pd.Series(columns[1], dtype=object),
            "is_anchor": np.asarray(columns[2], dtype=bool),
        }
    )
    metadata = session.execute(
        select(table.els_essay_id, table.processing_metadata).where(
            table.cj_batch_id == batch_id, table.is_anchor.is_(True)
        )
    ).all()
    return _BatchEssays(frame, {essay_id: meta for essay_id, meta in metadata})


@dataclass(frozen=True)
class _ProjectionOutcome:
    """The grade projection of a batch, or why there is none."""

    grade_scale: str
    anchor_grades: dict[str, str]
    scored_anchor_grades: dict[str, str]
    unscored_anchors: list[str]
    projection: Projection | None
    unavailable: ProjectionUnavailable | None

    @property
    def unavailable_reason(self) -> str | None:
        return self.unavailable.reason if self.unavailable is not None else None


def _close_pending_pairs(session: Session, state: CJBatchState) -> None:
    """Record pairs that never got a result as failed, so none is pending after COMPLETED."""
    closed = session.execute(
        update(CJComparisonPair)
        .where(
            CJComparisonPair.cj_batch_id == state.batch_id,
            CJComparisonPair.winner.is_(None),
        )
        .values(
            winner=ComparisonWinner.ERROR,
            error_code=CLOSED_AT_FINALIZATION,
            completed_at=utc_now(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if closed:
        state.failed_comparisons += closed
        log.warning("batch %s: %d pending pairs closed as failed", state.batch_id, closed)


def _decided(session: Session, batch_id: int) -> pd.DataFrame:
    comparisons = decided_comparisons(session, batch_id)
    if comparisons.empty:
        raise FinalizationError(
            f"batch {batch_id} has no successful comparisons to score; "
            "check the judge's errors with `cj batch inspect`"
        )
    return comparisons


def _store_scores(session: Session, essays: _BatchEssays, scores: pd.DataFrame) -> None:
    """Each essay's θ, SE and decided comparisons; an essay without a score gets None, None, 0."""
    # Essays the fit did not score come out of the reindex as NaN.
    aligned = scores.reindex(essays.ids)
    update_columns(
        session,
        CJProcessedEssay.__table__,
        "id",
        {
            "id": essays.frame["id"].to_numpy(),
            "current_bt_score": aligned["theta"].to_numpy(float),
            "current_bt_se": aligned["se"].to_numpy(float),
            "comparison_count": aligned["n_comparisons"].fillna(0).to_numpy(np.int64),
        },
        on_change={"updated_at": utc_now()},
    )


def _project(
    session: Session,
    upload: CJBatchUpload,
    essays: _BatchEssays,
    scores: pd.DataFrame,
) -> _ProjectionOutcome:
    grade_scale = grade_scale_for(session, upload.assignment_id)
    references = anchor_references(session, upload.assignment_id, grade_scale)
    anchors = essays.ids[essays.frame["is_anchor"].to_numpy()].tolist()
    grades = {
        essay_id: anchor_grade(essay_id, True, essays.anchor_metadata.get(essay_id), references)
        for essay_id in anchors
    }
    anchor_grades = {essay_id: g for essay_id, g in grades.items() if g is not None}
    # An anchor without a successful comparison has no θ and cannot inform calibration;
    # it is left out and named in the metadata rather than blocking every projection.
    scored, unscored = scored_anchors(anchor_grades, scores)
    projection, unavailable = None, None
    try:
        projection = project_grades(scores, scored, scale=grade_scale)
    except ProjectionUnavailable as err:
        unavailable = err
    return _ProjectionOutcome(grade_scale, anchor_grades, scored, unscored, projection, unavailable)


def _store_projections(
    session: Session, batch_id: int, outcome: _ProjectionOutcome, scores: pd.DataFrame
) -> int:
    session.execute(delete(GradeProjection).where(GradeProjection.cj_batch_id == batch_id))
    projection = outcome.projection
    if projection is None:
        session.flush()
        return 0
    grades = projection.grades
    labels = list(projection.scale.all_labels)
    essay_ids = [str(essay_id) for essay_id in grades.index]
    theta = scores["theta"].reindex(grades.index).to_numpy(float).tolist()
    se = scores["se"].reindex(grades.index).to_numpy(float).tolist()
    expected = grades["expected_grade_index"].to_numpy(float).tolist()
    n_anchors = len(outcome.scored_anchor_grades)
    probabilities = [
        json.dumps(dict(zip(labels, row, strict=True)))
        for row in grades[labels].to_numpy(float).tolist()
    ]
    metadata = [
        json.dumps(
            {
                "expected_grade_index": e,
                "bt_score": t,
                "bt_se": s,
                "method": "anchor_calibrated_normal",
                "n_anchors": n_anchors,
                "cjlib_version": __version__,
            }
        )
        for e, t, s in zip(expected, theta, se, strict=True)
    ]
    dialect = session.get_bind().dialect.name
    n = len(essay_ids)
    return insert_columns(
        session,
        GradeProjection.__table__,
        {
            "els_essay_id": essay_ids,
            "cj_batch_id": [batch_id] * n,
            "primary_grade": grades["primary_grade"].astype(str).tolist(),
            "grade_scale": [outcome.grade_scale] * n,
            "confidence_score": grades["confidence_score"].to_numpy(float),
            "confidence_label": grades["confidence_label"].astype(str).tolist(),
            "probabilities": probabilities,
            "calculation_metadata": metadata,
            "created_at": [timestamp_text(dialect, utc_now())] * n,
        },
    )


def _completion_metadata(
    essays: _BatchEssays,
    bt: BTResult,
    method_reason: str,
    split: dict[str, Any] | None,
    outcome: _ProjectionOutcome,
    completion_reason: str,
) -> dict[str, Any]:
    """What the finalizer adds to the upload's ``processing_metadata``."""
    unavailable = outcome.unavailable
    misfit = bt.judges.index[bt.judges["misfit"]].tolist() if "misfit" in bt.judges else []
    meta: dict[str, Any] = {
        "completion_reason": completion_reason,
        "bt_method": bt.method,
        "bt_method_reason": method_reason,
        "bt_alpha": bt.alpha,
        "reliability_name": bt.reliability_name,
        "sep_g": _finite(bt.sep_g),
        "sep_g_sirt": _finite(bt.sep_g_sirt),
        "split_half": split,
        "misfit_judges": [str(j) for j in misfit],
        "bt_engine": bt.engine,
        "bt_se_method": bt.se_method,
        "bt_connected": bool(bt.connected),
        "bt_converged": bool(bt.converged),
        "bt_iterations": int(bt.iterations),
        "reliability": _finite(bt.reliability),
        "separation": _finite(bt.separation),
        "grade_scale": outcome.grade_scale,
        "projection_available": outcome.projection is not None,
        "projection_unavailable_reason": outcome.unavailable_reason,
        "projection_unavailable_message": str(unavailable) if unavailable else None,
        "unscored_anchors": outcome.unscored_anchors,
        "unscored_essays": sorted(essays.ids[~essays.scored(bt.scores)].tolist()),
    }
    if outcome.projection is not None:
        check = outcome.projection.anchor_check
        meta["anchor_check"] = {
            "inversions": len(check.inversions),
            "kendall_tau_b": _finite(check.kendall_tau_b),
            "spearman_rho": _finite(check.spearman_rho),
        }
    return meta


def _events(
    upload: CJBatchUpload,
    essays: _BatchEssays,
    bt: BTResult,
    outcome: _ProjectionOutcome,
    completion_reason: str,
    now: datetime,
) -> tuple[EventOutbox, EventOutbox]:
    """The completion event and the rich result event of a finalized batch."""
    scores = bt.scores
    student = ~essays.frame["is_anchor"].to_numpy()
    scored = essays.scored(scores)
    common = {
        "cj_batch_id": upload.id,
        "bos_batch_id": upload.bos_batch_id,
        "status": CJBatchStatusEnum.COMPLETE_STABLE.value,
        "projection_available": outcome.projection is not None,
        "projection_unavailable_reason": outcome.unavailable_reason,
        "correlation_id": str(uuid.UUID(upload.event_correlation_id)),
        "occurred_at": now.isoformat(),
    }
    completed = _event(
        EVENT_COMPLETED,
        common,
        completion_reason=completion_reason,
        scored_student_ids=essays.ids[student & scored].tolist(),
        failed_student_ids=essays.ids[student & ~scored].tolist(),
    )
    published = _event(
        EVENT_RESULT_PUBLISHED,
        common,
        assignment_id=upload.assignment_id,
        grade_scale=outcome.grade_scale,
        reliability=_finite(bt.reliability),
        essays=_published_essays(essays, scores, outcome.projection, outcome.anchor_grades),
    )
    return completed, published


def _event(event_type: str, common: dict[str, Any], **body: Any) -> EventOutbox:
    """An outbox row for the batch in ``common`` (its id is the aggregate id)."""
    return EventOutbox(
        aggregate_id=str(common["cj_batch_id"]),
        event_type=event_type,
        correlation_id=common["correlation_id"],
        payload={"event_type": event_type, **common, **body},
    )


def _projected_grades(projection: Projection | None, essay_ids: pd.Series) -> list[dict | None]:
    """The ``projected_grade`` of each essay of ``essay_ids`` (None for those without one)."""
    if projection is None:
        return [None] * len(essay_ids)
    labels = list(projection.scale.all_labels)
    has = essay_ids.isin(projection.grades.index).to_numpy()
    grades = projection.grades.reindex(essay_ids.loc[has])
    rows = zip(
        grades["primary_grade"].astype(str).tolist(),
        grades["confidence_score"].to_numpy(float).tolist(),
        grades["confidence_label"].astype(str).tolist(),
        grades[labels].to_numpy(float).tolist(),
        strict=True,
    )
    projected = [
        {
            "primary_grade": primary,
            "confidence_score": confidence,
            "confidence_label": label,
            "probabilities": dict(zip(labels, probabilities, strict=True)),
        }
        for primary, confidence, label, probabilities in rows
    ]
    out: list[dict | None] = [None] * len(essay_ids)
    for i, grade in zip(np.flatnonzero(has).tolist(), projected, strict=True):
        out[i] = grade
    return out


def _published_essays(
    essays: _BatchEssays,
    scores: pd.DataFrame,
    projection: Projection | None,
    anchor_grades: dict[str, str],
) -> list[dict[str, Any]]:
    """Every essay's score, SE, rank, anchor flag and projected grade, for the rich event.

    Sorted by essay id; whole columns are aligned to the essays once (no look-up per essay).
    """
    frame = essays.frame.sort_values("els_essay_id", kind="stable", ignore_index=True)
    ids = frame["els_essay_id"]
    scored = ids.isin(scores.index).to_numpy()
    aligned = scores.reindex(ids)
    ranks = scores["theta"].rank(ascending=False, method="min").reindex(ids)

    def present(values: pd.Series, cast: Callable[[Any], Any]) -> list[Any]:
        return [cast(v) if ok else None for v, ok in zip(values.tolist(), scored, strict=True)]

    columns = zip(
        ids.tolist(),
        frame["is_anchor"].tolist(),
        present(aligned["theta"], float),
        present(aligned["se"], float),
        present(ranks, int),
        present(aligned["n_comparisons"], int),
        _projected_grades(projection, ids),
        strict=True,
    )
    return [
        {
            "els_essay_id": sid,
            "is_anchor": bool(is_anchor),
            "anchor_grade": anchor_grades.get(sid),
            "bt_score": theta,
            "bt_se": se,
            "rank": rank,
            "comparison_count": count if count is not None else 0,
            "projected_grade": grade,
        }
        for sid, is_anchor, theta, se, rank, count, grade in columns
    ]
