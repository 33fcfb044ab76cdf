"""Unit tests of cjlib.projection on hand-built score tables (no BT fit needed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import cjlib.errors
import cjlib.grades
from cjlib.errors import UsageError
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import (
    GRADE_SCALES,
    HIGH_CONFIDENCE,
    MID_CONFIDENCE,
    AnchorCheck,
    GradeScale,
    Projection,
    ProjectionUnavailable,
    evaluate_projection,
    project_grades,
    register_grade_scale,
)

LEGACY = "eng5_np_legacy_9_step"
LABELS = GRADE_SCALES[LEGACY].all_labels  # F, F+, E-, E+, D-, D+, C-, C+, B, A
ANCHOR_IDS = [f"A{i:02d}" for i in range(1, 13)]


def _anchor_thetas(step: float = 1.2) -> dict[str, float]:
    """ENG5 anchors in grade order, ``step`` logits per grade; two of a grade at ±0.1."""
    thetas: dict[str, float] = {}
    seen: dict[str, int] = {}
    for aid, grade in zip(ANCHOR_IDS, ENG5_ANCHOR_GRADES, strict=True):
        offset = 0.0
        if ENG5_ANCHOR_GRADES.count(grade) > 1:
            offset = -0.1 + 0.2 * seen.get(grade, 0)
            seen[grade] = seen.get(grade, 0) + 1
        thetas[aid] = step * (LABELS.index(grade) - 5) + offset
    return thetas


def _scores(
    anchor_theta: dict[str, float] | None = None,
    student_theta: np.ndarray | None = None,
    *,
    anchor_se: float = 0.4,
    student_se: float = 0.6,
) -> pd.DataFrame:
    anchor_theta = _anchor_thetas() if anchor_theta is None else anchor_theta
    if student_theta is None:
        student_theta = np.linspace(-7, 7, 57)
    student_ids = [f"S{i:03d}" for i in range(len(student_theta))]
    return pd.DataFrame(
        {
            "theta": list(anchor_theta.values()) + list(student_theta),
            "se": [anchor_se] * len(anchor_theta) + [student_se] * len(student_theta),
        },
        index=pd.Index(list(anchor_theta) + student_ids, name="essay_id"),
    )


def _anchor_grades(ids=ANCHOR_IDS) -> dict[str, str]:
    grades = dict(zip(ANCHOR_IDS, ENG5_ANCHOR_GRADES, strict=True))
    return {a: grades[a] for a in ids}


def _project(scores=None, anchors=None, **kwargs) -> Projection:
    scores = _scores() if scores is None else scores
    anchors = _anchor_grades() if anchors is None else anchors
    return project_grades(scores, anchors, scale=LEGACY, **kwargs)


# --- API ---------------------------------------------------------------------------------


def test_reexports_are_the_objects_of_grades_and_errors():
    assert GRADE_SCALES is cjlib.grades.GRADE_SCALES
    assert GradeScale is cjlib.grades.GradeScale
    assert register_grade_scale is cjlib.grades.register_grade_scale
    assert ProjectionUnavailable is cjlib.errors.ProjectionUnavailable


def test_grades_table_has_documented_columns_for_students_only():
    projection = _project()
    grades = projection.grades
    assert list(grades.columns) == [
        "primary_grade",
        "expected_grade_index",
        "confidence_score",
        "confidence_label",
        *LABELS,
    ]
    assert set(grades.index) == {f"S{i:03d}" for i in range(57)}
    assert not set(grades.index) & set(ANCHOR_IDS)
    assert list(projection.calibration.index) == list(LABELS)
    for column in (
        "centre",
        "lower",
        "upper",
        "n_anchors",
        "boundary_se",
        "interpolated",
        "extrapolated",
        "pooled",
    ):
        assert column in projection.calibration.columns
    assert projection.scale is GRADE_SCALES[LEGACY]
    assert dict(projection.anchor_grades) == _anchor_grades()
    assert isinstance(projection.anchor_check, AnchorCheck)


def test_projection_is_frozen():
    projection = _project()
    with pytest.raises(AttributeError):
        projection.grades = None  # type: ignore[misc]


def test_scale_may_be_a_name_or_a_grade_scale_object():
    scores = pd.DataFrame(
        {"theta": [-1.0, 0.0, 1.0, -0.5, 0.7], "se": [0.3] * 5},
        index=["a1", "a2", "a3", "s1", "s2"],
    )
    anchors = {"a1": "E", "a2": "C", "a3": "A"}
    by_name = project_grades(scores, anchors, scale="swedish_6")
    by_object = project_grades(scores, anchors, scale=GRADE_SCALES["swedish_6"])
    pd.testing.assert_frame_equal(by_name.grades, by_object.grades)
    # An unregistered scale works too; its labels name the probability columns.
    tiny = GradeScale(name="test_projection_tiny", grades=("lo", "mid", "hi"))
    custom = project_grades(scores, {"a1": "lo", "a2": "mid", "a3": "hi"}, scale=tiny)
    assert list(custom.grades.columns[4:]) == ["lo", "mid", "hi"]
    assert custom.calibration["n_anchors"].tolist() == [1, 1, 1]


# --- probabilities -----------------------------------------------------------------------


@pytest.mark.parametrize("population_prior", [True, False])
def test_probabilities_sum_to_one_and_are_all_positive(population_prior):
    grades = _project(population_prior=population_prior).grades
    probs = grades[list(LABELS)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs > 0).all()


def test_far_out_students_are_not_one_hot():
    scores = _scores(student_theta=np.array([-60.0, 0.0, 60.0]), student_se=0.05)
    grades = _project(scores, population_prior=False).grades
    probs = grades[list(LABELS)].to_numpy()
    assert (probs > 0).all()
    assert (probs.max(axis=1) < 1).all()
    assert list(grades["primary_grade"]) == ["F", "D+", "A"]


def test_primary_grade_and_confidence_follow_the_probabilities():
    grades = _project().grades
    probs = grades[list(LABELS)]
    assert (grades["primary_grade"] == probs.idxmax(axis=1)).all()
    np.testing.assert_allclose(grades["confidence_score"], probs.max(axis=1))
    expected = probs.to_numpy() @ np.arange(len(LABELS))
    np.testing.assert_allclose(grades["expected_grade_index"], expected)


def test_confidence_labels_use_the_documented_thresholds():
    assert (HIGH_CONFIDENCE, MID_CONFIDENCE) == (0.7, 0.4)
    # Precise students at grade centres (HIGH) and imprecise ones on boundaries (LOW).
    centres = 1.2 * (np.arange(10) - 5)
    theta = np.r_[centres[2:8], (centres[2:8] + centres[3:9]) / 2]
    scores = _scores(student_theta=theta, anchor_se=0.05)
    scores.loc[scores.index[12:18], "se"] = 0.02
    scores.loc[scores.index[18:], "se"] = 1.5
    grades = _project(scores, population_prior=False).grades
    conf = grades["confidence_score"]
    expected = np.where(conf >= 0.7, "HIGH", np.where(conf >= 0.4, "MID", "LOW"))
    assert list(grades["confidence_label"]) == list(expected)
    assert {"HIGH", "LOW"} <= set(grades["confidence_label"])


@pytest.mark.parametrize("population_prior", [True, False])
def test_probabilities_change_smoothly_with_theta(population_prior):
    # Neighbouring students 0.001 logit apart: each P(g) is a difference of two normal CDFs
    # in θ with SD ≥ se·√λ and slope ≤ λ, so |ΔP| ≤ 2·φ(0)·Δθ / se (small slack for the
    # renormalisation).
    step, se = 0.001, 0.6
    theta = np.arange(-7, 7, step)
    grades = _project(
        _scores(student_theta=theta, student_se=se), population_prior=population_prior
    )
    probs = grades.grades[list(LABELS)].to_numpy()
    bound = 2 * (1 / math.sqrt(2 * math.pi)) * step / se * 1.01
    assert np.abs(np.diff(probs, axis=0)).max() <= bound


@pytest.mark.parametrize("population_prior", [True, False])
def test_higher_theta_never_lowers_the_expected_grade(population_prior):
    theta = np.linspace(-9, 9, 400)
    grades = _project(_scores(student_theta=theta), population_prior=population_prior).grades
    assert (np.diff(grades["expected_grade_index"].to_numpy()) >= -1e-12).all()
    assert grades["expected_grade_index"].iloc[-1] - grades["expected_grade_index"].iloc[0] > 7


def test_projection_is_shift_invariant():
    base = _project()
    shifted_scores = _scores()
    shifted_scores["theta"] += 3.7
    shifted = _project(shifted_scores)
    pd.testing.assert_frame_equal(
        base.grades.drop(columns="confidence_label"),
        shifted.grades.drop(columns="confidence_label"),
        atol=1e-9,
        check_exact=False,
    )
    np.testing.assert_allclose(
        shifted.calibration["centre"], base.calibration["centre"] + 3.7, atol=1e-9
    )


def test_larger_student_se_spreads_probability():
    theta = np.array([1.2 * (LABELS.index("D+") - 5)])  # the D+ centre
    narrow = _project(_scores(student_theta=theta, student_se=0.2), population_prior=False)
    wide = _project(_scores(student_theta=theta, student_se=1.5), population_prior=False)
    assert narrow.grades["D+"].iloc[0] > wide.grades["D+"].iloc[0]
    assert wide.grades["A"].iloc[0] > narrow.grades["A"].iloc[0]


def test_uncertain_boundaries_lower_the_confidence():
    theta = np.array([1.2 * (LABELS.index("D+") - 5)])
    scores = _scores(student_theta=theta, student_se=0.3, anchor_se=0.05)
    sure = _project(scores, population_prior=False).grades
    scores.loc[ANCHOR_IDS, "se"] = 1.0
    unsure = _project(scores, population_prior=False).grades
    assert sure["primary_grade"].iloc[0] == unsure["primary_grade"].iloc[0] == "D+"
    assert unsure["confidence_score"].iloc[0] < sure["confidence_score"].iloc[0] - 0.1


def test_population_prior_pulls_extreme_students_towards_the_batch():
    theta = np.r_[np.linspace(-3, 3, 40), 6.0]
    scores = _scores(student_theta=theta, student_se=1.0)
    with_prior = _project(scores).grades["expected_grade_index"].iloc[-1]
    without = _project(scores, population_prior=False).grades["expected_grade_index"].iloc[-1]
    assert with_prior < without


def test_population_prior_is_skipped_for_small_batches():
    scores = _scores(student_theta=np.array([-2.0, 0.5, 4.0]))
    pd.testing.assert_frame_equal(
        _project(scores).grades, _project(scores, population_prior=False).grades
    )


def test_inputs_are_not_modified():
    scores = _scores()
    anchors = pd.Series(_anchor_grades())
    scores_before, anchors_before = scores.copy(), anchors.copy()
    _project(scores, anchors)
    pd.testing.assert_frame_equal(scores, scores_before)
    pd.testing.assert_series_equal(anchors, anchors_before)


# --- calibration -------------------------------------------------------------------------


def test_calibration_is_identical_under_permuted_input():
    base = _project()
    rng = np.random.default_rng(7)
    for _ in range(3):
        scores = _scores().sample(frac=1.0, random_state=rng.integers(1_000_000))
        anchors = _anchor_grades(list(rng.permutation(ANCHOR_IDS)))
        permuted = _project(scores, anchors)
        pd.testing.assert_frame_equal(permuted.calibration, base.calibration, check_exact=True)
        pd.testing.assert_frame_equal(
            permuted.grades.loc[base.grades.index], base.grades, check_exact=True
        )
        assert permuted.anchor_check.kendall_tau_b == base.anchor_check.kendall_tau_b
        pd.testing.assert_frame_equal(
            permuted.anchor_check.inversions, base.anchor_check.inversions
        )


def test_centres_are_midpoints_of_their_boundaries_and_ends_are_open():
    cal = _project().calibration
    inner = cal.iloc[1:-1]
    np.testing.assert_allclose(inner["centre"], (inner["lower"] + inner["upper"]) / 2)
    np.testing.assert_array_equal(cal["lower"].to_numpy()[1:], cal["upper"].to_numpy()[:-1])
    assert cal["lower"].iloc[0] == -np.inf
    assert cal["upper"].iloc[-1] == np.inf
    # The open-ended grades' centres sit half a typical width beyond their boundary.
    assert cal["upper"].iloc[0] - cal["centre"].iloc[0] == pytest.approx(0.6, abs=0.05)
    assert cal["centre"].iloc[-1] - cal["lower"].iloc[-1] == pytest.approx(0.6, abs=0.05)


def test_well_ordered_anchors_place_centres_near_their_grades():
    # Anchors sit 1.2 logits apart with small SE: centres follow them within 0.1.
    cal = _project(_scores(anchor_se=0.05)).calibration
    for grade in ENG5_ANCHOR_GRADES:
        assert abs(cal.loc[grade, "centre"] - 1.2 * (LABELS.index(grade) - 5)) < 0.1
    assert not cal["pooled"].any()
    assert cal.loc[list(ENG5_ANCHOR_GRADES), "n_anchors"].to_dict() == {
        g: ENG5_ANCHOR_GRADES.count(g) for g in ENG5_ANCHOR_GRADES
    }


def test_below_lowest_label_is_extrapolated_below_the_lowest_anchor_grade():
    cal = _project(_scores(anchor_se=0.05)).calibration
    assert cal.loc["F", "extrapolated"] and cal.loc["F", "n_anchors"] == 0
    assert not cal.loc["F+", "extrapolated"]
    # The lowest anchored grade's lower boundary is half a typical step below its centre.
    assert cal.loc["F+", "lower"] == pytest.approx(cal.loc["F+", "centre"] - 0.6, abs=0.1)
    assert cal.loc["F", "upper"] == cal.loc["F+", "lower"]


def test_grades_above_the_highest_anchor_are_extrapolated():
    anchors = {a: g for a, g in _anchor_grades().items() if g not in ("B", "A")}
    scores = _scores(anchor_se=0.05).drop(index=[a for a in ANCHOR_IDS if a not in anchors])
    cal = _project(scores, anchors).calibration
    assert cal.loc["B", "extrapolated"] and cal.loc["A", "extrapolated"]
    step = cal.loc["C+", "centre"] - cal.loc["C-", "centre"]
    assert cal.loc["B", "centre"] == pytest.approx(cal.loc["C+", "centre"] + step, abs=0.05)
    assert cal.loc["A", "centre"] == pytest.approx(cal.loc["C+", "centre"] + 2 * step, abs=0.05)
    # Extrapolation is an assumption: its boundaries are less certain than anchored ones.
    assert cal.loc["A", "lower_se"] > cal.loc["B", "lower_se"] > cal.loc["C+", "lower_se"]


def test_grade_without_anchor_is_interpolated_on_the_theta_scale():
    # Unequal spacing and precise anchors, so the interpolation is not just the trend line.
    thetas = {
        "A01": -6.1, "A02": -5.9, "A03": -4.0, "A04": -3.5, "A05": -1.0, "A06": 0.0,
        "A07": 0.5, "A08": 2.5, "A09": 3.9, "A10": 4.1, "A11": 6.9, "A12": 7.1,
    }  # fmt: skip
    full_scores = _scores(thetas, anchor_se=0.05)
    d_plus = "A06"
    anchors = {a: g for a, g in _anchor_grades().items() if a != d_plus}
    full = _project(full_scores).calibration
    dropped = _project(full_scores.drop(index=d_plus), anchors).calibration
    row = dropped.loc["D+"]
    assert row["interpolated"] and not row["extrapolated"] and row["n_anchors"] == 0
    # Between its anchored neighbours, near their midpoint (not exactly: the widths of D- and
    # C- are uncertain too, and the random walk of widths shares the gap among all three).
    low, high = dropped.loc["D-", "centre"], dropped.loc["C-", "centre"]
    assert low < row["centre"] < high
    assert row["centre"] == pytest.approx((low + high) / 2, abs=0.1 * (high - low))
    assert not dropped.drop(index="D+")["interpolated"].any()
    # Its boundaries are less certain than when D+ had an anchor.
    assert dropped.loc["D+", "lower_se"] > full.loc["D+", "lower_se"]
    assert dropped.loc["D+", "upper_se"] > full.loc["D+", "upper_se"]


def test_centres_stay_ordered_with_positive_widths_when_anchors_are_inverted():
    thetas = _anchor_thetas()
    thetas["A03"], thetas["A07"] = thetas["A07"], thetas["A03"]  # E- and C- swapped
    cal = _project(_scores(thetas, anchor_se=0.1)).calibration
    assert (np.diff(cal["centre"].to_numpy()) > 0).all()
    widths = (cal["upper"] - cal["lower"]).to_numpy()[1:-1]
    assert (widths > 0).all()
    assert widths.min() >= 0.2 * np.median(widths)
    assert cal.loc[["E-", "C-"], "pooled"].all()
    # The anchors disagree with their grades by up to 4.8 logits: the boundaries between them
    # must show that, not the anchors' SE of 0.1 ...
    assert (cal.loc[cal["pooled"], "centre_se"] > 0.5).all()
    # ... and more so than where the anchors are in order.
    in_order = _project(_scores(anchor_se=0.1)).calibration
    assert (in_order["centre_se"] < 0.15).all()
    # The variance components the data asked for are reported.
    population = _project(_scores(thetas, anchor_se=0.1)).population
    assert population.anchor_excess_sd > 0.3 and population.grade_width_sd > 0.5


def test_noisier_anchors_give_less_certain_boundaries():
    precise = _project(_scores(anchor_se=0.2)).calibration
    noisy = _project(_scores(anchor_se=0.8)).calibration
    finite = precise["lower"] > -np.inf
    assert (noisy.loc[finite, "lower_se"] > precise.loc[finite, "lower_se"]).all()
    assert (precise.loc[finite, "lower_se"] > 0).all()


def test_boundary_se_is_the_larger_of_the_two_boundaries():
    cal = _project().calibration
    expected = np.fmax(cal["lower_se"], cal["upper_se"])
    np.testing.assert_allclose(cal["boundary_se"], expected)
    assert np.isnan(cal["lower_se"].iloc[0]) and np.isnan(cal["upper_se"].iloc[-1])


# --- anchor check ------------------------------------------------------------------------


def test_inverted_anchor_pair_is_reported():
    thetas = _anchor_thetas()
    thetas["A03"] = 1.2 * (LABELS.index("C-") - 5) + 0.5  # an E- anchor above the C- anchor
    check = _project(_scores(thetas)).anchor_check
    inv = check.inversions
    pair = inv[(inv["anchor_low"] == "A03") & (inv["anchor_high"] == "A07")]
    assert len(pair) == 1
    assert pair["grade_low"].iloc[0] == "E-" and pair["grade_high"].iloc[0] == "C-"
    assert pair["theta_low"].iloc[0] == thetas["A03"]
    assert pair["theta_high"].iloc[0] == thetas["A07"]
    # Exactly the contradicting pairs: lower grade, strictly higher θ (brute force).
    grades = _anchor_grades()
    expected = {
        (a, b)
        for a in ANCHOR_IDS
        for b in ANCHOR_IDS
        if LABELS.index(grades[a]) < LABELS.index(grades[b]) and thetas[a] > thetas[b]
    }
    assert set(zip(inv["anchor_low"], inv["anchor_high"], strict=True)) == expected
    assert (inv["theta_gap"] > 0).all()
    assert check.kendall_tau_b < 1 and check.spearman_rho < 1


def test_equal_theta_is_not_an_inversion():
    thetas = _anchor_thetas()
    thetas["A03"] = thetas["A04"]  # E- and E+ anchors tie
    check = _project(_scores(thetas)).anchor_check
    assert check.inversions.empty


def test_consistent_anchors_have_no_inversions():
    check = _project().anchor_check
    assert check.inversions.empty
    assert list(check.inversions.columns) == [
        "anchor_low",
        "grade_low",
        "theta_low",
        "anchor_high",
        "grade_high",
        "theta_high",
        "theta_gap",
    ]
    # 66 pairs, 3 tied in grade (F+, B, A pairs), the other 63 concordant:
    # τ_b = 63 / √(63 · 66) < 1 although nothing is out of order.
    assert check.kendall_tau_b == pytest.approx(math.sqrt(63 / 66))
    assert 0.99 < check.spearman_rho < 1


def test_rank_correlations_match_hand_computation_with_ties():
    # Grade indices x = [1, 1, 2, 3, 3], θ y = [0.0, 0.5, 0.2, 0.4, 1.0].
    # Pairs: concordant 6 (13, 14, 15, 25, 34, 35), discordant 2 (23, 24), tied in x 2 (12, 45)
    # → τ_b = (6 − 2) / √((10 − 2)(10 − 0)) = 4 / √80.
    # Ranks x = [1.5, 1.5, 3, 4.5, 4.5], y = [1, 4, 2, 3, 5] → ρ = 4.5 / √(9 · 10).
    thetas = {"a1": 0.0, "a2": 0.5, "a3": 0.2, "a4": 0.4, "a5": 1.0}
    grades = {"a1": "F+", "a2": "F+", "a3": "E-", "a4": "E+", "a5": "E+"}
    scores = _scores(thetas, np.array([0.0, 0.3]))
    for seed, order in enumerate((list(thetas), ["a5", "a3", "a1", "a4", "a2"])):
        check = project_grades(
            scores.sample(frac=1, random_state=seed),
            {a: grades[a] for a in order},
            scale=LEGACY,
        ).anchor_check
        assert check.kendall_tau_b == pytest.approx(4 / math.sqrt(80))
        assert check.spearman_rho == pytest.approx(4.5 / math.sqrt(90))
        inv = check.inversions
        pairs = set(zip(inv["anchor_low"], inv["anchor_high"], strict=True))
        assert pairs == {("a2", "a3"), ("a2", "a4")}


def test_zero_win_and_zero_loss_anchors_are_listed_when_counts_are_given():
    scores = _scores()
    assert _project(scores).anchor_check.zero_win_anchors == []
    assert _project(scores).anchor_check.zero_loss_anchors == []
    scores["wins"] = 3
    scores["losses"] = 4
    scores.loc[["A01", "A02"], "wins"] = 0
    scores.loc["A12", "losses"] = 0
    scores.loc["S000", "wins"] = 0  # a student: not an anchor problem
    check = _project(scores).anchor_check
    assert check.zero_win_anchors == ["A01", "A02"]
    assert check.zero_loss_anchors == ["A12"]


# --- refusals ----------------------------------------------------------------------------


def _reason(scores, anchors, scale=LEGACY) -> str:
    with pytest.raises(ProjectionUnavailable) as info:
        project_grades(scores, anchors, scale=scale)
    return info.value.reason


def test_refuses_unknown_scale():
    assert _reason(_scores(), _anchor_grades(), scale="no_such_scale") == "unknown_scale"


def test_refuses_unknown_anchor_grade():
    anchors = _anchor_grades() | {"A05": "Z"}
    assert _reason(_scores(), anchors) == "unknown_anchor_grade"


def test_refuses_anchors_missing_from_scores_and_lists_them():
    scores = _scores().drop(index=["A04", "A09"])
    with pytest.raises(ProjectionUnavailable) as info:
        project_grades(scores, _anchor_grades(), scale=LEGACY)
    assert info.value.reason == "anchors_missing_from_scores"
    assert "A04" in str(info.value) and "A09" in str(info.value)


def test_refuses_without_anchors():
    assert _reason(_scores(), {}) == "no_anchors"
    assert _reason(_scores(), pd.Series(dtype=object)) == "no_anchors"


def test_refuses_a_single_anchor_grade():
    anchors = {"A01": "F+", "A02": "F+"}
    assert _reason(_scores(), anchors) == "too_few_anchor_grades"


def test_refuses_without_students():
    scores = _scores().loc[ANCHOR_IDS]
    assert _reason(scores, _anchor_grades()) == "no_students"


@pytest.mark.parametrize(
    ("column", "value"),
    [("se", np.nan), ("se", 0.0), ("se", -0.3), ("theta", np.nan), ("theta", np.inf)],
)
def test_refuses_invalid_scores(column, value):
    scores = _scores()
    scores.loc["S010", column] = value
    assert _reason(scores, _anchor_grades()) == "invalid_scores"


def test_refuses_scores_without_se_column():
    assert _reason(_scores().drop(columns="se"), _anchor_grades()) == "invalid_scores"


def test_anchor_grades_may_be_a_series():
    series = pd.Series(_anchor_grades())
    pd.testing.assert_frame_equal(
        project_grades(_scores(), series, scale=LEGACY).grades, _project().grades
    )


# --- evaluation --------------------------------------------------------------------------

TINY = GradeScale(name="test_projection_eval", grades=("L", "M", "H"))


def _hand_projection(probs: list[list[float]]) -> Projection:
    p = pd.DataFrame(
        probs, columns=list(TINY.all_labels), index=[f"s{i}" for i in range(len(probs))]
    )
    primary = p.idxmax(axis=1)
    grades = pd.DataFrame(
        {
            "primary_grade": primary,
            "expected_grade_index": p.to_numpy() @ np.arange(3),
            "confidence_score": p.max(axis=1),
            "confidence_label": "LOW",
        }
    ).join(p)
    check = AnchorCheck(pd.DataFrame(), 1.0, 1.0, [], [])
    return Projection(TINY, pd.Series({"a": "L", "b": "H"}), grades, pd.DataFrame(), check)


def test_evaluation_matches_hand_computation():
    projection = _hand_projection(
        [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.25, 0.55], [0.05, 0.2, 0.75]]
    )
    ev = evaluate_projection(projection, {"s0": "L", "s1": "H", "s2": "H", "s3": "M"})
    # primary L, M, H, H against truth L, H, H, M
    assert ev.n == 4
    assert ev.exact_agreement == pytest.approx(0.5)
    assert ev.hit_rate == pytest.approx(0.5)
    assert ev.adjacent_agreement == pytest.approx(1.0)
    # Confusion (truth × pred): (L,L), (H,M), (H,H), (M,H); margins [1, 1, 2] both ways.
    # Σ w·O = 0.25 + 0.25; Σ w·E = 2·(0.25·0.25 + 1·0.5 + 0.25·0.5) = 1.375.
    assert ev.quadratic_weighted_kappa == pytest.approx(1 - 0.5 / 1.375)
    # Brier per essay: 0.14, 0.86, 0.305, 1.205.
    assert ev.brier_score == pytest.approx((0.14 + 0.86 + 0.305 + 1.205) / 4)
    assert ev.log_loss == pytest.approx(
        -(math.log(0.7) + math.log(0.3) + math.log(0.55) + math.log(0.2)) / 4
    )
    # Bins: 7 ← {0.7 hit, 0.75 miss}, 6 ← {0.6 miss}, 5 ← {0.55 hit}.
    assert ev.expected_calibration_error == pytest.approx(
        2 / 4 * abs(0.5 - 0.725) + 1 / 4 * 0.6 + 1 / 4 * 0.45
    )
    assert ev.majority_baseline == pytest.approx(0.5)
    assert ev.mean_true_grade_probability == pytest.approx((0.7 + 0.3 + 0.55 + 0.2) / 4)
    assert ev.mean_confidence == pytest.approx((0.7 + 0.6 + 0.55 + 0.75) / 4)
    # Expected index [0.4, 1.2, 1.35, 1.7] vs truth [0, 2, 2, 1]: ranks [1, 2, 3, 4] and
    # [1, 3.5, 3.5, 2] → ρ = 1.5 / √(5 · 4.5).
    assert ev.spearman_rho == pytest.approx(1.5 / math.sqrt(22.5))
    table = ev.reliability_table.set_index("bin")
    assert list(ev.reliability_table.columns) == [
        "bin",
        "lower",
        "upper",
        "n",
        "mean_confidence",
        "observed_accuracy",
    ]
    assert table["n"].tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 0, 0]
    assert table.loc[7, "mean_confidence"] == pytest.approx(0.725)
    assert table.loc[7, "observed_accuracy"] == pytest.approx(0.5)
    assert table.loc[7, ["lower", "upper"]].tolist() == pytest.approx([0.7, 0.8])
    assert np.isnan(table.loc[0, "observed_accuracy"])


def test_perfect_projection_has_kappa_one_and_zero_ece_at_full_confidence():
    projection = _hand_projection([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    ev = evaluate_projection(projection, pd.Series({"s0": "L", "s1": "H", "s2": "M"}))
    assert ev.quadratic_weighted_kappa == pytest.approx(1.0)
    assert ev.expected_calibration_error == pytest.approx(0.0)
    assert ev.brier_score == pytest.approx(0.0)
    assert ev.reliability_table["n"].iloc[-1] == 3  # confidence 1.0 falls in the last bin


def test_adjacent_agreement_counts_one_step_misses_only():
    projection = _hand_projection([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    ev = evaluate_projection(projection, {"s0": "H", "s1": "H", "s2": "H"})
    assert ev.exact_agreement == pytest.approx(1 / 3)
    assert ev.adjacent_agreement == pytest.approx(2 / 3)
    assert ev.majority_baseline == pytest.approx(1.0)
    assert np.isnan(ev.spearman_rho)  # constant truth


def test_log_loss_clips_zero_probabilities():
    projection = _hand_projection([[1.0, 0.0, 0.0]])
    ev = evaluate_projection(projection, {"s0": "H"})
    assert ev.log_loss == pytest.approx(-math.log(1e-15))
    assert ev.brier_score == pytest.approx(2.0)


def test_evaluation_ignores_anchors_and_students_without_truth():
    projection = _project()
    truth = {"S000": "F", "S056": "A", "A01": "F+"}
    ev = evaluate_projection(projection, truth)
    assert ev.n == 2
    assert ev.exact_agreement == pytest.approx(1.0)


def test_evaluation_rejects_unknown_labels_and_essays():
    projection = _project()
    with pytest.raises(UsageError, match="not on scale"):
        evaluate_projection(projection, {"S000": "Z"})
    with pytest.raises(UsageError, match="not in the projection"):
        evaluate_projection(projection, {"nobody": "F"})
    with pytest.raises(UsageError, match="no projected student"):
        evaluate_projection(projection, {})


def test_wrong_argument_types_get_clear_messages():
    scores = pd.DataFrame({"theta": [0.0, 1.0, -1.0], "se": [0.5, 0.5, 0.5]}, index=["a", "b", "s"])
    with pytest.raises(TypeError, match="anchor_grades must be a mapping or Series"):
        project_grades(scores, ["a", "b"], scale="swedish_6")
    with pytest.raises(TypeError, match="scores must be a DataFrame"):
        project_grades(scores.to_dict(), {"a": "E", "b": "C"}, scale="swedish_6")
    with pytest.raises(ProjectionUnavailable, match="unknown grade scale") as info:
        project_grades(scores, {"a": "E", "b": "C"}, scale=["not", "hashable"])
    assert info.value.reason == "unknown_scale"
