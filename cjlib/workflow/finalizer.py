"""BatchFinalizer: score a batch, project grades and complete it, all in one transaction.

Why one transaction: the system this replaces committed scores, projections and the final
state separately, so a failure left batches half-written (COMPLETE_STABLE with the state still
WAITING_CALLBACKS and no projections) and a retry collided with projections already written.
Here either everything is written, or nothing is and the batch is marked FAILED with the reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from cjlib import __version__
from cjlib.db import session_scope
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
        self._step("lock")
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
        self._step("to_scoring")
        _close_pending_pairs(session, state)
        record_state_transition(
            session, batch_id, CoreCJState.SCORING, reason=f"finalize: {completion_reason}",
            state_row=state,
        )  # fmt: skip

        self._step("fit")
        essays = session.scalars(
            select(CJProcessedEssay).where(CJProcessedEssay.cj_batch_id == batch_id)
        ).all()
        bt, method_reason, split = _fit_batch(session, batch_id, self.method)

        self._step("store_scores")
        _store_scores(essays, bt.scores)

        self._step("project")
        outcome = _project(session, upload, essays, bt.scores)

        self._step("store_projections")
        n_projections = _store_projections(session, batch_id, outcome, bt.scores)

        self._step("events")
        now = utc_now()
        for event in _events(upload, essays, bt, outcome, completion_reason, now):
            session.add(event)

        self._step("complete")
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


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


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


def _fit_batch(
    session: Session, batch_id: int, method: str | None
) -> tuple[BTResult, str, dict[str, Any] | None]:
    comparisons = decided_comparisons(session, batch_id)
    if comparisons.empty:
        raise FinalizationError(
            f"batch {batch_id} has no successful comparisons to score; "
            "check the judge's errors with `cj batch inspect`"
        )
    bt, reason = _fit(comparisons, method)
    return bt, reason, _split_half(comparisons, len(bt.scores))


def _store_scores(essays: Sequence[CJProcessedEssay], scores: pd.DataFrame) -> None:
    for essay in essays:
        if essay.els_essay_id in scores.index:
            row = scores.loc[essay.els_essay_id]
            essay.current_bt_score = float(row["theta"])
            essay.current_bt_se = float(row["se"])
            essay.comparison_count = int(row["n_comparisons"])
        else:
            essay.current_bt_score = None
            essay.current_bt_se = None
            essay.comparison_count = 0


def _project(
    session: Session,
    upload: CJBatchUpload,
    essays: Sequence[CJProcessedEssay],
    scores: pd.DataFrame,
) -> _ProjectionOutcome:
    grade_scale = grade_scale_for(session, upload.assignment_id)
    references = anchor_references(session, upload.assignment_id, grade_scale)
    grades = {
        e.els_essay_id: anchor_grade(e.els_essay_id, e.is_anchor, e.processing_metadata, references)
        for e in essays
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
    labels = list(projection.scale.all_labels)
    for essay_id, row in projection.grades.iterrows():
        session.add(
            GradeProjection(
                els_essay_id=str(essay_id),
                cj_batch_id=batch_id,
                primary_grade=str(row["primary_grade"]),
                grade_scale=outcome.grade_scale,
                confidence_score=float(row["confidence_score"]),
                confidence_label=str(row["confidence_label"]),
                probabilities={g: float(row[g]) for g in labels},
                calculation_metadata={
                    "expected_grade_index": float(row["expected_grade_index"]),
                    "bt_score": float(scores.loc[essay_id, "theta"]),
                    "bt_se": float(scores.loc[essay_id, "se"]),
                    "method": "anchor_calibrated_normal",
                    "n_anchors": len(outcome.scored_anchor_grades),
                    "cjlib_version": __version__,
                },
            )
        )
    session.flush()
    return len(projection.grades)


def _completion_metadata(
    essays: Sequence[CJProcessedEssay],
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
        "reliability": _finite(bt.reliability),
        "separation": _finite(bt.separation),
        "grade_scale": outcome.grade_scale,
        "projection_available": outcome.projection is not None,
        "projection_unavailable_reason": outcome.unavailable_reason,
        "projection_unavailable_message": str(unavailable) if unavailable else None,
        "unscored_anchors": outcome.unscored_anchors,
        "unscored_essays": sorted(
            e.els_essay_id for e in essays if e.els_essay_id not in bt.scores.index
        ),
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
    essays: Sequence[CJProcessedEssay],
    bt: BTResult,
    outcome: _ProjectionOutcome,
    completion_reason: str,
    now: datetime,
) -> tuple[EventOutbox, EventOutbox]:
    """The completion event and the rich result event of a finalized batch."""
    scores = bt.scores
    students = [e for e in essays if not e.is_anchor]
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
        scored_student_ids=[e.els_essay_id for e in students if e.els_essay_id in scores.index],
        failed_student_ids=[e.els_essay_id for e in students if e.els_essay_id not in scores.index],
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


def _published_essays(
    essays: Sequence[CJProcessedEssay],
    scores: pd.DataFrame,
    projection: Projection | None,
    anchor_grades: dict[str, str],
) -> list[dict[str, Any]]:
    """Every essay's score, SE, rank, anchor flag and projected grade, for the rich event."""
    labels = list(projection.scale.all_labels) if projection is not None else []
    ranks = scores["theta"].rank(ascending=False, method="min")
    published = []
    for essay in sorted(essays, key=lambda e: e.els_essay_id):
        sid = essay.els_essay_id
        scored = sid in scores.index
        grade = None
        if projection is not None and sid in projection.grades.index:
            g = projection.grades.loc[sid]
            grade = {
                "primary_grade": str(g["primary_grade"]),
                "confidence_score": float(g["confidence_score"]),
                "confidence_label": str(g["confidence_label"]),
                "probabilities": {lab: float(g[lab]) for lab in labels},
            }
        published.append(
            {
                "els_essay_id": sid,
                "is_anchor": bool(essay.is_anchor),
                "anchor_grade": anchor_grades.get(sid),
                "bt_score": float(scores.loc[sid, "theta"]) if scored else None,
                "bt_se": float(scores.loc[sid, "se"]) if scored else None,
                "rank": int(ranks.loc[sid]) if scored else None,
                "comparison_count": int(scores.loc[sid, "n_comparisons"]) if scored else 0,
                "projected_grade": grade,
            }
        )
    return published
