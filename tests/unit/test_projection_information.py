"""Unit tests of the population fit and the information refusal of cjlib.projection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cjlib.projection as projection_module
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import (
    MIN_RELIABILITY,
    PRIOR_MIN_STUDENTS,
    PopulationFit,
    ProjectionUnavailable,
    project_grades,
)
from cjlib.simulation import (
    TRUTH_GENERATORS,
    simulate_population,
    simulate_uneven_population,
)

LEGACY = "eng5_np_legacy_9_step"


def _scores(student_theta: np.ndarray, student_se: np.ndarray, anchor_se: float = 0.4):
    grades = list(ENG5_ANCHOR_GRADES)
    labels = ("F", "F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "A")
    anchor_theta = [1.0 * (labels.index(g) - 5) for g in grades]
    ids = [f"A{i:02d}" for i in range(len(grades))]
    sids = [f"S{i:03d}" for i in range(len(student_theta))]
    scores = pd.DataFrame(
        {
            "theta": anchor_theta + list(student_theta),
            "se": [anchor_se] * len(grades) + list(student_se),
        },
        index=ids + sids,
    )
    return scores, dict(zip(ids, grades, strict=True))


def test_population_sd_is_recovered_from_heteroscedastic_scores():
    # θ̂_i = θ_i + e_i, θ ~ N(0.5, 1.5²), e_i ~ N(0, se_i²) with se from 0.3 to 2.
    rng = np.random.default_rng(4)
    se = rng.uniform(0.3, 2.0, 2000)
    theta = 0.5 + 1.5 * rng.standard_normal(2000) + se * rng.standard_normal(2000)
    scores, anchors = _scores(theta, se)
    fit = project_grades(scores, anchors, scale=LEGACY, min_reliability=0).population
    assert isinstance(fit, PopulationFit)
    assert fit.n_students == 2000
    assert fit.sd == pytest.approx(1.5, abs=0.1)
    assert fit.sd_low < 1.5 < fit.sd_high
    assert fit.mean == pytest.approx(0.5, abs=0.1)
    # The old moment estimate √max(var θ̂ − median se², 0) is further off: the median se²
    # understates the noise of a batch whose SEs vary.
    moment = np.sqrt(max(np.var(theta) - np.median(se**2), 0.0))
    assert abs(moment - 1.5) > abs(fit.sd - 1.5) + 0.05


def test_population_sd_is_not_biased_when_ses_grow_with_distance_from_the_middle():
    # As for BT scores: an essay far from its opponents has a larger se. Weighting each
    # student by 1/(S² + se_i²) then favours the students near the middle and put S at 1.7
    # here; one error variance for all recovers the 2.0 of the population.
    rng = np.random.default_rng(11)
    theta = 2.0 * rng.standard_normal(3000)
    se = 0.6 * np.sqrt(1 + 0.3 * theta**2)
    observed = theta + se * rng.standard_normal(3000)
    scores, anchors = _scores(observed, se)
    fit = project_grades(scores, anchors, scale=LEGACY).population
    assert fit.sd == pytest.approx(2.0, abs=0.08)
    assert fit.sd_low < 2.0 < fit.sd_high
    assert fit.reliability == pytest.approx(fit.sd**2 / (fit.sd**2 + np.mean(se**2)), abs=0.01)


def test_scores_within_their_ses_are_refused_with_a_reason_and_a_message():
    rng = np.random.default_rng(1)
    se = np.full(150, 2.5)
    theta = 0.3 * rng.standard_normal(150) + 0.2 * se * rng.standard_normal(150)
    scores, anchors = _scores(theta, se)
    with pytest.raises(ProjectionUnavailable) as info:
        project_grades(scores, anchors, scale=LEGACY)
    assert info.value.reason == "too_little_information"
    message = str(info.value)
    assert "reliability" in message and f"{MIN_RELIABILITY:.2f}" in message
    assert "comparisons per essay" in message
    # min_reliability=0 projects anyway, and says how little the scores carry.
    projection = project_grades(scores, anchors, scale=LEGACY, min_reliability=0)
    assert projection.population.reliability < MIN_RELIABILITY


def test_refusal_does_not_apply_to_batches_too_small_for_a_population_fit():
    n = PRIOR_MIN_STUDENTS - 1
    scores, anchors = _scores(np.zeros(n), np.full(n, 3.0))
    projection = project_grades(scores, anchors, scale=LEGACY)
    assert projection.population is None
    assert len(projection.grades) == n


def test_uncertainty_in_the_population_sd_widens_the_probabilities():
    # Below the information threshold (projected on request) students' posteriors are normal
    # and averaged over the population SD's posterior. With S fixed at its REML estimate
    # instead, an extreme student's confidence is higher: the grid average is not a no-op.
    rng = np.random.default_rng(3)
    n = 30
    se = np.full(n, 1.0)
    theta = 0.9 * rng.standard_normal(n) + rng.standard_normal(n)
    theta[-1] = 4.0
    scores, anchors = _scores(theta, se)
    averaged = project_grades(scores, anchors, scale=LEGACY, min_reliability=0)
    fit = averaged.population
    assert fit.reliability < MIN_RELIABILITY
    grid = projection_module._population_grid(np.sort(theta), se)
    assert (grid[2] > 1e-3).sum() >= 5  # S is genuinely uncertain with 30 students
    point = np.zeros_like(grid[2])
    point[np.argmax(grid[2])] = 1.0
    cal = averaged.calibration
    fixed = projection_module._population_probabilities(
        theta,
        se,
        (grid[0], grid[1], point),
        cal["upper"].to_numpy()[:-1],
        cal["upper_se"].to_numpy()[:-1],
    )
    labels = list(averaged.scale.all_labels)
    mixed = averaged.grades[labels].to_numpy()
    assert fit.sd == pytest.approx(grid[0][np.argmax(grid[2])])
    assert mixed[-1].max() < fixed[-1].max()
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)


def test_anchor_excess_spread_is_zero_for_typical_anchors_and_positive_for_spread_ones():
    typical = project_grades(*_scores(np.linspace(-4, 4, 50), np.full(50, 0.5)), scale=LEGACY)
    assert typical.population.anchor_excess_sd == 0.0
    scores, anchors = _scores(np.linspace(-4, 4, 50), np.full(50, 0.5), anchor_se=0.2)
    offsets = np.tile([-0.8, 0.8, 0.5, -0.5], 3)
    scores.loc[list(anchors), "theta"] += offsets
    spread = project_grades(scores, anchors, scale=LEGACY)
    assert spread.population.anchor_excess_sd > 0.4
    # ... and the anchored centres are less certain for it.
    anchored = typical.calibration["n_anchors"] > 0
    assert (
        spread.calibration.loc[anchored, "centre_se"]
        > typical.calibration.loc[anchored, "centre_se"]
    ).all()


# --- the second truth generator --------------------------------------------------------


def test_uneven_generator_breaks_the_first_generators_conveniences():
    population = simulate_uneven_population(LEGACY, ENG5_ANCHOR_GRADES, 400, seed=2)
    bounds = np.asarray(population.boundaries)
    assert len(bounds) == len(population.scale.all_labels) - 1
    widths = np.diff(bounds)
    assert widths.max() > 1.5 * widths.min()  # unequal grade widths
    essays = population.essays
    # The true grade is the interval the ability falls in, for anchors and students alike.
    np.testing.assert_array_equal(
        np.searchsorted(bounds, essays["ability"], side="right"), essays["grade_index"]
    )
    # Anchors are not at their grade's centre.
    anchors = essays[essays["is_anchor"]]
    inner = anchors[(anchors["grade_index"] > 0) & (anchors["grade_index"] < len(bounds))]
    centres = (bounds[inner["grade_index"] - 1] + bounds[inner["grade_index"]]) / 2
    offset = np.abs(inner["ability"].to_numpy() - centres) / widths[inner["grade_index"] - 1]
    assert offset.max() > 0.25
    # Abilities are skewed, not normal.
    ability = population.students["ability"].to_numpy()
    skew = np.mean((ability - ability.mean()) ** 3) / ability.std() ** 3
    assert abs(skew) > 0.2


def test_uneven_generator_is_reproducible_and_seed_dependent():
    a = simulate_uneven_population(LEGACY, ENG5_ANCHOR_GRADES, 50, seed=5)
    b = simulate_uneven_population(LEGACY, ENG5_ANCHOR_GRADES, 50, seed=5)
    c = simulate_uneven_population(LEGACY, ENG5_ANCHOR_GRADES, 50, seed=6)
    pd.testing.assert_frame_equal(a.essays, b.essays)
    assert a.boundaries == b.boundaries != c.boundaries
    assert list(a.anchor_grades) == list(ENG5_ANCHOR_GRADES)


def test_first_generator_keeps_its_api_and_records_midpoint_boundaries():
    population = simulate_population(LEGACY, ENG5_ANCHOR_GRADES, 20, seed=0)
    assert list(population.essays.columns) == [
        "essay_id",
        "is_anchor",
        "ability",
        "true_grade",
        "grade_index",
    ]
    np.testing.assert_allclose(np.diff(population.boundaries), 0.9)
    assert set(TRUTH_GENERATORS) == {"centred", "uneven"}


# --- the students' population density (g-model) ------------------------------------------


def _skewed_batch(seed: int, n: int = 1000, se: float = 0.8):
    """A broad bulk and a narrow upper mode (as in the ``uneven`` generator): light upper tail."""
    rng = np.random.default_rng(seed)
    upper = rng.random(n) < 0.3
    theta = np.where(upper, rng.normal(2.3, 0.6, n), rng.normal(-0.9, 1.4, n))
    return theta, theta + se * rng.standard_normal(n), np.full(n, se)


def test_population_density_follows_a_light_upper_tail_that_a_normal_does_not():
    # 0.5% of the population lies above 3.6; a normal with the batch's mean and deconvolved
    # SD puts 2.5% there, the fitted density 1.4% (deconvolving noise of SD 0.8 cannot
    # recover the full steepness of a mode of SD 0.6).
    theta, observed, se = _skewed_batch(0)
    sd = np.sqrt(np.var(observed) - 0.8**2)
    grid, log_g = projection_module._fit_density(observed, se, float(np.mean(observed)), sd)
    density = np.exp(log_g)
    assert density.sum() == pytest.approx(1.0)
    assert np.mean(theta > 3.6) == pytest.approx(0.005, abs=1e-3)
    normal_tail = stats.norm.sf(3.6, np.mean(observed), sd)
    assert normal_tail > 0.024
    assert density[grid > 3.6].sum() < 0.02


def test_grade_shares_under_the_fitted_density_are_closer_to_the_truth():
    # With the true boundaries known exactly, the students' mean probabilities per grade are
    # the grade shares the projection expects. Total variation from the true shares: 0.070
    # under the fitted density, 0.112 under the normal prior (DENSITY_PENALTY → ∞, whose
    # fit is the normal: the penalty's null space), which puts 2.3% in the top grade A
    # where 0.5% belong (fitted density: 1.3%).
    theta, observed, se = _skewed_batch(0)
    bounds = 0.9 * (np.arange(9) - 4)
    truth = np.bincount(np.searchsorted(bounds, theta), minlength=10) / len(theta)
    sd = np.sqrt(np.var(observed) - 0.8**2)

    def shares(penalty: float) -> np.ndarray:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(projection_module, "DENSITY_PENALTY", penalty)
            density = projection_module._fit_density(observed, se, float(np.mean(observed)), sd)
        probs = projection_module._density_probabilities(
            observed, se, density, bounds, np.full(9, 1e-6)
        )
        return probs.mean(axis=0)

    fitted, normal = shares(projection_module.DENSITY_PENALTY), shares(1e8)
    assert 0.5 * np.abs(fitted - truth).sum() < 0.08
    assert 0.5 * np.abs(normal - truth).sum() > 0.1
    assert fitted[-1] < 0.016 < normal[-1]


def test_density_fit_is_quick_and_bounded_for_a_large_batch():
    # 100,000 students: the density is fitted to DENSITY_FIT_MAX of them (every k-th by θ̂).
    rng = np.random.default_rng(5)
    theta = 2.0 * rng.standard_normal(100_000)
    se = np.full(len(theta), 0.5)
    grid, log_g = projection_module._fit_density(
        theta + 0.5 * rng.standard_normal(len(theta)), se, 0.0, 2.0
    )
    assert len(grid) == projection_module.DENSITY_GRID_POINTS
    assert np.exp(log_g).sum() == pytest.approx(1.0)
    # The fitted density keeps the population's SD (2.0).
    mean = np.exp(log_g) @ grid
    assert np.sqrt(np.exp(log_g) @ (grid - mean) ** 2) == pytest.approx(2.0, abs=0.1)


def test_density_fit_reaches_the_penalised_likelihoods_maximum():
    # Newton's steps must land where a general-purpose optimiser, run to a tight tolerance on
    # the same objective, does.
    from scipy import optimize, special

    _, observed, se = _skewed_batch(3, n=400)
    mean, sd = float(np.mean(observed)), float(np.sqrt(np.var(observed) - 0.8**2))
    grid, log_g = projection_module._fit_density(observed, se, mean, sd)
    centred = observed - mean
    _, basis = projection_module._density_design(centred, se)
    loglik = projection_module._log_likelihood_on_grid(centred, se, grid - mean)
    diff = np.diff(np.eye(basis.shape[1]), 3, axis=0)
    penalty = projection_module.DENSITY_PENALTY * diff.T @ diff

    def objective(coef: np.ndarray) -> float:
        log_density = basis @ coef - special.logsumexp(basis @ coef)
        return -special.logsumexp(loglik + log_density, axis=1).sum() + 0.5 * coef @ penalty @ coef

    start = np.linalg.lstsq(basis, -0.5 * ((grid - mean) / sd) ** 2, rcond=None)[0]
    best = optimize.minimize(objective, start, method="BFGS", options={"gtol": 1e-8}).x
    reference = basis @ best - special.logsumexp(basis @ best)
    np.testing.assert_allclose(np.exp(log_g), np.exp(reference), atol=1e-6)
