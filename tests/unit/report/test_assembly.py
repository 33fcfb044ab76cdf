"""Assembling a report: the projection rebuilt from stored scores, and its evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cjlib.report.assembly import assemble_report
from cjlib.report.limitations import limitations
from cjlib.report.tables import accuracy_table, confusion_table
from tests.unit.report.batches import batch_frames


def test_report_rebuilds_the_stored_projection_from_stored_scores():
    rep = assemble_report(batch_frames())
    assert rep.projection is not None and rep.projection_error is None
    stored = rep.frames.projections.set_index("els_essay_id")["primary_grade"]
    rebuilt = rep.projection.grades["primary_grade"]
    assert stored.sort_index().equals(rebuilt.sort_index())
    assert not any("differ from those rebuilt" in item for item in limitations(rep))


def test_accuracy_is_evaluated_against_true_grades_of_students():
    frames = batch_frames(rounds=3)
    truth = pd.Series({f"S{i}": g for i, g in enumerate(["E-", "E+", "D-", "D+", "C+", "B"])})
    rep = assemble_report(frames, truth=truth)
    assert rep.evaluation is not None and rep.evaluation.n == 6
    table = accuracy_table(rep)
    assert table.loc[table["metric"] == "students evaluated", "value"].item() == "6"
    confusion = confusion_table(rep)
    assert confusion.to_numpy().sum() == 6 and confusion.columns[0] == "F"
    assert any("only 6 students" in item for item in limitations(rep))


def test_report_projects_from_scored_anchors_when_one_anchor_has_no_score():
    frames = batch_frames()
    unscored = frames.essays["els_essay_id"] == "anc_2"
    frames.essays.loc[unscored, ["bt_score", "bt_se"]] = np.nan
    rep = assemble_report(frames)
    assert rep.projection_error is None
    assert rep.projection is not None
    assert "anc_2" not in rep.projection.anchor_grades.index
    assert len(rep.projection.grades) == 6
