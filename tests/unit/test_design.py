"""The in-process design study: simulated batches, honest reliabilities, conclusions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cjlib.design import (
    COLUMNS,
    _fit,
    _split_half,
    bt_judge,
    coin_toss_judge,
    comparisons_needed,
    conclusions,
    null_ssr,
    run_design_study,
    simulate_design,
    summarise,
)
from cjlib.design_figures import plot_design_study
from cjlib.errors import UsageError

_IDS = [f"e{i:03d}" for i in range(100)]


def test_coin_toss_decisions_give_no_reliability_under_balanced_pairing():
    for seed in range(2):
        comparisons = simulate_design("balanced", _IDS, coin_toss_judge(), 1000, seed=seed)
        assert _split_half(comparisons, seed=seed, alpha=0.03) < 0.35
        assert null_ssr("balanced", _IDS, 1000, seed) < 0.1


def test_adaptive_pairing_inflates_the_ssr_of_coin_toss_decisions():
    # Bramley (2015): up to 0.89 on pure coin tosses. The null baseline makes it visible.
    inflated = null_ssr("adaptive", _IDS, 1000, 0)
    assert inflated > 0.6
    assert inflated > null_ssr("balanced", _IDS, 1000, 0) + 0.6


def test_a_smaller_batch_is_the_start_of_a_larger_one():
    ability = np.linspace(-2, 2, 30)
    ids = [f"e{i:02d}" for i in range(30)]
    judge = bt_judge(ability, discrimination=1.5)
    small = simulate_design("adaptive", ids, judge, 70, seed=4)
    large = simulate_design("adaptive", ids, judge, 200, seed=4)
    assert len(small) == 70 and len(large) == 200
    pd.testing.assert_frame_equal(small, large.iloc[:70].reset_index(drop=True))


def test_bt_judge_follows_ability_and_noise():
    rng = np.random.default_rng(0)
    a, b = np.zeros(4000, dtype=int), np.ones(4000, dtype=int)
    strong = bt_judge(np.array([1.0, 0.0]), discrimination=2.0)(a, b, rng)
    assert strong.mean() == pytest.approx(1 / (1 + np.exp(-2.0)), abs=0.03)
    lapses = bt_judge(np.array([1.0, 0.0]), discrimination=2.0, judge_noise=0.5)(a, b, rng)
    assert lapses.mean() == pytest.approx(0.5 * 0.5 + 0.5 / (1 + np.exp(-2.0)), abs=0.03)
    assert coin_toss_judge()(a, b, rng).mean() == pytest.approx(0.5, abs=0.03)


@pytest.fixture(scope="module")
def tiny_study() -> pd.DataFrame:
    return run_design_study(
        strategies=("balanced", "boundary"), per_essay=(3, 12), seeds=1, students=24,
        discrimination=2.0,
    )  # fmt: skip


def test_a_tiny_design_study_has_one_row_per_run(tiny_study):
    assert list(tiny_study.columns) == list(COLUMNS)
    assert len(tiny_study) == 4
    assert set(tiny_study["strategy"]) == {"balanced", "boundary"}
    n_essays = 24 + 12
    assert sorted(set(tiny_study["comparisons"])) == [3 * n_essays // 2, 12 * n_essays // 2]
    for column in ("true_reliability", "exact_accuracy", "adjacent_accuracy", "ece"):
        assert tiny_study[column].between(0, 1).all()
    assert (tiny_study["seconds"] > 0).all()
    by_size = tiny_study.groupby("per_essay")["true_reliability"].mean()
    assert by_size[12] > by_size[3]  # more comparisons, closer to the truth
    assert (tiny_study["exact_accuracy"] <= tiny_study["adjacent_accuracy"]).all()


def test_summary_conclusions_and_figure(tiny_study):
    table = summarise(tiny_study)
    assert table.loc[("balanced", 12.0), "runs"] == 1
    sentences = conclusions(tiny_study)
    text = " ".join(sentences)
    assert "comparisons per essay with strategy balanced" in text
    assert "comparisons per essay with strategy boundary" in text
    for source in ("SSR ≥ 0.7", "SSR ≥ 0.8", "Kinnear", "Crompvoets", "Bramley & Vitello"):
        assert source in text
    fig = plot_design_study(tiny_study)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 8


def test_comparisons_needed_interpolates_the_mean_curve():
    frame = pd.DataFrame(
        {
            "strategy": ["s"] * 6,
            "per_essay": [5, 5, 10, 10, 20, 20],
            "seed": [0, 1] * 3,
            "exact_accuracy": [0.3, 0.5, 0.55, 0.65, 0.7, 0.8],  # means 0.4, 0.6, 0.75
        }
    )
    needed = comparisons_needed(frame, "exact_accuracy", 0.5)
    assert needed["s"] == pytest.approx(7.5)
    assert comparisons_needed(frame, "exact_accuracy", 0.3)["s"] == 5
    assert np.isnan(comparisons_needed(frame, "exact_accuracy", 0.9)["s"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategies": ("swiss",)}, "unknown pairing strategy 'swiss'"),
        ({"per_essay": (0, 5)}, "at least 1"),
        ({"seeds": 0}, "at least one seed"),
        ({"students": 1}, "at least 2 students"),
        ({"judge_noise": 1.5}, r"judge_noise .* \[0, 1\]"),
        ({"discrimination": 0}, "discrimination must be a positive"),
    ],
)
def test_bad_study_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        run_design_study(**kwargs)


def test_boundary_needs_anchor_grades():
    with pytest.raises(UsageError, match="needs anchor_grades"):
        simulate_design("boundary", _IDS, coin_toss_judge(), 100, seed=1)


def test_fit_of_a_study_batch_uses_every_essay():
    comparisons = simulate_design("balanced", _IDS, coin_toss_judge(), 150, seed=2)
    assert len(_fit(comparisons, 0.03).scores) == len(_IDS)
