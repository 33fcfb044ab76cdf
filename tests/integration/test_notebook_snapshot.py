"""Notebook 03's snapshot of a stored batch, on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest

from cjlib.db.queries import load_batch
from cjlib.errors import NotFoundError
from cjlib.notebook import snapshot_batch
from tests.integration.health_fixtures import completed_batch


def test_snapshot_writes_the_stored_projections_scores_and_comparisons(engine, tmp_path):
    batch_id = completed_batch(engine, label="snap")
    snapshot = snapshot_batch(engine, batch_id, tmp_path)
    assert {"grade_projections", "bt_scores", "comparisons"} <= set(snapshot.files)
    stored = load_batch(engine, batch_id).projections
    assert len(stored) == 4
    on_disk = pd.read_csv(tmp_path / "grade_projections.csv")
    assert list(on_disk["els_essay_id"]) == list(stored["els_essay_id"])
    assert list(on_disk["primary_grade"]) == list(stored["primary_grade"])
    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    assert len(comparisons) == 8 and set(comparisons["winner"]) == {"essay_a"}
    # The fixture stores no BT scores, and bt_scores.csv holds stored scores only.
    scores = pd.read_csv(tmp_path / "bt_scores.csv")
    assert scores.empty and {"essay_id", "theta", "wins", "losses"} <= set(scores.columns)


def test_snapshot_of_unknown_batch_writes_nothing(engine, tmp_path):
    with pytest.raises(NotFoundError, match="no CJ batch with id 999999"):
        snapshot_batch(engine, 999999, tmp_path / "run")
    assert not (tmp_path / "run").exists()
