"""Property tests of cjlib.scoring: invariances of the Bradley–Terry fit on random small designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from cjlib.scoring import fit_bradley_terry

SETTINGS = settings(max_examples=30, deadline=None)
engines = st.sampled_from(["choix", "sparse"])


@st.composite
def comparison_tables(draw, *, connected: bool = True) -> pd.DataFrame:
    """Small winner/loser tables; with ``connected`` a ring of wins links every essay both ways."""
    n = draw(st.integers(3, 8))
    pair = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] != p[1])
    pairs = draw(st.lists(pair, min_size=0 if connected else 1, max_size=25))
    if connected:
        pairs += [(i, (i + 1) % n) for i in range(n)]
    counts = draw(st.lists(st.integers(1, 3), min_size=len(pairs), max_size=len(pairs)))
    return pd.DataFrame(
        {
            "winner_id": [winner for winner, _ in pairs],
            "loser_id": [loser for _, loser in pairs],
            "count": counts,
        }
    )


def theta_of(comparisons: pd.DataFrame, **kwargs) -> pd.Series:
    return fit_bradley_terry(comparisons, **kwargs).scores["theta"]


@SETTINGS
@given(comparison_tables(), st.randoms(use_true_random=False), engines)
def test_theta_does_not_depend_on_row_order(comparisons, random, engine):
    order = list(range(len(comparisons)))
    random.shuffle(order)
    shuffled = comparisons.iloc[order]
    original = theta_of(comparisons, engine=engine)
    reordered = theta_of(shuffled, engine=engine).reindex(original.index)
    assert np.allclose(original, reordered, atol=1e-8)


@SETTINGS
@given(comparison_tables(), st.randoms(use_true_random=False), engines)
def test_theta_does_not_depend_on_essay_labels(comparisons, random, engine):
    essays = sorted(set(comparisons["winner_id"]) | set(comparisons["loser_id"]))
    shuffled = essays.copy()
    random.shuffle(shuffled)
    label = {old: f"essay-{new}" for old, new in zip(essays, shuffled, strict=True)}
    relabelled = comparisons.assign(
        winner_id=comparisons["winner_id"].map(label), loser_id=comparisons["loser_id"].map(label)
    )
    original = theta_of(comparisons, engine=engine)
    renamed = theta_of(relabelled, engine=engine)
    assert np.allclose(original.to_numpy(), renamed.reindex(original.index.map(label)), atol=1e-8)


@SETTINGS
@given(comparison_tables(), engines, st.sampled_from([0.0, 0.01, 1.0]))
def test_theta_sums_to_zero_and_standard_errors_are_positive_on_connected_data(
    comparisons, engine, alpha
):
    result = fit_bradley_terry(comparisons, engine=engine, alpha=alpha)
    assert result.connected and result.converged
    assert abs(result.scores["theta"].sum()) < 1e-9
    se = result.scores["se"]
    assert np.isfinite(se).all() and (se > 0).all()


@SETTINGS
@given(comparison_tables(connected=False), engines, st.sampled_from([0.05, 1.0]))
def test_penalised_fit_exists_on_any_design(comparisons, engine, alpha):
    result = fit_bradley_terry(comparisons, engine=engine, alpha=alpha)
    assert result.converged
    assert abs(result.scores["theta"].sum()) < 1e-9
    se = result.scores["se"]
    assert np.isfinite(se).all() and (se > 0).all()
