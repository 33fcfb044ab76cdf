"""Tests of cjlib.scoring: Bradley–Terry estimates, standard errors, fit and input checks."""

from __future__ import annotations

import math

import choix
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from cjlib.errors import DisconnectedComparisonsError as ErrorsDisconnected
from cjlib.scoring import (
    AUTO_CHOIX_MAX_ESSAYS,
    DEFAULT_METHOD,
    EXACT_SE_MAX_ESSAYS,
    BTResult,
    DisconnectedComparisonsError,
    fit_bradley_terry,
)

ENGINES = ["choix", "sparse"]


def simulate(n: int, m: int, seed: int, *, delta: float = 0.0, spread: float = 1.0) -> pd.DataFrame:
    """Random decisions in position form, plus a ring of wins 0 > 1 > … > n−1 > 0.

    The ring makes the win graph strongly connected whatever the random outcomes.
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread, n)
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n
    a_wins = rng.random(m) < expit(theta[first] - theta[second] + delta)
    ring = np.arange(n)
    return pd.DataFrame(
        {
            "essay_a_id": np.concatenate([first, ring]),
            "essay_b_id": np.concatenate([second, (ring + 1) % n]),
            "winner": np.where(np.concatenate([a_wins, np.ones(n, bool)]), "essay_a", "essay_b"),
        }
    )


def to_winner_form(frame: pd.DataFrame) -> pd.DataFrame:
    a_won = frame["winner"] == "essay_a"
    return pd.DataFrame(
        {
            "winner_id": np.where(a_won, frame["essay_a_id"], frame["essay_b_id"]),
            "loser_id": np.where(a_won, frame["essay_b_id"], frame["essay_a_id"]),
        }
    )


def negative_log_likelihood(theta, winners, losers, counts, delta=0.0, signs=None) -> float:
    margin = theta[winners] - theta[losers]
    if signs is not None:
        margin = margin + signs * delta
    return float(np.sum(counts * np.logaddexp(0.0, -margin)))


def finite_difference_hessian(f, x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    size = len(x)
    hessian = np.empty((size, size))
    basis = np.eye(size) * step
    for i in range(size):
        for j in range(size):
            hessian[i, j] = (
                f(x + basis[i] + basis[j])
                - f(x + basis[i] - basis[j])
                - f(x - basis[i] + basis[j])
                + f(x - basis[i] - basis[j])
            ) / (4 * step**2)
    return hessian


# --- hand-checkable fixtures -------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_three_cycle_gives_equal_scores_and_triangle_standard_errors(engine):
    comparisons = pd.DataFrame({"winner_id": ["a", "b", "c"], "loser_id": ["b", "c", "a"]})
    result = fit_bradley_terry(comparisons, engine=engine, method="mle")
    assert np.allclose(result.scores["theta"], 0.0, atol=1e-12)
    # Fisher information is (1/4)(3I − J) on a triangle; its pseudo-inverse has diagonal
    # (4/3)(1 − 1/3) = 8/9.
    assert np.allclose(result.scores["se"], math.sqrt(8 / 9), rtol=1e-10)
    assert result.connected and result.converged
    assert math.isnan(result.reliability)
    assert result.separation == 0.0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("wins", "losses"), [(3, 1), (5, 2), (1, 4)])
def test_two_essays_theta_difference_is_log_odds(engine, wins, losses):
    comparisons = pd.DataFrame(
        {"winner_id": ["x"] * wins + ["y"] * losses, "loser_id": ["y"] * wins + ["x"] * losses}
    )
    result = fit_bradley_terry(comparisons, engine=engine, method="mle")
    theta = result.scores["theta"]
    assert theta["x"] - theta["y"] == pytest.approx(math.log(wins / losses), abs=1e-9)
    assert theta.sum() == pytest.approx(0.0, abs=1e-12)
    p = wins / (wins + losses)
    information = (wins + losses) * p * (1 - p)
    # pinv of information · [[1, −1], [−1, 1]] has diagonal 1 / (4 · information).
    assert result.scores["se"].to_numpy() == pytest.approx([1 / math.sqrt(4 * information)] * 2)
    log_likelihood = wins * math.log(p) + losses * math.log(1 - p)
    assert result.log_likelihood == pytest.approx(log_likelihood, rel=1e-10)
    assert result.deviance == pytest.approx(-2 * log_likelihood, rel=1e-10)
    assert result.scores.loc["x", "wins"] == wins
    assert result.scores.loc["x", "losses"] == losses
    assert result.scores.loc["y", "n_comparisons"] == wins + losses


@pytest.mark.parametrize("engine", ENGINES)
def test_choix_docs_style_fixture_matches_ilsr(engine):
    data = [(0, 1), (0, 2), (1, 2), (2, 0), (1, 0), (3, 1), (2, 3), (1, 3), (3, 0), (0, 3)]
    comparisons = pd.DataFrame(data, columns=["winner_id", "loser_id"])
    expected = choix.ilsr_pairwise(4, data, tol=1e-12)
    result = fit_bradley_terry(comparisons, engine=engine, method="mle")
    assert result.scores["theta"].sort_index().to_numpy() == pytest.approx(
        expected - expected.mean(), abs=1e-6
    )


# --- engines against choix ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engines_agree_with_choix_ilsr_pairwise_at_alpha_zero(seed):
    frame = to_winner_form(simulate(30, 400, seed))
    data = list(zip(frame["winner_id"], frame["loser_id"], strict=True))
    expected = choix.ilsr_pairwise(30, data, tol=1e-12)
    expected = pd.Series(expected - expected.mean())
    fits = {engine: fit_bradley_terry(frame, engine=engine, method="mle") for engine in ENGINES}
    for engine, result in fits.items():
        assert result.engine == engine
        theta = result.scores["theta"].sort_index()
        assert np.max(np.abs(theta.to_numpy() - expected.to_numpy())) < 1e-6
    choix_theta = fits["choix"].scores["theta"]
    sparse_theta = fits["sparse"].scores["theta"].reindex(choix_theta.index)
    assert np.max(np.abs(choix_theta - sparse_theta)) < 1e-6


@pytest.mark.parametrize(("seed", "alpha"), [(4, 0.1), (5, 1.0), (6, 0.01)])
def test_engines_agree_with_choix_opt_pairwise_at_same_alpha(seed, alpha):
    frame = to_winner_form(simulate(25, 250, seed, spread=2.0))
    data = list(zip(frame["winner_id"], frame["loser_id"], strict=True))
    expected = choix.opt_pairwise(25, data, alpha=alpha, tol=1e-12)
    for engine in ENGINES:
        result = fit_bradley_terry(frame, alpha=alpha, engine=engine)
        theta = result.scores["theta"].sort_index().to_numpy()
        assert np.max(np.abs(theta - (expected - expected.mean()))) < 1e-6
        # The penalised optimum already sums to zero: no recentring hides a shift.
        assert abs(expected.sum()) < 1e-6


def test_auto_engine_uses_choix_for_small_batches_and_sparse_for_large_ones():
    small = to_winner_form(simulate(AUTO_CHOIX_MAX_ESSAYS, 600, 7))
    large = to_winner_form(simulate(AUTO_CHOIX_MAX_ESSAYS + 1, 600, 7))
    assert fit_bradley_terry(small, method="mle").engine == "choix"
    assert fit_bradley_terry(large, method="mle").engine == "sparse"
    assert (
        fit_bradley_terry(simulate(20, 200, 7), position_effect=True, method="mle").engine
        == "sparse"
    )


# --- standard errors ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_standard_errors_match_pseudo_inverse_of_finite_difference_hessian(engine, alpha):
    frame = to_winner_form(simulate(6, 40, 11))
    result = fit_bradley_terry(frame, alpha=alpha, engine=engine)
    scores = result.scores.sort_index()
    winners, losers = frame["winner_id"].to_numpy(), frame["loser_id"].to_numpy()
    counts = np.ones(len(frame))

    def objective(theta):
        return negative_log_likelihood(theta, winners, losers, counts) + alpha * theta @ theta

    hessian = finite_difference_hessian(objective, scores["theta"].to_numpy())
    # Projected onto Σθ = 0: P pinv(H) P. Before issue 11 the ridge SEs were √diag inv(H),
    # which keeps the variance 1/(2αn) of the unidentified mean; that was the bug.
    projector = np.eye(6) - 1.0 / 6
    expected = np.sqrt(np.diag(projector @ np.linalg.pinv(hessian, rcond=1e-8) @ projector))
    assert result.se_method == "pinv_fisher"
    assert scores["se"].to_numpy() == pytest.approx(expected, rel=1e-5)


def test_position_effect_standard_errors_match_joint_finite_difference_hessian():
    frame = simulate(6, 60, 12, delta=0.4)
    result = fit_bradley_terry(frame, position_effect=True, method="mle")
    scores = result.scores.sort_index()
    a_won = (frame["winner"] == "essay_a").to_numpy()
    winners = np.where(a_won, frame["essay_a_id"], frame["essay_b_id"])
    losers = np.where(a_won, frame["essay_b_id"], frame["essay_a_id"])
    signs = np.where(a_won, 1.0, -1.0)
    counts = np.ones(len(frame))

    def objective(params):
        return negative_log_likelihood(params[:6], winners, losers, counts, params[6], signs)

    params = np.append(scores["theta"].to_numpy(), result.position_effect["estimate"])
    hessian = finite_difference_hessian(objective, params)
    expected = np.sqrt(np.diag(np.linalg.pinv(hessian, rcond=1e-8)))
    assert scores["se"].to_numpy() == pytest.approx(expected[:6], rel=1e-5)
    assert result.position_effect["se"] == pytest.approx(expected[6], rel=1e-5)


def test_neumann_approximation_is_labelled_and_close_to_exact_on_a_dense_design():
    frame = to_winner_form(simulate(200, 8000, 13))
    exact = fit_bradley_terry(frame, engine="sparse", se_method="pinv_fisher", method="mle")
    approx = fit_bradley_terry(frame, engine="sparse", se_method="neumann_approx", method="mle")
    assert approx.se_method == "neumann_approx"
    assert exact.se_method == "pinv_fisher"
    ratio = approx.scores["se"] / exact.scores["se"].reindex(approx.scores.index)
    assert ratio.between(0.99, 1.01).all()
    assert np.allclose(approx.scores["theta"], exact.scores["theta"])


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_neumann_approximation_follows_its_two_term_formula(alpha):
    frame = to_winner_form(simulate(8, 50, 22))
    result = fit_bradley_terry(frame, alpha=alpha, se_method="neumann_approx")
    theta = result.scores["theta"]
    p = expit(theta[frame["winner_id"]].to_numpy() - theta[frame["loser_id"]].to_numpy())
    adjacency = np.zeros((8, 8))
    np.add.at(adjacency, (frame["winner_id"], frame["loser_id"]), p * (1 - p))
    adjacency += adjacency.T
    diagonal = adjacency.sum(axis=1) + 2 * alpha
    variance = 1 / diagonal + (adjacency**2 @ (1 / diagonal)) / diagonal**2
    assert result.scores["se"].sort_index().to_numpy() == pytest.approx(np.sqrt(variance))


def test_large_batches_default_to_the_labelled_approximation():
    frame = to_winner_form(simulate(EXACT_SE_MAX_ESSAYS + 1, 3 * EXACT_SE_MAX_ESSAYS, 21))
    result = fit_bradley_terry(frame, method="mle")
    assert result.engine == "sparse"
    assert result.se_method == "cavity_approx"
    assert (result.scores["se"] > 0).all() and np.isfinite(result.scores["se"]).all()
    assert result.converged


# --- reliability and fit statistics ------------------------------------------------------


def test_reliability_and_separation_follow_their_formulas():
    frame = to_winner_form(simulate(12, 150, 14, spread=1.5))
    result = fit_bradley_terry(frame, method="mle")
    theta, se = result.scores["theta"].to_numpy(), result.scores["se"].to_numpy()
    observed_variance = np.sum((theta - theta.mean()) ** 2) / (len(theta) - 1)
    error_variance = np.mean(se**2)
    assert result.reliability == pytest.approx(
        (observed_variance - error_variance) / observed_variance
    )
    assert result.separation == pytest.approx(
        math.sqrt(observed_variance - error_variance) / math.sqrt(error_variance)
    )
    assert 0 < result.reliability < 1


def test_infit_and_outfit_per_essay_and_judge_match_hand_computation():
    comparisons = pd.DataFrame(
        {
            "winner_id": ["a", "b", "c", "a", "b", "a"],
            "loser_id": ["b", "c", "a", "c", "a", "b"],
            "judge_id": ["j1", "j1", "j2", "j2", "j2", "j1"],
            "count": [1, 2, 1, 1, 1, 3],
        }
    )
    result = fit_bradley_terry(comparisons, method="mle")
    theta = result.scores["theta"]
    rows = comparisons.assign(
        p=lambda d: expit(theta[d["winner_id"]].to_numpy() - theta[d["loser_id"]].to_numpy())
    )
    for essay in ["a", "b", "c"]:
        took_part = rows[(rows["winner_id"] == essay) | (rows["loser_id"] == essay)]
        c, p = took_part["count"], took_part["p"]
        infit = (c * (1 - p) ** 2).sum() / (c * p * (1 - p)).sum()
        outfit = (c * (1 - p) / p).sum() / c.sum()
        assert result.scores.loc[essay, "infit"] == pytest.approx(infit)
        assert result.scores.loc[essay, "outfit"] == pytest.approx(outfit)
    for judge in ["j1", "j2"]:
        own = rows[rows["judge_id"] == judge]
        c, p = own["count"], own["p"]
        assert result.judges.loc[judge, "n"] == c.sum()
        assert result.judges.loc[judge, "infit"] == pytest.approx(
            (c * (1 - p) ** 2).sum() / (c * p * (1 - p)).sum()
        )
        assert result.judges.loc[judge, "outfit"] == pytest.approx(
            (c * (1 - p) / p).sum() / c.sum()
        )
    assert list(result.judges.columns) == ["n", "infit", "outfit", "misfit"]
    assert result.judges.index.name == "judge_id"


def test_fit_statistics_use_the_position_effect():
    frame = simulate(10, 200, 23, delta=0.8).assign(judge_id=lambda d: d.index % 3)
    result = fit_bradley_terry(frame, position_effect=True, method="mle")
    theta, delta = result.scores["theta"], result.position_effect["estimate"]
    a_won = frame["winner"] == "essay_a"
    winner = frame["essay_a_id"].where(a_won, frame["essay_b_id"])
    loser = frame["essay_b_id"].where(a_won, frame["essay_a_id"])
    sign = np.where(a_won, 1.0, -1.0)
    p = pd.Series(expit(theta[winner].to_numpy() - theta[loser].to_numpy() + sign * delta))
    for essay in [0, 5]:
        took_part = p[(winner == essay) | (loser == essay)]
        assert result.scores.loc[essay, "infit"] == pytest.approx(
            ((1 - took_part) ** 2).sum() / (took_part * (1 - took_part)).sum()
        )
        assert result.scores.loc[essay, "outfit"] == pytest.approx(
            ((1 - took_part) / took_part).mean()
        )
    own = p[frame["judge_id"] == 1]
    assert result.judges.loc[1, "outfit"] == pytest.approx(((1 - own) / own).mean())
    log_likelihood = np.log(p).sum()
    assert result.log_likelihood == pytest.approx(log_likelihood)


def test_two_essay_fit_statistics_are_one_at_the_mle():
    # With p = w/(w+l): infit = [w(1−p)² + l p²] / [(w+l) p(1−p)] = 1 exactly.
    comparisons = pd.DataFrame({"winner_id": ["x", "y"], "loser_id": ["y", "x"], "count": [3, 1]})
    result = fit_bradley_terry(comparisons, method="mle")
    assert result.scores["infit"].to_numpy() == pytest.approx([1.0, 1.0])
    # outfit = [3 · (1/4)/(3/4) + 1 · (3/4)/(1/4)] / 4 = 1.
    assert result.scores["outfit"].to_numpy() == pytest.approx([1.0, 1.0])


def test_judges_table_is_empty_with_its_columns_without_judge_ids():
    result = fit_bradley_terry(to_winner_form(simulate(5, 20, 15)), method="mle")
    assert result.judges.empty
    assert list(result.judges.columns) == ["n", "infit", "outfit", "misfit"]
    assert result.judges.index.name == "judge_id"


# --- position effect ---------------------------------------------------------------------


def test_position_effect_is_recovered_on_simulated_data():
    frame = simulate(60, 4000, 16, delta=0.5)
    result = fit_bradley_terry(frame, position_effect=True, method="mle")
    estimate, se = result.position_effect["estimate"], result.position_effect["se"]
    assert abs(estimate - 0.5) < 3 * se
    assert 0 < se < 0.1
    share = (frame["winner"] == "essay_a").mean()
    assert result.position_a_win_share == pytest.approx(share)


def test_position_a_win_share_is_count_weighted_and_reported_without_position_effect():
    comparisons = pd.DataFrame(
        {
            "essay_a_id": [1, 2, 3, 1],
            "essay_b_id": [2, 3, 1, 3],
            "winner": ["essay_a", "essay_a", "essay_a", "essay_b"],
            "count": [1, 1, 1, 5],
        }
    )
    result = fit_bradley_terry(comparisons, method="mle")
    assert result.position_a_win_share == pytest.approx(3 / 8)
    assert result.position_effect is None
    winners_only = fit_bradley_terry(
        pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1]}), method="mle"
    )
    assert winners_only.position_a_win_share is None


def test_position_effect_needs_positions_and_a_non_choix_engine():
    frame = simulate(5, 30, 17)
    with pytest.raises(ValueError, match="position"):
        fit_bradley_terry(to_winner_form(frame), position_effect=True, method="mle")
    with pytest.raises(ValueError, match="choix engine"):
        fit_bradley_terry(frame, position_effect=True, engine="choix", method="mle")


def test_position_effect_when_one_position_always_wins_is_refused():
    comparisons = pd.DataFrame(
        {"essay_a_id": [1, 2, 3], "essay_b_id": [2, 3, 1], "winner": ["essay_a"] * 3}
    )
    with pytest.raises(ValueError, match="one position won every decision"):
        fit_bradley_terry(comparisons, position_effect=True, method="mle")


# --- input forms, weights and ignored rows -----------------------------------------------


def test_error_and_null_winners_are_ignored_and_counted():
    frame = simulate(8, 60, 18)
    noisy = pd.concat(
        [
            frame,
            pd.DataFrame(
                {
                    "essay_a_id": [0, 1, 2],
                    "essay_b_id": [1, 2, 3],
                    "winner": ["error", None, np.nan],
                }
            ),
        ],
        ignore_index=True,
    )
    result = fit_bradley_terry(noisy, method="mle")
    clean = fit_bradley_terry(frame, method="mle")
    assert result.n_ignored == 3
    assert clean.n_ignored == 0
    assert result.n_comparisons == len(frame)
    pd.testing.assert_frame_equal(result.scores, clean.scores)


def test_null_ids_on_ignored_rows_keep_integer_ids():
    frame = pd.DataFrame(
        {
            "essay_a_id": [1, 2, 3, np.nan],
            "essay_b_id": [2, 3, 1, np.nan],
            "winner": ["essay_a", "essay_a", "essay_a", "error"],
        }
    )
    result = fit_bradley_terry(frame, method="mle")
    assert result.n_ignored == 1
    assert sorted(result.scores.index.tolist()) == [1, 2, 3]
    assert pd.api.types.is_integer_dtype(result.scores.index)


@pytest.mark.parametrize("engine", ENGINES)
def test_count_weights_equal_repeated_rows(engine):
    aggregated = pd.DataFrame(
        {
            "winner_id": ["a", "b", "c", "a", "c"],
            "loser_id": ["b", "c", "a", "c", "b"],
            "judge_id": ["j1", "j1", "j2", "j2", "j1"],
            "count": [3, 2, 1, 2, 1],
        }
    )
    repeated = aggregated.loc[aggregated.index.repeat(aggregated["count"])].drop(columns="count")
    weighted = fit_bradley_terry(aggregated, engine=engine, method="mle")
    expanded = fit_bradley_terry(repeated, engine=engine, method="mle")
    pd.testing.assert_frame_equal(weighted.scores, expanded.scores, atol=1e-9, rtol=1e-9)
    pd.testing.assert_frame_equal(weighted.judges, expanded.judges, atol=1e-9, rtol=1e-9)
    assert weighted.log_likelihood == pytest.approx(expanded.log_likelihood)
    assert weighted.n_comparisons == expanded.n_comparisons == 9


def test_fractional_counts_are_used_as_weights():
    comparisons = pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1], "count": [1.5, 0.5]})
    result = fit_bradley_terry(comparisons, method="mle")
    assert result.scores.loc[1, "theta"] - result.scores.loc[2, "theta"] == pytest.approx(
        math.log(3)
    )
    assert result.scores.loc[1, "wins"] == 1.5
    assert result.n_comparisons == 2.0


def test_essay_ids_keep_their_type_and_scores_are_sorted_by_theta():
    frame = to_winner_form(simulate(6, 40, 19))
    as_strings = frame.map(lambda i: f"essay-{i}")
    for comparisons, kind in [(frame, int), (as_strings, str)]:
        scores = fit_bradley_terry(comparisons, method="mle").scores
        assert scores.index.name == "essay_id"
        assert all(isinstance(i, kind) for i in scores.index.tolist())
        assert scores["theta"].is_monotonic_decreasing
        assert list(scores.columns) == [
            "theta",
            "se",
            "wins",
            "losses",
            "n_comparisons",
            "infit",
            "outfit",
        ]


def test_result_is_a_frozen_dataclass():
    result = fit_bradley_terry(
        pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1]}), method="mle"
    )
    assert isinstance(result, BTResult)
    with pytest.raises(AttributeError):
        result.engine = "sparse"


# --- bad input ---------------------------------------------------------------------------


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_axis([f"r{i}" for i in range(len(frame))])


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"winner_id": [1]}), "winner_id, loser_id or essay_a_id"),
        (
            pd.DataFrame(
                {
                    "winner_id": [1],
                    "loser_id": [2],
                    "essay_a_id": [1],
                    "essay_b_id": [2],
                    "winner": ["essay_a"],
                }
            ),
            "both input forms",
        ),
        (
            labelled(pd.DataFrame({"winner_id": [1, 2, 3], "loser_id": [2, 2, 1]})),
            r"compare an essay with itself \(row labels 'r1'\)",
        ),
        (
            labelled(pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1], "count": [1, -2]})),
            r"negative count \(row labels 'r1'\)",
        ),
        (
            labelled(pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1], "count": [np.nan, 1]})),
            r"not a finite number \(row labels 'r0'\)",
        ),
        (
            labelled(pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1], "count": ["x", "1"]})),
            r"not a finite number \(row labels 'r0'\)",
        ),
        (
            labelled(
                pd.DataFrame(
                    {
                        "essay_a_id": [1, 2, 3],
                        "essay_b_id": [2, 3, 1],
                        "winner": ["essay_a", "A", "tie"],
                    }
                )
            ),
            r"winner other than .*\(row labels 'r1', 'r2'\)",
        ),
        (
            labelled(pd.DataFrame({"winner_id": [1, None, 3], "loser_id": [2, 3, 1]})),
            r"have no winner_id \(row labels 'r1'\)",
        ),
        (
            labelled(
                pd.DataFrame(
                    {"essay_a_id": [1, 2], "essay_b_id": [2, None], "winner": ["essay_a"] * 2}
                )
            ),
            r"have no essay_b_id \(row labels 'r1'\)",
        ),
        (pd.DataFrame({"winner_id": [], "loser_id": []}), "no decisions"),
        (
            pd.DataFrame({"essay_a_id": [1], "essay_b_id": [2], "winner": ["error"]}),
            r"no decisions to score \(1 row",
        ),
        (
            pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1], "count": [0, 0]}),
            "count 0",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(frame, message):
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(frame, method="mle")


def test_bad_input_lists_only_the_first_few_row_labels():
    frame = labelled(pd.DataFrame({"winner_id": [1] * 8, "loser_id": [1] * 8}))
    with pytest.raises(ValueError, match=r"8 comparison row.*'r4' and 3 more"):
        fit_bradley_terry(frame, method="mle")


def test_non_dataframe_input_raises_type_error():
    with pytest.raises(TypeError, match="DataFrame"):
        fit_bradley_terry([(1, 2)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "fast"}, "unknown engine"),
        ({"se_method": "bootstrap"}, "unknown se_method"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
    ],
)
def test_bad_options_raise_value_error(kwargs, message):
    comparisons = pd.DataFrame({"winner_id": [1, 2], "loser_id": [2, 1]})
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(comparisons, **kwargs)


# --- connectivity ------------------------------------------------------------------------


def test_always_winning_essay_raises_at_alpha_zero_with_components():
    comparisons = pd.DataFrame(
        {"winner_id": ["a", "b", "c", "top", "top"], "loser_id": ["b", "c", "a", "a", "b"]}
    )
    with pytest.raises(DisconnectedComparisonsError) as caught:
        fit_bradley_terry(comparisons, method="mle")
    error = caught.value
    assert isinstance(error, ValueError)
    assert DisconnectedComparisonsError is ErrorsDisconnected
    assert sorted(map(sorted, error.components)) == [["a", "b", "c"], ["top"]]
    assert len(error.components[0]) == 3
    assert error.always_win == ["top"]
    assert error.always_lose == []
    assert "never lost" in str(error)


def test_groups_linked_one_way_raise_without_always_winners():
    # Two 3-cycles; group one beats group two every time.
    comparisons = pd.DataFrame(
        {
            "winner_id": [1, 2, 3, 4, 5, 6, 1, 2],
            "loser_id": [2, 3, 1, 5, 6, 4, 4, 5],
        }
    )
    with pytest.raises(DisconnectedComparisonsError) as caught:
        fit_bradley_terry(comparisons, method="mle")
    assert sorted(map(sorted, caught.value.components)) == [[1, 2, 3], [4, 5, 6]]
    assert caught.value.always_win == []
    assert caught.value.always_lose == []


@pytest.mark.parametrize("engine", ENGINES)
def test_disconnected_data_fits_with_a_penalty_and_reports_it(engine):
    comparisons = pd.DataFrame(
        {"winner_id": ["a", "b", "c", "top", "top"], "loser_id": ["b", "c", "a", "a", "b"]}
    )
    result = fit_bradley_terry(comparisons, alpha=0.5, engine=engine)
    assert result.connected is False
    assert result.converged
    assert result.scores.index[0] == "top"
    assert np.isfinite(result.scores["se"]).all() and (result.scores["se"] > 0).all()
    assert result.scores["theta"].sum() == pytest.approx(0.0, abs=1e-10)


def test_zero_count_rows_do_not_link_the_graph():
    comparisons = pd.DataFrame(
        {"winner_id": ["a", "b", "b"], "loser_id": ["b", "a", "c"], "count": [1, 1, 0]}
    )
    with pytest.raises(DisconnectedComparisonsError) as caught:
        fit_bradley_terry(comparisons, method="mle")
    assert caught.value.always_win == ["c"]
    assert caught.value.always_lose == ["c"]


@pytest.mark.parametrize("se_method", ["pinv_fisher", "neumann_approx"])
@pytest.mark.parametrize(
    "pairs",
    [
        [("1", "2")],  # one pair, always in the same orientation
        [("1", "2"), ("3", "1")],  # a tree: every pair in one orientation only
    ],
)
def test_position_effect_confounded_with_ability_is_refused(pairs, se_method):
    rows = []
    for a, b in pairs:
        rows += [(a, b, "essay_a")] * 3 + [(a, b, "essay_b")] * 2
    frame = pd.DataFrame(rows, columns=["essay_a_id", "essay_b_id", "winner"])
    with pytest.raises(ValueError, match="position effect is not identified"):
        fit_bradley_terry(
            frame, position_effect=True, se_method=se_method, engine="sparse", method="mle"
        )


# --- methods (issue 11) ------------------------------------------------------------------


def test_method_defaults_keep_old_callers_working():
    frame = to_winner_form(simulate(8, 80, 31))
    assert fit_bradley_terry(frame).method == DEFAULT_METHOD
    assert fit_bradley_terry(frame, alpha=0.0).method == "mle"
    ridge = fit_bradley_terry(frame, alpha=0.03)
    assert ridge.method == "ridge" and ridge.alpha == 0.03
    assert ridge.reliability_name == "eap_rel"
    assert fit_bradley_terry(frame, method="firth").reliability_name == "mle_rel"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "bayes"}, "unknown method"),
        ({"method": "ridge"}, "needs alpha > 0"),
        ({"method": "firth", "alpha": 0.1}, "alpha applies to method='ridge' only"),
        ({"method": "sirt", "sirt_eps": 0.0}, "sirt_eps"),
    ],
)
def test_bad_method_options_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(to_winner_form(simulate(5, 30, 32)), **kwargs)


@pytest.mark.parametrize("position_effect", [False, True])
def test_ridge_standard_errors_at_tiny_alpha_equal_the_mle_ones(position_effect):
    # Before issue 11 the ridge SEs kept 1/(2αn) of the unidentified mean: 70.7 here.
    frame = simulate(100, 1000, 33, delta=0.3)
    mle = fit_bradley_terry(frame, method="mle", position_effect=position_effect)
    ridge = fit_bradley_terry(frame, method="ridge", alpha=1e-6, position_effect=position_effect)
    se = ridge.scores["se"].reindex(mle.scores.index)
    np.testing.assert_allclose(se, mle.scores["se"], atol=1e-3, rtol=0)
    assert ridge.reliability_name == "eap_rel"
    if position_effect:
        assert ridge.position_effect["se"] == pytest.approx(mle.position_effect["se"], abs=1e-3)


@pytest.mark.parametrize("method", ["firth", "ridge", "mle"])
@pytest.mark.parametrize("per_essay", [10, 40])
def test_cavity_standard_errors_are_within_two_percent_of_exact(method, per_essay):
    n = 400
    frame = simulate(n, n * per_essay // 2, 34 + per_essay, delta=0.2)
    kwargs = {"alpha": 0.03} if method == "ridge" else {}
    exact = fit_bradley_terry(
        frame, method=method, se_method="pinv_fisher", position_effect=True, **kwargs
    )
    approx = fit_bradley_terry(
        frame, method=method, se_method="cavity_approx", position_effect=True, **kwargs
    )
    ratio = approx.scores["se"] / exact.scores["se"].reindex(approx.scores.index)
    assert ratio.between(0.98, 1.02).all()
    assert approx.position_effect["se"] == pytest.approx(exact.position_effect["se"], rel=1e-6)


def test_firth_leverage_approximation_stays_close_to_exact(monkeypatch):
    import cjlib.scoring as scoring

    frame = simulate(150, 750, 35)
    exact = fit_bradley_terry(frame, method="firth")
    monkeypatch.setattr(scoring, "FIRTH_EXACT_MAX_ESSAYS", 10)
    approx = fit_bradley_terry(frame, method="firth")
    difference = (approx.scores["theta"] - exact.scores["theta"].reindex(approx.scores.index)).abs()
    assert (difference / approx.scores["se"]).max() < 0.1
    assert approx.converged


@pytest.mark.parametrize("spread", [1.5, 2.5])
def test_sparse_firth_converges_on_a_sparse_widely_spread_design(spread, caplog):
    # 6 comparisons per essay, a position effect and θ spread widely: essays joined to the
    # rest by few decisions have flat modified scores, where plain Anderson mixing crept
    # for 50 rounds and gave up (both spreads did before the per-essay secant steps).
    frame = simulate(1000, 2000, 62, delta=0.3, spread=spread)
    result = fit_bradley_terry(frame, position_effect=True)
    assert result.converged
    assert "did not converge" not in caplog.text


def test_secant_step_solves_a_creeping_linear_map_in_one_step_and_caps_its_steps():
    from cjlib.scoring import _secant_step

    def residual(z):  # G(z) = 1 + 0.95 z: fixed point 20, plain steps shrink by 0.95
        return 1.0 + 0.95 * z - z

    z0 = np.array([0.0, 19.0])
    z1 = z0 + residual(z0)
    z2 = _secant_step(z1, residual(z1), (z0, residual(z0)))
    # The first coordinate would step 19 logits: capped at 1; the second lands on 20.
    np.testing.assert_allclose(z2, [z1[0] + 1.0, 20.0])
    # Without a previous round, or where the map moves away (slope > 1), the plain step.
    np.testing.assert_allclose(_secant_step(z1, residual(z1), None), z1 + residual(z1))
    away = _secant_step(np.array([2.0]), np.array([0.2]), (np.array([1.0]), np.array([0.1])))
    np.testing.assert_allclose(away, [2.2])


def test_firth_and_sirt_refuse_essays_not_compared_with_the_rest():
    comparisons = pd.DataFrame(
        {"winner_id": ["a", "b", "c", "d"], "loser_id": ["b", "a", "d", "c"]}
    )
    for method in ("firth", "sirt"):
        with pytest.raises(DisconnectedComparisonsError, match="no comparison between them"):
            fit_bradley_terry(comparisons, method=method)


def test_firth_shrinks_an_always_winning_essay_but_keeps_its_rank_above_its_victims():
    comparisons = pd.DataFrame(
        {"winner_id": ["a", "b", "c", "top", "top"], "loser_id": ["b", "c", "a", "a", "b"]}
    )
    result = fit_bradley_terry(comparisons, method="firth")
    theta = result.scores["theta"]
    assert theta["top"] > max(theta["a"], theta["b"])
    assert np.isfinite(result.scores["se"]).all()
    assert result.scores["theta"].sum() == pytest.approx(0.0, abs=1e-10)


def test_reliability_leaves_out_essays_without_information():
    frame = to_winner_form(simulate(12, 150, 36, spread=1.5))
    frame["count"] = 1
    extra = pd.DataFrame({"winner_id": [0], "loser_id": ["ghost"], "count": [0]})
    with_ghost = fit_bradley_terry(pd.concat([frame, extra]), alpha=0.05)
    scores = with_ghost.scores
    assert scores.loc["ghost", "n_comparisons"] == 0
    informative = scores.drop(index="ghost")
    variance = informative["theta"].var(ddof=1)
    mse = (informative["se"] ** 2).mean()
    assert with_ghost.reliability == pytest.approx(variance / (variance + mse))
    assert with_ghost.sep_g_sirt == pytest.approx(math.sqrt(variance / mse))


def test_reliability_fields_follow_their_formulas_for_every_method():
    frame = to_winner_form(simulate(12, 150, 14, spread=1.5))
    for method, kwargs in (("mle", {}), ("firth", {}), ("ridge", {"alpha": 0.1})):
        result = fit_bradley_terry(frame, method=method, **kwargs)
        variance = result.scores["theta"].var(ddof=1)
        mse = (result.scores["se"] ** 2).mean()
        expected = (variance - mse) / variance if method != "ridge" else variance / (variance + mse)
        assert result.reliability == pytest.approx(expected)
        assert result.ssr == result.reliability
        assert result.sep_g == pytest.approx(math.sqrt(max(variance - mse, 0) / mse))
        assert result.separation == result.sep_g
        assert result.sep_g_sirt == pytest.approx(math.sqrt(variance / mse))


def test_random_judge_among_consistent_judges_is_flagged_as_misfitting():
    rng = np.random.default_rng(37)
    n = 30
    theta = np.linspace(-2.5, 2.5, n)
    rows = []
    for judge in range(8):
        for _ in range(120):
            a, b = rng.choice(n, 2, replace=False)
            p = 0.5 if judge == 7 else expit(theta[a] - theta[b])
            rows.append((a, b, "essay_a" if rng.random() < p else "essay_b", f"j{judge}"))
    frame = pd.DataFrame(rows, columns=["essay_a_id", "essay_b_id", "winner", "judge_id"])
    judges = fit_bradley_terry(frame).judges
    assert judges["misfit"].dtype == bool
    assert judges.loc["j7", "misfit"]
    assert judges["misfit"].sum() == 1


def test_fits_run_blas_on_one_thread(monkeypatch):
    # Dense factorisations are small; OpenBLAS's threads wait for each other on a busy
    # machine (a 1,000-essay covariance took 20x longer), so fits hold BLAS to one thread.
    from threadpoolctl import threadpool_info

    import cjlib.scoring as scoring

    seen: list[int] = []
    exact = scoring._exact_covariance

    def recording(*args, **kwargs):
        seen.extend(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")
        return exact(*args, **kwargs)

    monkeypatch.setattr(scoring, "_exact_covariance", recording)
    fit_bradley_terry(simulate(40, 400, 51), method="mle")
    assert seen and set(seen) == {1}


def test_cavity_restarts_cold_when_warm_messages_are_astray():
    import cjlib.scoring as scoring

    frame = to_winner_form(simulate(500, 5000, 52))
    decisions = scoring._parse_comparisons(frame, False)
    edges = scoring._edges(scoring._aggregate(decisions, 0.0, False))
    information = scoring._edge_information(edges, np.zeros(edges.n))[1]
    cold = scoring._edge_cavity(edges, information)
    stray = np.zeros(2 * len(edges.low))
    warm = scoring._edge_cavity(edges, information, stray)
    assert np.isfinite(warm.variances).all()
    np.testing.assert_allclose(warm.variances, cold.variances, rtol=1e-9)


def test_segment_sums_equal_bincount_with_empty_segments_anywhere():
    from cjlib.scoring import _Segments

    rng = np.random.default_rng(7)
    # Essays 0, 3 and 9 (first, middle, last) have no entries.
    index = np.sort(rng.choice([1, 2, 4, 5, 6, 7, 8], 50))
    values = rng.normal(size=50)
    np.testing.assert_allclose(_Segments(index, 10).sum(values), np.bincount(index, values, 10))
    np.testing.assert_array_equal(_Segments(np.array([], dtype=int), 3).sum(np.array([])), 0.0)
