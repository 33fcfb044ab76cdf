"""Import human judgements: a decision file becomes a finalized CJ batch.

This is the code under ``cj judgements import``. Three steps:

1. **Validate everything before writing anything**: the decisions (read by
   :mod:`cjlib.importing`), id and label lengths against the database columns, the grade scale,
   the anchors (every anchor id appears in the decisions; every grade is an anchor grade of the
   scale) and, with ``essays_dir``, a text for every essay.
2. **Write the batch in one transaction**: the upload and its state, the processed essays
   (ids from the file; anchors flagged through
   :func:`cjlib.db.repository.bulk_create_cj_processed_essays`, which keeps the anchor rule),
   and one comparison pair per decision with its result (``winner`` essay_a/essay_b, judge,
   timestamps, ``processing_metadata`` with ``decision_id``, ``seconds_taken``, ``task`` and
   the file row). Essays and pairs are loaded in bulk (PostgreSQL ``COPY``, SQLite
   ``executemany``). The state goes INITIALIZING → GENERATING_PAIRS → WAITING_CALLBACKS with
   every counter equal to the number of decisions.
3. **Finalize** through :meth:`cjlib.workflow.finalizer.BatchFinalizer.finalize_scoring`, the
   same code as a simulated batch: BT fit, scores, projections (when anchors are given),
   events, COMPLETE_STABLE / COMPLETED.

When the file does not say which item was shown in position A, every pair is stored with
the winner as ``essay_a`` and ``processing_metadata.position_known = false`` (also in the
upload's ``processing_metadata.import.positions_known``); the position-A share of such a
batch means nothing and readers must check the flag. θ does not depend on positions (the
finalizer fits without a position effect).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from cjlib.datasets import ESSAY_EXTENSIONS, _read_essay
from cjlib.db import session_scope
from cjlib.db.bulk import insert_columns, insert_rows, timestamp_text, timestamp_texts
from cjlib.db.models import (
    AssessmentInstruction,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJComparisonPair,
    CJContent,
    CJProcessedEssay,
    CoreCJState,
    utc_now,
)
from cjlib.db.repository import (
    bulk_create_cj_processed_essays,
    create_batch_upload,
    lock_batch_state,
    record_state_transition,
    store_content,
    text_storage_id_for,
)
from cjlib.defaults import DEFAULT_GRADE_SCALE
from cjlib.errors import DatasetError, JudgementFileError, UsageError
from cjlib.grades import GradeScale, get_grade_scale
from cjlib.importing import JudgementFile, read_anchor_grades, read_judgement_file
from cjlib.scoring import METHODS
from cjlib.workflow.finalizer import BatchFinalizer, FinalizationResult

log = logging.getLogger(__name__)

#: Completion reason the finalizer records for an imported batch.
IMPORT_COMPLETION_REASON = "imported"

_MAX_LISTED = 5


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_judgements` did; ``seconds`` times its validate, write, finalize."""

    cj_batch_id: int
    bos_batch_id: str
    batch_label: str
    assignment_id: str
    source: str
    grade_scale: str
    comparisons: int
    essays: int
    anchors: int
    judges: int
    rows_read: int
    excluded: int
    duplicates: int
    other_tasks: int
    task: str | None
    positions_known: bool
    finalization: FinalizationResult
    seconds: Mapping[str, float] = field(default_factory=dict)

    # status, state and run_dir make an import a batch record like an executed batch's
    # (:func:`cjlib.notebook.write_batch_record`); an import writes no artefact folder.
    @property
    def status(self) -> str:
        """The batch's final upload status (COMPLETE_STABLE after a normal import)."""
        return self.finalization.status

    @property
    def state(self) -> str:
        """The batch's final state (COMPLETED after a normal import)."""
        return self.finalization.state

    @property
    def run_dir(self) -> None:
        """None: an import writes no artefact folder of its own."""
        return None

    def summary(self) -> dict[str, Any]:
        """The import as plain data (what ``cj judgements import --json`` prints)."""
        fin = self.finalization
        return {
            "cj_batch_id": self.cj_batch_id,
            "comparisons": self.comparisons,
            "essays": self.essays,
            "judges": self.judges,
            "anchors": self.anchors,
            "bos_batch_id": self.bos_batch_id,
            "batch_label": self.batch_label,
            "assignment_id": self.assignment_id,
            "source": self.source,
            "task": self.task,
            "grade_scale": self.grade_scale,
            "rows_read": self.rows_read,
            "excluded": self.excluded,
            "duplicates": self.duplicates,
            "other_tasks": self.other_tasks,
            "positions_known": self.positions_known,
            "status": fin.status,
            "state": fin.state,
            "grade_projections": fin.projection_count,
            "projection_unavailable_reason": fin.projection_unavailable_reason,
            "reliability": fin.reliability,
            "bt_alpha": fin.bt_alpha,
            "seconds": dict(self.seconds),
        }


@dataclass(frozen=True)
class _Plan:
    """Everything validated, ready to write."""

    source: str
    decisions: pd.DataFrame
    essay_ids: list[str]
    anchors: dict[str, str]
    texts: dict[str, str] | None
    scale: GradeScale
    write_instructions: bool
    counts: dict[str, int]
    task: str | None


def _listed(values: list[str]) -> str:
    shown = ", ".join(values[:_MAX_LISTED])
    return shown + (f" (and {len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else "")


def _column_length(column: Any) -> int:
    return int(column.type.length)


def _check_lengths(source: str, frame: pd.DataFrame) -> None:
    limits = {
        "winner_id": _column_length(CJProcessedEssay.__table__.c.els_essay_id),
        "loser_id": _column_length(CJProcessedEssay.__table__.c.els_essay_id),
        "judge_id": _column_length(CJComparisonPair.__table__.c.judge_id),
    }
    for column, limit in limits.items():
        if column not in frame.columns:
            continue
        too_long = (frame[column].str.len() > limit).to_numpy()
        if too_long.any():
            rows = [str(r) for r in frame.index[too_long]]
            raise JudgementFileError(
                f"{source}: {column} longer than {limit} characters in rows {_listed(rows)}; "
                "shorten the ids"
            )


def _check_labels(assignment_id: str, course_id: str, batch_label: str) -> None:
    table = CJBatchUpload.__table__.c
    for option, value, column in (
        ("--assignment-id", assignment_id, table.assignment_id),
        ("--course-id", course_id, table.course_id),
        ("--batch-label", batch_label, table.batch_label),
    ):
        if not value or not value.strip():
            raise UsageError(f"{option} is empty; give a non-empty value")
        if len(value) > _column_length(column):
            raise UsageError(
                f"{option} is {len(value)} characters; at most {_column_length(column)} fit"
            )


def _scale_for(
    engine: Engine, assignment_id: str, grade_scale: str | None
) -> tuple[GradeScale, bool]:
    with session_scope(engine) as session:
        registered = session.scalars(
            select(AssessmentInstruction.grade_scale).where(
                AssessmentInstruction.assignment_id == assignment_id
            )
        ).one_or_none()
    if registered is not None and grade_scale is not None and grade_scale != registered:
        raise UsageError(
            f"assignment {assignment_id!r} is registered on grade scale {registered!r}, not "
            f"{grade_scale!r}; drop --grade-scale or use another assignment id"
        )
    return get_grade_scale(registered or grade_scale or DEFAULT_GRADE_SCALE), registered is None


def _check_anchors(
    anchors: dict[str, str],
    anchors_source: str,
    essay_ids: set[str],
    source: str,
    scale: GradeScale,
) -> None:
    missing = sorted(set(anchors) - essay_ids)
    if missing:
        raise JudgementFileError(
            f"{anchors_source}: anchor ids never appear in {source}: {_listed(missing)}; "
            "check the ids or remove those anchors"
        )
    unknown = sorted({g for g in anchors.values() if g not in scale.grades})
    if unknown:
        raise JudgementFileError(
            f"{anchors_source}: grade {_listed(unknown)} is not an anchor grade on "
            f"{scale.name}; use one of: {', '.join(scale.grades)}"
        )


def _read_texts(essays_dir: Path, essay_ids: list[str]) -> dict[str, str]:
    if not essays_dir.is_dir():
        raise DatasetError(f"--essays {essays_dir} is not a folder; give the folder of essays")
    files = {
        path.stem: path.name
        for path in sorted(essays_dir.iterdir())
        if path.suffix.lower() in ESSAY_EXTENSIONS
    }
    missing = sorted(essay for essay in essay_ids if essay not in files)
    if missing:
        raise DatasetError(
            f"{essays_dir} has no text for essays {_listed(missing)}; add <essay id>.txt "
            f"(or {', '.join(ESSAY_EXTENSIONS[1:])}) files, or drop --essays"
        )
    return {
        essay: _read_essay(essays_dir, files[essay], f"--essays {essays_dir}")
        for essay in essay_ids
    }


def _plan(
    engine: Engine,
    decisions: JudgementFile | pd.DataFrame,
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    anchors: Mapping[str, str] | str | Path | None,
    essays_dir: str | Path | None,
    grade_scale: str | None,
    method: str | None,
) -> _Plan:
    if method is not None and method not in METHODS:
        raise UsageError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    _check_labels(assignment_id, course_id, batch_label)
    if isinstance(decisions, JudgementFile):
        source, frame, task = str(decisions.path), decisions.decisions, decisions.task
        counts = decisions.counts()
    else:
        source, frame, task = "decisions", decisions, None
        counts = {"rows_read": len(frame), "excluded": 0, "duplicates": 0, "other_tasks": 0}
    if not {"winner_id", "loser_id"} <= set(frame.columns) or frame.empty:
        raise JudgementFileError(
            f"{source}: no decisions with winner_id and loser_id; read the file with "
            "cjlib.importing.read_judgement_file"
        )
    frame = frame.astype({"winner_id": str, "loser_id": str})
    _check_lengths(source, frame)
    essay_ids = list(pd.unique(np.concatenate([frame["winner_id"], frame["loser_id"]])))
    scale, write_instructions = _scale_for(engine, assignment_id, grade_scale)
    anchor_grades: dict[str, str] = {}
    if anchors is not None:
        if isinstance(anchors, str | Path):
            anchors_source, anchor_grades = str(anchors), read_anchor_grades(anchors)
        else:
            anchors_source, anchor_grades = "anchors", {str(k): str(v) for k, v in anchors.items()}
        _check_anchors(anchor_grades, anchors_source, set(essay_ids), source, scale)
    texts = _read_texts(Path(essays_dir), essay_ids) if essays_dir is not None else None
    return _Plan(
        source=source,
        decisions=frame,
        essay_ids=[str(e) for e in essay_ids],
        anchors=anchor_grades,
        texts=texts,
        scale=scale,
        write_instructions=write_instructions,
        counts=counts,
        task=task,
    )


def _store_texts(session, texts: dict[str, str], dialect: str) -> dict[str, str]:
    """Content-store keys of ``texts``; new contents are bulk-inserted."""
    keys = {essay: text_storage_id_for(text) for essay, text in texts.items()}
    by_key = {key: texts[essay] for essay, key in keys.items()}
    unique = sorted(by_key)
    existing: set[str] = set()
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        existing.update(
            session.scalars(
                select(CJContent.text_storage_id).where(CJContent.text_storage_id.in_(chunk))
            )
        )
    now = timestamp_text(dialect, utc_now())
    insert_rows(
        session,
        CJContent.__table__,
        ("text_storage_id", "content", "created_at"),
        ((key, by_key[key], now) for key in unique if key not in existing),
    )
    return keys


def _essay_rows(plan: _Plan, keys: dict[str, str] | None, empty_key: str):
    for essay in plan.essay_ids:
        meta: dict[str, Any] = {
            "is_anchor": essay in plan.anchors,
            "source": "import",
            "has_text": keys is not None,
        }
        if essay in plan.anchors:
            meta.update(
                anchor_label=essay, anchor_grade=plan.anchors[essay], grade_scale=plan.scale.name
            )
        yield {
            "els_essay_id": essay,
            "text_storage_id": keys[essay] if keys is not None else empty_key,
            "assessment_input_text": plan.texts[essay] if plan.texts is not None else "",
            "processing_metadata": meta,
        }


#: Characters that make a JSON string literal need more than surrounding quotes.
_JSON_SPECIAL = re.compile(r'["\\\x00-\x1f]')


def _json_strings(values: pd.Series) -> list[str]:
    """Each value as a JSON string literal (``null`` when missing).

    Quoting is enough for ordinary ids; only when the column holds quotes, backslashes or
    control characters does each value go through :func:`json.dumps`.
    """
    items = values.astype(object).where(values.notna(), None).tolist()
    present = [v for v in items if v is not None]
    if _JSON_SPECIAL.search("".join(map(str, present))):
        return ["null" if v is None else json.dumps(str(v)) for v in items]
    return ["null" if v is None else f'"{v}"' for v in items]


def _pair_metadata(frame: pd.DataFrame, plan: _Plan, positions_known: bool) -> list[str]:
    """``processing_metadata`` JSON of every pair (one f-string per decision, ~1 µs each)."""
    n = len(frame)
    rows = frame.index.tolist()
    ids = _json_strings(frame["decision_id"]) if "decision_id" in frame.columns else None
    seconds = None
    if "seconds_taken" in frame.columns:
        seconds = [
            repr(v) if math.isfinite(v) else "null"
            for v in frame["seconds_taken"].to_numpy(dtype=float).tolist()
        ]
    task = f', "task": {json.dumps(plan.task)}' if plan.task is not None else ""
    tail = f'{task}, "position_known": {"true" if positions_known else "false"}}}'
    ids = ids or [None] * n
    seconds = seconds or [None] * n
    return [
        '{"source": "import", "wave": 1, "row": ' + str(row)
        + ("" if d is None else ', "decision_id": ' + d)
        + ("" if t is None else ', "seconds_taken": ' + t)
        + tail
        for row, d, t in zip(rows, ids, seconds, strict=True)
    ]  # fmt: skip


def _pair_columns(batch_id: int, plan: _Plan, dialect: str) -> tuple[bool, dict[str, Any]]:
    """The ``cj_comparison_pairs`` columns of every decision, as arrays."""
    frame = plan.decisions
    n = len(frame)
    winner = frame["winner_id"].to_numpy(dtype=object)
    loser = frame["loser_id"].to_numpy(dtype=object)
    positions_known = "essay_a_id" in frame.columns and bool(frame["essay_a_id"].notna().all())
    if positions_known:
        a = frame["essay_a_id"].astype(str).to_numpy(dtype=object)
        b = frame["essay_b_id"].astype(str).to_numpy(dtype=object)
        outcome = np.where(a == winner, "essay_a", "essay_b").astype(object)
    else:
        a, b = winner, loser
        outcome = np.full(n, "essay_a", dtype=object)
    judges = (
        frame["judge_id"].astype(object).where(frame["judge_id"].notna(), None).to_numpy()
        if "judge_id" in frame.columns
        else np.full(n, None, dtype=object)
    )
    now = timestamp_text(dialect, utc_now())
    if "decided_at" in frame.columns:
        completed = timestamp_texts(dialect, frame["decided_at"])
        started = frame["decided_at"]
        if "seconds_taken" in frame.columns:
            started = started - pd.to_timedelta(frame["seconds_taken"].fillna(0.0), unit="s")
        submitted = timestamp_texts(dialect, started)
        completed[pd.isna(completed)] = now
        submitted[pd.isna(submitted)] = now
    else:
        completed = submitted = np.full(n, now, dtype=object)
    # Correlation ids: one random UUID prefix per import and the decision's position, so 10⁶
    # ids cost one f-string each (not a uuid4 each) and stay unique across batches.
    prefix = str(uuid.uuid4())[:24]
    columns = {
        "cj_batch_id": np.full(n, batch_id, dtype=object),
        "essay_a_els_id": a,
        "essay_b_els_id": b,
        "request_correlation_id": [f"{prefix}{i:012d}" for i in range(n)],
        "winner": outcome,
        "judge_id": judges,
        "submitted_at": submitted,
        "completed_at": completed,
        "processing_metadata": _pair_metadata(frame, plan, positions_known),
    }
    return positions_known, columns


def _write(
    engine: Engine, plan: _Plan, *, assignment_id: str, course_id: str, batch_label: str
) -> tuple[int, str, bool]:
    with session_scope(engine) as session:
        dialect = session.get_bind().dialect.name
        if plan.write_instructions:
            session.add(
                AssessmentInstruction(
                    assignment_id=assignment_id, course_id=course_id, grade_scale=plan.scale.name
                )
            )
        upload = create_batch_upload(
            session,
            assignment_id=assignment_id,
            course_id=course_id,
            batch_label=batch_label,
            language=None,
            course_code=course_id if len(course_id) <= 50 else None,
            expected_essay_count=len(plan.essay_ids),
            total_budget=len(plan.decisions),
            processing_metadata={
                "import": {
                    "source": plan.source,
                    "task": plan.task,
                    "anchors": len(plan.anchors),
                    "has_texts": plan.texts is not None,
                    **plan.counts,
                }
            },
        )
        upload.status = CJBatchStatusEnum.PERFORMING_COMPARISONS
        batch_id = upload.id
        keys = _store_texts(session, plan.texts, dialect) if plan.texts is not None else None
        empty_key = store_content(session, "") if keys is None else ""
        bulk_create_cj_processed_essays(
            session, cj_batch_id=batch_id, essays=_essay_rows(plan, keys, empty_key)
        )
        state = lock_batch_state(session, batch_id)
        record_state_transition(
            session, batch_id, CoreCJState.GENERATING_PAIRS,
            reason=f"import: {len(plan.decisions)} decisions from {plan.source}", state_row=state,
        )  # fmt: skip
        positions_known, columns = _pair_columns(batch_id, plan, dialect)
        written = insert_columns(session, CJComparisonPair.__table__, columns)
        state.total_comparisons = state.submitted_comparisons = written
        state.completed_comparisons = written
        state.current_iteration = 1
        upload.processing_metadata = {
            **upload.processing_metadata,
            "import": {**upload.processing_metadata["import"], "positions_known": positions_known},
        }
        record_state_transition(
            session, batch_id, CoreCJState.WAITING_CALLBACKS,
            reason="import: every decision recorded", state_row=state,
        )  # fmt: skip
        return batch_id, upload.bos_batch_id, positions_known


def import_judgements(
    engine: Engine,
    decisions: JudgementFile | pd.DataFrame,
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    anchors: Mapping[str, str] | str | Path | None = None,
    essays_dir: str | Path | None = None,
    grade_scale: str | None = None,
    method: str | None = None,
) -> ImportResult:
    """Create a finalized CJ batch from human decisions: validate, write, finalize.

    Parameters
    ----------
    engine : Engine
        A migrated database (:func:`cjlib.db.get_engine`).
    decisions : JudgementFile or pandas.DataFrame
        From :func:`cjlib.importing.read_judgement_file` (its path and counts are recorded),
        or a frame with the canonical columns of :func:`cjlib.importing.read_judgements`.
    assignment_id, course_id, batch_label : str
        Stored on the batch. An assignment without instructions gets them (course, grade
        scale, no prompt) in the same transaction.
    anchors : mapping or path, optional
        Essay id → grade label, or a CSV/xlsx with ``essay_id, grade``. Those essays become
        anchors, and the other essays get projected grades.
    essays_dir : path, optional
        Folder with one ``<essay id>.txt`` (``.md``, ``.docx``) per essay; without it the
        essays have no text (``processing_metadata.has_text = false``).
    grade_scale : str, optional
        Scale of the anchor grades; default the assignment's registered scale, else
        :data:`cjlib.defaults.DEFAULT_GRADE_SCALE`.
    method : str, optional
        Reserved for the BT estimator; this cjlib's finalizer has one, so only None.

    Returns
    -------
    ImportResult

    Raises
    ------
    JudgementFileError
        Bad decisions or anchors (ids too long for the database, anchor ids absent from
        the decisions, grades not on the scale); nothing was written.
    DatasetError
        ``essays_dir`` is not a folder or lacks some essay's text; nothing was written.
    UsageError
        Empty or too long ids/labels, a grade scale contradicting the registered one, an
        unknown scale, or a ``method``; nothing was written.
    FinalizationError
        Scoring failed after the batch was written; it is FAILED with the reason.
    """
    started = time.perf_counter()
    plan = _plan(
        engine,
        decisions,
        assignment_id=assignment_id,
        course_id=course_id,
        batch_label=batch_label,
        anchors=anchors,
        essays_dir=essays_dir,
        grade_scale=grade_scale,
        method=method,
    )
    validated = time.perf_counter()
    batch_id, bos_batch_id, positions_known = _write(
        engine, plan, assignment_id=assignment_id, course_id=course_id, batch_label=batch_label
    )
    written = time.perf_counter()
    log.info("import %s: batch %s written, finalizing", plan.source, batch_id)
    finalization = BatchFinalizer(engine, method=method).finalize_scoring(
        batch_id, completion_reason=IMPORT_COMPLETION_REASON
    )
    seconds = {
        "validate": validated - started,
        "write": written - validated,
        "finalize": time.perf_counter() - written,
    }
    judges = int(plan.decisions["judge_id"].nunique()) if "judge_id" in plan.decisions else 0
    return ImportResult(
        cj_batch_id=batch_id,
        bos_batch_id=bos_batch_id,
        batch_label=batch_label,
        assignment_id=assignment_id,
        source=plan.source,
        grade_scale=plan.scale.name,
        comparisons=len(plan.decisions),
        essays=len(plan.essay_ids),
        anchors=len(plan.anchors),
        judges=judges,
        rows_read=plan.counts["rows_read"],
        excluded=plan.counts["excluded"],
        duplicates=plan.counts["duplicates"],
        other_tasks=plan.counts["other_tasks"],
        task=plan.task,
        positions_known=positions_known,
        finalization=finalization,
        seconds=seconds,
    )


def check_anchor_grades(
    decisions: JudgementFile, anchors: str | Path, *, grade_scale: str
) -> dict[str, str]:
    """Read an anchor file and check it against the decisions, writing nothing.

    The checks :func:`import_judgements` makes on ``anchors``, for callers that validate
    before doing anything else (``cj pipeline --judgements``).

    Parameters
    ----------
    decisions : JudgementFile
        From :func:`cjlib.importing.read_judgement_file`.
    anchors : path
        CSV/xlsx of ``essay_id, grade``.
    grade_scale : str
        Name of the scale the grades must be on.

    Returns
    -------
    dict
        Anchor essay id → grade label.

    Raises
    ------
    JudgementFileError
        An unreadable anchor file, an anchor id that never appears in the decisions, or a
        grade that is not an anchor grade of the scale.
    """
    grades = read_anchor_grades(anchors)
    frame = decisions.decisions
    essay_ids = set(frame["winner_id"].astype(str)) | set(frame["loser_id"].astype(str))
    scale = get_grade_scale(grade_scale)
    _check_anchors(grades, str(anchors), essay_ids, str(decisions.path), scale)
    return grades


def import_judgement_file(
    engine: Engine,
    path: str | Path,
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    task: str | None = None,
    anchors: str | Path | None = None,
    essays_dir: str | Path | None = None,
    grade_scale: str | None = None,
) -> ImportResult:
    """Read a decision file and import it as a finalized batch (what notebook 02 calls).

    :func:`cjlib.importing.read_judgement_file` with ``format``, ``columns`` and ``task``,
    then :func:`import_judgements` with the other arguments.

    Returns
    -------
    ImportResult

    Raises
    ------
    JudgementFileError, DatasetError, UsageError, FinalizationError
        As :func:`cjlib.importing.read_judgement_file` and :func:`import_judgements`.
    """
    decisions = read_judgement_file(path, format=format, columns=dict(columns or {}), task=task)
    return import_judgements(
        engine,
        decisions,
        assignment_id=assignment_id,
        course_id=course_id,
        batch_label=batch_label,
        anchors=anchors,
        essays_dir=essays_dir,
        grade_scale=grade_scale,
    )
