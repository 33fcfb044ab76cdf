"""Anchor registration: assessment instructions and anchor references for an assignment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from cjlib.datasets import load_dataset
from cjlib.db import session_scope
from cjlib.db.models import AnchorEssayReference, AssessmentInstruction, CJContent
from cjlib.db.queries import instructions_for
from cjlib.db.repository import insert_ignoring_duplicates, store_contents
from cjlib.defaults import DEFAULT_GRADE_SCALE
from cjlib.errors import CJError, UsageError
from cjlib.grades import get_grade_scale
from cjlib.validation import check_text, column_length


@dataclass(frozen=True)
class AnchorRegistration:
    """What :func:`register_anchors` did: counts of inserted/updated/unchanged references."""

    assignment_id: str
    grade_scale: str
    inserted: int
    updated: int
    unchanged: int
    instructions_written: bool
    anchors: pd.DataFrame

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return bool(self.inserted or self.updated or self.instructions_written)


def register_anchors(
    engine: Engine,
    *,
    assignment_id: str,
    course_id: str,
    dataset: str | Path,
    grade_scale: str = DEFAULT_GRADE_SCALE,
) -> AnchorRegistration:
    """Write the assignment's instructions and upsert its anchor references, in one transaction.

    Anchors are keyed by ``(assignment_id, anchor_label, grade_scale)``; texts go to the content
    store. Running it twice changes nothing.

    Raises
    ------
    DatasetError
        The data set folder is malformed (see :func:`cjlib.datasets.load_dataset`).
    UsageError
        The assignment is already registered with another course or grade scale, or an id
        is blank, holds NUL or is longer than its column (checked before any write).
    """
    check_text("--assignment-id", assignment_id,
               column_length(AnchorEssayReference.assignment_id), required=True)  # fmt: skip
    check_text("--course-id", course_id, column_length(AssessmentInstruction.course_id),
               required=True)  # fmt: skip
    scale = get_grade_scale(grade_scale)
    data = load_dataset(dataset, grade_scale=scale)
    inserted = updated = unchanged = 0
    with session_scope(engine) as session:
        # Insert-if-absent in one statement: two registrations at once must not collide.
        inserted_instructions = insert_ignoring_duplicates(
            session,
            AssessmentInstruction,
            [
                {
                    "assignment_id": assignment_id,
                    "course_id": course_id,
                    "grade_scale": scale.name,
                    "student_prompt_text": data.prompt,
                }
            ],
        )
        instr = instructions_for(session, assignment_id)
        instructions_written = inserted_instructions > 0
        if not instructions_written:
            if instr.grade_scale != scale.name or (instr.course_id not in (None, course_id)):
                raise UsageError(
                    f"assignment {assignment_id!r} is registered with course "
                    f"{instr.course_id!r} on scale {instr.grade_scale!r}; use those, or clean "
                    "it up first with `cj batch cleanup --assignment-id … --drop-anchors`"
                )
            instructions_written = instr.student_prompt_text != data.prompt
            if instructions_written:
                instr.student_prompt_text = data.prompt
        keys = store_contents(session, data.anchors["text"].tolist())
        for row, key in zip(data.anchors.itertuples(index=False), keys, strict=True):
            if insert_ignoring_duplicates(
                session,
                AnchorEssayReference,
                [
                    {
                        "assignment_id": assignment_id,
                        "anchor_label": row.label,
                        "grade": row.grade,
                        "grade_scale": scale.name,
                        "text_storage_id": key,
                    }
                ],
            ):
                inserted += 1
                continue
            ref = session.scalars(
                select(AnchorEssayReference).where(
                    AnchorEssayReference.assignment_id == assignment_id,
                    AnchorEssayReference.anchor_label == row.label,
                    AnchorEssayReference.grade_scale == scale.name,
                )
            ).one()
            if ref.grade != row.grade or ref.text_storage_id != key:
                ref.grade, ref.text_storage_id = row.grade, key
                updated += 1
            else:
                unchanged += 1
        session.flush()
    return AnchorRegistration(
        assignment_id=assignment_id,
        grade_scale=scale.name,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        instructions_written=instructions_written,
        anchors=data.anchors[["label", "grade", "file"]].copy(),
    )


@dataclass(frozen=True)
class AnchorVerification:
    """Result of :func:`verify_anchors`; ``problems`` is empty when everything checks out."""

    assignment_id: str
    anchor_count: int
    anchors: pd.DataFrame
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def list_anchors(engine: Engine, assignment_id: str) -> pd.DataFrame:
    """The assignment's anchor references with whether each text resolves in the content store."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(
                AnchorEssayReference.anchor_label,
                AnchorEssayReference.grade,
                AnchorEssayReference.grade_scale,
                AnchorEssayReference.text_storage_id,
                CJContent.text_storage_id.is_not(None).label("text_resolves"),
            )
            .outerjoin(CJContent, CJContent.text_storage_id == AnchorEssayReference.text_storage_id)
            .where(AnchorEssayReference.assignment_id == assignment_id)
            .order_by(AnchorEssayReference.anchor_label)
        ).all()
    frame = pd.DataFrame(
        rows,
        columns=["anchor_label", "grade", "grade_scale", "text_storage_id", "text_resolves"],
    )
    frame["text_resolves"] = frame["text_resolves"].astype(bool)
    return frame


def verify_anchors(
    engine: Engine, *, assignment_id: str, expect: int | None = None
) -> AnchorVerification:
    """Check the anchor count and that every ``text_storage_id`` resolves in the content store.

    Also checks that the assignment has instructions and that anchors cover at least two
    grades (projection needs two). Never raises for a failed check; see ``problems``.
    """
    anchors = list_anchors(engine, assignment_id)
    problems: list[str] = []
    with session_scope(engine) as session:
        has_instructions = instructions_for(session, assignment_id) is not None
    if not has_instructions:
        problems.append(f"assignment {assignment_id!r} has no assessment instructions")
    if expect is not None and len(anchors) != expect:
        problems.append(f"expected {expect} anchors, found {len(anchors)}")
    dangling = anchors.loc[~anchors["text_resolves"], "anchor_label"].tolist()
    if dangling:
        problems.append(f"anchor texts missing from the content store: {', '.join(dangling)}")
    if len(anchors) and anchors["grade"].nunique() < 2:
        problems.append("anchors cover fewer than 2 distinct grades; projection needs 2")
    return AnchorVerification(
        assignment_id=assignment_id,
        anchor_count=len(anchors),
        anchors=anchors,
        problems=tuple(problems),
    )


class AnchorVerificationFailed(CJError):
    """``cj anchors verify`` found problems (exit code 1)."""
