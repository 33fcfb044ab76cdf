"""The validation report's checklist, tables, figures and limitations on hand-built batches."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cjlib import report
from cjlib.diagnostics import HealthAlert
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


def _frames(
    *,
    rounds: int = 2,
    failed: int = 0,
    metadata: dict | None = None,
    history: tuple[str, ...] = HISTORY,
    status: str = "COMPLETE_STABLE",
    flip: str | None = None,
    projected: bool = True,
    seed: int = 1,
) -> report.BatchFrames:
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
    return report.BatchFrames(
        cj_batch_id=7,
        upload={
            "id": 7,
            "bos_batch_id": "00000000-0000-0000-0000-000000000007",
            "event_correlation_id": "00000000-0000-0000-0000-000000000008",
            "batch_label": "unit",
            "assignment_id": "a",
            "course_id": "ENG5",
            "status": status,
            "created_at": START,
            "completed_at": START + timedelta(seconds=75),
            "processing_metadata": meta,
        },
        state={
            "state": history[-1],
            "submitted_comparisons": len(comparisons),
            "completed_comparisons": len(comparisons) - n_failed,
            "failed_comparisons": n_failed,
        },
        essays=essays,
        comparisons=comparisons,
        projections=projections,
        transitions=transitions,
        anchor_references=pd.DataFrame(
            {"anchor_label": list(ANCHORS), "grade": list(ANCHORS.values())}
        ),
        grade_scale=SCALE,
    )


def _failing(checklist: pd.DataFrame) -> list[str]:
    return list(checklist.loc[~checklist["passed"], "check"])


def test_checklist_passes_every_line_for_a_consistent_completed_batch():
    checklist = report.evaluate_checklist(_frames(), health="ok", alerts=[])
    assert list(checklist.columns) == ["check", "passed", "evidence"]
    assert list(checklist["check"]) == list(report.CHECKS)
    assert checklist["passed"].all()
    assert checklist.loc[3, "evidence"].startswith("6 projections; 4 anchors")


def test_checklist_names_essay_whose_anchor_column_contradicts_its_metadata():
    checklist = report.evaluate_checklist(_frames(flip="anc_2"), health="ok", alerts=[])
    assert _failing(checklist) == [report.CHECKS[0]]
    assert "anc_2 (column false, metadata true)" in checklist.loc[0, "evidence"]


def test_checklist_fails_history_that_does_not_end_in_scoring_then_completed():
    history = ("INITIALIZING", "WAITING_CALLBACKS", "COMPLETED")
    checklist = report.evaluate_checklist(_frames(history=history), health="ok", alerts=[])
    assert _failing(checklist) == [report.CHECKS[1]]
    assert "WAITING_CALLBACKS → COMPLETED" in checklist.loc[1, "evidence"]


def test_checklist_fails_without_projections_or_healthy_verdict_or_with_wrong_status():
    frames = _frames(projected=False, status="ERROR_PROCESSING")
    checklist = report.evaluate_checklist(frames, health="failed", alerts=[])
    assert _failing(checklist) == [report.CHECKS[2], report.CHECKS[3], report.CHECKS[4]]


def test_checklist_fails_when_anchors_cover_a_single_grade():
    frames = _frames()
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    checklist = report.evaluate_checklist(frames, health="ok", alerts=[])
    assert _failing(checklist) == [report.CHECKS[3]]
    assert "1 distinct grade" in checklist.loc[3, "evidence"]


def test_checklist_lists_firing_alerts_of_the_batch():
    alert = HealthAlert(
        kind="anchor_flag_drift", cj_batch_id=7, batch_label="unit", assignment_id="a",
        upload_status="COMPLETE_STABLE", cj_state="COMPLETED", seconds=None,
        detail="1 essay(s): metadata is_anchor, column not",
    )  # fmt: skip
    checklist = report.evaluate_checklist(_frames(), health="ok", alerts=[alert])
    assert _failing(checklist) == [report.CHECKS[5]]
    assert checklist.loc[5, "evidence"].startswith("anchor_flag_drift: 1 essay(s)")


def test_checklist_html_marks_passing_and_failing_lines():
    checklist = report.evaluate_checklist(_frames(flip="anc_1"), health="ok", alerts=[])
    html = report.checklist_html(checklist)
    assert html.count(f'<tr class="pass"><td>{report._PASS_BADGE}</td>') == len(report.CHECKS) - 1
    assert html.count(f'<tr class="fail"><td>{report._FAIL_BADGE}</td>') == 1


def test_report_rebuilds_the_stored_projection_from_stored_scores():
    rep = report.assemble_report(_frames())
    assert rep.projection is not None and rep.projection_error is None
    stored = rep.frames.projections.set_index("els_essay_id")["primary_grade"]
    rebuilt = rep.projection.grades["primary_grade"]
    assert stored.sort_index().equals(rebuilt.sort_index())
    assert not any("differ from those rebuilt" in item for item in report.limitations(rep))


def test_limitations_of_a_clean_batch_only_name_unanchored_grades():
    rep = report.assemble_report(_frames(rounds=3))
    items = report.limitations(rep)
    cal = rep.projection.calibration
    unanchored = set(cal.index[cal["interpolated"] | cal["extrapolated"]])
    assert unanchored == {"F", "F+", "E+", "D+", "C+", "A"}
    assert any(i.startswith("Grade(s) E+, D+, C+ have no anchor") for i in items)
    assert any(i.startswith("Grade(s) F, F+, A lie outside the anchored range") for i in items)
    assert not any("failed" in i or "penalty" in i or "reliability" in i for i in items)
    assert any("No true grades are known" in i for i in items)


def test_limitations_report_failures_penalty_disconnection_low_reliability_and_budget():
    frames = _frames(
        failed=3,
        metadata={
            "bt_alpha": 0.01,
            "bt_connected": False,
            "reliability": 0.55,
            "completion_reason": "budget_exhausted",
            "run": {"judge": "simulated", "max_comparisons": 90},
        },
    )
    text = "\n".join(report.limitations(report.assemble_report(frames)))
    assert "3 of 90 comparisons failed (callback_lost × 3)" in text
    assert "L2 penalty (α = 0.01)" in text
    assert "not strongly connected" in text
    assert "reliability is 0.55 (< 0.7)" in text
    assert "budget of 90 comparisons" in text
    assert "simulated judge" in text


def test_limitations_explain_an_unavailable_projection():
    frames = _frames(
        projected=False,
        metadata={
            "projection_unavailable_reason": "too_few_anchor_grades",
            "projection_unavailable_message": "anchors cover 1 grade(s)",
        },
    )
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    rep = report.assemble_report(frames)
    assert rep.projection is None and rep.projection_error.startswith("too_few_anchor_grades")
    assert report.limitations(rep)[0] == (
        "No grades could be projected (too_few_anchor_grades): anchors cover 1 grade(s)"
    )


def test_accuracy_is_evaluated_against_true_grades_of_students():
    frames = _frames(rounds=3)
    truth = pd.Series({f"S{i}": g for i, g in enumerate(["E-", "E+", "D-", "D+", "C+", "B"])})
    rep = report.assemble_report(frames, truth=truth)
    assert rep.evaluation is not None and rep.evaluation.n == 6
    table = report.accuracy_table(rep)
    assert table.loc[table["metric"] == "students evaluated", "value"].item() == "6"
    confusion = report.confusion_table(rep)
    assert confusion.to_numpy().sum() == 6 and confusion.columns[0] == "F"
    assert any("only 6 students" in item for item in report.limitations(rep))


def test_position_table_gives_wilson_intervals_per_wave_and_overall():
    table = report.position_table(_frames(rounds=2))
    assert list(table["wave"]) == ["1", "2", "all"]
    overall = table.iloc[-1]
    assert overall["decisions"] == 90 == table["decisions"].iloc[:-1].sum()
    assert overall["ci_low"] < overall["a_share"] < overall["ci_high"]
    assert overall["a_share"] == pytest.approx(overall["a_wins"] / 90)


def test_run_summary_and_header_show_ids_judge_budget_and_run_time():
    rep = report.assemble_report(_frames())
    summary = dict(report.run_summary(rep).itertuples(index=False))
    assert summary["judge"] == "llm (llm-1)"
    assert summary["comparison budget"] == "200"
    assert summary["run time"] == "1 min 15 s"
    assert report.header_markdown(rep).startswith("## Batch unit (cj_batch_id 7)")


@pytest.mark.parametrize("with_truth", [True, False])
def test_every_figure_renders_with_or_without_truth(with_truth):
    truth = pd.Series({f"S{i}": "C-" for i in range(6)}) if with_truth else None
    rep = report.assemble_report(_frames(failed=2), truth=truth)
    for plot in report.FIGURES:
        fig = plot(rep)
        assert isinstance(fig, Figure)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")


def test_tables_of_a_batch_without_projection_still_render():
    frames = _frames(projected=False)
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    rep = report.assemble_report(frames)
    for table in (
        report.anchor_check_table(rep),
        report.inversions_table(rep),
        report.calibration_table(rep),
        report.accuracy_table(rep),
        report.reliability_table(rep),
        report.judge_fit_table(rep),
        report.transitions_table(rep),
    ):
        assert "<table" in report.html_table(table)
    # The tables say why there is nothing to show instead of rendering empty.
    assert "too_few_anchor_grades" in report.html_table(report.anchor_check_table(rep))
    assert "no true grades are known" in report.html_table(report.accuracy_table(rep))
    assert report.inversions_table(rep).empty and report.calibration_table(rep).empty
    assert len(report.transitions_table(rep)) == len(HISTORY)
    assert "projection unavailable" in str(report.plot_anchor_calibration(rep).axes[0].texts[0])


def test_write_snapshots_writes_csv_tables(tmp_path):
    written = report.write_snapshots(_frames(), tmp_path)
    assert {"grade_projections", "bt_scores", "comparisons"} <= set(written)
    scores = pd.read_csv(written["bt_scores"])
    assert len(scores) == 10 and {"theta", "se", "wins", "losses"} <= set(scores.columns)
    assert len(pd.read_csv(written["comparisons"])) == 90


def test_report_projects_from_scored_anchors_when_one_anchor_has_no_score():
    frames = _frames()
    unscored = frames.essays["els_essay_id"] == "anc_2"
    frames.essays.loc[unscored, ["bt_score", "bt_se"]] = np.nan
    rep = report.assemble_report(frames)
    assert rep.projection_error is None
    assert rep.projection is not None
    assert "anc_2" not in rep.projection.anchor_grades.index
    assert len(rep.projection.grades) == 6
