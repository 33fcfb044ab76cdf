"""A batch's report data: stored scores, a refit, the rebuilt projection and its evaluation.

Scores are the ones the batch stored (``current_bt_score`` / ``current_bt_se``); the grade
projection is rebuilt from them with :func:`cjlib.projection.project_grades`, so its calibration
and anchor check can be shown and evaluated against known true grades.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from cjlib.errors import CJError, ProjectionUnavailable, UsageError
from cjlib.projection import (
    Projection,
    ProjectionEvaluation,
    evaluate_projection,
    project_grades,
    scored_anchors,
)
from cjlib.report.loading import BatchRecord, load_batch, load_true_grades, stored_scores
from cjlib.scoring import BTResult, fit_bradley_terry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchReport:
    """A batch's data with what the report derives from it.

    Attributes
    ----------
    frames : BatchRecord
    scores : pandas.DataFrame
        :func:`cjlib.report.loading.stored_scores`.
    bt : BTResult or None
        A refit of the decided comparisons with the batch's penalty (for judge and essay fit),
        None when the batch has no decided comparison or the refit fails.
    projection : Projection or None
        Rebuilt from ``scores`` and the batch's anchors with :func:`project_grades`.
    projection_error : str or None
        Why ``projection`` is None (``reason: message``).
    truth : pandas.Series or None
        Student id → true grade (see :func:`cjlib.report.loading.load_true_grades`).
    evaluation : ProjectionEvaluation or None
        ``projection`` against ``truth`` when both exist.
    """

    frames: BatchRecord
    scores: pd.DataFrame
    bt: BTResult | None
    projection: Projection | None
    projection_error: str | None
    truth: pd.Series | None
    evaluation: ProjectionEvaluation | None


def _refit(frames: BatchRecord) -> BTResult | None:
    decided = frames.decided
    if decided.empty:
        return None
    comparisons = decided[["essay_a_id", "essay_b_id", "winner"]].copy()
    if decided["judge_id"].notna().any():
        comparisons["judge_id"] = decided["judge_id"].fillna("unknown").to_numpy()
    # The batch's own estimator, as the finalizer recorded it (batches finalized before the
    # estimators were named recorded only their ridge α, 0 meaning the MLE).
    meta = frames.metadata
    method = meta.get("bt_method") or ("ridge" if meta.get("bt_alpha") else "mle")
    kwargs = {"alpha": float(meta["bt_alpha"])} if method == "ridge" else {}
    try:
        return fit_bradley_terry(comparisons, method=method, **kwargs)
    except (ValueError, CJError) as err:
        log.warning("batch %s: BT refit for the report failed: %s", frames.cj_batch_id, err)
        return None


def _rebuild_projection(
    frames: BatchRecord, scores: pd.DataFrame
) -> tuple[Projection | None, str | None]:
    try:
        # Like the finalizer: calibrate from the anchors that have a stored score.
        anchors, _unscored = scored_anchors(frames.anchor_grades, scores)
        projection = project_grades(
            scores[["theta", "se", "wins", "losses"]], anchors, scale=frames.grade_scale
        )
    except ProjectionUnavailable as err:
        return None, f"{err.reason}: {err}"
    return projection, None


def _evaluate(
    frames: BatchRecord, projection: Projection | None, truth: pd.Series | None
) -> ProjectionEvaluation | None:
    if projection is None or truth is None:
        return None
    known = truth.loc[truth.index.isin(projection.grades.index)]
    if known.empty:
        return None
    try:
        return evaluate_projection(projection, known)
    except UsageError as err:
        log.warning("batch %s: projection not evaluated: %s", frames.cj_batch_id, err)
        return None


def assemble_report(frames: BatchRecord, *, truth: pd.Series | None = None) -> BatchReport:
    """Derive scores, a refit, the rebuilt projection and its evaluation from ``frames``.

    Parameters
    ----------
    frames : BatchRecord
    truth : pandas.Series, optional
        Student id → true grade; ids not in the projection are ignored.

    Returns
    -------
    BatchReport
    """
    scores = stored_scores(frames)
    projection, error = _rebuild_projection(frames, scores)
    return BatchReport(
        frames=frames,
        scores=scores,
        bt=_refit(frames),
        projection=projection,
        projection_error=error,
        truth=truth,
        evaluation=_evaluate(frames, projection, truth),
    )


def build_report(
    engine: Engine, cj_batch_id: int, *, dataset_dir: str | Path | None = None
) -> BatchReport:
    """Load batch ``cj_batch_id`` and assemble its report (truth from ``dataset_dir`` if any).

    Raises
    ------
    NotFoundError
        No batch has this id.
    """
    frames = load_batch(engine, cj_batch_id)
    return assemble_report(frames, truth=load_true_grades(frames, dataset_dir))
