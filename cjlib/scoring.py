"""Bradley–Terry scores for essays from comparative judgements, with standard errors and fit.

The model is P(i beats j) = σ(θᵢ − θⱼ), optionally with a position effect δ so that
P(essay in position A wins) = σ(θ_A − θ_B + δ). :func:`fit_bradley_terry` offers four
estimators (``method``):

- ``"mle"``: maximum likelihood, −Σₖ cₖ log σ(θ_wₖ − θ_lₖ + sₖ δ) minimised; it exists only
  when the directed win graph is strongly connected.
- ``"firth"``: Firth's (1993) bias-reduced estimate, the likelihood penalised by the
  Jeffreys prior ½ log det F(θ, δ) (BradleyTerry2's ``br = TRUE``); finite whenever the
  comparison graph is connected.
- ``"sirt"``: the ε-adjusted estimator of ``sirt::btm`` (Robitzsch), its iteration and its
  ``se.theta``, ``mle.rel`` and ``sepG``.
- ``"ridge"``: the penalty α Σθ² of :func:`choix.opt_pairwise`.

Every estimator has θ summing to zero and standard errors from the Fisher information
projected onto that constraint. The formulas, the study behind the default method, the
engines and measured run times are in ``docs/scoring.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, cached_property, wraps

import choix
import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, logit
from threadpoolctl import ThreadpoolController

from cjlib.errors import DisconnectedComparisonsError
from cjlib.linalg import conjugate_gradient, dot

__all__ = [
    "AUTO_CHOIX_MAX_ESSAYS",
    "DEFAULT_METHOD",
    "ENGINES",
    "EXACT_SE_MAX_ESSAYS",
    "FIRTH_EXACT_MAX_ESSAYS",
    "METHODS",
    "SE_METHODS",
    "SIRT_EPS",
    "BTResult",
    "DisconnectedComparisonsError",
    "fit_bradley_terry",
]

logger = logging.getLogger(__name__)

ENGINES = ("auto", "choix", "sparse")
METHODS = ("mle", "firth", "sirt", "ridge")
#: The estimator used when neither ``method`` nor ``alpha`` is given; chosen by the study
#: in ``benchmarks/bt_study.py`` (see ``docs/scoring.md``).
DEFAULT_METHOD = "firth"
SE_METHODS = ("pinv_fisher", "cavity_approx", "neumann_approx")
AUTO_CHOIX_MAX_ESSAYS = 300
EXACT_SE_MAX_ESSAYS = 3000
#: Above this many essays the Firth leverages come from the cavity approximation.
FIRTH_EXACT_MAX_ESSAYS = 300
#: sirt's default ε: each essay's win count is moved ε towards half its comparisons.
SIRT_EPS = 0.3

_WINNER_FORM = ("winner_id", "loser_id")
_POSITION_FORM = ("essay_a_id", "essay_b_id", "winner")
_POSITION_A, _POSITION_B, _IGNORED_WINNER = "essay_a", "essay_b", "error"
_MAX_LISTED = 5
#: Var(δ)·Σh above this means the position effect is confounded with the abilities.
_MAX_POSITION_VARIANCE_RATIO = 1e6
_GRADIENT_TOL = 1e-10
_MAX_NEWTON_ITER = 100
#: Rounds of the sparse Firth path; late rounds cost a cavity pass and at most a Newton step.
_MAX_FIRTH_ROUNDS = 100
_ANDERSON_MEMORY = 4
#: Anderson mixing has stalled when a round's step is more than this share of the last one.
_ANDERSON_STALL = 0.5
#: Per-essay secant steps: at most this many times the plain step, and at most 1 logit.
_SECANT_MAX_FACTOR = 50.0
_SECANT_MAX_STEP = 1.0
#: The sparse Firth path stops when a round moves no parameter by more than this many of its
#: standard errors: below the error of its cavity leverages against exact ones (99th
#: percentile of |Δθ| / SE 0.001–0.04, docs/scoring.md).
_FIRTH_SPARSE_STEP_TOL = 1e-4
#: How much looser than their final tolerances the sparse Firth path's early rounds run their
#: cavity sweeps and Newton fits, at most; and how loose the round that stops may be (its
#: cavity then stops at 10⁻⁷, as the SE passes do, and its fit within about 10⁻⁸ of θ).
_FIRTH_MAX_LOOSENESS = 1e7
_FIRTH_STOP_LOOSENESS = 100.0
_FIRTH_GRADIENT_TOL = 1e-7
_CHOIX_MAX_ITER = 500
_CHOIX_TOL = 1e-8
#: sirt::btm's defaults: at most 100 sweeps, stop when no parameter moves more than 1e-4,
#: steps capped at 0.98ᵗ in sweep t.
_SIRT_MAX_ITER = 100
_SIRT_CONV = 1e-4
_SIRT_STEP_DECAY = 0.98
_CAVITY_MAX_SWEEPS = 200
_CAVITY_TOL = 1e-9
#: Standard errors to 1e-7 of their size: the cavity approximation itself is good to ~1%.
_SE_CAVITY_TOL = 1e-7
#: A judge is flagged when their infit exceeds the judges' mean by this many SDs.
MISFIT_SDS = 2.0


@dataclass(frozen=True)
class BTResult:
    """A fitted Bradley–Terry model.

    Attributes
    ----------
    scores : pandas.DataFrame
        One row per essay, indexed by ``essay_id`` (ids keep their input type), sorted by
        ``theta`` descending. Columns: ``theta`` (sums to zero), ``se`` (under the
        sum-to-zero constraint; for Firth from the augmented information, with
        ``se_fisher`` = √diag F⁺ as BradleyTerry2 reports it), ``wins``, ``losses``,
        ``n_comparisons`` (count-weighted;
        integers when every count is whole), ``infit``, ``outfit`` (NaN for an essay whose
        decisions all have count 0); with ``method="sirt"`` also ``se_sirt``, sirt's
        ``se.theta`` = 1/√(diagonal information).
    judges : pandas.DataFrame
        Indexed by ``judge_id`` in order of first appearance, with ``n`` (count-weighted
        decisions), ``infit``, ``outfit`` and ``misfit`` (infit above the judges' mean + 2 SD,
        Pollitt 2012). Empty, with these columns, when the input has no ``judge_id``; rows
        with a null judge are left out.
    method : str
        The estimator: ``"mle"``, ``"firth"``, ``"sirt"`` or ``"ridge"``.
    alpha : float
        The ridge penalty (0 for the other methods).
    reliability : float
        The scale reliability that fits the estimator, named by ``reliability_name``:
        ``"mle_rel"`` = (var θ − mean SE²) / var θ for ML-type estimates (mle, firth with
        its augmented-information SEs, sirt: sirt's ``mle.rel`` with sirt's SEs),
        ``"eap_rel"`` = var θ / (var θ + mean SE²) for ridge (a posterior mode). var
        with denominator n − 1 over essays with information only. NaN when all θ are equal.
    reliability_name : str
        ``"mle_rel"`` or ``"eap_rel"``.
    sep_g : float
        Separation G = √max(var θ − mean SE², 0) / √mean SE² (true SD over RMSE).
    sep_g_sirt : float
        sirt's ``sepG`` = √(var θ / mean SE²).
    position_effect : dict or None
        ``{"estimate": δ, "se": SE(δ)}`` when requested, else None. δ > 0 favours
        position A.
    position_a_win_share : float or None
        Count-weighted share of decisions won by the essay in position A, whenever the
        input gives positions; None for winner/loser input.
    log_likelihood : float
        Log-likelihood of the decisions at the estimate (without any penalty).
    deviance : float
        −2 · ``log_likelihood``.
    iterations : int
        Newton iterations run by cjlib (for the choix engine, the polishing steps after
        choix's estimate; for firth, summed over leverage updates; for sirt, its sweeps).
    converged : bool
        Whether the largest gradient component reached the tolerance (sirt: its own rule).
    engine : str
        Engine actually used: ``"choix"`` or ``"sparse"``, or ``"dense"`` for Firth's
        dense Fisher scoring up to ``FIRTH_EXACT_MAX_ESSAYS`` essays (Firth and sirt run
        their own algorithms whatever ``engine`` asked for).
    se_method : str
        ``"pinv_fisher"`` (exact), ``"cavity_approx"`` or ``"neumann_approx"``.
    connected : bool
        Whether the directed win graph is strongly connected.
    n_ignored : int
        Rows ignored because the winner was ``"error"`` or null.
    n_comparisons : float
        Total count of the decisions used.
    """

    scores: pd.DataFrame
    judges: pd.DataFrame
    method: str
    alpha: float
    reliability: float
    reliability_name: str
    sep_g: float
    sep_g_sirt: float
    position_effect: dict[str, float] | None
    position_a_win_share: float | None
    log_likelihood: float
    deviance: float
    iterations: int
    converged: bool
    engine: str
    se_method: str
    connected: bool
    n_ignored: int
    n_comparisons: float

    @property
    def separation(self) -> float:
        """Separation G as before issue 11 (same as ``sep_g``), kept for old callers."""
        return self.sep_g

    @property
    def ssr(self) -> float:
        """Scale separation reliability: the same number as ``reliability``."""
        return self.reliability


@dataclass(frozen=True)
class _Decisions:
    """Validated decisions, one per kept input row, essays coded 0..n−1."""

    essay_ids: pd.Index
    winner: np.ndarray
    loser: np.ndarray
    weight: np.ndarray
    winner_in_a: np.ndarray | None
    judge: np.ndarray | None
    n_ignored: int


@dataclass(frozen=True)
class _Design:
    """Decisions aggregated by (winner, loser[, position]), positive weights, sorted by winner."""

    n: int
    winner: np.ndarray
    loser: np.ndarray
    sign: np.ndarray | None
    weight: np.ndarray
    alpha: float
    indptr: np.ndarray


def _listed(values: list) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_LISTED])
    more = len(values) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _bad_rows(frame: pd.DataFrame, mask: np.ndarray, problem: str) -> ValueError:
    labels = frame.index[mask].tolist()
    return ValueError(
        f"{len(labels)} comparison row(s) {problem} (row labels {_listed(labels)}); "
        "fix or drop them before scoring"
    )


def _id_column(frame: pd.DataFrame, column: str) -> pd.Series:
    ids = frame[column]
    missing = ids.isna().to_numpy()
    if missing.any():
        raise _bad_rows(frame, missing, f"have no {column}")
    if pd.api.types.is_float_dtype(ids):
        values = ids.to_numpy()
        if np.all(np.isfinite(values) & (values == np.floor(values))):
            # A column of whole numbers turns float when an ignored row held NaN.
            ids = ids.astype(np.int64)
    return ids.reset_index(drop=True)


def _weights(frame: pd.DataFrame) -> np.ndarray:
    if "count" not in frame.columns:
        return np.ones(len(frame))
    counts = pd.to_numeric(frame["count"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(counts)
    if bad.any():
        raise _bad_rows(frame, bad, "have a count that is not a finite number")
    if (counts < 0).any():
        raise _bad_rows(frame, counts < 0, "have a negative count")
    return counts


def _parse_comparisons(comparisons: pd.DataFrame, position_effect: bool) -> _Decisions:
    if not isinstance(comparisons, pd.DataFrame):
        raise TypeError(f"comparisons must be a pandas DataFrame, got {type(comparisons).__name__}")
    columns = set(comparisons.columns)
    winner_form = set(_WINNER_FORM) <= columns
    position_form = set(_POSITION_FORM) <= columns
    if winner_form and position_form:
        raise ValueError(
            "comparisons have the columns of both input forms; pass either winner_id, loser_id "
            "or essay_a_id, essay_b_id, winner"
        )
    if not (winner_form or position_form):
        raise ValueError(
            "comparisons need the columns winner_id, loser_id or essay_a_id, essay_b_id, "
            f"winner; got {sorted(map(str, columns))}"
        )
    if position_effect and not position_form:
        raise ValueError(
            "position_effect=True needs positions: pass essay_a_id, essay_b_id, winner"
        )

    n_ignored = 0
    winner_in_a = None
    if position_form:
        outcome = comparisons["winner"]
        ignored = (outcome.isna() | (outcome == _IGNORED_WINNER)).to_numpy(dtype=bool)
        unknown = ~ignored & ~outcome.isin([_POSITION_A, _POSITION_B]).to_numpy(dtype=bool)
        if unknown.any():
            seen = outcome[unknown].astype(str).unique().tolist()
            raise _bad_rows(
                comparisons,
                unknown,
                f"have a winner other than '{_POSITION_A}', '{_POSITION_B}', "
                f"'{_IGNORED_WINNER}' or null (seen: {_listed(seen)})",
            )
        frame = comparisons[~ignored]
        n_ignored = int(ignored.sum())
        first, second = _id_column(frame, "essay_a_id"), _id_column(frame, "essay_b_id")
        winner_in_a = (frame["winner"] == _POSITION_A).to_numpy(dtype=bool)
    else:
        frame = comparisons
        first, second = _id_column(frame, "winner_id"), _id_column(frame, "loser_id")
    if len(frame) == 0:
        raise ValueError(
            f"no decisions to score ({n_ignored} row(s) ignored for an error or null winner)"
        )

    codes, essay_ids = pd.factorize(pd.concat([first, second], ignore_index=True))
    code_first, code_second = codes[: len(frame)], codes[len(frame) :]
    same = code_first == code_second
    if same.any():
        raise _bad_rows(frame, same, "compare an essay with itself")
    weight = _weights(frame)
    if weight.sum() <= 0:
        raise ValueError("every decision has count 0; there is nothing to score")
    if winner_in_a is None:
        winner, loser = code_first, code_second
    else:
        winner = np.where(winner_in_a, code_first, code_second)
        loser = np.where(winner_in_a, code_second, code_first)
    judge = frame["judge_id"].to_numpy() if "judge_id" in frame.columns else None
    return _Decisions(
        essay_ids=pd.Index(essay_ids, name="essay_id"),
        winner=winner.astype(np.int64),
        loser=loser.astype(np.int64),
        weight=weight,
        winner_in_a=winner_in_a,
        judge=judge,
        n_ignored=n_ignored,
    )


def _aggregate(decisions: _Decisions, alpha: float, position_effect: bool) -> _Design:
    n = len(decisions.essay_ids)
    columns, width = decisions.loser, n
    if position_effect:
        columns, width = 2 * decisions.loser + decisions.winner_in_a, 2 * n
    # Converting to CSR sums duplicate (winner, loser[, position]) rows and groups them by
    # winner, faster than sorting keys.
    table = sp.coo_array((decisions.weight, (decisions.winner, columns)), shape=(n, width)).tocsr()
    table.sum_duplicates()
    table.eliminate_zeros()
    indptr = table.indptr.astype(np.int64)
    columns = table.indices.astype(np.int64)
    sign = None
    if position_effect:
        sign = np.where(columns % 2 == 1, 1.0, -1.0)
        columns = columns // 2
    return _Design(
        n=n,
        winner=np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)),
        loser=columns,
        sign=sign,
        weight=table.data.astype(float),
        alpha=alpha,
        indptr=indptr,
    )


def _winner_graph(design: _Design, values: np.ndarray) -> sp.csr_array:
    """Sparse matrix with ``values[k]`` at (winner k, loser k); duplicates add up."""
    # Copies, because scipy may canonicalise a matrix in place and reorder the design.
    return sp.csr_array(
        (values, design.loser.copy(), design.indptr.copy()), shape=(design.n, design.n)
    )


def _margin(z: np.ndarray, design: _Design) -> np.ndarray:
    x = z[design.winner] - z[design.loser]
    if design.sign is not None:
        x += design.sign * z[design.n]
    return x


def _evaluate(z: np.ndarray, design: _Design) -> tuple[float, np.ndarray]:
    """The objective at ``z`` and p, the fitted probability that each pair's winner wins."""
    margin = _margin(z, design)
    p = expit(margin)
    # −log σ(x) from p, which the gradient needs anyway, saves a pass; not once p underflows.
    loss = -np.log(p) if p.min() > 0 else np.logaddexp(0.0, -margin)
    theta = z[: design.n]
    return float(design.weight @ loss + design.alpha * theta @ theta), p


def _gradient_and_curvature(
    z: np.ndarray, p: np.ndarray, design: _Design
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the objective and the curvature cₖ pₖ(1 − pₖ) of each pair."""
    n = design.n
    q = design.weight * (1.0 - p)
    grad = np.bincount(design.loser, q, n) - np.bincount(design.winner, q, n)
    grad += 2.0 * design.alpha * z[:n]
    if design.sign is not None:
        grad = np.append(grad, -(design.sign @ q))
    return grad, q * p


def _hessian_diagonal(design: _Design, h: np.ndarray) -> np.ndarray:
    n = design.n
    return np.bincount(design.winner, h, n) + np.bincount(design.loser, h, n) + 2 * design.alpha


def _position_coupling(design: _Design, h: np.ndarray) -> np.ndarray:
    sh = design.sign * h
    return np.bincount(design.winner, sh, design.n) - np.bincount(design.loser, sh, design.n)


def _dense_hessian(design: _Design, h: np.ndarray) -> np.ndarray:
    """Hessian of the objective (Fisher information plus 2αI) over (θ[, δ]), dense."""
    n = design.n
    size = n + (design.sign is not None)
    flat = np.concatenate(
        [design.winner * size + design.loser, design.loser * size + design.winner]
    )
    hessian = -np.bincount(flat, np.concatenate([h, h]), size * size).reshape(size, size)
    hessian[np.arange(n), np.arange(n)] += _hessian_diagonal(design, h)
    if design.sign is not None:
        coupling = _position_coupling(design, h)
        hessian[:n, n] = coupling
        hessian[n, :n] = coupling
        hessian[n, n] = h.sum()
    return hessian


def _newton(
    z: np.ndarray, design: _Design, solve: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Damped Newton on the objective, keeping Σθ = 0.

    ``solve(h, g)`` returns the Newton direction −H⁻¹g on the sum-to-zero subspace, H the
    Hessian for pair curvatures ``h``. Returns the estimate, the pair curvatures there, the
    number of iterations and whether the gradient tolerance was met.
    """
    n = design.n
    tol = _GRADIENT_TOL * max(1.0, design.weight.sum() / n)
    value, p = _evaluate(z, design)
    for iteration in range(_MAX_NEWTON_ITER + 1):
        grad, h = _gradient_and_curvature(z, p, design)
        if np.max(np.abs(grad)) <= tol:
            return z, h, iteration, True
        if iteration == _MAX_NEWTON_ITER:
            break
        step = solve(h, grad)
        slope = grad @ step
        if not slope < 0:
            step, slope = -grad, -(grad @ grad)
        # Near the optimum the objective changes by less than its rounding error.
        slack = 1e-12 * max(1.0, abs(value))
        t = 1.0
        while True:
            candidate = z + t * step
            candidate_value, candidate_p = _evaluate(candidate, design)
            if candidate_value <= value + 1e-4 * t * slope + slack:
                break
            t *= 0.5
            if t < 1e-12:
                return z, h, iteration, False
        if design.alpha == 0:
            candidate[:n] -= candidate[:n].mean()
        z, p, value = candidate, candidate_p, candidate_value
    return z, h, _MAX_NEWTON_ITER, False


def _dense_solver(design: _Design) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    n = design.n

    def solve(h: np.ndarray, grad: np.ndarray) -> np.ndarray:
        hessian = _dense_hessian(design, h)
        if design.alpha == 0:
            # Adding 11ᵀ/n removes the null direction of θ; grad ⟂ 1 so the step is unchanged.
            hessian[:n, :n] += 1.0 / n
        try:
            return -scipy.linalg.solve(hessian, grad, assume_a="pos")
        except np.linalg.LinAlgError:
            return -np.linalg.lstsq(hessian, grad, rcond=None)[0]

    return solve


def _cg_solver(design: _Design) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def solve(h: np.ndarray, grad: np.ndarray) -> np.ndarray:
        graph = _winner_graph(design, h)
        graph_t = graph.T

        def adjacency(x: np.ndarray) -> np.ndarray:
            return graph @ x + graph_t @ x

        # Adding 11ᵀ/n (α = 0) removes the null direction of θ; grad ⟂ 1 so the step is
        # unchanged.
        return _laplacian_cg(
            adjacency,
            _hessian_diagonal(design, h),
            -grad,
            min(0.1, max(float(np.max(np.abs(grad))), 1e-12)),
            None if design.sign is None else _position_coupling(design, h),
            float(h.sum()),
            shift=design.alpha == 0,
        )

    return solve


def _choix_start(design: _Design) -> np.ndarray:
    n = design.n
    wins = np.bincount(design.winner * n + design.loser, design.weight, n * n).reshape(n, n)
    try:
        theta = choix.ilsr_pairwise_dense(
            wins, alpha=design.alpha, max_iter=_CHOIX_MAX_ITER, tol=_CHOIX_TOL
        )
    except RuntimeError:
        # I-LSR converges slowly on sparse designs; one LSR step is still a fair start.
        logger.debug("choix I-LSR did not converge; Newton starts from one LSR step")
        theta = choix.lsr_pairwise_dense(wins, alpha=design.alpha)
    return theta - theta.mean()


def _smoothed_log_odds(wins: np.ndarray, losses: np.ndarray, position: bool) -> np.ndarray:
    """Each essay's log((wins + ½)/(losses + ½)), centred (and δ = 0): a Newton start."""
    theta = np.log((wins + 0.5) / (losses + 0.5))
    theta -= theta.mean()
    return np.append(theta, 0.0) if position else theta


def _log_odds_start(design: _Design) -> np.ndarray:
    # Each essay's smoothed log-odds of winning: close enough to save Newton steps.
    n = design.n
    wins = np.bincount(design.winner, design.weight, n)
    losses = np.bincount(design.loser, design.weight, n)
    return _smoothed_log_odds(wins, losses, design.sign is not None)


def _unidentified_position_effect() -> ValueError:
    return ValueError(
        "the position effect is not identified by these comparisons: pairs were not seen in "
        "both A/B orientations often enough to tell position from ability; fit without "
        "position_effect, or balance positions"
    )


def _exact_covariance(design: _Design, h: np.ndarray, *, full: bool) -> np.ndarray:
    """P pinv(F) P over (θ[, δ]), F the Fisher information plus the penalty Hessian 2αI.

    P = I − uuᵀ projects θ onto sum-to-zero, u = (1, …, 1[, 0]) / √n. u is an
    eigenvector of F with eigenvalue 2α (the Laplacian and the θ–δ coupling both sum to
    zero over essays), so P pinv(F) P = inv(F + (1 − 2α) uuᵀ) − uuᵀ: moving that
    eigenvalue to 1 makes the matrix positive definite, and it is inverted through its
    Cholesky factor. Without the projection a ridge fit would keep 1/(2αn), the variance of
    the unidentified mean, in every SE. Returns the matrix (``full``) or its diagonal.
    """
    n = design.n
    fisher = _dense_hessian(design, h)
    shift = (1.0 - 2.0 * design.alpha) / n
    fisher[:n, :n] += shift
    factor, info = scipy.linalg.lapack.dpotrf(fisher, lower=1)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=1)
    if info != 0:
        if design.sign is not None:
            # Singular beyond the θ null space: δ is confounded with the abilities.
            raise _unidentified_position_effect()
        logger.debug("Fisher information not positive definite; using an SVD pseudo-inverse")
        fisher[:n, :n] -= shift
        projector = np.eye(n) - 1.0 / n
        inverse = projector @ np.linalg.pinv(fisher, hermitian=True) @ projector
        return inverse if full else np.diag(inverse).copy()
    if not full:
        variances = np.diag(inverse).copy()
        variances[:n] -= 1.0 / n
        return variances
    inverse = np.tril(inverse) + np.tril(inverse, -1).T
    inverse[:n, :n] -= 1.0 / n
    return inverse


class _Segments:
    """Sums of values grouped by a sorted index: ``np.add.reduceat`` over the index's runs.

    On a sorted index this is 2–3× faster than ``np.bincount``, whose additions into one
    bin in a row wait on each other.
    """

    def __init__(self, index: np.ndarray, n: int):
        counts = np.bincount(index, minlength=n)
        self._n = n
        self._present = np.flatnonzero(counts)
        self._starts = (np.cumsum(counts) - counts)[self._present]

    def sum(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self._n)
        if len(self._starts):
            out[self._present] = np.add.reduceat(values, self._starts)
        return out


def _sorted_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each value's index among them (np.unique hashes, slower)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.empty(len(values), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


@dataclass(frozen=True)
class _Edges:
    """The decisions of each compared pair (and, with a position effect, A/B orientation).

    Edge e puts ``first[e]`` against ``second[e]``; the first wins with probability
    σ(θ_first − θ_second [+ δ]): with a position effect the first essay is the one shown as
    A, otherwise the one with the lower code. ``wins_first`` and ``wins_second`` count the
    decisions each way. The cavity runs over the unordered pairs (``low``, ``high``);
    ``pair[e]`` is edge e's pair (None when every edge is its own pair). The directed
    messages of pair q are entries q (low → high) and q + P (high → low).
    """

    n: int
    first: np.ndarray
    second: np.ndarray
    wins_first: np.ndarray
    wins_second: np.ndarray
    position: bool
    pair: np.ndarray | None
    low: np.ndarray
    high: np.ndarray

    @cached_property
    def trials(self) -> np.ndarray:
        return self.wins_first + self.wins_second

    @cached_property
    def by_first(self) -> _Segments:
        return _Segments(self.first, self.n)

    @cached_property
    def by_low(self) -> _Segments:
        return self.by_first if self.pair is None else _Segments(self.low, self.n)

    def margin(self, z: np.ndarray) -> np.ndarray:
        x = z[self.first] - z[self.second]
        if self.position:
            x += z[self.n]
        return x

    def per_pair(self, values: np.ndarray) -> np.ndarray:
        if self.pair is None:
            return values
        return np.bincount(self.pair, values, len(self.low))

    def of_pair(self, values: np.ndarray) -> np.ndarray:
        return values if self.pair is None else values[self.pair]


def _edges(design: _Design) -> _Edges:
    n = design.n
    w, lo = design.winner, design.loser
    if design.sign is None:
        first_wins = w < lo
        first, second = np.minimum(w, lo), np.maximum(w, lo)
    else:
        first_wins = design.sign > 0
        first, second = np.where(first_wins, w, lo), np.where(first_wins, lo, w)
    # One sparse matrix sums the decisions of each (first, second) both ways at once:
    # the real part counts the first's wins, the imaginary part the second's. Converting
    # to CSR groups by a counting sort, faster than sorting keys.
    counts = np.zeros(len(w), dtype=complex)
    counts.real = design.weight * first_wins
    counts.imag = design.weight - counts.real
    table = sp.coo_array((counts, (first, second)), shape=(n, n)).tocsr()
    table.sum_duplicates()
    first = np.repeat(np.arange(n, dtype=np.int64), np.diff(table.indptr))
    second = table.indices.astype(np.int64)
    pair, low, high = None, first, second
    if design.sign is not None:
        # Both A/B orientations of a pair share one cavity pair.
        keys, pair = np.unique(
            np.minimum(first, second) * n + np.maximum(first, second), return_inverse=True
        )
        low, high = keys // n, keys % n
    return _Edges(
        n=n,
        first=first,
        second=second,
        wins_first=table.data.real.copy(),
        wins_second=table.data.imag.copy(),
        position=design.sign is not None,
        pair=pair,
        low=low,
        high=high,
    )


def _edges_design(edges: _Edges, wins_first: np.ndarray, wins_second: np.ndarray) -> _Design:
    """The edges' decisions (with these counts) as a design sorted by winner."""
    n = edges.n
    winner = np.concatenate([edges.first, edges.second])
    loser = np.concatenate([edges.second, edges.first])
    weight = np.concatenate([wins_first, wins_second])
    order = np.argsort(winner, kind="stable")
    sign = None
    if edges.position:
        sign = np.repeat([1.0, -1.0], len(edges.first))[order]
    winner = winner[order]
    return _Design(
        n=n,
        winner=winner,
        loser=loser[order],
        sign=sign,
        weight=weight[order],
        alpha=0.0,
        indptr=np.searchsorted(winner, np.arange(n + 1)).astype(np.int64),
    )


class _EdgeLaplacian:
    """Products with the pair-curvature adjacency A of the information over θ.

    The pairs are sorted by (low, high), so with the curvatures as data they form the
    upper triangle U of A in CSR form without any sorting; A x = U x + Uᵀ x.
    """

    def __init__(self, edges: _Edges):
        self.n = n = edges.n
        self._indices = edges.high
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(edges.low, minlength=n))])

    def matrix(self, pair_curvature: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        upper = sp.csr_array((pair_curvature, self._indices, self._indptr), shape=(self.n, self.n))
        lower = upper.T

        def adjacency(x: np.ndarray) -> np.ndarray:
            return upper @ x + lower @ x

        return adjacency


def _edge_information(edges: _Edges, z: np.ndarray, trials: np.ndarray | None = None):
    """Per edge: the probability that the first wins and the curvature m p (1 − p)."""
    p = _sigmoid(edges.margin(z))
    return p, (edges.trials if trials is None else trials) * p * (1.0 - p)


def _edge_diagonal(edges: _Edges, pair_curvature: np.ndarray) -> np.ndarray:
    n = edges.n
    return edges.by_low.sum(pair_curvature) + np.bincount(edges.high, pair_curvature, n)


def _edge_coupling(edges: _Edges, curvature: np.ndarray) -> np.ndarray:
    """The θ–δ column of the information: +curvature at A, −curvature at B."""
    n = edges.n
    return edges.by_first.sum(curvature) - np.bincount(edges.second, curvature, n)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e⁻ˣ), several times faster than scipy's expit on large arrays."""
    with np.errstate(over="ignore"):
        e = np.exp(-x)
    e += 1.0
    return np.reciprocal(e, out=e)


def _laplacian_cg(
    adjacency: Callable[[np.ndarray], np.ndarray],
    diagonal: np.ndarray,
    rhs: np.ndarray,
    rtol: float,
    coupling: np.ndarray | None = None,
    curvature_delta: float = 0.0,
    *,
    shift: bool = True,
) -> np.ndarray:
    """Solve (F [+ 11ᵀ/n over θ]) x = rhs by Jacobi-preconditioned CG.

    F over θ is diag(D) − A (x ↦ A x is ``adjacency``); with a position effect F gains the θ–δ
    column ``coupling`` and the δ–δ entry ``curvature_delta``. ``shift`` adds 11ᵀ/n, which
    removes the null direction of an unpenalised θ; rhs must then sum to zero over θ.
    """
    n = len(diagonal)
    shift = 1.0 / n if shift else 0.0

    def theta_block(x: np.ndarray) -> np.ndarray:
        return diagonal * x - adjacency(x) + shift * x.sum()

    if coupling is None:
        return conjugate_gradient(theta_block, rhs, diagonal + shift, rtol=rtol)

    def matvec(x: np.ndarray) -> np.ndarray:
        theta, delta = x[:n], x[n]
        top = theta_block(theta) + coupling * delta
        return np.append(top, dot(coupling, theta) + curvature_delta * delta)

    return conjugate_gradient(matvec, rhs, np.append(diagonal + shift, curvature_delta), rtol=rtol)


@dataclass(frozen=True)
class _Cavity:
    """Cavity (Gaussian belief propagation) approximation to P pinv(F) P."""

    variances: np.ndarray
    #: Var(θ_first − θ_second [+ δ]) for each edge.
    resistance: np.ndarray
    messages: np.ndarray


def _edge_cavity(
    edges: _Edges,
    curvature: np.ndarray,
    messages: np.ndarray | None = None,
    *,
    tol: float = _CAVITY_TOL,
    laplacian: _EdgeLaplacian | None = None,
    alpha: float = 0.0,
) -> _Cavity:
    """Approximate variances and edge resistances by the cavity method on the Laplacian.

    With F_θθ = D − A (D diagonal, A the pair curvatures), the cavity precision of essay i
    without neighbour j solves Pᵢ₍ⱼ₎ = Dᵢ − Σ_{k ∈ N(i), k ≠ j} Aᵢₖ² / Pₖ₍ᵢ₎ (Gaussian
    belief propagation); Var θᵢ ≈ 1 / (Dᵢ − Σₖ Aᵢₖ² / Pₖ₍ᵢ₎) and Var(θᵢ − θⱼ) over a compared
    pair from the 2 × 2 precision [[Pᵢ₍ⱼ₎, −Aᵢⱼ], [−Aᵢⱼ, Pⱼ₍ᵢ₎]]. Exact on a tree; on
    comparison designs it misses only short cycles (measured error in docs/scoring.md).
    With a position effect, δ enters exactly through its Schur complement: one conjugate
    gradient solve of F_θθ x = b (b the θ–δ column), σ = F_δδ − bᵀx, Var θ += x²/σ,
    Var δ = 1/σ. A ridge penalty adds 2α to D. Cost O(pairs) per sweep; ``messages`` from
    a nearby fit start the sweeps near their fixed point.
    """
    n = edges.n
    low, high = edges.low, edges.high
    weight = edges.per_pair(curvature)
    diagonal = _edge_diagonal(edges, weight) + 2.0 * alpha
    size = len(weight)
    square = weight * weight
    # Directed messages as two halves of one array: from low's side of each pair (low
    # without high) and from high's side; each half's reverse is the other half. The sweeps
    # write them in place, so warm messages are copied.
    precision = np.empty(2 * size)
    from_low, from_high = precision[:size], precision[size:]
    if messages is None:
        np.take(diagonal, low, out=from_low)
        np.take(diagonal, high, out=from_high)
    else:
        np.copyto(precision, messages)
    into_low, into_high = np.empty(size), np.empty(size)
    # A stray message (0 or negative) shows as non-finite variances, handled below.
    with np.errstate(divide="ignore", invalid="ignore"):
        previous = None
        for sweep in range(_CAVITY_MAX_SWEEPS + 1):
            np.divide(square, from_high, out=into_low)
            np.divide(square, from_low, out=into_high)
            total = edges.by_low.sum(into_low)
            total += np.bincount(high, into_high, n)
            if previous is not None:
                # Messages have converged when no essay's incoming total moves (relative to
                # its information): checking n totals costs far less than 2P messages.
                change = float(np.max(np.abs(total - previous) / diagonal)) if size else 0.0
                if change < tol or sweep == _CAVITY_MAX_SWEEPS:
                    break
            previous = total
            # Pᵢ₍ⱼ₎ = (Dᵢ − Σₖ incoming) + the message from j itself.
            remaining = diagonal - total
            np.take(remaining, low, out=from_low)
            from_low += into_low
            np.take(remaining, high, out=from_high)
            from_high += into_high
        variances = 1.0 / (diagonal - total)
    if messages is not None and not np.all(np.isfinite(variances) & (variances > 0)):
        # Warm messages from a distant fit can send loopy propagation astray; start cold.
        return _edge_cavity(edges, curvature, laplacian=laplacian, alpha=alpha, tol=tol)
    pair_resistance = (from_low + from_high - 2.0 * weight) / (from_low * from_high - square)
    resistance = edges.of_pair(pair_resistance)
    if edges.position:
        coupling = _edge_coupling(edges, curvature)
        laplacian = _EdgeLaplacian(edges) if laplacian is None else laplacian
        x = _laplacian_cg(laplacian.matrix(weight), diagonal, coupling, 1e-10, shift=alpha == 0)
        schur = curvature.sum() - dot(coupling, x)
        if not schur > 0:
            raise _unidentified_position_effect()
        variances = np.append(variances + x**2 / schur, 1.0 / schur)
        resistance = resistance + ((x[edges.first] - x[edges.second]) - 1.0) ** 2 / schur
    return _Cavity(variances=variances, resistance=resistance, messages=precision)


def _log_win(margin: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log σ(margin), from p = σ(margin) while no p underflows."""
    return np.log(p) if p.min() > 0 else -np.logaddexp(0.0, -margin)


def _edge_newton(
    z: np.ndarray,
    edges: _Edges,
    wins_first: np.ndarray,
    wins_second: np.ndarray,
    laplacian: _EdgeLaplacian,
    margin: np.ndarray | None = None,
    *,
    looseness: float = 1.0,
) -> tuple[np.ndarray, int, bool]:
    """Damped Newton for the ML fit of these per-edge counts, keeping Σθ = 0.

    The same iteration as :func:`_newton` on the design of the counts, over edges: the
    Hessian is solved by CG on the pair Laplacian and the step backtracked on the
    negative log-likelihood −Σ [w₁ log p + w₂ log(1 − p)]. Returns the estimate, the
    number of Newton steps and whether the gradient tolerance (times ``looseness``) was met.
    """
    n, position = edges.n, edges.position
    trials = wins_first + wins_second
    tol = _GRADIENT_TOL * looseness * max(1.0, trials.sum() / n)
    margin = edges.margin(z) if margin is None else margin
    p = _sigmoid(margin)
    log_p = _log_win(margin, p)
    # log(1 − p) = log p − margin.
    value = dot(wins_second, margin) - dot(trials, log_p)
    for iteration in range(_MAX_NEWTON_ITER + 1):
        residual = trials * p - wins_first
        grad = edges.by_first.sum(residual) - np.bincount(edges.second, residual, n)
        if position:
            grad = np.append(grad, residual.sum())
        largest = float(np.max(np.abs(grad)))
        if largest <= tol:
            return z, iteration, True
        if iteration == _MAX_NEWTON_ITER:
            break
        curvature = trials * p * (1.0 - p)
        weight = edges.per_pair(curvature)
        # Solving to a relative residual of |∇| gives Newton's quadratic convergence; once
        # |∇|² < tol one step can finish, and the solve need only leave a residual of tol.
        step = _laplacian_cg(
            laplacian.matrix(weight),
            _edge_diagonal(edges, weight),
            -grad,
            min(0.1, max(largest, 0.5 * tol / largest, 1e-12)),
            _edge_coupling(edges, curvature) if position else None,
            float(curvature.sum()),
        )
        slope = dot(grad, step)
        if not slope < 0:
            step, slope = -grad, -dot(grad, grad)
        # Near the optimum the objective changes by less than its rounding error.
        slack = 1e-12 * max(1.0, abs(value))
        t = 1.0
        while True:
            candidate = z + t * step
            candidate_margin = edges.margin(candidate)
            candidate_p = _sigmoid(candidate_margin)
            candidate_log_p = _log_win(candidate_margin, candidate_p)
            candidate_value = dot(wins_second, candidate_margin) - dot(trials, candidate_log_p)
            if candidate_value <= value + 1e-4 * t * slope + slack:
                break
            t *= 0.5
            if t < 1e-12:
                return z, iteration, False
        candidate[:n] -= candidate[:n].mean()
        z, p, log_p, value = candidate, candidate_p, candidate_log_p, candidate_value
    return z, _MAX_NEWTON_ITER, False


def _firth_sparse(edges: _Edges) -> tuple[np.ndarray, int, bool, np.ndarray, _Cavity]:
    """Firth's estimate above ``FIRTH_EXACT_MAX_ESSAYS`` essays, with cavity leverages.

    The modified score is Σₑ aₑ (w₁ₑ − mₑ pₑ + Hₑ (½ − pₑ)), Hₑ = mₑ pₑ (1 − pₑ) aₑᵀ F⁻¹ aₑ
    the leverage of edge e (Firth 1993; Heinze & Schemper 2002): the ML score of the data
    with Hₑ/2 pseudo-decisions added each way. So cjlib alternates leverages at the current
    estimate (cavity approximation, warm-started) with the ML fit (damped Newton,
    warm-started) of the augmented data, until the augmented fit needs no step at the
    current leverages or moves no parameter by more than ``_FIRTH_SPARSE_STEP_TOL`` of its
    standard error. Returns (θ[, δ]), the Newton steps taken, whether it converged, the
    pseudo-decisions Hₑ/2 on each side and the last cavity.

    With cavity leverages the modified score can have several roots in sparse designs
    (an essay joined to the rest by one or two decisions); this alternation, from the
    leverages at θ = 0, lands on the root next to the exact-leverage estimate where the
    joint iteration need not (measured in docs/scoring.md). Such essays' scores are nearly
    flat between the roots, so the alternation creeps there; once Anderson mixing stalls,
    :func:`_secant_step` accelerates each parameter on its own.
    """
    n, position = edges.n, edges.position
    laplacian = _EdgeLaplacian(edges)
    # Leverages at θ = 0 (every p = ½) are a safe start: at the smoothed log-odds an essay
    # that won everything gets a leverage near 0 and the first augmented fit runs off.
    z = np.zeros(n + position)
    cavity = None
    total, converged = 0, False
    # The map z → (ML fit of the data augmented at z's leverages) contracts linearly (by
    # about 0.3 per step at 10 comparisons per essay); Anderson mixing cuts 15–20 steps to
    # about 6, and per-parameter secant steps take over where it stalls.
    mixing = _AndersonMixing()
    previous: tuple[np.ndarray, np.ndarray] | None = None
    stalled = False
    step = math.inf
    for outer in range(_MAX_FIRTH_ROUNDS):
        # A round only needs its leverages and its augmented fit to a small fraction of the
        # step it is about to take (an inexact fixed-point iteration): tolerances loosen in
        # proportion to the last step, and the final rounds run at full precision.
        looseness = min(_FIRTH_MAX_LOOSENESS, max(1.0, step / _FIRTH_SPARSE_STEP_TOL))
        margin = edges.margin(z)
        p = _sigmoid(margin)
        information = edges.trials * p * (1.0 - p)
        messages = None if cavity is None else cavity.messages
        cavity = _edge_cavity(
            edges, information, messages, laplacian=laplacian, tol=_CAVITY_TOL * looseness
        )
        pseudo = 0.5 * information * cavity.resistance
        wins_first, wins_second = edges.wins_first + pseudo, edges.wins_second + pseudo
        start, start_margin = z, margin
        if outer == 0:
            start = _edge_log_odds(edges, wins_first, wins_second)
            start_margin = None
        image, iterations, converged = _edge_newton(
            start, edges, wins_first, wins_second, laplacian, start_margin, looseness=looseness
        )
        total += iterations
        residual = image - z
        # In standard errors (the cavity's, of the Fisher information at z).
        step = float(np.max(np.abs(residual) / np.sqrt(cavity.variances)))
        if (
            converged
            and looseness <= _FIRTH_STOP_LOOSENESS
            and (iterations == 0 or step < _FIRTH_SPARSE_STEP_TOL)
        ):
            # Leverages move the estimate by less than the change in θ they come from, so
            # a step below 1e-4 SE leaves θ within about 1e-4 SE of the fixed point.
            return image, total, True, pseudo, cavity
        stalled = stalled or mixing.stalls(residual)
        if stalled:
            z, previous = _secant_step(z, residual, previous), (z, residual)
        else:
            z = mixing.next(image, residual)
    return z, total, False, pseudo, cavity


class _AndersonMixing:
    """Anderson mixing of a fixed-point map over its last rounds (Walker & Ni 2011)."""

    def __init__(self) -> None:
        self._fitted: list[np.ndarray] = []
        self._residuals: list[np.ndarray] = []

    def stalls(self, residual: np.ndarray) -> bool:
        """Whether a round's step is more than ``_ANDERSON_STALL`` of the last one's."""
        if len(self._residuals) < 2:
            return False
        return np.max(np.abs(residual)) > _ANDERSON_STALL * np.max(np.abs(self._residuals[-1]))

    def next(self, image: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The next iterate from the map's image G(z) and residual G(z) − z of this round.

        It combines the last ``_ANDERSON_MEMORY`` images with the weights that minimise the
        combined residual; after a round whose step grew, it restarts from the plain step.
        """
        if self._residuals and np.max(np.abs(residual)) > np.max(np.abs(self._residuals[-1])):
            self._fitted.clear()
            self._residuals.clear()
        self._fitted.append(image)
        self._residuals.append(residual)
        del self._fitted[:-_ANDERSON_MEMORY], self._residuals[:-_ANDERSON_MEMORY]
        if len(self._fitted) < 2:
            return image
        d_residual = np.diff(np.array(self._residuals), axis=0).T
        d_fitted = np.diff(np.array(self._fitted), axis=0).T
        gamma = np.linalg.lstsq(d_residual, residual, rcond=None)[0]
        mixed = image - d_fitted @ gamma
        return mixed if np.all(np.isfinite(mixed)) else image


def _secant_step(
    z: np.ndarray, residual: np.ndarray, previous: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """The next iterate of the fixed-point map G from z, G(z) = z + residual, per parameter.

    Where G creeps (its slope g near 1, a flat modified score), the plain step z + r
    shrinks the distance to the fixed point only by g per round. Each parameter's own
    secant through the last two rounds estimates 1 − g = −Δr/Δz and steps r/(1 − g),
    between 0.5 and ``_SECANT_MAX_FACTOR`` times the plain step and at most
    ``_SECANT_MAX_STEP``; elsewhere (no previous round, g outside that range) it takes
    the plain step. Comparison designs couple essays weakly, and flat essays hardly at all.
    """
    if previous is None:
        return z + residual
    moved = z - previous[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = moved / (previous[1] - residual)
    usable = (np.abs(moved) > 1e-12) & (factor > 0.5) & (factor < _SECANT_MAX_FACTOR)
    step = np.where(usable, factor, 1.0) * residual
    return z + np.clip(step, -_SECANT_MAX_STEP, _SECANT_MAX_STEP)


def _edge_log_odds(edges: _Edges, wins_first: np.ndarray, wins_second: np.ndarray) -> np.ndarray:
    """Each essay's smoothed log-odds of winning, as :func:`_log_odds_start`."""
    n = edges.n
    wins = np.bincount(edges.first, wins_first, n) + np.bincount(edges.second, wins_second, n)
    losses = np.bincount(edges.first, wins_second, n) + np.bincount(edges.second, wins_first, n)
    return _smoothed_log_odds(wins, losses, edges.position)


def _neumann_variances(design: _Design, h: np.ndarray) -> np.ndarray:
    """Approximate diag pinv(F) by the first two non-zero terms of its Neumann series.

    With F = D − A (D diagonal), diag F⁻¹ ≈ 1/Dᵢ + Σⱼ Aᵢⱼ² / (Dᵢ² Dⱼ); δ takes the Schur
    complement of the diagonal approximation.
    """
    graph = _winner_graph(design, h)
    adjacency = (graph + graph.T).tocsr()
    diagonal = _hessian_diagonal(design, h)
    variances = 1.0 / diagonal + (adjacency.multiply(adjacency) @ (1.0 / diagonal)) / diagonal**2
    if design.sign is None:
        return variances
    coupling = _position_coupling(design, h)
    schur = h.sum() - coupling @ (coupling / diagonal)
    if not schur > 0:
        raise _unidentified_position_effect()
    return np.append(variances, 1.0 / schur)


def _variances(design: _Design, h: np.ndarray, se_method: str) -> np.ndarray:
    if se_method == "pinv_fisher":
        return _exact_covariance(design, h, full=False)
    return _neumann_variances(design, h)


def _symmetric_pattern(design: _Design) -> tuple[_Design, np.ndarray]:
    """The design with every row's reverse added (count 0 if unseen), and reverse indices.

    The reverse of (winner w, loser l, sign s) is (l, w, −s): the same pair in the same
    A/B orientation decided the other way. Firth's adjustment adds pseudo-decisions both ways.
    """
    n = design.n
    if design.sign is None:
        bit = np.zeros(len(design.winner), dtype=np.int64)
        flipped = bit
    else:
        bit = (design.sign > 0).astype(np.int64)
        flipped = 1 - bit
    key = (design.winner * n + design.loser) * 2 + bit
    reverse_key = (design.loser * n + design.winner) * 2 + flipped
    keys, inverse = _sorted_unique(np.concatenate([key, reverse_key]))
    base = np.bincount(inverse[: len(key)], design.weight, len(keys))
    pair = keys // 2
    winner, loser = pair // n, pair % n
    sign = None if design.sign is None else np.where(keys % 2 == 1, 1.0, -1.0)
    own_reverse = (loser * n + winner) * 2 + (0 if design.sign is None else 1 - keys % 2)
    pattern = _Design(
        n=n,
        winner=winner,
        loser=loser,
        sign=sign,
        weight=base,
        alpha=0.0,
        indptr=np.searchsorted(winner, np.arange(n + 1)).astype(np.int64),
    )
    return pattern, np.searchsorted(keys, own_reverse)


def _firth_dense(design: _Design) -> tuple[np.ndarray, int, bool, _Design]:
    """Firth's estimate for small designs: maximise l(z) + ½ log det F(z) directly.

    Each step is a Fisher-scoring step on the modified score (the ML score of the data
    augmented with Hₖ/2 pseudo-decisions each way), solved with the augmented Hessian, and
    backtracked until the penalised log-likelihood l + ½ log det F (F on the sum-to-zero
    subspace, through the Cholesky factor of F + 11ᵀ/n) rises; unlike the plain fixed
    point, this cannot cycle on designs with nearly separated essays.
    """
    pattern, reverse = _symmetric_pattern(design)
    base = pattern.weight
    trials = base + base[reverse]
    n = design.n
    # Fisher scoring converges linearly, slowly along δ in sparse designs with nearly
    # separated essays; a modified score of 1e-7 per unit of information leaves θ and δ
    # within about 1e-7 of the optimum.
    tol = _FIRTH_GRADIENT_TOL * max(1.0, design.weight.sum() / n)

    def penalised(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        value, p = _evaluate(z, pattern)
        fisher = _dense_hessian(pattern, base * p * (1.0 - p))
        fisher[:n, :n] += 1.0 / n
        factor, info = scipy.linalg.lapack.dpotrf(fisher, lower=1)
        if info != 0:
            return None
        return value - float(np.sum(np.log(np.diag(factor)))), p, factor

    z = np.zeros(n + (design.sign is not None))
    state = penalised(z)
    if state is None:
        raise _unidentified_position_effect()
    for iteration in range(_MAX_NEWTON_ITER * 2):
        value, p, factor = state
        inverse, _ = scipy.linalg.lapack.dpotri(factor, lower=1)
        cov = np.tril(inverse) + np.tril(inverse, -1).T
        cov[:n, :n] -= 1.0 / n
        w, lo = pattern.winner, pattern.loser
        resistance = cov[w, w] + cov[lo, lo] - 2.0 * cov[w, lo]
        if pattern.sign is not None:
            resistance += cov[n, n] + 2.0 * pattern.sign * (cov[w, n] - cov[lo, n])
        information = p * (1.0 - p)
        augmented = replace(pattern, weight=base + 0.5 * trials * information * resistance)
        grad, h = _gradient_and_curvature(z, p, augmented)
        if np.max(np.abs(grad)) <= tol:
            return z, iteration, True, augmented
        step = _dense_solver(augmented)(h, grad)
        slope = grad @ step
        t = 1.0
        while True:
            candidate = z + t * step
            candidate[:n] -= candidate[:n].mean()
            trial = penalised(candidate)
            if trial is not None and trial[0] <= value + 1e-4 * t * slope + 1e-12 * abs(value):
                break
            t *= 0.5
            if t < 1e-12:
                return z, iteration, False, augmented
        z, state = candidate, trial
    return z, _MAX_NEWTON_ITER * 2, False, augmented


def _fit_sirt(
    design: _Design, eps: float, position_effect: bool
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """The ε-adjusted estimator of ``sirt::btm`` with ties ignored and η fixed at 0 or free.

    Follows the algorithm of sirt's ``btm`` (Robitzsch): each essay's win count wᵢ out of
    Nᵢ becomes ε + (Nᵢ − 2ε) wᵢ / Nᵢ; θ starts at logit((that share + 0.1) / 1.2), centred;
    each sweep t takes one Newton step per parameter from the same fitted probabilities
    (η first when estimated, then every θᵢ), each capped at 0.98ᵗ in size, then centres θ;
    it stops when no parameter moved more than 1e-4 or after 100 sweeps.
    ``se.theta`` = 1/√(Σ p(1 − p)) from the last sweep's probabilities. Returns z =
    (θ[, η]), sirt's SEs of θ, the sweeps and whether the change rule was met.
    """
    n = design.n
    c, w, lo = design.weight, design.winner, design.loser
    wins = np.bincount(w, c, n)
    played = wins + np.bincount(lo, c, n)
    score = eps + (played - 2.0 * eps) * wins / played
    theta = logit((score / played + 0.1) / 1.2)
    theta -= theta.mean()
    eta = 0.0
    if position_effect:
        score_eta = float(c[design.sign > 0].sum())
    cap = 1.0
    se = np.full(n, np.nan)
    sweeps = 0
    while sweeps < _SIRT_MAX_ITER:
        sweeps += 1
        previous, previous_eta = theta, eta
        margin = theta[w] - theta[lo]
        if position_effect:
            margin = margin + design.sign * eta
        p = expit(margin)
        cap *= _SIRT_STEP_DECAY
        information = c * p * (1.0 - p)
        if position_effect:
            expected_a = float(c @ np.where(design.sign > 0, p, 1.0 - p))
            eta = eta + float(np.clip((score_eta - expected_a) / information.sum(), -cap, cap))
        q = c * p
        expected = np.bincount(w, q, n) + np.bincount(lo, c - q, n)
        curvature = 1e-20 + np.bincount(w, information, n) + np.bincount(lo, information, n)
        theta = theta + np.clip((score - expected) / curvature, -cap, cap)
        se = 1.0 / np.sqrt(curvature)
        theta = theta - theta.mean()
        change = max(float(np.max(np.abs(theta - previous))), abs(eta - previous_eta))
        if change <= _SIRT_CONV:
            break
    z = np.append(theta, eta) if position_effect else theta
    return z, se, sweeps, change <= _SIRT_CONV


def _reliabilities(
    theta: np.ndarray, se: np.ndarray, informative: np.ndarray, name: str
) -> tuple[float, float, float]:
    """(reliability of the named kind, G, sirt's sepG) over essays with information."""
    theta, se = theta[informative], se[informative]
    variance = float(np.var(theta, ddof=1)) if len(theta) > 1 else 0.0
    mean_square_error = float(np.mean(se**2))
    if not variance > 0:
        return math.nan, 0.0, 0.0
    if name == "eap_rel":
        reliability = variance / (variance + mean_square_error)
    else:
        reliability = (variance - mean_square_error) / variance
    sep_g = math.sqrt(max(variance - mean_square_error, 0.0) / mean_square_error)
    return reliability, sep_g, math.sqrt(variance / mean_square_error)


def _components(design: _Design) -> tuple[int, np.ndarray]:
    # Edges winner → loser: the reverse of the loser → winner graph, same strong components.
    graph = _winner_graph(design, np.ones(len(design.winner)))
    # csgraph misreads repeated entries, which a position design has (one per position).
    graph.sum_duplicates()
    return connected_components(graph, directed=True, connection="strong")


def _disconnected_error(
    essay_ids: pd.Index, labels: np.ndarray, wins: np.ndarray, losses: np.ndarray
) -> DisconnectedComparisonsError:
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [essay_ids[part].tolist() for part in np.split(order, bounds)]
    groups.sort(key=len, reverse=True)
    always_win = essay_ids[losses == 0].tolist()
    always_lose = essay_ids[wins == 0].tolist()
    sizes = _listed([len(g) for g in groups])
    message = (
        f"the comparisons form {len(groups)} groups that are not linked both ways "
        f"(sizes {sizes}), so Bradley–Terry scores do not exist; "
        f"{len(always_win)} essay(s) never lost ({_listed(always_win)}) and "
        f"{len(always_lose)} never won ({_listed(always_lose)}). Add comparisons that "
        "link the groups, or use method='firth' (finite when the groups are linked at all)"
    )
    return DisconnectedComparisonsError(
        message, components=groups, always_win=always_win, always_lose=always_lose
    )


def _whole_if_integral(values: np.ndarray, integral: bool) -> np.ndarray:
    return np.rint(values).astype(np.int64) if integral else values


def _fit_statistics(
    decisions: _Decisions, z: np.ndarray, position_effect: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-decision terms of infit and outfit, and the log-likelihood.

    Returns the count-weighted squared residual (1 − p)², information p(1 − p) and
    outfit term (1 − p)/p, p the fitted probability that the chosen essay wins.
    """
    n = len(decisions.essay_ids)
    x = z[decisions.winner] - z[decisions.loser]
    if position_effect:
        x = x + np.where(decisions.winner_in_a, 1.0, -1.0) * z[n]
    p = _sigmoid(x)
    c = decisions.weight
    log_likelihood = dot(c, _log_win(x, p))
    return c * (1.0 - p) ** 2, c * p * (1.0 - p), c * np.exp(-x), log_likelihood


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _judge_table(
    decisions: _Decisions, terms: tuple[np.ndarray, np.ndarray, np.ndarray], integral: bool
) -> pd.DataFrame:
    if decisions.judge is None:
        return pd.DataFrame(
            {"n": [], "infit": [], "outfit": [], "misfit": pd.Series([], dtype=bool)},
            index=pd.Index([], name="judge_id"),
        )
    codes, judges = pd.factorize(decisions.judge)
    kept = codes >= 0
    k = len(judges)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes[kept], values[kept], k)

    squared, information, outfit = terms
    weight = total(decisions.weight)
    infit = _ratio(total(squared), total(information))
    return pd.DataFrame(
        {
            "n": _whole_if_integral(weight, integral),
            "infit": infit,
            "outfit": _ratio(total(outfit), weight),
            "misfit": _misfit(infit),
        },
        index=pd.Index(judges, name="judge_id"),
    )


def _misfit(infit: np.ndarray) -> np.ndarray:
    """Infit above mean + 2 SD over the judges with a finite infit (Pollitt 2012)."""
    finite = np.isfinite(infit)
    flagged = np.zeros(len(infit), dtype=bool)
    if finite.sum() < 3:
        # The SD of one or two judges says nothing about who is out of line.
        return flagged
    values = infit[finite]
    threshold = values.mean() + MISFIT_SDS * values.std(ddof=1)
    flagged[finite] = values > threshold
    return flagged


def _resolve_engine(engine: str, n: int, position_effect: bool, method: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
    if engine == "choix" and position_effect:
        raise ValueError("the choix engine cannot estimate a position effect; use 'sparse'")
    if engine == "auto":
        small = n <= AUTO_CHOIX_MAX_ESSAYS and not position_effect and method != "sirt"
        return "choix" if small else "sparse"
    return engine


def _resolve_se_method(se_method: str | None, n: int) -> str:
    if se_method is None:
        return "pinv_fisher" if n <= EXACT_SE_MAX_ESSAYS else "cavity_approx"
    if se_method not in SE_METHODS:
        raise ValueError(f"unknown se_method {se_method!r}; use None or one of {SE_METHODS}")
    return se_method


def _resolve_method(method: str | None, alpha: float | None) -> tuple[str, float]:
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if method is None:
        # Old callers: alpha > 0 meant ridge, an explicit alpha = 0 meant the MLE.
        if alpha is None:
            return DEFAULT_METHOD, 0.0
        return ("ridge", float(alpha)) if alpha > 0 else ("mle", 0.0)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if method == "ridge":
        if not alpha:
            raise ValueError("method='ridge' needs alpha > 0; pass e.g. alpha=0.03")
        return method, float(alpha)
    if alpha:
        raise ValueError(f"alpha applies to method='ridge' only; drop it for method={method!r}")
    return method, 0.0


def _not_linked_error(
    essay_ids: pd.Index, labels: np.ndarray, method: str
) -> DisconnectedComparisonsError:
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [essay_ids[part].tolist() for part in np.split(order, bounds)]
    groups.sort(key=len, reverse=True)
    message = (
        f"the comparisons form {len(groups)} groups with no comparison between them "
        f"(sizes {_listed([len(g) for g in groups])}; essays with only count-0 rows are groups "
        f"of their own), so {method} scores are not identified. Add comparisons that link "
        "the groups, or use method='ridge' with alpha > 0"
    )
    return DisconnectedComparisonsError(message, components=groups)


def _position_summary(
    estimate: float, variance: float, fisher_variances: np.ndarray | None
) -> dict[str, float]:
    summary = {"estimate": float(estimate), "se": float(math.sqrt(variance))}
    if fisher_variances is not None:
        summary["se_fisher"] = float(math.sqrt(fisher_variances[-1]))
    return summary


@cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _single_threaded_blas(fit: Callable[..., BTResult]) -> Callable[..., BTResult]:
    """Run ``fit`` with BLAS on one thread.

    The dense factorisations (exact SEs up to ``EXACT_SE_MAX_ESSAYS`` essays, the small-design
    Firth fit) are small enough that OpenBLAS's threads gain little, and on a busy machine
    they wait for one another: a 1,000-essay covariance took 2.3 s instead of 0.1 s at load
    average 5 on 2 CPUs (docs/scoring.md).
    """

    @wraps(fit)
    def run(*args, **kwargs) -> BTResult:
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fit(*args, **kwargs)

    return run


@_single_threaded_blas
def fit_bradley_terry(
    comparisons: pd.DataFrame,
    *,
    method: str | None = None,
    alpha: float | None = None,
    engine: str = "auto",
    position_effect: bool = False,
    se_method: str | None = None,
    sirt_eps: float = SIRT_EPS,
) -> BTResult:
    """Fit Bradley–Terry scores, standard errors and fit statistics to essay comparisons.

    The likelihood is Πₖ σ(θ_wₖ − θ_lₖ + sₖ δ)^cₖ, with Σθ = 0 and δ = 0 unless
    ``position_effect``. Standard errors are √diag P pinv(F) P, F the Fisher information
    over (θ, δ) at the estimate (plus 2αI for ridge; for Firth the information of the data
    plus Firth's pseudo-decisions, with BradleyTerry2's √diag F⁺ in ``scores["se_fisher"]``)
    and P the projection onto Σθ = 0.
    Infit is Σ c(1 − p)² / Σ c p(1 − p) and outfit Σ c(1 − p)/p / Σ c over the decisions of
    an essay or judge, p the fitted probability of the decision made.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Either ``winner_id``, ``loser_id``, or ``essay_a_id``, ``essay_b_id``, ``winner``
        with values ``"essay_a"`` / ``"essay_b"`` (rows whose winner is ``"error"`` or null
        are ignored and counted). Optional ``judge_id`` and ``count`` (a non-negative
        weight, default 1: a row with count k equals k identical rows).
    method : {None, "mle", "firth", "sirt", "ridge"}, default None
        ``"mle"``: maximum likelihood; exists only when the directed win graph is strongly
        connected. ``"firth"``: Firth's bias-reduced estimate, the likelihood times the
        Jeffreys prior |F|^½ (Firth 1993; BradleyTerry2's ``br = TRUE``), finite whenever
        the comparison graph is connected. ``"sirt"``: sirt's ``btm`` with ``eps =
        sirt_eps``, ties ignored, ``fix.eta = 0`` (η estimated, as ``fix.eta = NULL``, with
        ``position_effect``); ``scores["se_sirt"]``, ``reliability`` and ``sep_g_sirt`` are
        sirt's ``se.theta``, ``mle.rel`` and ``sepG``. ``"ridge"``: adds α Σθ² to the
        negative log-likelihood (the objective of :func:`choix.opt_pairwise`). None:
        ``"ridge"`` if ``alpha > 0``, ``"mle"`` if ``alpha == 0`` is passed (as before),
        else :data:`DEFAULT_METHOD`.
    alpha : float, optional
        Ridge penalty; only with ``method="ridge"`` (or with ``method=None``).
    engine : {"auto", "choix", "sparse"}, default "auto"
        ``"choix"``: :func:`choix.ilsr_pairwise_dense` start, then dense Newton.
        ``"sparse"``: Newton with conjugate gradients on the sparse Hessian, never forming
        an n × n matrix. ``"auto"``: choix for at most ``AUTO_CHOIX_MAX_ESSAYS`` essays
        and no position effect, else sparse. sirt runs its own sweeps.
    position_effect : bool, default False
        Estimate δ in P(essay in position A wins) = σ(θ_A − θ_B + δ). Needs positions.
    se_method : {None, "pinv_fisher", "cavity_approx", "neumann_approx"}, default None
        None gives the exact ``"pinv_fisher"`` up to ``EXACT_SE_MAX_ESSAYS`` essays (it
        inverts a dense n × n matrix) and ``"cavity_approx"`` above.
    sirt_eps : float, default 0.3
        sirt's ε (``method="sirt"`` only), > 0.

    Returns
    -------
    BTResult
        Scores sorted by θ descending, judge fit, reliability and fit metadata.

    Raises
    ------
    ValueError
        Missing columns, self-comparisons, NaN ids, negative or non-numeric counts,
        unknown winner values (naming the first offending row labels), no decisions left,
        a position effect without positions or with one position winning every decision,
        a bad alpha for the method, or an unknown method, engine or se_method.
    DisconnectedComparisonsError
        ``"mle"`` and the win graph is not strongly connected (it lists the strongly
        connected components and the essays that always win or always lose), or
        ``"firth"``/``"sirt"`` and some essays are not compared with the rest at all.
    """
    method, alpha = _resolve_method(method, alpha)
    if method == "sirt" and not (math.isfinite(sirt_eps) and sirt_eps > 0):
        raise ValueError(f"sirt_eps must be a finite number > 0, got {sirt_eps!r}")
    decisions = _parse_comparisons(comparisons, position_effect)
    n = len(decisions.essay_ids)
    engine = _resolve_engine(engine, n, position_effect, method)
    se_method = _resolve_se_method(se_method, n)

    weight = decisions.weight
    share_a = None
    if decisions.winner_in_a is not None:
        share_a = float(weight[decisions.winner_in_a].sum() / weight.sum())
        if position_effect and share_a in (0.0, 1.0) and method in ("mle", "ridge"):
            raise ValueError(
                "the position effect is infinite: one position won every decision; "
                "fit without position_effect"
            )
    wins = np.bincount(decisions.winner, weight, n)
    losses = np.bincount(decisions.loser, weight, n)

    design = _aggregate(decisions, alpha, position_effect)
    n_components, labels = _components(design)
    connected = n_components == 1
    if not connected and method == "mle":
        raise _disconnected_error(decisions.essay_ids, labels, wins, losses)
    if not connected and method in ("firth", "sirt"):
        graph = _winner_graph(design, np.ones(len(design.winner)))
        graph.sum_duplicates()
        n_linked, linked = connected_components(graph, directed=False)
        if n_linked > 1:
            raise _not_linked_error(decisions.essay_ids, linked, method)

    se_sirt = None
    edges = pseudo = messages = augmented = firth_cavity = None
    if method == "firth" and n <= FIRTH_EXACT_MAX_ESSAYS:
        z, iterations, converged, augmented = _firth_dense(design)
        engine = "dense"
    elif method == "firth":
        edges = _edges(design)
        z, iterations, converged, pseudo, firth_cavity = _firth_sparse(edges)
        messages = firth_cavity.messages
        engine = "sparse"
    elif method == "sirt":
        z, se_sirt, iterations, converged = _fit_sirt(design, sirt_eps, position_effect)
        engine = "sparse"
    else:
        if engine == "choix":
            start, solver = _choix_start(design), _dense_solver(design)
        else:
            start, solver = _log_odds_start(design), _cg_solver(design)
        z, _, iterations, converged = _newton(start, design, solver)
    if not converged:
        logger.warning(
            "Bradley–Terry fit (%s) did not converge after %d iterations", method, iterations
        )
    if se_method == "cavity_approx":
        edges = _edges(design) if edges is None else edges
        fisher_information = None
        if position_effect or firth_cavity is None or not converged:
            fisher_information = _edge_information(edges, z)[1]
            total_curvature = float(fisher_information.sum())
        if firth_cavity is not None and converged:
            # Firth's last leverages came from this cavity, of the Fisher information at
            # an estimate less than 1e-6 from z.
            cavity = firth_cavity
        else:
            # Firth's last messages start the sweeps near their fixed point.
            cavity = _edge_cavity(
                edges, fisher_information, messages, alpha=alpha, tol=_SE_CAVITY_TOL
            )
        variances, messages = cavity.variances, cavity.messages
    else:
        _, p = _evaluate(z, design)
        _, curvature = _gradient_and_curvature(z, p, design)
        total_curvature = float(curvature.sum())
        variances = _variances(design, curvature, se_method)
    fisher_variances = None
    if method == "firth":
        fisher_variances = variances
        # The information of the data plus the pseudo-decisions of the last iteration.
        if pseudo is not None and se_method == "cavity_approx":
            augmented_trials = edges.trials + 2.0 * pseudo
            information = _edge_information(edges, z, augmented_trials)[1]
            variances = _edge_cavity(edges, information, messages, tol=_SE_CAVITY_TOL).variances
        else:
            if augmented is None:
                augmented = _edges_design(
                    edges, edges.wins_first + pseudo, edges.wins_second + pseudo
                )
            if se_method == "cavity_approx":
                augmented_edges = _edges(augmented)
                information = _edge_information(augmented_edges, z)[1]
                variances = _edge_cavity(augmented_edges, information, messages).variances
            else:
                _, p_augmented = _evaluate(z, augmented)
                variances = _variances(
                    augmented, augmented.weight * p_augmented * (1.0 - p_augmented), se_method
                )
    # Var(δ) is at least 1/Σh; far above it, δ is only nominally estimated.
    if position_effect and not variances[n] * total_curvature < _MAX_POSITION_VARIANCE_RATIO:
        raise _unidentified_position_effect()
    theta, se = z[:n], np.sqrt(variances[:n])

    squared, information, outfit, log_likelihood = _fit_statistics(decisions, z, position_effect)

    def per_essay(values: np.ndarray) -> np.ndarray:
        return np.bincount(decisions.winner, values, n) + np.bincount(decisions.loser, values, n)

    integral = bool(np.all(weight == np.rint(weight)))
    columns = {
        "theta": theta,
        "se": se,
        "wins": _whole_if_integral(wins, integral),
        "losses": _whole_if_integral(losses, integral),
        "n_comparisons": _whole_if_integral(wins + losses, integral),
        "infit": _ratio(per_essay(squared), per_essay(information)),
        "outfit": _ratio(per_essay(outfit), wins + losses),
    }
    if se_sirt is not None:
        columns["se_sirt"] = se_sirt
    if fisher_variances is not None:
        columns["se_fisher"] = np.sqrt(fisher_variances[:n])
    scores = pd.DataFrame(columns, index=decisions.essay_ids).sort_values(
        "theta", ascending=False, kind="stable"
    )

    reliability_name = "eap_rel" if method == "ridge" else "mle_rel"
    informative = (wins + losses) > 0
    reliability, sep_g, sep_g_sirt = _reliabilities(
        theta, se if se_sirt is None else se_sirt, informative, reliability_name
    )

    return BTResult(
        scores=scores,
        judges=_judge_table(decisions, (squared, information, outfit), integral),
        method=method,
        alpha=alpha,
        reliability=reliability,
        reliability_name=reliability_name,
        sep_g=sep_g,
        sep_g_sirt=sep_g_sirt,
        position_effect=(
            _position_summary(z[n], variances[n], fisher_variances) if position_effect else None
        ),
        position_a_win_share=share_a,
        log_likelihood=log_likelihood,
        deviance=-2.0 * log_likelihood,
        iterations=iterations,
        converged=converged,
        engine=engine,
        se_method=se_method,
        connected=connected,
        n_ignored=decisions.n_ignored,
        n_comparisons=round(weight.sum()) if integral else float(weight.sum()),
    )
