"""Tests of cjlib.reliability.split_half."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from cjlib.reliability import SplitHalfResult, split_half


def judged(n: int, judges: int, per_judge: int, spread: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread, n)
    rows = []
    for judge in range(judges):
        for _ in range(per_judge):
            a, b = rng.choice(n, 2, replace=False)
            won = rng.random() < expit(theta[a] - theta[b])
            rows.append((a, b, "essay_a" if won else "essay_b", f"j{judge}"))
    return pd.DataFrame(rows, columns=["essay_a_id", "essay_b_id", "winner", "judge_id"])


def test_coin_toss_judges_give_split_half_near_zero():
    frame = judged(20, 6, 100, spread=0.0, seed=1)
    result = split_half(frame, n_splits=20, seed=2)
    assert isinstance(result, SplitHalfResult)
    assert result.split_by == "judges"
    assert abs(result.median) < 0.25
    assert len(result.correlations) + result.n_failed == 20


def test_strong_signal_gives_high_split_half_and_spearman_brown_step_up():
    frame = judged(20, 6, 100, spread=2.5, seed=3)
    result = split_half(frame, n_splits=20, seed=4)
    assert result.median > 0.85
    assert result.spearman_brown == pytest.approx(2 * result.median / (1 + result.median))
    assert result.spearman_brown > result.median
    assert result.median == pytest.approx(np.median(result.correlations))


def test_one_judge_splits_the_decisions_and_is_reproducible():
    frame = judged(15, 1, 400, spread=2.0, seed=5)
    first = split_half(frame, n_splits=10, seed=6)
    again = split_half(frame, n_splits=10, seed=6)
    assert first.split_by == "decisions"
    np.testing.assert_array_equal(first.correlations, again.correlations)
    assert first.median > 0.7


def test_no_judge_column_splits_decisions():
    frame = judged(15, 1, 400, spread=2.0, seed=7).drop(columns="judge_id")
    assert split_half(frame, n_splits=5).split_by == "decisions"


def test_bad_arguments_and_unscorable_halves_raise():
    frame = judged(6, 2, 2, spread=1.0, seed=8)
    with pytest.raises(ValueError, match="n_splits"):
        split_half(frame, n_splits=0)
    with pytest.raises(ValueError, match="could be scored"):
        split_half(frame, n_splits=3, method="mle")
