"""The snapshot files of a batch."""

from __future__ import annotations

import pandas as pd

from cjlib.report.snapshots import SNAPSHOT_TABLES, snapshot_tables, write_snapshots
from tests.unit.report.batches import batch_frames


def test_write_snapshots_writes_csv_tables(tmp_path):
    written = write_snapshots(batch_frames(), tmp_path)
    assert {"grade_projections", "bt_scores", "comparisons"} <= set(written)
    scores = pd.read_csv(written["bt_scores"])
    assert len(scores) == 10 and {"theta", "se", "wins", "losses"} <= set(scores.columns)
    assert len(pd.read_csv(written["comparisons"])) == 90


def test_grade_projections_csv_holds_the_stored_projections(tmp_path):
    frames = batch_frames()
    written = write_snapshots(frames, tmp_path)
    assert set(snapshot_tables(frames)) == set(SNAPSHOT_TABLES)
    assert written["grade_projections"] == tmp_path / "grade_projections.csv"
    on_disk = pd.read_csv(written["grade_projections"])
    assert list(on_disk.columns) == list(frames.projections.columns)
    assert list(on_disk["els_essay_id"]) == list(frames.projections["els_essay_id"])
    assert list(on_disk["primary_grade"]) == list(frames.projections["primary_grade"])
