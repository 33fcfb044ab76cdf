"""Design-honest reliability: split-half, the null baseline and the null-adjusted SSR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cjlib import design
from cjlib.errors import UsageError
from cjlib.grades import ENG5_ANCHOR_GRADES, ENG5_LEGACY
from cjlib.simulation import simulate_population


@pytest.fixture(scope="module")
def population():
    return simulate_population(ENG5_LEGACY, ENG5_ANCHOR_GRADES, 24, seed=3)


def _batch(population, strategy, judge, per_essay, stream="coin"):
    ids = population.essays["essay_id"].tolist()
    return ids, design.simulate_design(
        strategy, ids, judge, per_essay * len(ids) // 2, seed=3,
        anchor_grades=dict(population.anchor_grades), stream=stream,
    )  # fmt: skip


def test_null_adjusted_ssr_takes_out_the_null_baseline_and_never_exceeds_the_ssr():
    assert design.null_adjusted_ssr(0.9, 0.5) == pytest.approx(0.8)
    assert design.null_adjusted_ssr(0.5, 0.5) == pytest.approx(0.0)
    # A negative null SSR is the penalty's artefact: the SSR is left as it is.
    assert design.null_adjusted_ssr(0.7, -1.2) == pytest.approx(0.7)
    assert math.isnan(design.null_adjusted_ssr(0.9, 1.0))
    assert math.isnan(design.null_adjusted_ssr(math.nan, 0.2))
    rng = np.random.default_rng(0)
    for ssr, null in rng.uniform(-1, 0.99, size=(200, 2)):
        assert design.null_adjusted_ssr(ssr, null) <= ssr + 1e-12


def test_the_stopping_reliability_is_split_half_only_for_a_design_that_ignores_estimates():
    assert design.reliability_measure("balanced") == "split_half"
    assert design.reliability_measure("adaptive") == "null_adjusted_ssr"
    assert design.reliability_measure("boundary") == "null_adjusted_ssr"


def test_split_half_with_one_split_is_the_design_study_split_half(population):
    _, comparisons = _batch(population, "balanced", design.bt_judge(
        population.essays["ability"].to_numpy()), 6, stream="judge")  # fmt: skip
    one = design.split_half_reliability(comparisons, n_splits=1, seed=4, alpha=0.03)
    assert one == pytest.approx(design._split_half(comparisons, seed=4, alpha=0.03))
    assert 0.3 < design.split_half_reliability(comparisons, n_splits=5, seed=4) <= 1.0
    with pytest.raises(UsageError, match="n_splits"):
        design.split_half_reliability(comparisons, n_splits=0)


def test_on_coin_tosses_adaptive_ssr_is_inflated_but_the_adjusted_ssr_is_not(population):
    ids, comparisons = _batch(population, "adaptive", design.coin_toss_judge(), 10)
    result = design.design_reliability(
        comparisons, "adaptive", ids, seed=3, anchor_grades=dict(population.anchor_grades)
    )
    assert result.measure == "null_adjusted_ssr"
    assert result.n_comparisons == len(comparisons)
    # The design alone manufactures SSR from coin tosses (Bramley 2015) ...
    assert result.ssr > 0.5 and result.null_ssr > 0.5
    # ... which the adjustment takes out: what is left is noise around 0.
    assert result.adjusted_ssr < 0.35
    assert result.honest == result.adjusted_ssr


def test_on_coin_tosses_balanced_split_half_claims_no_reliability(population):
    ids, comparisons = _batch(population, "balanced", design.coin_toss_judge(), 10)
    result = design.design_reliability(comparisons, "balanced", ids, seed=3, n_splits=5)
    assert result.measure == "split_half"
    assert result.honest == result.split_half
    # No signal: the split-half is noise around 0 (Spearman–Brown stretches negative r).
    assert result.split_half < 0.3
    assert result.null_ssr < 0.3


def test_with_a_real_judge_the_adjusted_ssr_rises_above_zero(population):
    judge = design.bt_judge(population.essays["ability"].to_numpy(), discrimination=2.0)
    ids, comparisons = _batch(population, "boundary", judge, 20, stream="judge")
    result = design.design_reliability(
        comparisons, "boundary", ids, seed=3, anchor_grades=dict(population.anchor_grades)
    )
    assert result.adjusted_ssr > 0.5
    assert result.adjusted_ssr <= result.ssr


def test_honest_reliability_skips_the_null_run_while_the_ssr_is_below_the_gate(
    population, monkeypatch
):
    ids, comparisons = _batch(population, "adaptive", design.coin_toss_judge(), 4)
    calls = []
    monkeypatch.setattr(design, "null_ssr", lambda *a, **k: calls.append(a) or 0.0)
    gated = design.honest_reliability("adaptive", ids, seed=3, gate=0.999)
    assert math.isnan(gated(comparisons)) and calls == []
    ungated = design.honest_reliability("adaptive", ids, seed=3)
    ssr = design._ssr(comparisons)
    assert ungated(comparisons) == pytest.approx(ssr)  # null 0 → adjusted = SSR
    ungated(comparisons)
    assert len(calls) == 1  # the null SSR of one batch size is computed once
    balanced = design.honest_reliability("balanced", ids, seed=3, n_splits=3)
    assert balanced(comparisons) == pytest.approx(
        design.split_half_reliability(comparisons, n_splits=3, seed=3)
    )
