"""Hand-built batches for the report tests: 4 anchors and 6 students, scored and projected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from cjlib.db.queries import BatchRecord, StateRecord, UploadRecord
from cjlib.projection import project_grades
from cjlib.scoring import fit_bradley_terry

SCALE = "eng5_np_legacy_9_step"
ANCHORS = {"anc_1": "E-", "anc_2": "D-", "anc_3": "C-", "anc_4": "B"}
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HISTORY = (
    "INITIALIZING", "GENERATING_PAIRS", "WAITING_CALLBACKS", "SCORING", "COMPLETED",
)  # fmt: skip


def _comparisons(abilities: dict[str, float], rounds: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = list(abilities)
    rows = []
    for wave in range(1, rounds + 1):
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                first, second = (a, b) if rng.random() < 0.5 else (b, a)
                p = 1 / (1 + np.exp(abilities[second] - abilities[first]))
                rows.append((first, second, "essay_a" if rng.random() < p else "essay_b", wave))
    frame = pd.DataFrame(rows, columns=["essay_a_id", "essay_b_id", "winner", "wave"])
    frame.insert(0, "id", range(1, len(frame) + 1))
    frame["judge_id"] = "sim"
    frame["error_code"] = None
    frame["submitted_at"] = frame["completed_at"] = START
    return frame


def batch_frames(
    *,
    rounds: int = 2,
    failed: int = 0,
    metadata: dict | None = None,
    history: tuple[str, ...] = HISTORY,
    status: str = "COMPLETE_STABLE",
    flip: str | None = None,
    projected: bool = True,
    seed: int = 1,
) -> BatchRecord:
    """A finished batch of 4 anchors and 6 students, scored and projected like the finalizer."""
    abilities = {"anc_1": -2.0, "anc_2": -0.7, "anc_3": 0.6, "anc_4": 2.0}
    abilities |= {f"S{i}": a for i, a in enumerate(np.linspace(-2.2, 2.2, 6))}
    comparisons = _comparisons(abilities, rounds, seed)
    if failed:
        comparisons.loc[comparisons.index[:failed], ["winner", "error_code"]] = [
            "error",
            "callback_lost",
        ]
    bt = fit_bradley_terry(comparisons[["essay_a_id", "essay_b_id", "winner"]], alpha=0.01)
    scores = bt.scores
    essays = pd.DataFrame(
        {
            "els_essay_id": list(abilities),
            "is_anchor": [e in ANCHORS for e in abilities],
            "metadata_is_anchor": [e in ANCHORS for e in abilities],
            "anchor_label": [e if e in ANCHORS else None for e in abilities],
            "anchor_grade": [ANCHORS.get(e) for e in abilities],
            "bt_score": [scores.at[e, "theta"] for e in abilities],
            "bt_se": [scores.at[e, "se"] for e in abilities],
            "comparison_count": [int(scores.at[e, "n_comparisons"]) for e in abilities],
        }
    )
    if flip:
        essays.loc[essays["els_essay_id"] == flip, "is_anchor"] = False
    projections = pd.DataFrame(columns=["els_essay_id", "primary_grade"])
    if projected:
        grades = project_grades(scores, pd.Series(ANCHORS), scale=SCALE).grades
        projections = pd.DataFrame(
            {
                "els_essay_id": grades.index,
                "cj_batch_id": 7,
                "primary_grade": grades["primary_grade"].to_numpy(),
                "grade_scale": SCALE,
                "confidence_score": grades["confidence_score"].to_numpy(),
                "confidence_label": grades["confidence_label"].to_numpy(),
                **{f"p_{g}": grades[g].to_numpy() for g in ("F", "F+", "E-", "E+", "D-", "D+",
                                                            "C-", "C+", "B", "A")},
            }
        )  # fmt: skip
    meta = {
        "completion_reason": "stable",
        "bt_alpha": 0.0,
        "bt_connected": True,
        "reliability": 0.9,
        "separation": 3.0,
        "grade_scale": SCALE,
        "projection_available": projected,
        "run": {"judge": "llm", "judge_id": "llm-1", "seed": 3, "max_comparisons": 200},
    } | (metadata or {})
    transitions = pd.DataFrame(
        {
            "at": [START + timedelta(seconds=i) for i in range(len(history))],
            "from_state": [None, *history[:-1]],
            "to_state": list(history),
            "reason": None,
        }
    )
    n_failed = int((comparisons["winner"] == "error").sum())
    return BatchRecord(
        cj_batch_id=7,
        upload=UploadRecord(
            id=7,
            bos_batch_id="00000000-0000-0000-0000-000000000007",
            event_correlation_id="00000000-0000-0000-0000-000000000008",
            batch_label="unit",
            assignment_id="a",
            course_id="ENG5",
            course_code="ENG5",
            language="en",
            status=status,
            created_at=START,
            completed_at=START + timedelta(seconds=75),
            processing_metadata=meta,
        ),
        state=StateRecord(
            state=history[-1],
            total_budget=200,
            total_comparisons=len(comparisons),
            submitted_comparisons=len(comparisons),
            completed_comparisons=len(comparisons) - n_failed,
            failed_comparisons=n_failed,
            current_iteration=rounds,
            last_activity_at=START + timedelta(seconds=75),
        ),
        instructions=None,
        essays=essays,
        comparisons=comparisons,
        projections=projections,
        transitions=transitions,
        anchor_references=pd.DataFrame(
            {"anchor_label": list(ANCHORS), "grade": list(ANCHORS.values())}
        ),
        grade_scale=SCALE,
    )


def failing(checklist: pd.DataFrame) -> list[str]:
    """The names of the checklist lines that fail."""
    return list(checklist.loc[~checklist["passed"], "check"])


def renamed(frames: BatchRecord, ids: dict[str, str]) -> BatchRecord:
    """``frames`` with essay ids (and anchor labels) renamed by ``ids`` everywhere they occur."""
    essays = frames.essays.copy()
    essays["els_essay_id"] = essays["els_essay_id"].replace(ids)
    essays["anchor_label"] = essays["anchor_label"].replace(ids)
    comparisons = frames.comparisons.copy()
    comparisons[["essay_a_id", "essay_b_id"]] = comparisons[["essay_a_id", "essay_b_id"]].replace(
        ids
    )
    projections = frames.projections.copy()
    projections["els_essay_id"] = projections["els_essay_id"].replace(ids)
    references = frames.anchor_references.copy()
    references["anchor_label"] = references["anchor_label"].replace(ids)
    return replace(
        frames,
        essays=essays,
        comparisons=comparisons,
        projections=projections,
        anchor_references=references,
    )
