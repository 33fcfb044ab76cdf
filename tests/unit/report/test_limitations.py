"""The limitations generated from a batch's data."""

from __future__ import annotations

import importlib

from cjlib.report.assembly import assemble_report
from cjlib.report.limitations import limitations
from tests.unit.report.batches import batch_frames


def test_limitations_of_a_clean_batch_only_name_unanchored_grades():
    rep = assemble_report(batch_frames(rounds=3))
    items = limitations(rep)
    cal = rep.projection.calibration
    unanchored = set(cal.index[cal["interpolated"] | cal["extrapolated"]])
    assert unanchored == {"F", "F+", "E+", "D+", "C+", "A"}
    assert any(i.startswith("Grade(s) E+, D+, C+ have no anchor") for i in items)
    assert any(i.startswith("Grade(s) F, F+, A lie outside the anchored range") for i in items)
    assert not any("failed" in i or "penalty" in i or "reliability" in i for i in items)
    assert not any("did not converge" in i for i in items)
    assert any("No true grades are known" in i for i in items)


def test_limitations_report_a_fit_that_did_not_converge():
    frames = batch_frames(metadata={"bt_converged": False, "bt_iterations": 50})
    text = "\n".join(limitations(assemble_report(frames)))
    assert "did not converge (50 iterations)" in text


def test_limitations_report_failures_penalty_disconnection_low_reliability_and_budget():
    frames = batch_frames(
        failed=3,
        metadata={
            "bt_alpha": 0.01,
            "bt_connected": False,
            "reliability": 0.55,
            "completion_reason": "budget_exhausted",
            "run": {"judge": "simulated", "max_comparisons": 90},
        },
    )
    text = "\n".join(limitations(assemble_report(frames)))
    assert "3 of 90 comparisons failed (callback_lost × 3)" in text
    assert "L2 penalty (α = 0.01)" in text
    assert "not strongly connected" in text
    assert "reliability is 0.55 (< 0.7)" in text
    assert "budget of 90 comparisons" in text
    assert "simulated judge" in text


def test_limitations_explain_an_unavailable_projection():
    frames = batch_frames(
        projected=False,
        metadata={
            "projection_unavailable_reason": "too_few_anchor_grades",
            "projection_unavailable_message": "anchors cover 1 grade(s)",
        },
    )
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    rep = assemble_report(frames)
    assert rep.projection is None and rep.projection_error.startswith("too_few_anchor_grades")
    assert limitations(rep)[0] == (
        "No grades could be projected (too_few_anchor_grades): anchors cover 1 grade(s)"
    )


def test_limitations_name_unscored_and_mismatched_anchor_essays():
    frames = batch_frames(flip="anc_3")
    frames.essays.loc[frames.essays["els_essay_id"] == "S2", ["bt_score", "bt_se"]] = float("nan")
    items = limitations(assemble_report(frames))
    assert "1 essay(s) have no score: S2." in items
    assert any(
        i.startswith("The is_anchor column disagrees") and "anc_3 (column false" in i for i in items
    )


def test_package_limitations_stays_the_function_after_its_module_is_imported():
    import cjlib.report

    importlib.import_module("cjlib.report.limitations")
    assert cjlib.report.limitations is limitations
    assert callable(cjlib.report.limitations)
