"""The stored data of one batch as plain frames, its stored scores and its known true grades.

Everything the validation report shows starts here: :func:`load_batch_frames` reads the batch
once into a :class:`BatchFrames`; :func:`stored_scores` joins the stored θ with win/loss counts
(:func:`win_loss_counts`); :func:`load_true_grades` reads the data set's ``truth.csv`` when it
has one. No plotting code is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

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
)
from cjlib.db.repository import parse_anchor_flag
from cjlib.errors import NotFoundError
from cjlib.workflow.artefacts import projections_frame

DEFAULT_GRADE_SCALE = "eng5_np_legacy_9_step"
#: The ``winner`` values of a decided comparison.
DECIDED = ("essay_a", "essay_b")

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
ANCHOR_REFERENCE_COLUMNS = ("anchor_label", "grade")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


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
        return self.comparisons.loc[self.comparisons["winner"].isin(DECIDED)]


# --------------------------------------------------------------------------------------------
# Reading one batch
# --------------------------------------------------------------------------------------------


def _metadata_flag(meta: Mapping[str, Any]) -> bool | None:
    flag = parse_anchor_flag(meta.get("is_anchor"))
    if flag is not None:
        return flag
    if meta.get("anchor_grade") is not None:
        return True
    return None


def _value(item: Any) -> Any:
    return getattr(item, "value", item)


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    if "is_anchor" in frame.columns:
        frame["is_anchor"] = frame["is_anchor"].astype(bool)
    return frame


def _upload_row(upload: CJBatchUpload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "bos_batch_id": upload.bos_batch_id,
        "event_correlation_id": upload.event_correlation_id,
        "batch_label": upload.batch_label,
        "assignment_id": upload.assignment_id,
        "course_id": upload.course_id,
        "status": _value(upload.status),
        "created_at": upload.created_at,
        "completed_at": upload.completed_at,
        "processing_metadata": dict(upload.processing_metadata or {}),
    }


def _state_row(state: CJBatchState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "state": _value(state.state),
        "total_budget": state.total_budget,
        "total_comparisons": state.total_comparisons,
        "submitted_comparisons": state.submitted_comparisons,
        "completed_comparisons": state.completed_comparisons,
        "failed_comparisons": state.failed_comparisons,
        "current_iteration": state.current_iteration,
        "last_activity_at": state.last_activity_at,
    }


def _grade_scale(session: Session, upload: CJBatchUpload) -> str:
    """The batch's scale: its metadata, else its assignment's instructions, else the default."""
    instructions_scale = session.scalar(
        select(AssessmentInstruction.grade_scale).where(
            AssessmentInstruction.assignment_id == upload.assignment_id
        )
    )
    meta = upload.processing_metadata or {}
    return meta.get("grade_scale") or instructions_scale or DEFAULT_GRADE_SCALE


def _essay_rows(session: Session, cj_batch_id: int) -> list[dict[str, Any]]:
    rows = []
    for e in session.scalars(
        select(CJProcessedEssay)
        .where(CJProcessedEssay.cj_batch_id == cj_batch_id)
        .order_by(CJProcessedEssay.els_essay_id)
    ):
        meta = e.processing_metadata if isinstance(e.processing_metadata, dict) else {}
        rows.append(
            {
                "els_essay_id": e.els_essay_id,
                "is_anchor": bool(e.is_anchor),
                "metadata_is_anchor": _metadata_flag(meta),
                "anchor_label": meta.get("anchor_label"),
                "anchor_grade": meta.get("anchor_grade"),
                "bt_score": e.current_bt_score,
                "bt_se": e.current_bt_se,
                "comparison_count": e.comparison_count,
            }
        )
    return rows


def _comparison_rows(session: Session, cj_batch_id: int) -> list[dict[str, Any]]:
    return [
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


def _transition_rows(session: Session, cj_batch_id: int) -> list[dict[str, Any]]:
    return [
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


def _anchor_reference_rows(
    session: Session, assignment_id: str | None, grade_scale: str
) -> list[dict[str, Any]]:
    return [
        {"anchor_label": r.anchor_label, "grade": r.grade}
        for r in session.scalars(
            select(AnchorEssayReference)
            .where(
                AnchorEssayReference.assignment_id == assignment_id,
                AnchorEssayReference.grade_scale == grade_scale,
            )
            .order_by(AnchorEssayReference.anchor_label)
        )
    ]


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
        grade_scale = _grade_scale(session, upload)
        upload_row = _upload_row(upload)
        state_row = _state_row(session.get(CJBatchState, cj_batch_id))
        essays = _essay_rows(session, cj_batch_id)
        pairs = _comparison_rows(session, cj_batch_id)
        transitions = _transition_rows(session, cj_batch_id)
        refs = _anchor_reference_rows(session, upload.assignment_id, grade_scale)
    return BatchFrames(
        cj_batch_id=cj_batch_id,
        upload=upload_row,
        state=state_row,
        essays=_frame(essays, ESSAY_COLUMNS),
        comparisons=_frame(pairs, COMPARISON_COLUMNS),
        projections=projections_frame(engine, cj_batch_id),
        transitions=_frame(transitions, TRANSITION_COLUMNS),
        anchor_references=_frame(refs, ANCHOR_REFERENCE_COLUMNS),
        grade_scale=grade_scale,
    )


# --------------------------------------------------------------------------------------------
# Scores and truth
# --------------------------------------------------------------------------------------------


def win_loss_counts(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Wins and losses of every essay in ``comparisons``, counting decided comparisons only.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Columns ``essay_a_id``, ``essay_b_id`` and ``winner`` (``essay_a``, ``essay_b``; any
        other value, e.g. ``error`` or None, is not a decision).

    Returns
    -------
    pandas.DataFrame
        Indexed by essay id (name ``essay_id``) in order of first appearance, every essay of
        ``comparisons`` (0 / 0 when none of its comparisons was decided); integer columns
        ``wins``, ``losses`` and ``n_comparisons`` = wins + losses.
    """
    essays = pd.unique(
        pd.concat([comparisons["essay_a_id"], comparisons["essay_b_id"]], ignore_index=True)
    )
    decided = comparisons.loc[comparisons["winner"].isin(DECIDED)]
    a_won = (decided["winner"] == "essay_a").to_numpy()
    winners = np.where(a_won, decided["essay_a_id"], decided["essay_b_id"])
    losers = np.where(a_won, decided["essay_b_id"], decided["essay_a_id"])
    index = pd.Index(essays, dtype=object, name="essay_id")
    counts = pd.DataFrame(
        {
            "wins": pd.Series(winners, dtype=object).value_counts(),
            "losses": pd.Series(losers, dtype=object).value_counts(),
        }
    )
    counts = counts.reindex(index, fill_value=0).fillna(0).astype(int)
    counts["n_comparisons"] = counts["wins"] + counts["losses"]
    return counts


def stored_scores(frames: BatchFrames) -> pd.DataFrame:
    """The batch's stored BT scores with win/loss counts from its decided comparisons.

    Returns
    -------
    pandas.DataFrame
        Indexed by essay id (name ``essay_id``), θ descending, columns ``theta``, ``se``,
        ``wins``, ``losses``, ``n_comparisons``, ``is_anchor``, ``anchor_grade``. Essays
        without a stored score are left out.
    """
    essays = frames.essays.dropna(subset=["bt_score", "bt_se"]).set_index("els_essay_id")
    counts = win_loss_counts(frames.comparisons).reindex(essays.index, fill_value=0)
    scores = pd.DataFrame(
        {
            "theta": essays["bt_score"].astype(float),
            "se": essays["bt_se"].astype(float),
            "wins": counts["wins"].astype(int),
            "losses": counts["losses"].astype(int),
            "n_comparisons": counts["n_comparisons"].astype(int),
            "is_anchor": essays["is_anchor"].astype(bool),
        },
        index=essays.index,
    )
    scores["anchor_grade"] = pd.Series(frames.anchor_grades, dtype=object).reindex(scores.index)
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
