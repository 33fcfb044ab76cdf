"""The validation report of one CJ batch: its data, success checklist, figures, tables, limitations.

Notebook ``04_validation_report`` is a sequence of calls into this module; everything it shows
is computed here so that the notebook stays a list of short cells (and so the logic is tested).
The flow is::

    load_batch_frames(engine, id) ─┐
    load_true_grades(frames)  ─────┴─> assemble_report(frames, truth) -> BatchReport
    BatchReport -> plot_*() figures, *_table() DataFrames, limitations()
    success_checklist(engine, id) -> the pass/fail lines of a healthy batch

Scores are the ones the batch stored (``current_bt_score`` / ``current_bt_se``); the grade
projection is rebuilt from them with :func:`cjlib.projection.project_grades`, so its calibration
and anchor check can be shown and evaluated against known true grades. Figures are
:class:`matplotlib.figure.Figure` objects made without pyplot (no global state); Jupyter shows
them as embedded PNGs.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import stats
from sqlalchemy import Engine, select

from cjlib.datasets import load_truth
from cjlib.db import session_scope
from cjlib.db.models import (
    AnchorEssayReference,
    AssessmentInstruction,
    CJBatchState,
    CJBatchStateTransition,
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    CoreCJState,
    utc_now,
)
from cjlib.db.queries import projections_frame
from cjlib.db.repository import parse_anchor_flag
from cjlib.errors import CJError, NotFoundError, ProjectionUnavailable, UsageError
from cjlib.grades import get_grade_scale
from cjlib.projection import (
    Projection,
    ProjectionEvaluation,
    evaluate_projection,
    project_grades,
    scored_anchors,
)
from cjlib.provenance import git_revision, versions
from cjlib.scoring import BTResult, fit_bradley_terry

log = logging.getLogger(__name__)

#: Scale separation reliability below this is reported as a limitation.
LOW_RELIABILITY = 0.7
#: Essays with fewer successful comparisons than this are reported as thinly measured.
MIN_COMPARISONS_PER_ESSAY = 5
#: Confidence level of the binomial intervals of the position-A win share.
POSITION_CI_LEVEL = 0.95
#: The end of the state history of a batch that finalized normally.
FINAL_STATE_SEQUENCE = (
    CoreCJState.WAITING_CALLBACKS.value,
    CoreCJState.SCORING.value,
    CoreCJState.COMPLETED.value,
)
#: The names of the success checklist lines, in order.
CHECKS = (
    "is_anchor matches the anchor metadata for every essay",
    "state history ends WAITING_CALLBACKS → SCORING → COMPLETED",
    "upload status is COMPLETE_STABLE",
    "grade projections exist and come from valid anchors",
    "inspect snapshot is healthy",
    "no health alert fires for this batch",
)
DEFAULT_GRADE_SCALE = "eng5_np_legacy_9_step"
_DECIDED = ("essay_a", "essay_b")
_STUDENT_COLOUR, _ANCHOR_COLOUR, _ALERT_COLOUR = "#4C72B0", "#DD8452", "#C44E52"


# --------------------------------------------------------------------------------------------
# The batch's data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFrames:
    """Everything stored about one batch, as plain data.

    Attributes
    ----------
    cj_batch_id : int
    upload : dict
        The ``cj_batch_uploads`` row (``status`` as its string value, ``processing_metadata`` a
        dict).
    state : dict or None
        The ``cj_batch_states`` row, None if the batch has none.
    essays : pandas.DataFrame
        One row per essay: ``els_essay_id``, ``is_anchor`` (the column), ``metadata_is_anchor``
        (what the essay's metadata claims: True / False / None when it says nothing usable),
        ``anchor_label``, ``anchor_grade`` (from the metadata), ``bt_score``, ``bt_se``,
        ``comparison_count``.
    comparisons : pandas.DataFrame
        One row per pair: ``id``, ``essay_a_id``, ``essay_b_id``, ``winner`` (``essay_a``,
        ``essay_b``, ``error`` or None while pending), ``judge_id``, ``error_code``, ``wave``,
        ``submitted_at``, ``completed_at``.
    projections : pandas.DataFrame
        The stored ``grade_projections`` (see :func:`cjlib.workflow.artefacts.projections_frame`).
    transitions : pandas.DataFrame
        The state log in order: ``at``, ``from_state``, ``to_state``, ``reason``.
    anchor_references : pandas.DataFrame
        The assignment's registered anchors on the batch's scale: ``anchor_label``, ``grade``.
    grade_scale : str
        The batch's grade scale.
    """

    cj_batch_id: int
    upload: dict[str, Any]
    state: dict[str, Any] | None
    essays: pd.DataFrame
    comparisons: pd.DataFrame
    projections: pd.DataFrame
    transitions: pd.DataFrame
    anchor_references: pd.DataFrame
    grade_scale: str = DEFAULT_GRADE_SCALE

    @property
    def metadata(self) -> dict[str, Any]:
        """The upload's ``processing_metadata`` (finalization results, ``run`` parameters)."""
        return dict(self.upload.get("processing_metadata") or {})

    @property
    def run(self) -> dict[str, Any]:
        """The run parameters recorded at creation: judge, seed, budget, data set, …"""
        return dict(self.metadata.get("run") or {})

    @property
    def anchor_grades(self) -> pd.Series:
        """Anchor essay id → grade, for essays whose ``is_anchor`` column is true.

        As in the finalizer: the grade comes from the essay's metadata, else from the
        assignment's anchor references by label; anchors without a known grade are left out.
        """
        refs = dict(
            zip(
                self.anchor_references["anchor_label"], self.anchor_references["grade"], strict=True
            )
        )
        grades = {}
        for row in self.essays.loc[self.essays["is_anchor"]].itertuples(index=False):
            label = row.anchor_label if _present(row.anchor_label) else row.els_essay_id
            grade = row.anchor_grade if _present(row.anchor_grade) else refs.get(label)
            if _present(grade):
                grades[row.els_essay_id] = grade
        return pd.Series(grades, dtype=object, name="grade")

    @property
    def decided(self) -> pd.DataFrame:
        """Comparisons with a winner (``essay_a`` or ``essay_b``)."""
        return self.comparisons.loc[self.comparisons["winner"].isin(_DECIDED)]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _metadata_flag(meta: Mapping[str, Any]) -> bool | None:
    flag = parse_anchor_flag(meta.get("is_anchor"))
    if flag is not None:
        return flag
    if meta.get("anchor_grade") is not None:
        return True
    return None


def _value(item: Any) -> Any:
    return getattr(item, "value", item)


ESSAY_COLUMNS = (
    "els_essay_id",
    "is_anchor",
    "metadata_is_anchor",
    "anchor_label",
    "anchor_grade",
    "bt_score",
    "bt_se",
    "comparison_count",
)
COMPARISON_COLUMNS = (
    "id",
    "essay_a_id",
    "essay_b_id",
    "winner",
    "judge_id",
    "error_code",
    "wave",
    "submitted_at",
    "completed_at",
)
TRANSITION_COLUMNS = ("at", "from_state", "to_state", "reason")


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    if "is_anchor" in frame.columns:
        frame["is_anchor"] = frame["is_anchor"].astype(bool)
    return frame


def load_batch_frames(engine: Engine, cj_batch_id: int) -> BatchFrames:
    """Read one batch's upload, state, essays, comparisons, projections and state log.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    cj_batch_id : int
        ``cj_batch_uploads.id``.

    Returns
    -------
    BatchFrames

    Raises
    ------
    NotFoundError
        No batch has this id.
    """
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, cj_batch_id)
        if upload is None:
            raise NotFoundError(f"no CJ batch with id {cj_batch_id}; list batches with `cj health`")
        meta = dict(upload.processing_metadata or {})
        upload_row = {
            "id": upload.id,
            "bos_batch_id": upload.bos_batch_id,
            "event_correlation_id": upload.event_correlation_id,
            "batch_label": upload.batch_label,
            "assignment_id": upload.assignment_id,
            "course_id": upload.course_id,
            "status": _value(upload.status),
            "created_at": upload.created_at,
            "completed_at": upload.completed_at,
            "processing_metadata": meta,
        }
        state = session.get(CJBatchState, cj_batch_id)
        state_row = None
        if state is not None:
            state_row = {
                "state": _value(state.state),
                "total_budget": state.total_budget,
                "total_comparisons": state.total_comparisons,
                "submitted_comparisons": state.submitted_comparisons,
                "completed_comparisons": state.completed_comparisons,
                "failed_comparisons": state.failed_comparisons,
                "current_iteration": state.current_iteration,
                "last_activity_at": state.last_activity_at,
            }
        instr_scale = session.scalar(
            select(AssessmentInstruction.grade_scale).where(
                AssessmentInstruction.assignment_id == upload.assignment_id
            )
        )
        grade_scale = meta.get("grade_scale") or instr_scale or DEFAULT_GRADE_SCALE
        essays = []
        for e in session.scalars(
            select(CJProcessedEssay)
            .where(CJProcessedEssay.cj_batch_id == cj_batch_id)
            .order_by(CJProcessedEssay.els_essay_id)
        ):
            emeta = e.processing_metadata if isinstance(e.processing_metadata, dict) else {}
            essays.append(
                {
                    "els_essay_id": e.els_essay_id,
                    "is_anchor": bool(e.is_anchor),
                    "metadata_is_anchor": _metadata_flag(emeta),
                    "anchor_label": emeta.get("anchor_label"),
                    "anchor_grade": emeta.get("anchor_grade"),
                    "bt_score": e.current_bt_score,
                    "bt_se": e.current_bt_se,
                    "comparison_count": e.comparison_count,
                }
            )
        pairs = [
            {
                "id": p.id,
                "essay_a_id": p.essay_a_els_id,
                "essay_b_id": p.essay_b_els_id,
                "winner": None if p.winner is None else _value(p.winner),
                "judge_id": p.judge_id,
                "error_code": p.error_code,
                "wave": (p.processing_metadata or {}).get("wave"),
                "submitted_at": p.submitted_at,
                "completed_at": p.completed_at,
            }
            for p in session.scalars(
                select(CJComparisonPair)
                .where(CJComparisonPair.cj_batch_id == cj_batch_id)
                .order_by(CJComparisonPair.id)
            )
        ]
        transitions = [
            {
                "at": t.at,
                "from_state": None if t.from_state is None else _value(t.from_state),
                "to_state": _value(t.to_state),
                "reason": t.reason,
            }
            for t in session.scalars(
                select(CJBatchStateTransition)
                .where(CJBatchStateTransition.batch_id == cj_batch_id)
                .order_by(CJBatchStateTransition.id)
            )
        ]
        projections = projections_frame(session, cj_batch_id)
        refs = [
            {"anchor_label": r.anchor_label, "grade": r.grade}
            for r in session.scalars(
                select(AnchorEssayReference)
                .where(
                    AnchorEssayReference.assignment_id == upload.assignment_id,
                    AnchorEssayReference.grade_scale == grade_scale,
                )
                .order_by(AnchorEssayReference.anchor_label)
            )
        ]
    return BatchFrames(
        cj_batch_id=cj_batch_id,
        upload=upload_row,
        state=state_row,
        essays=_frame(essays, ESSAY_COLUMNS),
        comparisons=_frame(pairs, COMPARISON_COLUMNS),
        projections=projections,
        transitions=_frame(transitions, TRANSITION_COLUMNS),
        anchor_references=_frame(refs, ("anchor_label", "grade")),
        grade_scale=grade_scale,
    )


def stored_scores(frames: BatchFrames) -> pd.DataFrame:
    """The batch's stored BT scores with win/loss counts from its decided comparisons.

    Returns
    -------
    pandas.DataFrame
        Indexed by essay id (name ``essay_id``), θ descending, columns ``theta``, ``se``,
        ``wins``, ``losses``, ``n_comparisons``, ``is_anchor``, ``anchor_grade``. Essays
        without a stored score are left out.
    """
    decided = frames.decided
    winners = np.where(decided["winner"] == "essay_a", decided["essay_a_id"], decided["essay_b_id"])
    losers = np.where(decided["winner"] == "essay_a", decided["essay_b_id"], decided["essay_a_id"])
    wins = pd.Series(winners, dtype=object).value_counts()
    losses = pd.Series(losers, dtype=object).value_counts()
    essays = frames.essays.dropna(subset=["bt_score", "bt_se"]).set_index("els_essay_id")
    anchor_grades = frames.anchor_grades
    scores = pd.DataFrame(
        {
            "theta": essays["bt_score"].astype(float),
            "se": essays["bt_se"].astype(float),
            "wins": wins.reindex(essays.index, fill_value=0).astype(int),
            "losses": losses.reindex(essays.index, fill_value=0).astype(int),
        },
        index=essays.index,
    )
    scores["n_comparisons"] = scores["wins"] + scores["losses"]
    scores["is_anchor"] = essays["is_anchor"].astype(bool)
    scores["anchor_grade"] = pd.Series(anchor_grades, dtype=object).reindex(scores.index)
    scores.index.name = "essay_id"
    return scores.sort_values("theta", ascending=False, kind="stable")


def load_true_grades(
    frames: BatchFrames, dataset_dir: str | Path | None = None
) -> pd.Series | None:
    """True grades of the batch's student essays from the data set's ``truth.csv``.

    Parameters
    ----------
    frames : BatchFrames
    dataset_dir : path, optional
        Data set folder; default the one recorded in the batch's run parameters.

    Returns
    -------
    pandas.Series or None
        Student essay id → true grade label, for students of this batch; None when the folder
        or its ``truth.csv`` does not exist (real essays have no known truth).
    """
    folder = dataset_dir or frames.run.get("dataset")
    if not folder or not Path(folder).exists():
        return None
    truth = load_truth(folder)
    if truth is None:
        return None
    students = set(frames.essays.loc[~frames.essays["is_anchor"], "els_essay_id"])
    truth = truth.loc[truth["essay_id"].astype(str).isin(students)]
    return pd.Series(
        truth["true_grade"].to_numpy(dtype=object),
        index=pd.Index(truth["essay_id"].astype(str).to_numpy(dtype=object), name="essay_id"),
        name="true_grade",
    )


# --------------------------------------------------------------------------------------------
# The assembled report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchReport:
    """A batch's data with what the report derives from it.

    Attributes
    ----------
    frames : BatchFrames
    scores : pandas.DataFrame
        :func:`stored_scores`.
    bt : BTResult or None
        A refit of the decided comparisons with the batch's penalty (for judge and essay fit),
        None when the batch has no decided comparison or the refit fails.
    projection : Projection or None
        Rebuilt from ``scores`` and the batch's anchors with :func:`project_grades`.
    projection_error : str or None
        Why ``projection`` is None (``reason: message``).
    truth : pandas.Series or None
        Student id → true grade (see :func:`load_true_grades`).
    evaluation : ProjectionEvaluation or None
        ``projection`` against ``truth`` when both exist.
    """

    frames: BatchFrames
    scores: pd.DataFrame
    bt: BTResult | None
    projection: Projection | None
    projection_error: str | None
    truth: pd.Series | None
    evaluation: ProjectionEvaluation | None


def _refit(frames: BatchFrames) -> BTResult | None:
    decided = frames.decided
    if decided.empty:
        return None
    comparisons = decided[["essay_a_id", "essay_b_id", "winner"]].copy()
    if decided["judge_id"].notna().any():
        comparisons["judge_id"] = decided["judge_id"].fillna("unknown").to_numpy()
    alpha = frames.metadata.get("bt_alpha") or 0.0
    try:
        return fit_bradley_terry(comparisons, alpha=float(alpha))
    except (ValueError, CJError) as err:
        log.warning("batch %s: BT refit for the report failed: %s", frames.cj_batch_id, err)
        return None


def assemble_report(frames: BatchFrames, *, truth: pd.Series | None = None) -> BatchReport:
    """Derive scores, a refit, the rebuilt projection and its evaluation from ``frames``.

    Parameters
    ----------
    frames : BatchFrames
    truth : pandas.Series, optional
        Student id → true grade; ids not in the projection are ignored.

    Returns
    -------
    BatchReport
    """
    scores = stored_scores(frames)
    projection, error = None, None
    try:
        # Like the finalizer: calibrate from the anchors that have a stored score.
        anchors, _unscored = scored_anchors(frames.anchor_grades, scores)
        projection = project_grades(
            scores[["theta", "se", "wins", "losses"]], anchors, scale=frames.grade_scale
        )
    except ProjectionUnavailable as err:
        error = f"{err.reason}: {err}"
    evaluation = None
    if projection is not None and truth is not None:
        known = truth.loc[truth.index.isin(projection.grades.index)]
        if not known.empty:
            try:
                evaluation = evaluate_projection(projection, known)
            except UsageError as err:
                log.warning("batch %s: projection not evaluated: %s", frames.cj_batch_id, err)
    return BatchReport(
        frames=frames,
        scores=scores,
        bt=_refit(frames),
        projection=projection,
        projection_error=error,
        truth=truth,
        evaluation=evaluation,
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
    frames = load_batch_frames(engine, cj_batch_id)
    return assemble_report(frames, truth=load_true_grades(frames, dataset_dir))


# --------------------------------------------------------------------------------------------
# Success checklist
# --------------------------------------------------------------------------------------------


def _check(name: str, passed: bool, evidence: str) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "evidence": evidence}


def _anchor_flag_check(frames: BatchFrames) -> dict[str, Any]:
    essays = frames.essays
    claimed = essays["metadata_is_anchor"]
    mismatched = essays.loc[claimed.notna() & (claimed != essays["is_anchor"])]
    silent = int(claimed.isna().sum())
    if mismatched.empty:
        evidence = f"{len(essays)} essays agree ({int(essays['is_anchor'].sum())} anchors)" + (
            f"; {silent} without an anchor flag in their metadata" if silent else ""
        )
        return _check(CHECKS[0], True, evidence)
    listed = ", ".join(
        f"{row.els_essay_id} (column {str(row.is_anchor).lower()}, "
        f"metadata {str(row.metadata_is_anchor).lower()})"
        for row in mismatched.itertuples(index=False)
    )
    return _check(CHECKS[0], False, f"{len(mismatched)} mismatch(es): {listed}")


def _state_history_check(frames: BatchFrames) -> dict[str, Any]:
    history = [str(s) for s in frames.transitions["to_state"]]
    tail = tuple(history[-len(FINAL_STATE_SEQUENCE) :])
    shown = " → ".join(history[-5:])
    prefix = "… → " if len(history) > 5 else ""
    evidence = (
        f"{len(history)} transitions, ending {prefix}{shown}" if history else "no transitions"
    )
    return _check(CHECKS[1], tail == FINAL_STATE_SEQUENCE, evidence)


def _projection_check(frames: BatchFrames) -> dict[str, Any]:
    n_projections = len(frames.projections)
    n_anchors = int(frames.essays["is_anchor"].sum())
    grades = frames.anchor_grades
    n_grades = int(grades.nunique())
    passed = n_projections > 0 and n_anchors > 0 and n_grades >= 2
    evidence = (
        f"{n_projections} projections; {n_anchors} anchors with {len(grades)} known grades "
        f"covering {n_grades} distinct grade(s)"
    )
    reason = frames.metadata.get("projection_unavailable_reason")
    if reason:
        evidence += f"; projection unavailable: {reason}"
    return _check(CHECKS[3], passed, evidence)


def evaluate_checklist(
    frames: BatchFrames, *, health: str | None, alerts: Iterable[Any] = ()
) -> pd.DataFrame:
    """The success checklist of a batch from its data, inspect verdict and health alerts.

    Parameters
    ----------
    frames : BatchFrames
    health : str or None
        The batch's verdict from :func:`cjlib.diagnostics.inspect_batch` (``ok`` passes).
    alerts : iterable
        The firing alerts of this batch (objects with ``kind`` and ``detail``, e.g.
        :class:`cjlib.diagnostics.HealthAlert`).

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``passed`` (bool), ``evidence`` (str); one row per entry of
        :data:`CHECKS`, in that order.
    """
    status = str(frames.upload.get("status"))
    alerts = list(alerts)
    alert_text = "; ".join(f"{a.kind}: {a.detail}" for a in alerts) or "none firing"
    state = None if frames.state is None else frames.state.get("state")
    rows = [
        _anchor_flag_check(frames),
        _state_history_check(frames),
        _check(CHECKS[2], status == "COMPLETE_STABLE", f"status {status}"),
        _projection_check(frames),
        _check(CHECKS[4], health == "ok", f"health {health} (state {state}, status {status})"),
        _check(CHECKS[5], not alerts, alert_text),
    ]
    return pd.DataFrame(rows, columns=["check", "passed", "evidence"])


def success_checklist(
    engine: Engine,
    cj_batch_id: int,
    *,
    frames: BatchFrames | None = None,
) -> pd.DataFrame:
    """Evaluate the success checklist of batch ``cj_batch_id`` on the database.

    Lines (see :data:`CHECKS`): the ``is_anchor`` column agrees with each essay's anchor
    metadata; the state history ends WAITING_CALLBACKS → SCORING → COMPLETED; the upload is
    COMPLETE_STABLE; there are grade projections, anchors, and ≥ 2 distinct anchor grades;
    :func:`cjlib.diagnostics.inspect_batch` judges the batch ``ok``; no alert of
    :func:`cjlib.diagnostics.health_alerts` (including ``anchor_flag_drift``) names the batch.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    cj_batch_id : int
    frames : BatchFrames, optional
        Already loaded data of the batch (loaded when omitted).

    Both the health verdict and the alerts use the view's default thresholds, so the two
    lines cannot disagree about what counts as stuck.

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``passed``, ``evidence``.

    Raises
    ------
    NotFoundError
        No batch has this id.
    """
    from cjlib.diagnostics import DEFAULT_THRESHOLDS, health_alerts, inspect_batch

    frames = frames or load_batch_frames(engine, cj_batch_id)
    inspection = inspect_batch(engine, cj_batch_id)
    report = health_alerts(engine, DEFAULT_THRESHOLDS)
    mine = [a for alerts in report.alerts.values() for a in alerts if a.cj_batch_id == cj_batch_id]
    return evaluate_checklist(frames, health=inspection.health, alerts=mine)


_PASS_BADGE = '<span style="color:#1a7f37;font-weight:bold">✓ PASS</span>'
_FAIL_BADGE = '<span style="color:#c0392b;font-weight:bold">✗ FAIL</span>'


def checklist_html(checklist: pd.DataFrame) -> str:
    """The checklist as an HTML table (id ``success-checklist``), a PASS / FAIL badge per line.

    Plain text with a colour, not emoji: a report must read the same on machines without an
    emoji font.
    """
    rows = "".join(
        f'<tr class="{"pass" if row.passed else "fail"}">'
        f"<td>{_PASS_BADGE if row.passed else _FAIL_BADGE}</td>"
        f"<td>{html.escape(str(row.check))}</td><td>{html.escape(str(row.evidence))}</td></tr>"
        for row in checklist.itertuples(index=False)
    )
    return (
        '<table id="success-checklist" class="cj-table">'
        "<thead><tr><th></th><th>check</th><th>evidence</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "–"
    seconds = round((end - start).total_seconds())
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def html_table(frame: pd.DataFrame, *, digits: int = 3, table_id: str | None = None) -> str:
    """``frame`` as an HTML table without its index, floats to ``digits`` decimals."""
    return frame.to_html(
        index=False,
        na_rep="–",
        float_format=lambda x: f"{x:.{digits}f}",
        border=0,
        classes="cj-table",
        table_id=table_id,
    )


def _markdown_cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def run_summary(rep: BatchReport) -> pd.DataFrame:
    """Ids, parameters, counters, timing, versions and git revision of the batch (field/value)."""
    frames = rep.frames
    upload, run, meta = frames.upload, frames.run, frames.metadata
    state = frames.state or {}
    judge = run.get("judge")
    if run.get("judge_id") and run.get("judge_id") != judge:
        judge = f"{judge} ({run['judge_id']})"
    vers = ", ".join(f"{k} {v}" for k, v in versions().items())
    rows = [
        ("CJ batch id", upload["id"]),
        ("BOS batch id", upload["bos_batch_id"]),
        ("batch label", upload["batch_label"]),
        ("assignment / course", f"{upload['assignment_id']} / {upload['course_id']}"),
        ("grade scale", frames.grade_scale),
        ("judge", judge),
        ("judge parameters", ", ".join(f"{k}={v}" for k, v in run.get("judge_params", {}).items())),
        ("seed", run.get("seed")),
        ("comparison budget", run.get("max_comparisons")),
        (
            "comparisons",
            f"{state.get('submitted_comparisons', '–')} submitted, "
            f"{state.get('completed_comparisons', '–')} completed, "
            f"{state.get('failed_comparisons', '–')} failed",
        ),
        (
            "essays",
            f"{int(frames.essays['is_anchor'].sum())} anchors, "
            f"{int((~frames.essays['is_anchor']).sum())} students",
        ),
        (
            "outcome",
            f"{upload['status']} / {state.get('state', '–')}, "
            f"{meta.get('completion_reason') or 'no completion reason'}",
        ),
        ("data set", run.get("dataset")),
        ("created", upload["created_at"]),
        ("completed", upload["completed_at"]),
        ("run time", _duration(upload["created_at"], upload["completed_at"])),
        ("versions", vers),
        ("git revision", git_revision() or "not in a git checkout"),
        ("report generated", utc_now()),
    ]
    return pd.DataFrame([(k, _fmt(v)) for k, v in rows], columns=["field", "value"])


def header_markdown(rep: BatchReport) -> str:
    """A Markdown heading and table of :func:`run_summary` for the top of the report."""
    upload = rep.frames.upload
    lines = [
        f"## Batch {upload['batch_label']} (cj_batch_id {upload['id']})",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [
        f"| {_markdown_cell(r.field)} | {_markdown_cell(r.value)} |"
        for r in run_summary(rep).itertuples(index=False)
    ]
    return "\n".join(lines)


def reliability_table(rep: BatchReport) -> pd.DataFrame:
    """Scale reliability and fit settings of the batch's BT scores (metric/value/meaning)."""
    meta = rep.frames.metadata
    ssr, g = meta.get("reliability"), meta.get("separation")
    strata = None if g is None else (4 * g + 1) / 3
    rows = [
        (
            "scale separation reliability (SSR)",
            ssr,
            "(var θ − mean SE²) / var θ; ≥ 0.7 is usually wanted",
        ),
        ("separation G", g, "true SD of θ over the RMSE of θ"),
        ("strata (4G + 1) / 3", strata, "statistically distinct levels of quality"),
        ("BT penalty α", meta.get("bt_alpha"), "0 = maximum likelihood"),
        (
            "comparison graph strongly connected",
            meta.get("bt_connected"),
            "needed for the unpenalised fit",
        ),
        ("BT engine / SE method", f"{meta.get('bt_engine')} / {meta.get('bt_se_method')}", ""),
        ("essays scored", len(rep.scores), ""),
        (
            "median comparisons per essay",
            float(rep.scores["n_comparisons"].median()) if len(rep.scores) else None,
            "",
        ),
    ]
    return pd.DataFrame(
        [(m, _fmt(v), note) for m, v, note in rows], columns=["metric", "value", "meaning"]
    )


def anchor_check_table(rep: BatchReport) -> pd.DataFrame:
    """How well anchor θ agree with anchor grades: inversions, Kendall τ-b, Spearman ρ."""
    if rep.projection is None:
        return pd.DataFrame(
            [("projection", rep.projection_error or "unavailable")], columns=["metric", "value"]
        )
    check = rep.projection.anchor_check
    anchors = rep.projection.anchor_grades
    rows = [
        ("anchors", len(anchors)),
        ("distinct anchor grades", anchors.nunique()),
        ("inverted anchor pairs", len(check.inversions)),
        ("Kendall τ-b (grade vs θ)", check.kendall_tau_b),
        ("Spearman ρ (grade vs θ)", check.spearman_rho),
        ("anchors that never won", ", ".join(map(str, check.zero_win_anchors)) or "none"),
        ("anchors that never lost", ", ".join(map(str, check.zero_loss_anchors)) or "none"),
    ]
    return pd.DataFrame([(m, _fmt(v)) for m, v in rows], columns=["metric", "value"])


def inversions_table(rep: BatchReport) -> pd.DataFrame:
    """Anchor pairs whose θ order contradicts their grade order, largest gap first."""
    if rep.projection is None:
        return pd.DataFrame(columns=["anchor_low", "grade_low", "anchor_high", "grade_high"])
    return rep.projection.anchor_check.inversions.copy()


def calibration_table(rep: BatchReport) -> pd.DataFrame:
    """Per grade: centre, boundaries, their SEs, number of anchors and how it was placed."""
    if rep.projection is None:
        return pd.DataFrame(columns=["grade"])
    cal = rep.projection.calibration.reset_index()
    cal["placed by"] = np.select(
        [cal["interpolated"], cal["extrapolated"], cal["pooled"]],
        ["interpolation", "extrapolation", "anchors (pooled)"],
        default="anchors",
    )
    return cal[["grade", "n_anchors", "centre", "centre_se", "lower", "upper", "placed by"]]


def accuracy_table(rep: BatchReport) -> pd.DataFrame:
    """Agreement and calibration of the rebuilt projection with the true grades."""
    ev = rep.evaluation
    if ev is None:
        why = "no true grades are known" if rep.truth is None else "no projection to evaluate"
        return pd.DataFrame([("evaluation", why, "")], columns=["metric", "value", "meaning"])
    rows = [
        ("students evaluated", ev.n, ""),
        ("exact agreement", ev.exact_agreement, "primary grade = true grade"),
        ("majority baseline", ev.majority_baseline, "always guessing the commonest true grade"),
        ("adjacent agreement", ev.adjacent_agreement, "at most one grade away"),
        ("quadratic weighted κ", ev.quadratic_weighted_kappa, "1 = perfect, 0 = chance"),
        ("Spearman ρ", ev.spearman_rho, "expected grade index vs true grade index"),
        ("Brier score", ev.brier_score, "lower is better"),
        ("log loss", ev.log_loss, "lower is better"),
        ("expected calibration error", ev.expected_calibration_error, "|accuracy − confidence|"),
        ("mean confidence", ev.mean_confidence, "≈ exact agreement when calibrated"),
        ("mean probability of the true grade", ev.mean_true_grade_probability, ""),
    ]
    return pd.DataFrame(
        [(m, _fmt(v), note) for m, v, note in rows], columns=["metric", "value", "meaning"]
    )


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=POSITION_CI_LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def _wave_label(wave: Any) -> str:
    return (
        str(int(wave)) if isinstance(wave, float | np.floating) and wave.is_integer() else str(wave)
    )


def position_table(rep: BatchReport | BatchFrames) -> pd.DataFrame:
    """Share of decisions won by the essay in position A, per wave and overall, with CIs.

    Returns
    -------
    pandas.DataFrame
        ``wave`` (``all`` last), ``decisions``, ``a_wins``, ``a_share``, ``ci_low``,
        ``ci_high`` (Wilson interval at :data:`POSITION_CI_LEVEL`).
    """
    frames = rep.frames if isinstance(rep, BatchReport) else rep
    decided = frames.decided
    rows = []
    groups = [(_wave_label(w), g) for w, g in decided.groupby("wave", sort=True)]
    for wave, group in [*groups, ("all", decided)]:
        n, k = len(group), int((group["winner"] == "essay_a").sum())
        low, high = _wilson(k, n)
        rows.append((wave, n, k, k / n if n else float("nan"), low, high))
    return pd.DataFrame(
        rows, columns=["wave", "decisions", "a_wins", "a_share", "ci_low", "ci_high"]
    )


def judge_fit_table(rep: BatchReport) -> pd.DataFrame:
    """Per judge: decisions, infit and outfit (from the refit), errors and position-A share."""
    comparisons = rep.frames.comparisons
    judges = comparisons["judge_id"].fillna("unknown")
    decided = comparisons["winner"].isin(_DECIDED)
    per_judge = pd.DataFrame(
        {
            "judge_id": judges,
            "decided": decided,
            "error": comparisons["winner"] == "error",
            "a_win": comparisons["winner"] == "essay_a",
        }
    ).groupby("judge_id", sort=False)
    table = pd.DataFrame(
        {
            "comparisons": per_judge.size(),
            "errors": per_judge["error"].sum().astype(int),
            "position_a_share": per_judge["a_win"].sum() / per_judge["decided"].sum(),
        }
    )
    if rep.bt is not None and not rep.bt.judges.empty:
        table = table.join(rep.bt.judges[["infit", "outfit"]], how="left")
    else:
        table["infit"] = table["outfit"] = float("nan")
    return table.reset_index()


def batch_health_row(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    """The batch's row of the ``cj_batch_health`` view as field/value pairs."""
    from cjlib.diagnostics import batch_health

    frame = batch_health(engine)
    row = frame.loc[frame["cj_batch_id"] == cj_batch_id]
    if row.empty:
        raise NotFoundError(f"no CJ batch with id {cj_batch_id} in the health view")
    record = row.iloc[0].to_dict()
    return pd.DataFrame(
        [
            (k, _fmt(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v))
            for k, v in record.items()
        ],
        columns=["field", "value"],
    )


def transitions_table(rep: BatchReport | BatchFrames) -> pd.DataFrame:
    """The batch's state transitions in order (``at`` as a UTC string)."""
    frames = rep.frames if isinstance(rep, BatchReport) else rep
    table = frames.transitions.copy()
    table["at"] = [_fmt(v) for v in table["at"]]
    return table


def field_table(values: Mapping[str, Any]) -> pd.DataFrame:
    """A mapping as field/value rows; nested mappings are flattened to ``key value, …``."""
    rows = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        rows.append((key, _fmt(value)))
    return pd.DataFrame(rows, columns=["field", "value"])


def files_table(paths: Mapping[str, Path]) -> pd.DataFrame:
    """Files written, with their size: ``table``, ``file``, ``bytes``."""
    return pd.DataFrame(
        [(name, Path(p).name, Path(p).stat().st_size) for name, p in paths.items()],
        columns=["table", "file", "bytes"],
    )


def inspection_table(inspection: Any) -> pd.DataFrame:
    """The scalar fields of a :class:`cjlib.diagnostics.BatchInspection` as field/value pairs."""
    data = inspection.to_dict()
    keep = (
        "cj_batch_id",
        "batch_label",
        "upload_status",
        "cj_state",
        "health",
        "anchor_count",
        "non_anchor_count",
        "grade_projection_count",
        "completion_reason",
        "comparisons_agree",
        "created_at",
        "completed_at",
    )
    rows = [(k, _fmt(data.get(k))) for k in keep]
    counts = data.get("comparisons_from_pairs") or {}
    rows.append(("comparisons (pairs)", ", ".join(f"{k} {v}" for k, v in counts.items())))
    return pd.DataFrame(rows, columns=["field", "value"])


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figure(width: float = 9.0, height: float = 4.5) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _placeholder(title: str, message: str) -> Figure:
    fig, ax = _figure(6.0, 1.6)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def plot_bt_scores(rep: BatchReport) -> Figure:
    """Every essay's θ with ±1.96·SE bars, in θ order; anchors marked and labelled with grades."""
    title = "Bradley–Terry scores (θ ± 1.96·SE)"
    scores = rep.scores.sort_values("theta", kind="stable")
    if scores.empty:
        return _placeholder(title, "no essay has a stored score")
    fig, ax = _figure(10.0, 4.8)
    x = np.arange(len(scores))
    anchor = scores["is_anchor"].to_numpy(dtype=bool)
    for mask, colour, marker, label in (
        (~anchor, _STUDENT_COLOUR, "o", "student"),
        (anchor, _ANCHOR_COLOUR, "D", "anchor"),
    ):
        ax.errorbar(
            x[mask],
            scores["theta"].to_numpy()[mask],
            yerr=1.96 * scores["se"].to_numpy()[mask],
            fmt=marker,
            ms=4 if label == "student" else 6,
            color=colour,
            ecolor=colour,
            elinewidth=0.8,
            alpha=0.9,
            label=label,
        )
    for xi, (theta, grade) in zip(
        x[anchor],
        scores.loc[anchor, ["theta", "anchor_grade"]].itertuples(index=False),
        strict=True,
    ):
        ax.annotate(
            str(grade),
            (xi, theta),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color=_ANCHOR_COLOUR,
            fontweight="bold",
        )
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("essays in order of θ")
    ax.set_ylabel("θ (logits)")
    ax.set_xticks([])
    ax.set_title(title)
    ax.legend(loc="upper left")
    return fig


def plot_anchor_calibration(rep: BatchReport) -> Figure:
    """Anchor θ against their grades, with each grade's calibrated θ interval and inversions.

    Shaded bands are the θ intervals [lower, upper] of each grade (hatched when the grade has
    no anchor: interpolated or extrapolated); black ticks are the grade centres. Anchors of an
    inverted pair (lower grade, higher θ) are red and joined by a dashed red line.
    """
    title = "Anchor θ against grade, with calibrated grade intervals"
    if rep.projection is None:
        return _placeholder(title, f"projection unavailable: {rep.projection_error}")
    proj = rep.projection
    cal = proj.calibration
    labels = list(proj.scale.all_labels)
    anchors = proj.anchor_grades
    theta = rep.scores.loc[anchors.index, "theta"].to_numpy(dtype=float)
    se = rep.scores.loc[anchors.index, "se"].to_numpy(dtype=float)
    gidx = np.array([labels.index(g) for g in anchors], dtype=float)
    finite = np.r_[cal["lower"].to_numpy(), cal["upper"].to_numpy(), theta]
    finite = finite[np.isfinite(finite)]
    pad = 0.5 + float(np.max(se, initial=0.0)) * 1.96
    lo, hi = float(finite.min()) - pad, float(finite.max()) + pad
    fig, ax = _figure(9.0, 5.0)
    for i, row in enumerate(cal.itertuples()):
        lower = max(row.lower, lo)
        upper = min(row.upper, hi)
        unanchored = bool(row.interpolated or row.extrapolated)
        ax.fill_between(
            [i - 0.4, i + 0.4],
            lower,
            upper,
            color=_STUDENT_COLOUR,
            alpha=0.12 if unanchored else 0.25,
            hatch="//" if unanchored else None,
            linewidth=0,
        )
        ax.plot([i - 0.4, i + 0.4], [row.centre] * 2, color="black", lw=1.2)
    inverted = set(proj.anchor_check.inversions["anchor_low"]) | set(
        proj.anchor_check.inversions["anchor_high"]
    )
    jitter = np.zeros(len(anchors))
    for g in np.unique(gidx):
        same = np.flatnonzero(gidx == g)
        jitter[same] = np.linspace(-0.15, 0.15, len(same)) if len(same) > 1 else 0.0
    colours = [_ALERT_COLOUR if a in inverted else _ANCHOR_COLOUR for a in anchors.index]
    ax.vlines(gidx + jitter, theta - 1.96 * se, theta + 1.96 * se, colors=colours, lw=1)
    ax.scatter(gidx + jitter, theta, c=colours, marker="D", s=36, zorder=3)
    position = {a: (gidx[i] + jitter[i], theta[i]) for i, a in enumerate(anchors.index)}
    for row in proj.anchor_check.inversions.itertuples(index=False):
        (x0, y0), (x1, y1) = position[row.anchor_low], position[row.anchor_high]
        ax.plot([x0, x1], [y0, y1], color=_ALERT_COLOUR, ls="--", lw=1)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("grade (hatched: no anchor)")
    ax.set_ylabel("θ (logits)")
    n_inv = len(proj.anchor_check.inversions)
    ax.set_title(f"{title}\n{n_inv} inverted anchor pair(s) (red)")
    return fig


def _probability_columns(projections: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    return [f"p_{g}" for g in labels if f"p_{g}" in projections.columns]


def plot_grade_probabilities(rep: BatchReport) -> Figure:
    """Stacked bars of each student's stored grade probabilities, ordered by expected grade."""
    title = "Grade probabilities per student (stored projections)"
    projections = rep.frames.projections
    if projections.empty:
        return _placeholder(title, "the batch has no stored grade projections")
    labels = list(get_grade_scale(rep.frames.grade_scale).all_labels)
    columns = _probability_columns(projections, labels)
    probs = projections[columns].to_numpy(dtype=float)
    expected = probs @ np.arange(len(columns))
    order = np.argsort(expected, kind="stable")
    probs = probs[order]
    ids = projections["els_essay_id"].to_numpy()[order]
    fig, ax = _figure(10.0, 4.8)
    colours = _grade_colours(len(columns))
    bottom = np.zeros(len(probs))
    x = np.arange(len(probs))
    for j, column in enumerate(columns):
        ax.bar(
            x,
            probs[:, j],
            bottom=bottom,
            width=1.0,
            color=colours[j],
            label=column.removeprefix("p_"),
            linewidth=0,
        )
        bottom += probs[:, j]
    ax.set_xlim(-0.5, len(probs) - 0.5)
    ax.set_ylim(0, 1)
    if len(ids) <= 40:
        ax.set_xticks(x, ids, rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel("students in order of expected grade")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend(title="grade", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def _grade_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.05, 0.95, n)]


def plot_comparisons_per_essay(rep: BatchReport) -> Figure:
    """Successful and failed comparisons of each essay, anchors highlighted."""
    title = "Comparisons per essay"
    frames = rep.frames
    comparisons = frames.comparisons
    if comparisons.empty:
        return _placeholder(title, "the batch has no comparisons")
    ids = frames.essays["els_essay_id"]
    long = pd.concat(
        [
            comparisons[["essay_a_id", "winner"]].rename(columns={"essay_a_id": "essay"}),
            comparisons[["essay_b_id", "winner"]].rename(columns={"essay_b_id": "essay"}),
        ]
    )
    decided = long.loc[long["winner"].isin(_DECIDED), "essay"].value_counts()
    failed = long.loc[long["winner"] == "error", "essay"].value_counts()
    counts = pd.DataFrame(
        {
            "decided": decided.reindex(ids, fill_value=0).to_numpy(),
            "failed": failed.reindex(ids, fill_value=0).to_numpy(),
            "is_anchor": frames.essays["is_anchor"].to_numpy(),
        },
        index=ids.to_numpy(),
    ).sort_values(["decided", "failed"], kind="stable")
    fig, ax = _figure(10.0, 4.2)
    x = np.arange(len(counts))
    colours = np.where(counts["is_anchor"], _ANCHOR_COLOUR, _STUDENT_COLOUR)
    ax.bar(x, counts["decided"], color=colours, width=0.85)
    if counts["failed"].any():
        ax.bar(x, counts["failed"], bottom=counts["decided"], color=_ALERT_COLOUR, width=0.85)
    mean = float(counts["decided"].mean())
    ax.axhline(mean, color="black", ls="--", lw=1)
    handles = [
        Patch(color=_STUDENT_COLOUR, label="student"),
        Patch(color=_ANCHOR_COLOUR, label="anchor"),
        Patch(color=_ALERT_COLOUR, label="failed"),
        Line2D([], [], color="black", ls="--", label=f"mean {mean:.1f} successful"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_xticks([])
    ax.set_xlabel("essays in order of successful comparisons")
    ax.set_ylabel("comparisons")
    ax.set_title(title)
    return fig


def plot_position_effect(rep: BatchReport) -> Figure:
    """Share of decisions won by position A per wave and overall, with Wilson 95 % CIs."""
    title = "Position-A win share (95 % Wilson CI)"
    table = position_table(rep)
    if table["decisions"].iloc[-1] == 0:
        return _placeholder(title, "no decided comparisons")
    fig, ax = _figure(9.0, 4.0)
    x = np.arange(len(table))
    share = table["a_share"].to_numpy(dtype=float)
    colours = [_STUDENT_COLOUR] * (len(table) - 1) + [_ANCHOR_COLOUR]
    ax.vlines(x, table["ci_low"], table["ci_high"], colors=colours, lw=1.5)
    ax.scatter(x, share, c=colours, zorder=3)
    overall = table.iloc[-1]
    ax.axhspan(overall["ci_low"], overall["ci_high"], color=_ANCHOR_COLOUR, alpha=0.12)
    ax.axhline(0.5, color="black", ls="--", lw=1, label="no position effect")
    ax.set_xticks(x, [f"wave {w}" if w != "all" else "all" for w in table["wave"]], rotation=45)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share won by position A")
    ax.set_title(f"{title}: overall {overall['a_share']:.2f} of {int(overall['decisions'])}")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def confusion_table(rep: BatchReport) -> pd.DataFrame | None:
    """Counts of true grade (rows) by projected primary grade (columns), or None without truth."""
    if rep.projection is None or rep.truth is None or rep.evaluation is None:
        return None
    labels = list(rep.projection.scale.all_labels)
    grades = rep.projection.grades
    truth = rep.truth.loc[rep.truth.index.isin(grades.index)]
    predicted = grades.loc[truth.index, "primary_grade"]
    table = pd.crosstab(
        pd.Categorical(truth.to_numpy(), categories=labels),
        pd.Categorical(predicted.to_numpy(), categories=labels),
        dropna=False,
    )
    table.index.name, table.columns.name = "true grade", "projected grade"
    return table


def plot_confusion_matrix(rep: BatchReport) -> Figure:
    """True against projected primary grade of the rebuilt projection (counts)."""
    title = "Confusion matrix: true vs projected grade"
    table = confusion_table(rep)
    if table is None:
        return _placeholder(title, "no true grades known (or no projection)")
    fig, ax = _figure(6.5, 5.5)
    counts = table.to_numpy()
    image = ax.imshow(counts, cmap="Blues", origin="lower")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            colour = "white" if n > counts.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=colour)
    labels = list(table.columns)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("projected grade")
    ax.set_ylabel("true grade")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="students")
    return fig


def plot_reliability_diagram(rep: BatchReport) -> Figure:
    """Observed accuracy against mean confidence per confidence bin (calibration diagram)."""
    title = "Reliability diagram of the projected grades"
    if rep.evaluation is None:
        return _placeholder(title, "no true grades known (or no projection)")
    table = rep.evaluation.reliability_table
    filled = table.loc[table["n"] > 0]
    fig, ax = _figure(5.5, 5.0)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    sizes = 20 + 200 * filled["n"] / max(int(filled["n"].max()), 1)
    ax.scatter(
        filled["mean_confidence"],
        filled["observed_accuracy"],
        s=sizes,
        color=_STUDENT_COLOUR,
        zorder=3,
        label="confidence bin (size = n)",
    )
    for row in filled.itertuples(index=False):
        ax.annotate(
            f"n={row.n}",
            (row.mean_confidence, row.observed_accuracy),
            xytext=(6, -10),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence (probability of the primary grade)")
    ax.set_ylabel("observed accuracy")
    ece = rep.evaluation.expected_calibration_error
    ax.set_title(f"{title}\nECE {ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    return fig


#: The report's figure functions, in the order notebook 04 shows them.
FIGURES = (
    plot_bt_scores,
    plot_anchor_calibration,
    plot_grade_probabilities,
    plot_comparisons_per_essay,
    plot_position_effect,
    plot_confusion_matrix,
    plot_reliability_diagram,
)


# --------------------------------------------------------------------------------------------
# Limitations
# --------------------------------------------------------------------------------------------


def _listed(values: Iterable[Any], limit: int = 8) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _calibration_limitations(projection: Projection) -> list[str]:
    cal = projection.calibration
    out = []
    interpolated = list(cal.index[cal["interpolated"]])
    extrapolated = list(cal.index[cal["extrapolated"]])
    pooled = list(cal.index[cal["pooled"]])
    if interpolated:
        out.append(
            f"Grade(s) {_listed(interpolated)} have no anchor essay: their intervals are "
            "interpolated between the anchored neighbours, an assumption of even spacing."
        )
    if extrapolated:
        out.append(
            f"Grade(s) {_listed(extrapolated)} lie outside the anchored range: their intervals "
            "are extrapolated with the median spacing, so projections into them are weakly "
            "supported."
        )
    if pooled:
        out.append(
            f"Anchored grade(s) {_listed(pooled)} were pooled with a neighbour because their "
            "anchors' θ were out of grade order or too close together."
        )
    check = projection.anchor_check
    if check.zero_win_anchors:
        out.append(
            f"Anchor(s) {_listed(check.zero_win_anchors)} never won a comparison: their θ is "
            "bounded only by the fit, not measured."
        )
    if check.zero_loss_anchors:
        out.append(
            f"Anchor(s) {_listed(check.zero_loss_anchors)} never lost a comparison: their θ is "
            "bounded only by the fit, not measured."
        )
    inv = check.inversions
    if len(inv):
        top = inv.iloc[0]
        out.append(
            f"{len(inv)} anchor pair(s) are inverted (θ order contradicts grade order); the "
            f"largest: {top['anchor_low']} ({top['grade_low']}) is {top['theta_gap']:.2f} logits "
            f"above {top['anchor_high']} ({top['grade_high']})."
        )
    return out


def _stored_vs_rebuilt(rep: BatchReport) -> str | None:
    stored = rep.frames.projections
    if rep.projection is None or stored.empty:
        return None
    rebuilt = rep.projection.grades["primary_grade"]
    stored_grades = stored.set_index("els_essay_id")["primary_grade"]
    common = stored_grades.index.intersection(rebuilt.index)
    differ = [i for i in common if stored_grades[i] != rebuilt[i]]
    missing = stored_grades.index.symmetric_difference(rebuilt.index)
    if not differ and missing.empty:
        return None
    return (
        f"The stored grade projections differ from those rebuilt from the stored scores for "
        f"{len(differ) + len(missing)} essay(s) ({_listed([*differ, *missing])}): the "
        "projection code or the anchors changed since the batch was finalized."
    )


def limitations(rep: BatchReport) -> list[str]:
    """What a reader must keep in mind about this batch's numbers, generated from its data.

    Covers: projection unavailable (with the reason), grades without anchors (interpolated /
    extrapolated), pooled grades, anchors with zero wins or losses, anchor inversions, a
    disconnected comparison graph or penalised fit, reliability below
    :data:`LOW_RELIABILITY`, failed comparisons, thinly compared or unscored essays, a position
    effect, stopping on the budget, a simulated judge, missing truth or accuracy no better
    than the majority baseline, anchor-flag disagreements, and stored projections that differ
    from the rebuilt ones.

    Returns
    -------
    list of str
        One sentence each; empty when nothing calls for a caveat.
    """
    frames = rep.frames
    meta, run = frames.metadata, frames.run
    out: list[str] = []
    if meta.get("projection_available") is False or rep.projection is None:
        reason = meta.get("projection_unavailable_reason")
        message = meta.get("projection_unavailable_message") or rep.projection_error
        out.append(
            "No grades could be projected"
            + (f" ({reason})" if reason else "")
            + (f": {message}" if message else ".")
        )
    if rep.projection is not None:
        out += _calibration_limitations(rep.projection)
    if meta.get("bt_connected") is False:
        out.append(
            "The comparison graph was not strongly connected (some essays only won or only "
            "lost within their group), so the maximum-likelihood scores do not exist."
        )
    alpha = meta.get("bt_alpha")
    if alpha:
        out.append(
            f"Scores were fitted with an L2 penalty (α = {alpha}), which pulls extreme θ "
            "towards 0 and makes their SEs optimistic."
        )
    reliability = meta.get("reliability")
    if reliability is not None and reliability < LOW_RELIABILITY:
        out.append(
            f"Scale separation reliability is {reliability:.2f} (< {LOW_RELIABILITY}): the "
            "scores do not separate the essays well; more comparisons per essay would help."
        )
    comparisons = frames.comparisons
    failed = comparisons.loc[comparisons["winner"] == "error"]
    pending = comparisons.loc[comparisons["winner"].isna()]
    if len(failed):
        codes = failed["error_code"].fillna("unknown").value_counts()
        detail = ", ".join(f"{code} × {n}" for code, n in codes.items())
        out.append(
            f"{len(failed)} of {len(comparisons)} comparisons failed ({detail}) and were left "
            "out of the fit."
        )
    if len(pending):
        out.append(f"{len(pending)} comparisons never received a decision.")
    unscored = frames.essays.loc[frames.essays["bt_score"].isna(), "els_essay_id"]
    if len(unscored):
        out.append(f"{len(unscored)} essay(s) have no score: {_listed(unscored)}.")
    thin = rep.scores.loc[rep.scores["n_comparisons"] < MIN_COMPARISONS_PER_ESSAY]
    if len(thin):
        out.append(
            f"{len(thin)} essay(s) have fewer than {MIN_COMPARISONS_PER_ESSAY} successful "
            f"comparisons ({_listed(thin.index)}): their scores and grades are uncertain."
        )
    overall = position_table(rep).iloc[-1]
    if overall["decisions"] and not overall["ci_low"] <= 0.5 <= overall["ci_high"]:
        out.append(
            f"The essay shown in position A won {overall['a_share']:.0%} of decisions (95 % CI "
            f"{overall['ci_low']:.2f}–{overall['ci_high']:.2f}): the judge has a position bias "
            "that the scores do not model."
        )
    if meta.get("completion_reason") == "budget_exhausted":
        out.append(
            f"The batch stopped when its budget of {run.get('max_comparisons')} comparisons was "
            "used up, not because the scores had become stable."
        )
    if str(run.get("judge", "")).lower() in {"simulated", "mock"}:
        out.append(
            "Decisions come from the simulated judge, which decides from the data set's latent "
            "abilities: this validates the pipeline, not the judgement of a real marker."
        )
    if rep.truth is None:
        out.append(
            "No true grades are known for this data set, so the accuracy and calibration of "
            "the projected grades could not be checked."
        )
    elif rep.evaluation is not None:
        ev = rep.evaluation
        if ev.exact_agreement <= ev.majority_baseline:
            out.append(
                f"Exact agreement with the true grades ({ev.exact_agreement:.2f}) is no better "
                f"than always guessing the commonest grade ({ev.majority_baseline:.2f})."
            )
        if ev.n < 30:
            out.append(
                f"Accuracy is measured on only {ev.n} students; its sampling error is large."
            )
    mismatch = _anchor_flag_check(frames)
    if not mismatch["passed"]:
        out.append(
            f"The is_anchor column disagrees with the anchor metadata: {mismatch['evidence']}."
        )
    stale = _stored_vs_rebuilt(rep)
    if stale:
        out.append(stale)
    return out


def limitations_markdown(items: Sequence[str]) -> str:
    """The limitations as a Markdown bullet list (a sentence saying so when there are none)."""
    if not items:
        return "No limitations were detected in the data of this batch."
    return "\n".join(f"- {item}" for item in items)


# --------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------


def write_snapshots(frames: BatchFrames, run_dir: str | Path) -> dict[str, Path]:
    """Write the batch's grade projections, BT scores and comparisons into ``run_dir``.

    CSV always (``grade_projections.csv``, ``bt_scores.csv``, ``comparisons.csv``), and
    Parquet next to each when ``pyarrow`` is importable.

    Returns
    -------
    dict
        Table name → path of each file written.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "grade_projections": frames.projections,
        "bt_scores": stored_scores(frames).reset_index(),
        "comparisons": frames.comparisons,
    }
    parquet = importlib.util.find_spec("pyarrow") is not None
    written: dict[str, Path] = {}
    for name, table in tables.items():
        path = run_dir / f"{name}.csv"
        table.to_csv(path, index=False)
        written[name] = path
        if parquet:
            path = run_dir / f"{name}.parquet"
            table.to_parquet(path, index=False)
            written[f"{name}_parquet"] = path
    return written
