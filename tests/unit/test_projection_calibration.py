"""Calibration of projected grades on simulated ENG5 batches whose true grades are known.

Each seed simulates the 12 ENG5 anchors and 200 students, about 10 comparisons per essay
(BT discrimination 1, no position bias), fits ridge Bradley–Terry scores (α = 0.03, the
finalizer's estimator before Firth) and projects grades. The figures these tests observe
are listed in ``docs/projection.md``.

The second half checks both truth generators (``cjlib.simulation.TRUTH_GENERATORS``) at 2,
3, 5, 10, 20 and 40 comparisons per essay: expected calibration error pooled over seeds, or
the documented refusal. The long version with 48 batches of 200 students per cell over four
seed sets is ``benchmarks/projection_calibration.py``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from cjlib.errors import DisconnectedComparisonsError
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import (
    MIN_RELIABILITY,
    Projection,
    ProjectionEvaluation,
    ProjectionUnavailable,
    evaluate_projection,
    project_grades,
)
from cjlib.scoring import fit_bradley_terry
from cjlib.simulation import TRUTH_GENERATORS, simulate_comparisons, simulate_population

SCALE = "eng5_np_legacy_9_step"
SEEDS = range(6)
N_STUDENTS = 200
COMPARISONS_PER_ESSAY = 10
#: α = 0.03 is a weak N(0, 4.1²) prior on θ against a cohort spread of about ±4 logits.
ALPHA = 0.03


@dataclasses.dataclass(frozen=True)
class _Run:
    projection: Projection
    evaluation: ProjectionEvaluation
    truth: pd.Series


def _run(seed: int) -> _Run:
    population = simulate_population(SCALE, ENG5_ANCHOR_GRADES, N_STUDENTS, seed=seed)
    comparisons = simulate_comparisons(
        population.essays, comparisons_per_essay=COMPARISONS_PER_ESSAY, seed=seed
    )
    scores = fit_bradley_terry(comparisons, method="ridge", alpha=ALPHA).scores
    projection = project_grades(scores, population.anchor_grades, scale=SCALE)
    students = population.students
    truth = pd.Series(students["true_grade"].to_numpy(), index=students["essay_id"].to_numpy())
    return _Run(projection, evaluate_projection(projection, truth), truth)


@pytest.fixture(scope="module")
def runs() -> list[_Run]:
    return [_run(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def pooled(runs) -> tuple[Projection, ProjectionEvaluation]:
    """All seeds' students evaluated together (ids prefixed by seed)."""
    grades = pd.concat(
        [r.projection.grades.rename(index=lambda i, s=s: f"{s}/{i}") for s, r in enumerate(runs)]
    )
    truth = pd.concat([r.truth.rename(index=lambda i, s=s: f"{s}/{i}") for s, r in enumerate(runs)])
    projection = dataclasses.replace(runs[0].projection, grades=grades)
    return projection, evaluate_projection(projection, truth)


def _model_expected_true_probability(projection: Projection) -> float:
    # If the probabilities are right, E[P(true grade)] = E[Σ_g P(g)²].
    probs = projection.grades[list(projection.scale.all_labels)].to_numpy()
    return float(np.mean(np.sum(probs**2, axis=1)))


def test_expected_calibration_error_averaged_over_seeds_is_at_most_0_08(runs):
    # Observed 0.037–0.099 per seed, mean 0.063. A perfectly calibrated projection of 200
    # essays still shows ECE ≈ 0.045 from binomial noise in the bins.
    eces = [r.evaluation.expected_calibration_error for r in runs]
    assert np.mean(eces) <= 0.08
    assert max(eces) <= 0.2


def test_expected_calibration_error_of_all_seeds_together_is_small(runs, pooled):
    # 1200 essays: the noise floor is ≈ 0.02 and what remains is miscalibration (observed 0.031).
    _, evaluation = pooled
    assert evaluation.n == N_STUDENTS * len(SEEDS)
    assert evaluation.expected_calibration_error <= 0.05


def test_true_grade_probability_and_hit_rate_agree_with_what_the_model_expects(pooled):
    # The brief asks for the mean probability of the true grade to be close to the hit rate.
    # Even a perfectly calibrated projection does not give that: the hit rate should equal the
    # mean confidence E[max_g P(g)], while the mean true-grade probability should equal
    # E[Σ_g P(g)²], and here these differ by ≈ 0.09. So each is compared with its own
    # calibrated expectation (observed gaps 0.000 and 0.025), and the gap between them with
    # the gap the model predicts.
    projection, evaluation = pooled
    expected_true = _model_expected_true_probability(projection)
    assert abs(evaluation.mean_true_grade_probability - expected_true) <= 0.03
    assert abs(evaluation.hit_rate - evaluation.mean_confidence) <= 0.05
    observed_gap = evaluation.hit_rate - evaluation.mean_true_grade_probability
    predicted_gap = evaluation.mean_confidence - expected_true
    assert abs(observed_gap - predicted_gap) <= 0.05


def test_reliability_table_confident_bins_are_not_overconfident(pooled):
    # Every bin holding at least 50 essays: observed accuracy within 0.08 of its confidence.
    # The 0.4–0.5 bin (67 essays) was 0.43 predicted against 0.32 observed before the
    # population SD was fitted with one error variance (issue 11); it is 0.42 against 0.35
    # (74 essays).
    _, evaluation = pooled
    table = evaluation.reliability_table
    big = table[table["n"] >= 50]
    assert len(big) >= 3
    assert (abs(big["observed_accuracy"] - big["mean_confidence"]) <= 0.08).all()


def test_exact_agreement_is_well_above_the_majority_baseline(runs, pooled):
    # Observed per seed 0.26–0.395 against baselines 0.14–0.18.
    for run in runs:
        assert run.evaluation.exact_agreement >= run.evaluation.majority_baseline + 0.05
    _, evaluation = pooled
    assert evaluation.exact_agreement >= evaluation.majority_baseline + 0.12


def test_ordinal_agreement_is_strong(pooled):
    _, evaluation = pooled
    assert evaluation.adjacent_agreement >= 0.7
    assert evaluation.quadratic_weighted_kappa >= 0.75
    assert evaluation.spearman_rho >= 0.85


def test_probabilistic_scores_beat_the_base_rate_forecast(runs, pooled):
    # Forecasting every essay with the share of each true grade (known only in hindsight).
    _, evaluation = pooled
    truth = pd.concat([r.truth for r in runs])
    shares = truth.value_counts(normalize=True).to_numpy()
    base_log_loss = -float(np.sum(shares * np.log(shares)))
    base_brier = 1.0 - float(np.sum(shares**2))
    assert evaluation.log_loss <= base_log_loss - 0.4
    assert evaluation.brier_score <= base_brier - 0.08
    assert evaluation.log_loss < math.log(len(runs[0].projection.scale.all_labels))


# --- both truth generators, 2 to 40 comparisons per essay ---------------------------------

REFUSED_COUNTS = (2, 3, 5)
PROJECTED_COUNTS = (10, 20, 40)
REFUSAL_SEEDS = range(3)
#: Many small batches rather than a few large ones: the students of one batch share its
#: anchors' errors, so the pooled ECE's noise shrinks with the number of batches, not of
#: students (6 batches of 200 gave pooled ECEs from 0.044 to 0.076 for this same method).
CALIBRATION_SEEDS = range(24)
CALIBRATION_STUDENTS = 60
#: Pooled ECE the Done-when of issue 11 asks for.
ECE_TARGET = 0.05


def _batch(generator: str, count: int, seed: int, n_students: int = N_STUDENTS):
    population = TRUTH_GENERATORS[generator](SCALE, ENG5_ANCHOR_GRADES, n_students, seed=seed)
    comparisons = simulate_comparisons(population.essays, comparisons_per_essay=count, seed=seed)
    students = population.students
    truth = pd.Series(students["true_grade"].to_numpy(), index=students["essay_id"].to_numpy())
    return comparisons, population.anchor_grades, truth


@pytest.mark.parametrize("generator", sorted(TRUTH_GENERATORS))
@pytest.mark.parametrize("count", REFUSED_COUNTS)
def test_too_few_comparisons_are_refused_with_the_reason(generator, count):
    for seed in REFUSAL_SEEDS:
        comparisons, anchors, _ = _batch(generator, count, seed)
        try:
            scores = fit_bradley_terry(comparisons).scores
        except DisconnectedComparisonsError:
            # Two rounds of random pairs rarely link every essay: no scores, nothing projected.
            assert count == 2
            continue
        with pytest.raises(ProjectionUnavailable) as info:
            project_grades(scores, anchors, scale=SCALE)
        assert info.value.reason == "too_little_information"
        assert "comparisons per essay" in str(info.value)
        forced = project_grades(scores, anchors, scale=SCALE, min_reliability=0)
        assert forced.population.reliability < MIN_RELIABILITY


@pytest.mark.parametrize("generator", sorted(TRUTH_GENERATORS))
@pytest.mark.parametrize("count", PROJECTED_COUNTS)
def test_projection_is_calibrated_pooled_over_seeds(generator, count):
    projections, truths = [], []
    for seed in CALIBRATION_SEEDS:
        comparisons, anchors, truth = _batch(generator, count, seed, CALIBRATION_STUDENTS)
        scores = fit_bradley_terry(comparisons).scores
        projection = project_grades(scores, anchors, scale=SCALE)  # never refused here
        assert projection.population.reliability >= MIN_RELIABILITY
        projections.append(projection.grades.rename(index=lambda i, s=seed: f"{s}/{i}"))
        truths.append(truth.rename(index=lambda i, s=seed: f"{s}/{i}"))
    pooled_projection = dataclasses.replace(projection, grades=pd.concat(projections))
    evaluation = evaluate_projection(pooled_projection, pd.concat(truths))
    assert evaluation.n == CALIBRATION_STUDENTS * len(CALIBRATION_SEEDS)
    assert evaluation.expected_calibration_error <= ECE_TARGET
    # Not one confident grade for everyone: the primary grades differ between students and
    # confidence tracks the hit rate.
    assert evaluation.reliability_table["n"].gt(0).sum() >= 3
    assert pooled_projection.grades["primary_grade"].nunique() >= 5
    assert abs(evaluation.mean_confidence - evaluation.hit_rate) <= 0.05
    assert evaluation.exact_agreement >= evaluation.majority_baseline + 0.1
