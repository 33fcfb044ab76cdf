"""Win/loss counts and stored scores of a batch."""

from __future__ import annotations

import pandas as pd

from cjlib.report.loading import stored_scores, win_loss_counts
from cjlib.scoring import fit_bradley_terry
from tests.unit.report.batches import batch_frames


def test_win_loss_counts_count_only_decided_comparisons_and_keep_every_essay():
    comparisons = pd.DataFrame(
        {
            "essay_a_id": ["a", "a", "b", "c", "a"],
            "essay_b_id": ["b", "c", "c", "d", "b"],
            "winner": ["essay_a", "essay_b", "error", None, "essay_a"],
        }
    )
    counts = win_loss_counts(comparisons)
    assert list(counts.index) == ["a", "b", "c", "d"]
    assert counts.index.name == "essay_id"
    assert counts.to_dict("index") == {
        "a": {"wins": 2, "losses": 1, "n_comparisons": 3},
        "b": {"wins": 0, "losses": 2, "n_comparisons": 2},
        "c": {"wins": 1, "losses": 0, "n_comparisons": 1},
        "d": {"wins": 0, "losses": 0, "n_comparisons": 0},
    }


def test_win_loss_counts_of_no_comparisons_is_empty():
    empty = pd.DataFrame(columns=["essay_a_id", "essay_b_id", "winner"])
    counts = win_loss_counts(empty)
    assert counts.empty and list(counts.columns) == ["wins", "losses", "n_comparisons"]


def test_stored_scores_count_wins_and_losses_like_the_bt_fit():
    frames = batch_frames(failed=4)
    fit = fit_bradley_terry(frames.comparisons[["essay_a_id", "essay_b_id", "winner"]])
    scores = stored_scores(frames)
    expected = fit.scores.loc[scores.index, ["wins", "losses", "n_comparisons"]].astype(int)
    pd.testing.assert_frame_equal(
        scores[["wins", "losses", "n_comparisons"]], expected, check_names=False
    )
    assert scores["theta"].is_monotonic_decreasing


def test_stored_scores_leave_out_essays_without_a_score():
    frames = batch_frames()
    frames.essays.loc[frames.essays["els_essay_id"] == "S3", ["bt_score", "bt_se"]] = float("nan")
    scores = stored_scores(frames)
    assert "S3" not in scores.index and len(scores) == 9
    assert scores.loc["anc_2", "anchor_grade"] == "D-" and bool(scores.loc["anc_2", "is_anchor"])
