"""Grade projection: anchor essays with fixed grades place grade intervals on the BT θ scale.

Data flow: Bradley–Terry scores (``theta``, ``se`` per essay, from :mod:`cjlib.scoring`) and the
anchors' expert grades go in; a :class:`Projection` comes out, with a probability for every
label of the grade scale for each student essay, the calibration it was derived from, and a
check of how well the anchors agree with their own grades. :func:`evaluate_projection` scores a
projection against known true grades (simulation or expert re-marking).

Method (details and formulas in ``docs/projection.md``)
-------------------------------------------------------
1. Grade edges ``e_0 < … < e_K`` (label j spans ``e_j``–``e_{j+1}``; ``e_0``, ``e_K`` virtual):
   widths ``ω + d_j`` with ``d_j ~ N(0, (rω)²)``, a random walk around equal spacing; an
   anchor of grade g at ``(e_g + e_{g+1})/2`` plus a position offset ``N(0, (φω)²)`` (half of it
   shared within the grade) plus its error (the anchors' mean se², equal weights). The trend
   ``(e_0, ω)`` has a flat prior; given (r, φ) the edges' posterior is the universal-kriging
   mean and covariance. (r, φ) get a uniform prior on a grid up to ``WIDTH_SD_MAX`` and
   ``POSITION_SD_MAX``, weighted by the restricted likelihood, and the edges' posterior is the
   mixture over the grid: variance components integrated, not plugged in.
2. Edge means made monotone with gaps of at least ``MIN_WIDTH_FRACTION`` of the typical width
   (isotonic regression of ``e_j − d·j``, plus ``d·j``); anchored grades next to an edge the
   constraint moved are flagged ``pooled``, and such edges carry their block's spread.
3. Centres are midpoints of their grade's edges, boundaries the inner edges with their
   posterior SDs; the lowest label extends to −∞ and the highest to +∞. Unanchored grades are
   flagged ``interpolated`` (between anchored ones) or ``extrapolated``.
4. The students' population N(μ, S²) is fitted by restricted maximum likelihood over the
   students, θ̂_i ~ N(μ, S² + s̄²) with s̄² their mean se², and S is kept as a posterior over a
   grid (flat prior on S). Below ``MIN_RELIABILITY`` (reliability E[S²]/(E[S²] + s̄²)) the
   projection is refused (``too_little_information``).
5. The students' ability density g is estimated by penalised marginal likelihood (a log-spline
   whose penalty's null space is the normal family: Efron's g-modelling), so skewed or
   light-tailed cohorts are not forced into a normal. Each student's posterior is
   ``∝ g(x)·φ((θ̂ − x)/se)`` on g's grid (``population_prior``), and P(g) is its mass
   between the uncertain boundaries, ``Φ((u_g − x)/σ_u) − Φ((l_g − x)/σ_l)`` averaged over
   the posterior, floored at ``PROBABILITY_FLOOR`` and renormalised. Projected below
   ``MIN_RELIABILITY`` (on request) the posteriors are the normal ones, N(θ*, se*²) averaged
   over S's posterior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.interpolate import BSpline

from cjlib.errors import ProjectionUnavailable, UsageError
from cjlib.grades import GRADE_SCALES, GradeScale, get_grade_scale, register_grade_scale

__all__ = [
    "COMPONENT_GRID_POINTS",
    "DENSITY_BASIS",
    "DENSITY_FIT_MAX",
    "DENSITY_GRID_POINTS",
    "DENSITY_PENALTY",
    "ECE_BINS",
    "GRADE_SCALES",
    "HIGH_CONFIDENCE",
    "LOG_LOSS_CLIP",
    "MID_CONFIDENCE",
    "MIN_RELIABILITY",
    "MIN_SPACING",
    "MIN_WIDTH_FRACTION",
    "POPULATION_GRID_POINTS",
    "POSITION_SD_MAX",
    "PRIOR_MIN_STUDENTS",
    "PROBABILITY_FLOOR",
    "WIDTH_SD_MAX",
    "AnchorCheck",
    "GradeScale",
    "PopulationFit",
    "Projection",
    "ProjectionEvaluation",
    "ProjectionUnavailable",
    "evaluate_projection",
    "project_grades",
    "register_grade_scale",
    "scored_anchors",
]

#: ``confidence_score`` at or above this is labelled ``HIGH``.
HIGH_CONFIDENCE = 0.7
#: ``confidence_score`` at or above this (and below :data:`HIGH_CONFIDENCE`) is ``MID``.
MID_CONFIDENCE = 0.4
#: Minimum distance between adjacent grade centres, as a fraction of the typical spacing per
#: grade step (range of the isotonic centres over the anchored grade steps).
MIN_WIDTH_FRACTION = 0.25
#: Floor (logits) of the typical spacing, so fully inverted anchors still give positive widths.
MIN_SPACING = 0.1
#: Largest SD of the grade widths, as a fraction of the typical width ω, in the uniform prior
#: over which the calibration integrates (step 1 of ``docs/projection.md``): widths may vary
#: from equal (0) to as much as the typical width itself.
WIDTH_SD_MAX = 1.0
#: Largest SD of an anchor's position around its grade's centre, as a fraction of ω, in the
#: same prior: from typical anchors at the centre (0) past anchors anywhere in their grade
#: (uniform: 1/√12 ≈ 0.29) to 0.5.
POSITION_SD_MAX = 0.5
#: Grid points over (width SD, position SD) at which the calibration is computed and weighted.
COMPONENT_GRID_POINTS = (21, 11)
#: Fewest students for which ``population_prior`` fits a prior; smaller batches use none.
PRIOR_MIN_STUDENTS = 10
#: Refuse to project (``too_little_information``) when the students' estimated reliability
#: E[S²]/(E[S²] + mean se²) is below this. Read off the study in ``docs/projection.md`` (both
#: truth generators, 48 batches each): at 5 comparisons per essay (Firth) reliability was at
#: most 0.66 and the projections, made anyway, were overconfident (ECE up to 0.10) and barely
#: beat guessing the most common grade; at 10 it was 0.70 or more and they were calibrated.
MIN_RELIABILITY = 0.7
#: Grid points over the population SD S on which its restricted likelihood is evaluated.
POPULATION_GRID_POINTS = 61
#: Cubic B-spline basis functions of the log-density of the students' abilities (step 4 of
#: ``docs/projection.md``), equally spaced over the range of their θ.
DENSITY_BASIS = 16
#: Weight of the penalty on third differences of the log-density's spline coefficients. Its
#: null space is the quadratic log-densities, i.e. the normal populations: a large value gives
#: the normal prior, a small one follows the data. Weighed against the log-likelihood of all
#: students, so the larger the batch the more its own shape shows. Chosen on development
#: seeds (3, 10 and 30 gave the same calibration within noise; docs/projection.md).
DENSITY_PENALTY = 10.0
#: Points of the grid the density lives on (θ̂ range widened by the mean se on each side).
DENSITY_GRID_POINTS = 160
#: The density is fitted to at most this many students (every k-th by θ̂ above it): its
#: shape is pinned down long before, and the fit stays fast at 100,000 essays.
DENSITY_FIT_MAX = 2000
#: Newton steps of the density fit, and its stop: max |gradient| ≤ this × the students fitted.
_DENSITY_MAX_NEWTON = 100
_DENSITY_GRADIENT_TOL = 1e-8
#: Students per block when posteriors are formed, so memory stays bounded for large batches.
_POSTERIOR_CHUNK = 4096
#: Smallest probability reported for any grade: the model never calls a grade impossible.
PROBABILITY_FLOOR = 1e-12
#: Probabilities are clipped to ``[LOG_LOSS_CLIP, 1]`` before taking logs in the log loss.
LOG_LOSS_CLIP = 1e-15
#: Number of equal-width confidence bins of the expected calibration error.
ECE_BINS = 10


@dataclass(frozen=True)
class AnchorCheck:
    """How well the anchors' θ agree with their expert grades.

    Attributes
    ----------
    inversions : pandas.DataFrame
        One row per pair of anchors whose θ order contradicts their grade order (the lower
        graded anchor has the strictly higher θ). Columns ``anchor_low``, ``grade_low``,
        ``theta_low`` (the anchor with the lower grade), ``anchor_high``, ``grade_high``,
        ``theta_high``, ``theta_gap`` (= ``theta_low − theta_high`` > 0); largest gap first.
    kendall_tau_b : float
        Kendall's τ_b between anchor grade index and θ (ties in either handled by τ_b).
    spearman_rho : float
        Spearman's ρ between anchor grade index and θ (ties get average ranks).
    zero_win_anchors, zero_loss_anchors : list
        Anchors that never won / never lost (only if ``scores`` has ``wins`` / ``losses``;
        otherwise empty). Their θ rests on a prior or regularisation, not on data.
    """

    inversions: pd.DataFrame
    kendall_tau_b: float
    spearman_rho: float
    zero_win_anchors: list
    zero_loss_anchors: list


@dataclass(frozen=True)
class PopulationFit:
    """The students' population N(μ, S²) on the θ scale, by restricted maximum likelihood.

    Attributes
    ----------
    n_students : int
        Students it was fitted to.
    mean : float
        μ at the REML estimate of S.
    sd : float
        REML estimate of S (0 when the θ spread is within the SEs).
    sd_low, sd_high : float
        2.5% and 97.5% points of S's posterior on the grid (flat prior on S).
    reliability : float
        ``E[S²] / (E[S²] + mean se²)`` with E over S's posterior: the share of the students'
        θ spread that is not measurement error. Compared with ``MIN_RELIABILITY``.
    anchor_excess_sd : float
        ψ = φω, the SD of an anchor's position around its grade's centre, at the most likely
        point of the calibration's grid of variance components (0: typical anchors).
    grade_width_sd : float
        rω, the SD of the grade widths at that point (0: equally wide grades).
    """

    n_students: int
    mean: float
    sd: float
    sd_low: float
    sd_high: float
    reliability: float
    anchor_excess_sd: float
    grade_width_sd: float = float("nan")


@dataclass(frozen=True)
class Projection:
    """Projected grades of the student essays of one BT fit.

    Attributes
    ----------
    scale : GradeScale
        The grade scale; ``scale.all_labels`` orders every per-label column and row.
    anchor_grades : pandas.Series
        Anchor essay id → grade label, as used.
    grades : pandas.DataFrame
        Indexed by student essay id (order of ``scores``). Columns ``primary_grade`` (most
        probable label; the lower one on an exact tie), ``expected_grade_index``
        (Σ_g P(g)·index(g)), ``confidence_score`` (P of the primary grade), ``confidence_label``
        (``HIGH`` ≥ 0.7, ``MID`` ≥ 0.4, else ``LOW``), then one probability column per label in
        ``scale.all_labels`` order, named by the label.
    calibration : pandas.DataFrame
        Indexed by label (``scale.all_labels`` order, index name ``grade``). Columns ``centre``,
        ``centre_se``, ``lower``, ``upper`` (−∞ / +∞ at the ends), ``lower_se``, ``upper_se``
        (NaN for infinite boundaries), ``boundary_se`` (the larger of the two), ``n_anchors``,
        and boolean flags ``interpolated``, ``extrapolated`` (unanchored grades inside /
        outside the anchored range) and ``pooled`` (anchored grade whose centre was set by the
        order or minimum-width constraint together with its neighbours).
    anchor_check : AnchorCheck
        Inversions and rank correlations of anchor θ against anchor grades.
    population : PopulationFit or None
        The students' population fit and reliability; None for batches under
        ``PRIOR_MIN_STUDENTS`` students.
    """

    scale: GradeScale
    anchor_grades: pd.Series
    grades: pd.DataFrame
    calibration: pd.DataFrame
    anchor_check: AnchorCheck
    population: PopulationFit | None = None


@dataclass(frozen=True)
class ProjectionEvaluation:
    """Accuracy and calibration of a projection against true grades.

    Attributes
    ----------
    n : int
        Student essays evaluated.
    exact_agreement : float
        Share with ``primary_grade`` equal to the true grade.
    adjacent_agreement : float
        Share with ``primary_grade`` at most one label away from the true grade.
    quadratic_weighted_kappa : float
        Cohen's κ with weights (i − j)² / (k − 1)² over the k labels of the scale (NaN when
        undefined: every truth and prediction in one label).
    spearman_rho : float
        Spearman's ρ between ``expected_grade_index`` and the true grade index.
    brier_score : float
        Mean over essays of Σ_g (p_g − 1[g = true])².
    log_loss : float
        Mean of −log p_true, probabilities clipped at ``LOG_LOSS_CLIP``.
    expected_calibration_error : float
        Top-label ECE over ``ECE_BINS`` equal-width confidence bins: Σ_b (n_b/N)·|acc_b − conf_b|.
    majority_baseline : float
        Share of the most common true grade (exact agreement of always guessing it).
    mean_true_grade_probability : float
        Mean probability given to the true grade.
    hit_rate : float
        Observed share of ``primary_grade`` == true grade (equals ``exact_agreement``).
    mean_confidence : float
        Mean ``confidence_score``; a calibrated projection has it close to ``hit_rate``.
    reliability_table : pandas.DataFrame
        One row per confidence bin: ``bin``, ``lower``, ``upper``, ``n``, ``mean_confidence``,
        ``observed_accuracy`` (NaN for empty bins).
    """

    n: int
    exact_agreement: float
    adjacent_agreement: float
    quadratic_weighted_kappa: float
    spearman_rho: float
    brier_score: float
    log_loss: float
    expected_calibration_error: float
    majority_baseline: float
    mean_true_grade_probability: float
    hit_rate: float
    mean_confidence: float
    reliability_table: pd.DataFrame


def _resolve_scale(scale: str | GradeScale) -> GradeScale:
    try:
        return get_grade_scale(scale)
    except UsageError as err:
        raise ProjectionUnavailable("unknown_scale", str(err)) from None


def _as_grade_series(grades: Mapping | pd.Series, what: str) -> pd.Series:
    if not isinstance(grades, Mapping | pd.Series):
        raise TypeError(
            f"{what} must be a mapping or Series of essay id → grade, got {type(grades).__name__}"
        )
    series = (
        grades.copy() if isinstance(grades, pd.Series) else pd.Series(dict(grades), dtype=object)
    )
    if series.index.has_duplicates:
        dup = sorted({str(i) for i in series.index[series.index.duplicated()]})
        raise UsageError(f"{what} repeats essay ids: {', '.join(dup)}")
    return series


def _check_scores(scores: pd.DataFrame) -> None:
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(
            f"scores must be a DataFrame (BTResult.scores), got {type(scores).__name__}"
        )
    missing = [c for c in ("theta", "se") if c not in scores.columns]
    if missing:
        raise ProjectionUnavailable(
            "invalid_scores", f"scores lack column(s) {missing}; pass the BTResult.scores table"
        )
    if scores.index.has_duplicates:
        dup = sorted({str(i) for i in scores.index[scores.index.duplicated()]})
        raise ProjectionUnavailable("invalid_scores", f"scores repeat essay ids: {', '.join(dup)}")
    theta = pd.to_numeric(scores["theta"], errors="coerce").to_numpy(dtype=float)
    se = pd.to_numeric(scores["se"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(theta) | ~np.isfinite(se) | ~(se > 0)
    if bad.any():
        ids = ", ".join(map(str, scores.index[bad][:10]))
        raise ProjectionUnavailable(
            "invalid_scores",
            f"{int(bad.sum())} essay(s) have a missing/infinite theta or a missing or "
            f"non-positive se (e.g. {ids}); refit the scores before projecting",
        )


def _check_anchors(
    scores: pd.DataFrame, anchor_grades: Mapping | pd.Series, scale: GradeScale
) -> pd.Series:
    try:
        anchors = _as_grade_series(anchor_grades, "anchor_grades")
    except UsageError as err:
        raise ProjectionUnavailable("conflicting_anchor_grades", str(err)) from None
    if anchors.empty:
        raise ProjectionUnavailable(
            "no_anchors", "no anchor grades given; grades can only be projected from anchors"
        )
    unknown = sorted({str(g) for g in anchors if g not in scale.all_labels})
    if unknown:
        raise ProjectionUnavailable(
            "unknown_anchor_grade",
            f"anchor grade(s) {unknown} are not on scale {scale.name!r} "
            f"({', '.join(scale.all_labels)})",
        )
    missing = [a for a in anchors.index if a not in scores.index]
    if missing:
        raise ProjectionUnavailable(
            "anchors_missing_from_scores",
            f"anchors missing from scores: {', '.join(map(str, missing))}; "
            "every anchor must be compared in the same BT fit as the students",
        )
    if anchors.nunique() < 2:
        raise ProjectionUnavailable(
            "too_few_anchor_grades",
            f"anchors cover {anchors.nunique()} grade(s) ({', '.join(map(str, anchors.unique()))});"
            " at least 2 distinct grades are needed to place a scale",
        )
    if len(scores) == len(anchors):
        raise ProjectionUnavailable("no_students", "scores hold no student (non-anchor) essays")
    return anchors


def _pava(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted isotonic (non-decreasing) least-squares fit by pool-adjacent-violators.

    Returns the fit, the block number of each point and the total weight of its block.
    """
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        means.append(float(yi))
        weights.append(float(wi))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), weights.pop(), sizes.pop()
            m1, w1, n1 = means.pop(), weights.pop(), sizes.pop()
            means.append((w1 * m1 + w2 * m2) / (w1 + w2))
            weights.append(w1 + w2)
            sizes.append(n1 + n2)
    blocks = np.repeat(np.arange(len(sizes)), sizes)
    return np.repeat(means, sizes), blocks, np.repeat(weights, sizes)


def _typical_width(theta: np.ndarray, grade_idx: np.ndarray) -> float:
    """ω̂, the Theil–Sen slope of anchor θ on grade index (floored at ``MIN_SPACING``).

    Used only to put the variance components on the batch's θ scale (``WIDTH_SD_MAX`` and
    ``POSITION_SD_MAX`` are fractions of a typical grade width); robust, so that one
    misplaced anchor does not rescale them.
    """
    if len(np.unique(grade_idx)) < 2:
        return MIN_SPACING
    slope = float(stats.theilslopes(theta, grade_idx.astype(float))[0])
    return max(slope, MIN_SPACING)


def _anchor_design(grade_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (``e_0``, ω) and random (width deviations ``d_0..d_{k−1}``) design of the anchors.

    Label j spans the edges ``e_j`` to ``e_{j+1}``, ``e_j = e_0 + jω + Σ_{i<j} d_i``; its centre
    ``(e_j + e_{j+1})/2 = e_0 + (j + ½)ω + Σ_{i<j} d_i + ½ d_j``.
    """
    fixed = np.column_stack([np.ones(len(grade_idx)), grade_idx + 0.5])
    random = (np.arange(k)[None, :] < grade_idx[:, None]).astype(float)
    random[np.arange(len(grade_idx)), grade_idx] = 0.5
    return fixed, random


def _edge_design(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed and random design of the edges ``e_0..e_k`` (``e_0``, ``e_k`` virtual)."""
    fixed = np.column_stack([np.ones(k + 1), np.arange(k + 1.0)])
    return fixed, np.tril(np.ones((k + 1, k)), -1)


def _edges_given_components(
    theta: np.ndarray,
    designs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray,
    width_var: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Restricted log-likelihood, posterior mean and covariance of the edges, components fixed.

    ``θ̂ = Xβ + Zd + ε``, ``d ~ N(0, width_var·I)``, ``Cov ε = noise``, flat prior on β:
    universal kriging (the BLUP with β estimated by GLS) and its prediction error covariance
    ``Σ_EE − C V⁻¹ Cᵀ + R (XᵀV⁻¹X)⁻¹ Rᵀ`` with ``C = Cov(edges, θ̂)``, ``R = T − C V⁻¹ X``.
    """
    x, z, t, z_edge = designs
    v = width_var * z @ z.T + noise
    v_inv = np.linalg.inv(v)
    xtvx = x.T @ v_inv @ x
    beta = np.linalg.solve(xtvx, x.T @ v_inv @ theta)
    resid = theta - x @ beta
    loglik = -0.5 * (np.linalg.slogdet(v)[1] + np.linalg.slogdet(xtvx)[1] + resid @ v_inv @ resid)
    c = width_var * z_edge @ z.T
    mean = t @ beta + c @ v_inv @ resid
    r = t - c @ v_inv @ x
    cov = width_var * z_edge @ z_edge.T - c @ v_inv @ c.T + r @ np.linalg.solve(xtvx, r.T)
    return float(loglik), mean, cov


def _edges_posterior(
    theta: np.ndarray, se: np.ndarray, grade_idx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Posterior mean and covariance of the grade edges ``e_0..e_k`` from the anchors.

    Model (``docs/projection.md``, step 1): grade widths ``ω + d_j``, ``d_j ~ N(0, (rω)²)``
    independent (a random walk of the edges around equal spacing); an anchor of grade g at
    ``centre_g + η`` with ``η ~ N(0, (φω)²)``, half of it shared by the anchors of one grade;
    ``θ̂ = θ + e`` with ``Var e`` the anchors' mean se². ``e_0`` and ω have flat priors and are
    integrated out (REML); ``(r, φ)`` get a uniform prior on a grid over
    ``[0, WIDTH_SD_MAX] × [0, POSITION_SD_MAX]``, weighted by their restricted likelihood,
    and the edges' posterior is the mixture over the grid (mean and covariance by the laws of
    total expectation and covariance). Returns the mean, the covariance, and ψ = φω and rω
    at the grid's most likely point.
    """
    omega = _typical_width(theta, grade_idx)
    x, z = _anchor_design(grade_idx, k)
    designs = (x, z, *_edge_design(k))
    # Equal error variances: a BT SE grows with the distance of the estimate from the
    # opponents', so weights 1/se² would favour anchors whose θ̂ fell towards the middle.
    error_var = float(np.mean(se**2))
    same_grade = grade_idx[:, None] == grade_idx[None, :]
    position = 0.5 * (same_grade + np.eye(len(grade_idx)))
    fits = []
    for r in np.linspace(0.0, WIDTH_SD_MAX, COMPONENT_GRID_POINTS[0]):
        for phi in np.linspace(0.0, POSITION_SD_MAX, COMPONENT_GRID_POINTS[1]):
            noise = (phi * omega) ** 2 * position + error_var * np.eye(len(grade_idx))
            fits.append((r, phi, *_edges_given_components(theta, designs, noise, (r * omega) ** 2)))
    loglik = np.array([f[2] for f in fits])
    weight = np.exp(loglik - loglik.max())
    weight /= weight.sum()
    means = np.array([f[3] for f in fits])
    mean = weight @ means
    spread = means - mean
    cov = np.einsum("h,hij->ij", weight, np.array([f[4] for f in fits])) + np.einsum(
        "h,hi,hj->ij", weight, spread, spread
    )
    best = fits[int(np.argmax(weight))]
    return mean, cov, best[1] * omega, best[0] * omega


def _monotone_edges(
    mean: np.ndarray, var: np.ndarray, min_gap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges non-decreasing with gaps ≥ ``min_gap``: weighted isotonic fit of ``e_j − j·gap``.

    Returns the edges, their variances (a pooled edge also carries the weighted spread of its
    block around the fit: edges that had to be pooled disagree, and their SE says so) and the
    block number of each edge.
    """
    steps = np.arange(len(mean))
    shifted, blocks, block_w = _pava(mean - min_gap * steps, 1.0 / var)
    fit = shifted + min_gap * steps
    pooled = np.bincount(blocks)[blocks] > 1
    spread = np.bincount(blocks, (mean - fit) ** 2 / var)[blocks] / block_w
    return fit, np.where(pooled, var + spread, var), blocks


def _calibrate(theta: np.ndarray, se: np.ndarray, grade_idx: np.ndarray, k: int) -> tuple:
    """Centres, boundaries and their SEs for labels ``0..k-1`` from anchors (θ, se, index).

    Returns the calibration table, ψ (``PopulationFit.anchor_excess_sd``) and the grade width
    SD rω at the components' most likely point.
    """
    mean, cov, psi, width_sd = _edges_posterior(theta, se, grade_idx, k)
    min_gap = MIN_WIDTH_FRACTION * _typical_width(theta, grade_idx)
    edges, edge_var, blocks = _monotone_edges(mean, np.diag(cov), min_gap)
    # Keep the posterior correlations, with each edge's variance as the constraint leaves it.
    scale = np.sqrt(edge_var / np.diag(cov))
    cov = cov * np.outer(scale, scale)
    to_centre = 0.5 * (np.eye(k, k + 1) + np.eye(k, k + 1, 1))
    centre = to_centre @ edges
    centre_se = np.sqrt(np.diag(to_centre @ cov @ to_centre.T))
    n_anchors = np.bincount(grade_idx, minlength=k)
    anchored = np.flatnonzero(n_anchors)
    position = np.arange(k)
    interpolated = (n_anchors == 0) & (position > anchored[0]) & (position < anchored[-1])
    extrapolated = (n_anchors == 0) & ~interpolated
    pooled_edge = np.bincount(blocks)[blocks] > 1
    pooled = (n_anchors > 0) & (pooled_edge[:-1] | pooled_edge[1:])
    bounds, bounds_se = edges[1:-1], np.sqrt(edge_var[1:-1])
    lower_se = np.r_[np.nan, bounds_se]
    upper_se = np.r_[bounds_se, np.nan]
    table = pd.DataFrame(
        {
            "centre": centre,
            "centre_se": centre_se,
            "lower": np.r_[-np.inf, bounds],
            "upper": np.r_[bounds, np.inf],
            "lower_se": lower_se,
            "upper_se": upper_se,
            "boundary_se": np.fmax(lower_se, upper_se),
            "n_anchors": n_anchors,
            "interpolated": interpolated,
            "extrapolated": extrapolated,
            "pooled": pooled,
        }
    )
    return table, psi, width_sd


def _grade_probabilities(
    theta: np.ndarray, se: np.ndarray, bounds: np.ndarray, bounds_se: np.ndarray
) -> np.ndarray:
    """P(label) for each essay: normal mass between boundaries, with per-boundary variances."""
    sd = np.sqrt(se[:, None] ** 2 + bounds_se[None, :] ** 2)
    z = (bounds[None, :] - theta[:, None]) / sd
    n = len(theta)
    cdf = np.hstack([np.zeros((n, 1)), stats.norm.cdf(z), np.ones((n, 1))])
    sf = np.hstack([np.ones((n, 1)), stats.norm.sf(z), np.zeros((n, 1))])
    # F(u) − F(l) = S(l) − S(u); take the form without cancellation (S when the interval is
    # above θ, where both F values are close to 1).
    above = np.hstack([np.full((n, 1), False), z > 0])
    p = np.where(above, sf[:, :-1] - sf[:, 1:], cdf[:, 1:] - cdf[:, :-1])
    p = np.maximum(p, PROBABILITY_FLOOR)
    return p / p.sum(axis=1, keepdims=True)


def _population_grid(
    theta: np.ndarray, se: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Restricted likelihood of the population SD S on a grid: (S, μ̂(S), posterior weight).

    Model ``θ̂_i ~ N(μ, S² + s̄²)`` with ``s̄²`` the students' mean se². With
    ``w = 1/(S² + s̄²)``, the REML log-likelihood is
    ``−½ [n log(S² + s̄²) + w Σ (θ̂_i − θ̄)² + log(n w)]`` (Patterson & Thompson 1971). One
    error variance for all, not each student's own: a BT SE grows with the distance of the
    estimate from its opponents, so weights ``1/(S² + se_i²)`` favour the students whose θ̂
    fell near the middle and bias S low (by a quarter in S² at 10 comparisons per essay,
    ``docs/projection.md``). Unlike the moment estimate ``var θ − mean se²`` floored at 0 the
    grid keeps every S the data allow, with weight ∝ likelihood (flat prior on S), so the
    uncertainty in S is carried into the probabilities. The grid spans 0 to three times the
    larger of the SD of θ̂ and s̄.
    """
    n = len(theta)
    error_var = float(np.mean(se**2))
    s_max = 3.0 * max(float(np.std(theta)), np.sqrt(error_var))
    s_grid = np.linspace(0.0, s_max, POPULATION_GRID_POINTS)
    total = s_grid**2 + error_var
    squares = float(np.sum((theta - theta.mean()) ** 2))
    loglik = -0.5 * (n * np.log(total) + squares / total + np.log(n / total))
    weight = np.exp(loglik - loglik.max())
    return s_grid, np.full(len(s_grid), float(theta.mean())), weight / weight.sum()


def _population_fit(
    theta: np.ndarray, se: np.ndarray, psi: float, width_sd: float
) -> tuple[PopulationFit, np.ndarray, np.ndarray, np.ndarray]:
    """The :class:`PopulationFit` and the grid (S, μ̂, weight) the probabilities average over."""
    s_grid, mu, weight = _population_grid(theta, se)
    best = int(np.argmax(weight))
    cdf = np.cumsum(weight)
    s2 = float(weight @ s_grid**2)
    fit = PopulationFit(
        n_students=len(theta),
        mean=float(mu[best]),
        sd=float(s_grid[best]),
        sd_low=float(s_grid[np.searchsorted(cdf, 0.025)]),
        sd_high=float(s_grid[min(np.searchsorted(cdf, 0.975), len(s_grid) - 1)]),
        reliability=s2 / (s2 + float(np.mean(se**2))),
        anchor_excess_sd=float(psi),
        grade_width_sd=float(width_sd),
    )
    return fit, s_grid, mu, weight


def _density_design(theta: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The density's grid (θ̂ range widened by the mean se) and its B-spline basis there."""
    reach = float(np.mean(se))
    low, high = float(theta.min()) - reach, float(theta.max()) + reach
    grid = np.linspace(low, high, DENSITY_GRID_POINTS)
    degree = 3
    inner = np.linspace(low, high, DENSITY_BASIS - degree + 1)
    knots = np.r_[[low] * degree, inner, [high] * degree]
    return grid, BSpline.design_matrix(grid, knots, degree).toarray()


def _log_likelihood_on_grid(theta: np.ndarray, se: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``log φ((θ̂_i − x_j)/se_i) − log se_i`` for every student i and grid point x_j."""
    return -0.5 * ((theta[:, None] - grid[None, :]) / se[:, None]) ** 2 - np.log(se)[:, None]


def _fit_density(
    theta: np.ndarray, se: np.ndarray, mean: float, sd: float
) -> tuple[np.ndarray, np.ndarray]:
    """The students' ability density by penalised marginal likelihood (g-modelling).

    ``log g(x) = B(x)·a`` up to normalisation, with B a cubic B-spline basis
    (``DENSITY_BASIS`` functions) on a grid over the θ̂ range; the students are a sample
    ``θ̂_i = θ_i + e_i``, ``θ_i ~ g``, ``e_i ~ N(0, se_i²)``, and ``a`` maximises
    ``Σ_i log Σ_j g_j φ((θ̂_i − x_j)/se_i)/se_i − ½ λ ‖D₃ a‖²`` (Efron 2016's g-modelling with
    Eilers & Marx's difference penalty, λ = ``DENSITY_PENALTY``; D₃ third differences, whose
    null space, the quadratic log-densities, is the normal family). The fit starts from the
    normal N(mean, sd²) of the population fit. Returns the grid and ``log g`` on it.
    """
    # Fitted around the population mean, so the density moves with a shift of every θ.
    theta = theta - mean
    if len(theta) > DENSITY_FIT_MAX:
        order = np.argsort(theta, kind="stable")
        keep = order[np.linspace(0, len(theta) - 1, DENSITY_FIT_MAX).round().astype(int)]
        theta, se = theta[keep], se[keep]
    grid, basis = _density_design(theta, se)
    loglik = _log_likelihood_on_grid(theta, se, grid)
    diff = np.diff(np.eye(basis.shape[1]), 3, axis=0)
    penalty = DENSITY_PENALTY * diff.T @ diff
    # B-splines sum to 1, so adding a constant to every coefficient leaves g unchanged; the
    # mean coefficient is pinned to 0 to take that direction out of the Newton system.
    penalty += np.full(penalty.shape, 1.0 / len(penalty))
    n = len(theta)

    def state(coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """−(penalised log-likelihood), log g, and each student's posterior over the grid."""
        log_g = basis @ coef
        log_g -= _logsumexp(log_g)
        joint = loglik + log_g
        log_m = _logsumexp(joint, axis=1)
        value = -float(log_m.sum()) + 0.5 * coef @ penalty @ coef
        return value, log_g, np.exp(joint - log_m[:, None]), coef

    # Newton's method on the 16 coefficients, with the exact Hessian of the marginal
    # likelihood, Σᵢ Bᵀ(diag wᵢ − wᵢwᵢᵀ)B − n Bᵀ(diag g − ggᵀ)B (wᵢ student i's posterior):
    # a few steps where a quasi-Newton method took hundreds of evaluations. The marginal
    # likelihood need not be concave, so the Hessian is shifted until positive definite and
    # each step backtracked on the objective.
    current = state(np.linalg.lstsq(basis, -0.5 * (grid / sd) ** 2, rcond=None)[0])
    for _ in range(_DENSITY_MAX_NEWTON):
        value, log_g, posterior, coef = current
        g = np.exp(log_g)
        mass = posterior.sum(axis=0)
        gradient = penalty @ coef - basis.T @ (mass - n * g)
        if np.max(np.abs(gradient)) <= _DENSITY_GRADIENT_TOL * n:
            break
        spread = basis.T @ ((mass - n * g)[:, None] * basis)
        spread -= (posterior @ basis).T @ (posterior @ basis) - n * np.outer(
            basis.T @ g, basis.T @ g
        )
        hessian = penalty - spread
        step = _positive_definite_solve(hessian, -gradient)
        if -float(gradient @ step) < 1e-13 * max(1.0, abs(value)):
            break  # the predicted decrease is below the objective's rounding
        t = 1.0
        while True:
            candidate = state(coef + t * step)
            if candidate[0] <= value + 1e-4 * t * float(gradient @ step):
                break
            t *= 0.5
            if t < 1e-10:
                candidate = current
                break
        if candidate is current:
            break
        current = candidate
    log_g = current[1]
    return grid + mean, log_g


def _logsumexp(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """log Σ exp(values), stably (NumPy only: SciPy's version costs more than the sum here)."""
    top = np.max(values, axis=axis, keepdims=True)
    total = np.log(np.sum(np.exp(values - top), axis=axis, keepdims=True)) + top
    return total.item() if axis is None else np.squeeze(total, axis=axis)


def _positive_definite_solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (matrix + τI) x = rhs with the smallest τ ∈ {0, 10⁻⁸·s, 10⁻⁷·s, …} that works.

    s is the largest diagonal entry; if no shift up to 10¹⁰·s works (a non-finite matrix),
    the scaled gradient step rhs / s.
    """
    scale = max(float(np.max(np.abs(np.diag(matrix)))), 1e-12)
    for shift in (0.0, *(scale * 10.0**k for k in range(-8, 11))):
        try:
            factor = np.linalg.cholesky(matrix + shift * np.eye(len(matrix)))
        except np.linalg.LinAlgError:
            continue
        return np.linalg.solve(factor.T, np.linalg.solve(factor, rhs))
    return rhs / scale


def _density_probabilities(
    theta: np.ndarray,
    se: np.ndarray,
    density: tuple[np.ndarray, np.ndarray],
    bounds: np.ndarray,
    bounds_se: np.ndarray,
) -> np.ndarray:
    """P(label) under each student's posterior on the density's grid.

    Posterior ``p_ij ∝ g_j φ((θ̂_i − x_j)/se_i)``; ``P(g) = Σ_j p_ij P(g | x_j)`` with
    ``P(g | x)`` the normal mass between the uncertain boundaries, each grid point standing
    for its cell (uniform, variance Δ²/12).
    """
    grid, log_g = density
    cell = np.full(len(grid), (grid[1] - grid[0]) / np.sqrt(12.0))
    given_point = _grade_probabilities(grid, cell, bounds, bounds_se)
    probs = np.empty((len(theta), len(bounds) + 1))
    for start in range(0, len(theta), _POSTERIOR_CHUNK):
        block = slice(start, start + _POSTERIOR_CHUNK)
        joint = _log_likelihood_on_grid(theta[block], se[block], grid) + log_g
        posterior = np.exp(joint - _logsumexp(joint, axis=1)[:, None])
        probs[block] = posterior @ given_point
    probs = np.maximum(probs, PROBABILITY_FLOOR)
    return probs / probs.sum(axis=1, keepdims=True)


def _population_probabilities(
    theta: np.ndarray,
    se: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    bounds: np.ndarray,
    bounds_se: np.ndarray,
) -> np.ndarray:
    """P(label) averaged over S's posterior grid of the students' posteriors.

    At each S: ``λ = S² / (S² + se²)``, posterior ``N(μ̂ + λ(θ − μ̂), λ·se²)``. Grid points
    with weight below 1e-6 of the total are skipped.
    """
    s_grid, mu, weight = grid
    probs = np.zeros((len(theta), len(bounds) + 1))
    for s, m, w in zip(s_grid, mu, weight, strict=True):
        if w < 1e-6:
            continue
        lam = s**2 / (s**2 + se**2)
        probs += w * _grade_probabilities(
            m + lam * (theta - m), np.sqrt(lam) * se, bounds, bounds_se
        )
    return probs / probs.sum(axis=1, keepdims=True)


def _confidence_label(confidence: np.ndarray) -> np.ndarray:
    return np.where(
        confidence >= HIGH_CONFIDENCE, "HIGH", np.where(confidence >= MID_CONFIDENCE, "MID", "LOW")
    )


def _sorted_ids(ids) -> list:
    return sorted(ids, key=lambda x: (type(x).__name__, str(x)))


def _anchor_check(scores: pd.DataFrame, anchors: pd.Series, scale: GradeScale) -> AnchorCheck:
    ids = list(anchors.index)
    theta = scores.loc[ids, "theta"].to_numpy(dtype=float)
    gidx = np.array([scale.index(g) for g in anchors], dtype=int)
    low, high = np.nonzero((gidx[:, None] < gidx[None, :]) & (theta[:, None] > theta[None, :]))
    inversions = pd.DataFrame(
        {
            "anchor_low": pd.Series([ids[i] for i in low], dtype=object),
            "grade_low": pd.Series(anchors.to_numpy()[low], dtype=object),
            "theta_low": theta[low],
            "anchor_high": pd.Series([ids[j] for j in high], dtype=object),
            "grade_high": pd.Series(anchors.to_numpy()[high], dtype=object),
            "theta_high": theta[high],
            "theta_gap": theta[low] - theta[high],
        }
    )
    if len(inversions):
        order = sorted(
            range(len(inversions)),
            key=lambda r: (
                -inversions["theta_gap"].iat[r],
                str(inversions["anchor_low"].iat[r]),
                str(inversions["anchor_high"].iat[r]),
            ),
        )
        inversions = inversions.iloc[order].reset_index(drop=True)
    if len(ids) >= 2 and np.ptp(theta) > 0:
        tau = float(stats.kendalltau(gidx, theta, variant="b").statistic)
        rho = float(stats.spearmanr(gidx, theta).statistic)
    else:
        tau = rho = float("nan")
    zero_win: list = []
    zero_loss: list = []
    if "wins" in scores.columns:
        zero_win = _sorted_ids(a for a in ids if scores.at[a, "wins"] == 0)
    if "losses" in scores.columns:
        zero_loss = _sorted_ids(a for a in ids if scores.at[a, "losses"] == 0)
    return AnchorCheck(inversions, tau, rho, zero_win, zero_loss)


def _check_information(population: PopulationFit, min_reliability: float) -> None:
    if population.reliability < min_reliability:
        raise ProjectionUnavailable(
            "too_little_information",
            f"the students' scores carry too little information to grade them: reliability "
            f"{population.reliability:.2f} < {min_reliability:.2f} (their θ spread is mostly "
            "measurement error); collect more comparisons per essay (about 10 or more)",
        )


def scored_anchors(anchor_grades: Mapping | pd.Series, scores: pd.DataFrame) -> tuple[dict, list]:
    """Split anchors into those with a score (id → grade) and the ids of those without.

    An anchor that took part in no successful comparison has no θ and cannot inform the
    calibration. The finalizer and the report both project from the scored ones only and
    name the others, rather than refusing the whole projection.
    """
    grades = _as_grade_series(anchor_grades, "anchor_grades")
    scored = {a: g for a, g in grades.items() if a in scores.index}
    return scored, _sorted_ids(a for a in grades.index if a not in scores.index)


def project_grades(
    scores: pd.DataFrame,
    anchor_grades: Mapping | pd.Series,
    *,
    scale: str | GradeScale,
    population_prior: bool = True,
    min_reliability: float = MIN_RELIABILITY,
) -> Projection:
    """Project grade probabilities onto student essays from anchors in the same BT fit.

    The anchors' θ place a monotone set of grade centres and boundaries on the θ scale (see the
    module docstring and ``docs/projection.md``). Each student's (θ, se) becomes a posterior
    over the ability x under the batch's estimated ability density (``population_prior``)
    and, widened by the boundaries' calibration uncertainty, gives a probability for every
    label::

        P(g) = E_posterior[Φ((u_g − x) / σ_u) − Φ((l_g − x) / σ_l)]

    floored at ``PROBABILITY_FLOOR`` and renormalised, so probabilities are positive, sum to 1
    and move smoothly with θ. The projection is shift-invariant: adding a constant to every θ
    (e.g. another sum-to-zero batch) moves boundaries and students together.

    Confidence labels: ``HIGH`` if the primary grade's probability is ≥ 0.7
    (``HIGH_CONFIDENCE``), ``MID`` if ≥ 0.4 (``MID_CONFIDENCE``), else ``LOW``.

    Batches of at least ``PRIOR_MIN_STUDENTS`` students get a :class:`PopulationFit`: the
    students' population N(μ, S²) by restricted maximum likelihood, with S's uncertainty kept
    as a posterior over a grid. If its reliability E[S²]/(E[S²] + mean se²) is below
    ``min_reliability`` the projection is refused rather than giving everyone the batch
    mean's grade. Calibration on two truth generators at 2–40 comparisons per essay is in
    ``docs/projection.md`` (``benchmarks/projection_calibration.py``).

    Parameters
    ----------
    scores : pandas.DataFrame
        Indexed by essay id, with ``theta`` and ``se`` (``BTResult.scores``); optional ``wins``
        and ``losses`` feed the zero-win / zero-loss anchor check. Anchors and students must
        come from the same fit.
    anchor_grades : mapping or pandas.Series
        Anchor essay id → grade label on ``scale`` (any of ``scale.all_labels``). Every other
        row of ``scores`` is a student.
    scale : str or GradeScale
        The grade scale (a name in ``GRADE_SCALES`` or a :class:`GradeScale`).
    population_prior : bool, default True
        Treat the students as a sample from this batch's population: their ability density,
        estimated by penalised marginal likelihood (``DENSITY_PENALTY``), is each student's
        prior. This corrects the regression to the mean that a per-essay likelihood ignores,
        and makes the probabilities calibrated; it also makes a student's probabilities
        depend slightly on the rest of the batch. Below ``MIN_RELIABILITY`` (projected with a
        lower ``min_reliability``) the prior is the normal :class:`PopulationFit`, averaged
        over the population SD's posterior. Batches under ``PRIOR_MIN_STUDENTS`` students
        never use it.
    min_reliability : float, default MIN_RELIABILITY
        Refuse (``too_little_information``) when the population fit's reliability is below
        this; 0 never refuses. Not applied under ``PRIOR_MIN_STUDENTS`` students.

    Returns
    -------
    Projection
        ``grades`` per student, ``calibration`` per label, ``anchor_check``, ``scale``,
        ``anchor_grades`` and ``population``.

    Raises
    ------
    ProjectionUnavailable
        With ``reason``: ``unknown_scale``; ``invalid_scores`` (missing columns, duplicate ids,
        non-finite θ, missing or non-positive se); ``conflicting_anchor_grades`` (an anchor id
        repeated in a Series); ``no_anchors``; ``unknown_anchor_grade`` (a grade not in
        ``scale.all_labels``); ``anchors_missing_from_scores`` (listed in the message);
        ``too_few_anchor_grades`` (fewer than 2 distinct grades); ``no_students``;
        ``too_little_information`` (reliability below ``min_reliability``).
    """
    sc = _resolve_scale(scale)
    _check_scores(scores)
    anchors = _check_anchors(scores, anchor_grades, sc)
    labels = list(sc.all_labels)

    a_theta = scores.loc[anchors.index, "theta"].to_numpy(dtype=float)
    a_se = scores.loc[anchors.index, "se"].to_numpy(dtype=float)
    a_idx = np.array([sc.index(g) for g in anchors], dtype=int)
    # A canonical order makes the calibration independent of the order anchors are given in.
    order = np.lexsort((a_se, a_theta, a_idx))
    calibration, psi, width_sd = _calibrate(a_theta[order], a_se[order], a_idx[order], len(labels))
    calibration.index = pd.Index(labels, name="grade")

    students = scores.loc[~scores.index.isin(anchors.index)]
    s_theta = students["theta"].to_numpy(dtype=float)
    s_se = students["se"].to_numpy(dtype=float)
    bounds = calibration["upper"].to_numpy()[:-1]
    bounds_se = calibration["upper_se"].to_numpy()[:-1]
    population = None
    if len(students) >= PRIOR_MIN_STUDENTS:
        # Sorted, so the fit (and every probability) is independent of the students' order.
        canonical = np.lexsort((s_se, s_theta))
        population, *grid = _population_fit(s_theta[canonical], s_se[canonical], psi, width_sd)
        _check_information(population, min_reliability)
    if population_prior and population is not None and population.reliability >= MIN_RELIABILITY:
        s_grid, _, s_weight = grid
        density = _fit_density(
            s_theta[canonical], s_se[canonical], population.mean, np.sqrt(s_weight @ s_grid**2)
        )
        # In the canonical order too: a matrix product's rounding depends on the row's place.
        probs = np.empty((len(s_theta), len(labels)))
        probs[canonical] = _density_probabilities(
            s_theta[canonical], s_se[canonical], density, bounds, bounds_se
        )
    elif population_prior and population is not None:
        # Below the information threshold (projected only when asked to) the data say little
        # beyond the population's spread, and its uncertainty matters most: normal posteriors
        # averaged over S's posterior.
        probs = _population_probabilities(s_theta, s_se, tuple(grid), bounds, bounds_se)
    else:
        probs = _grade_probabilities(s_theta, s_se, bounds, bounds_se)
    primary = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), primary]
    grades = pd.DataFrame(
        {
            "primary_grade": np.asarray(labels, dtype=object)[primary],
            "expected_grade_index": probs @ np.arange(len(labels)),
            "confidence_score": confidence,
            "confidence_label": _confidence_label(confidence),
        },
        index=students.index.copy(),
    )
    grades = pd.concat([grades, pd.DataFrame(probs, index=grades.index, columns=labels)], axis=1)
    return Projection(
        scale=sc,
        anchor_grades=anchors.rename("grade"),
        grades=grades,
        calibration=calibration,
        anchor_check=_anchor_check(scores, anchors, sc),
        population=population,
    )


def _quadratic_weighted_kappa(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    observed = np.zeros((k, k))
    np.add.at(observed, (truth, pred), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    i, j = np.indices((k, k))
    weights = (i - j) ** 2 / (k - 1) ** 2
    denominator = np.sum(weights * expected)
    if denominator == 0:
        return float("nan")
    return float(1.0 - np.sum(weights * observed) / denominator)


def _reliability_table(confidence: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    edges = np.arange(ECE_BINS + 1) / ECE_BINS
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, ECE_BINS - 1)
    n = np.bincount(bins, minlength=ECE_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=ECE_BINS) / n
        accuracy = np.bincount(bins, weights=correct.astype(float), minlength=ECE_BINS) / n
    return pd.DataFrame(
        {
            "bin": np.arange(ECE_BINS),
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n,
            "mean_confidence": mean_conf,
            "observed_accuracy": accuracy,
        }
    )


def evaluate_projection(
    projection: Projection, true_grades: Mapping | pd.Series
) -> ProjectionEvaluation:
    """Accuracy and calibration of ``projection`` against the true grades of its students.

    Students without a true grade are left out; anchors in ``true_grades`` are ignored. With
    ``P`` the projected probabilities, ``t`` the true label and ``c`` the confidence score:

    - QWK: ``1 − Σ w_ij O_ij / Σ w_ij E_ij`` with ``w_ij = (i − j)² / (k − 1)²``, ``O`` the
      confusion counts over all k labels and ``E`` their outer-product expectation.
    - Brier: ``mean Σ_g (P_g − 1[g = t])²``; log loss: ``mean −log max(P_t, 1e-15)``.
    - ECE: ``Σ_b (n_b / N) |acc_b − conf_b|`` over 10 equal-width bins of ``c`` (``[b/10,
      (b+1)/10)``, the last bin closed).

    Parameters
    ----------
    projection : Projection
        From :func:`project_grades`.
    true_grades : mapping or pandas.Series
        Student essay id → true label on ``projection.scale``.

    Returns
    -------
    ProjectionEvaluation

    Raises
    ------
    UsageError
        If a true grade is not on the scale, an id is neither a student nor an anchor of the
        projection, or no student has a true grade.
    """
    scale = projection.scale
    truth = _as_grade_series(true_grades, "true_grades")
    unknown = sorted({str(g) for g in truth if g not in scale.all_labels})
    if unknown:
        raise UsageError(f"true grade(s) {unknown} are not on scale {scale.name!r}")
    grades = projection.grades
    stray = [i for i in truth.index if i not in grades.index and i not in projection.anchor_grades]
    if stray:
        raise UsageError(
            "true_grades name essays that are not in the projection: "
            + ", ".join(map(str, stray[:10]))
        )
    evaluated = grades.loc[grades.index.isin(truth.index)]
    if evaluated.empty:
        raise UsageError("no projected student essay has a true grade")

    labels = list(scale.all_labels)
    k = len(labels)
    probs = evaluated[labels].to_numpy(dtype=float)
    t = np.array([scale.index(g) for g in truth.loc[evaluated.index]], dtype=int)
    pred = np.array([scale.index(g) for g in evaluated["primary_grade"]], dtype=int)
    n = len(t)
    rows = np.arange(n)
    onehot = np.zeros_like(probs)
    onehot[rows, t] = 1.0
    confidence = evaluated["confidence_score"].to_numpy(dtype=float)
    correct = pred == t
    table = _reliability_table(confidence, correct)
    filled = table["n"] > 0
    ece = float(
        np.sum(
            table.loc[filled, "n"]
            / n
            * np.abs(table.loc[filled, "observed_accuracy"] - table.loc[filled, "mean_confidence"])
        )
    )
    expected = evaluated["expected_grade_index"].to_numpy(dtype=float)
    if np.ptp(expected) > 0 and np.ptp(t) > 0:
        rho = float(stats.spearmanr(expected, t).statistic)
    else:
        rho = float("nan")
    hit_rate = float(correct.mean())
    return ProjectionEvaluation(
        n=n,
        exact_agreement=hit_rate,
        adjacent_agreement=float((np.abs(pred - t) <= 1).mean()),
        quadratic_weighted_kappa=_quadratic_weighted_kappa(t, pred, k),
        spearman_rho=rho,
        brier_score=float(np.mean(np.sum((probs - onehot) ** 2, axis=1))),
        log_loss=float(-np.mean(np.log(np.clip(probs[rows, t], LOG_LOSS_CLIP, 1.0)))),
        expected_calibration_error=ece,
        majority_baseline=float(np.bincount(t).max() / n),
        mean_true_grade_probability=float(probs[rows, t].mean()),
        hit_rate=hit_rate,
        mean_confidence=float(confidence.mean()),
        reliability_table=table,
    )
