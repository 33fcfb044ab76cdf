"""The success checklist on hand-built batches."""

from __future__ import annotations

from cjlib.diagnostics import HealthAlert
from cjlib.report.checklist import CHECKS, evaluate_checklist
from tests.unit.report.batches import batch_frames, failing


def test_checklist_passes_every_line_for_a_consistent_completed_batch():
    checklist = evaluate_checklist(batch_frames(), health="ok", alerts=[])
    assert list(checklist.columns) == ["check", "passed", "evidence"]
    assert list(checklist["check"]) == list(CHECKS)
    assert checklist["passed"].all()
    assert checklist.loc[3, "evidence"].startswith("6 projections; 4 anchors")


def test_checklist_names_essay_whose_anchor_column_contradicts_its_metadata():
    checklist = evaluate_checklist(batch_frames(flip="anc_2"), health="ok", alerts=[])
    assert failing(checklist) == [CHECKS[0]]
    assert "anc_2 (column false, metadata true)" in checklist.loc[0, "evidence"]


def test_checklist_fails_history_that_does_not_end_in_scoring_then_completed():
    history = ("INITIALIZING", "WAITING_CALLBACKS", "COMPLETED")
    checklist = evaluate_checklist(batch_frames(history=history), health="ok", alerts=[])
    assert failing(checklist) == [CHECKS[1]]
    assert "WAITING_CALLBACKS → COMPLETED" in checklist.loc[1, "evidence"]


def test_checklist_fails_without_projections_or_healthy_verdict_or_with_wrong_status():
    frames = batch_frames(projected=False, status="ERROR_PROCESSING")
    checklist = evaluate_checklist(frames, health="failed", alerts=[])
    assert failing(checklist) == [CHECKS[2], CHECKS[3], CHECKS[4]]


def test_checklist_fails_when_anchors_cover_a_single_grade():
    frames = batch_frames()
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    checklist = evaluate_checklist(frames, health="ok", alerts=[])
    assert failing(checklist) == [CHECKS[3]]
    assert "1 distinct grade" in checklist.loc[3, "evidence"]


def test_checklist_lists_firing_alerts_of_the_batch():
    alert = HealthAlert(
        kind="anchor_flag_drift", cj_batch_id=7, batch_label="unit", assignment_id="a",
        upload_status="COMPLETE_STABLE", cj_state="COMPLETED", seconds=None,
        detail="1 essay(s): metadata is_anchor, column not",
    )  # fmt: skip
    checklist = evaluate_checklist(batch_frames(), health="ok", alerts=[alert])
    assert failing(checklist) == [CHECKS[5]]
    assert checklist.loc[5, "evidence"].startswith("anchor_flag_drift: 1 essay(s)")
