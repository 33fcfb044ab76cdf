"""Bradley–Terry scores for essays from comparative judgements, with standard errors and fit.

The model is P(i beats j) = σ(θᵢ − θⱼ), optionally with a position effect δ so that
P(essay in position A wins) = σ(θ_A − θ_B + δ). :func:`fit_bradley_terry` minimises

    −Σₖ cₖ log σ(θ_wₖ − θ_lₖ + sₖ δ) + α Σᵢ θᵢ²,

the objective of :func:`choix.opt_pairwise` (cₖ the count of decision k, sₖ = +1 when the
winner sat in position A and −1 when it sat in position B), with θ summing to zero. The
formulas, the engines and measured run times are in ``docs/scoring.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import choix
import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, cg
from scipy.special import expit

from cjlib.errors import DisconnectedComparisonsError

__all__ = [
    "AUTO_CHOIX_MAX_ESSAYS",
    "ENGINES",
    "EXACT_SE_MAX_ESSAYS",
    "SE_METHODS",
    "BTResult",
    "DisconnectedComparisonsError",
    "fit_bradley_terry",
]

logger = logging.getLogger(__name__)

ENGINES = ("auto", "choix", "sparse")
SE_METHODS = ("pinv_fisher", "neumann_approx")
AUTO_CHOIX_MAX_ESSAYS = 300
EXACT_SE_MAX_ESSAYS = 3000

_WINNER_FORM = ("winner_id", "loser_id")
_POSITION_FORM = ("essay_a_id", "essay_b_id", "winner")
_POSITION_A, _POSITION_B, _IGNORED_WINNER = "essay_a", "essay_b", "error"
_MAX_LISTED = 5
#: Var(δ)·Σh above this means the position effect is confounded with the abilities.
_MAX_POSITION_VARIANCE_RATIO = 1e6
_GRADIENT_TOL = 1e-10
_MAX_NEWTON_ITER = 100
_CHOIX_MAX_ITER = 500
_CHOIX_TOL = 1e-8


@dataclass(frozen=True)
class BTResult:
    """A fitted Bradley–Terry model.

    Attributes
    ----------
    scores : pandas.DataFrame
        One row per essay, indexed by ``essay_id`` (ids keep their input type), sorted by
        ``theta`` descending. Columns: ``theta`` (sums to zero), ``se``, ``wins``,
        ``losses``, ``n_comparisons`` (count-weighted; integers when every count is whole),
        ``infit``, ``outfit`` (NaN for an essay whose decisions all have count 0).
    judges : pandas.DataFrame
        Indexed by ``judge_id`` in order of first appearance, with ``n`` (count-weighted
        decisions), ``infit``, ``outfit``. Empty, with these columns, when the input has no
        ``judge_id``; rows with a null judge are left out.
    reliability : float
        Scale separation reliability (var(θ) − mean(SE²)) / var(θ), with var taken over
        essays with denominator n − 1. NaN when all θ are equal; negative when the SEs
        exceed the spread.
    separation : float
        G = √max(var(θ) − mean(SE²), 0) / √mean(SE²): the true SD over the RMSE.
    position_effect : dict or None
        ``{"estimate": δ, "se": SE(δ)}`` when requested, else None. δ > 0 favours
        position A.
    position_a_win_share : float or None
        Count-weighted share of decisions won by the essay in position A, whenever the
        input gives positions; None for winner/loser input.
    log_likelihood : float
        Log-likelihood of the decisions at the estimate (without the penalty).
    deviance : float
        −2 · ``log_likelihood``.
    iterations : int
        Newton iterations run by cjlib (for the choix engine, the polishing steps after
        choix's estimate).
    converged : bool
        Whether the largest gradient component reached the tolerance.
    engine : str
        Engine actually used: ``"choix"`` or ``"sparse"``.
    se_method : str
        ``"pinv_fisher"`` (exact) or ``"neumann_approx"``.
    connected : bool
        Whether the directed win graph is strongly connected.
    n_ignored : int
        Rows ignored because the winner was ``"error"`` or null.
    n_comparisons : float
        Total count of the decisions used.
    """

    scores: pd.DataFrame
    judges: pd.DataFrame
    reliability: float
    separation: float
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
    n = design.n
    shift = 1.0 / n if design.alpha == 0 else 0.0

    def solve(h: np.ndarray, grad: np.ndarray) -> np.ndarray:
        graph = _winner_graph(design, h)
        graph_t = graph.T
        diagonal = _hessian_diagonal(design, h)

        def laplacian(x: np.ndarray) -> np.ndarray:
            # Adding 11ᵀ/n (α = 0) removes the null direction of θ; grad ⟂ 1 so the step
            # is unchanged.
            return diagonal * x - graph @ x - graph_t @ x + shift * x.sum()

        if design.sign is None:
            matvec = laplacian
            precondition = diagonal + shift
        else:
            coupling = _position_coupling(design, h)
            curvature_delta = h.sum()

            def matvec(x: np.ndarray) -> np.ndarray:
                theta, delta = x[:n], x[n]
                top = laplacian(theta) + coupling * delta
                return np.append(top, coupling @ theta + curvature_delta * delta)

            precondition = np.append(diagonal + shift, curvature_delta)
        size = len(grad)
        operator = LinearOperator((size, size), matvec=matvec, dtype=float)
        jacobi = LinearOperator((size, size), matvec=lambda r: r / precondition, dtype=float)
        rtol = min(0.1, max(float(np.max(np.abs(grad))), 1e-12))
        step, _ = cg(operator, -grad, rtol=rtol, atol=0.0, maxiter=10 * size, M=jacobi)
        return step

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


def _log_odds_start(design: _Design) -> np.ndarray:
    # Each essay's smoothed log-odds of winning: close enough to save Newton steps.
    n = design.n
    wins = np.bincount(design.winner, design.weight, n)
    losses = np.bincount(design.loser, design.weight, n)
    theta = np.log((wins + 0.5) / (losses + 0.5))
    theta -= theta.mean()
    return theta if design.sign is None else np.append(theta, 0.0)


def _unidentified_position_effect() -> ValueError:
    return ValueError(
        "the position effect is not identified by these comparisons: pairs were not seen in "
        "both A/B orientations often enough to tell position from ability; fit without "
        "position_effect, or balance positions"
    )


def _exact_variances(design: _Design, h: np.ndarray) -> np.ndarray:
    """Diagonal of pinv(F), F the Fisher information over (θ[, δ]) plus the penalty Hessian.

    With α = 0 the null space of F is spanned by u = (1, …, 1[, 0]) / √n, and
    pinv(F) = inv(F + uuᵀ) − uuᵀ, inverted through its Cholesky factor.
    """
    n = design.n
    fisher = _dense_hessian(design, h)
    shift = 1.0 / n if design.alpha == 0 else 0.0
    shifted = fisher.copy()
    shifted[:n, :n] += shift
    factor, info = scipy.linalg.lapack.dpotrf(shifted, lower=1)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=1)
    if info != 0:
        if design.sign is not None:
            # Singular beyond the θ null space: δ is confounded with the abilities.
            raise _unidentified_position_effect()
        logger.debug("Fisher information not positive definite; using an SVD pseudo-inverse")
        return np.diag(np.linalg.pinv(fisher, hermitian=True)).copy()
    variances = np.diag(inverse).copy()
    variances[:n] -= shift
    return variances


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
        "link the groups, or pass alpha > 0 for penalised scores"
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
    p = expit(x)
    c = decisions.weight
    log_likelihood = -float(c @ np.logaddexp(0.0, -x))
    return c * (1.0 - p) ** 2, c * p * (1.0 - p), c * np.exp(-x), log_likelihood


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _judge_table(
    decisions: _Decisions, terms: tuple[np.ndarray, np.ndarray, np.ndarray], integral: bool
) -> pd.DataFrame:
    if decisions.judge is None:
        return pd.DataFrame(
            {"n": [], "infit": [], "outfit": []}, index=pd.Index([], name="judge_id")
        )
    codes, judges = pd.factorize(decisions.judge)
    kept = codes >= 0
    k = len(judges)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes[kept], values[kept], k)

    squared, information, outfit = terms
    weight = total(decisions.weight)
    return pd.DataFrame(
        {
            "n": _whole_if_integral(weight, integral),
            "infit": _ratio(total(squared), total(information)),
            "outfit": _ratio(total(outfit), weight),
        },
        index=pd.Index(judges, name="judge_id"),
    )


def _resolve_engine(engine: str, n: int, position_effect: bool) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
    if engine == "choix" and position_effect:
        raise ValueError("the choix engine cannot estimate a position effect; use 'sparse'")
    if engine == "auto":
        return "choix" if n <= AUTO_CHOIX_MAX_ESSAYS and not position_effect else "sparse"
    return engine


def _resolve_se_method(se_method: str | None, n: int) -> str:
    if se_method is None:
        return "pinv_fisher" if n <= EXACT_SE_MAX_ESSAYS else "neumann_approx"
    if se_method not in SE_METHODS:
        raise ValueError(f"unknown se_method {se_method!r}; use None or one of {SE_METHODS}")
    return se_method


def fit_bradley_terry(
    comparisons: pd.DataFrame,
    *,
    alpha: float = 0.0,
    engine: str = "auto",
    position_effect: bool = False,
    se_method: str | None = None,
) -> BTResult:
    """Fit Bradley–Terry scores, standard errors and fit statistics to essay comparisons.

    Minimises −Σₖ cₖ log σ(θ_wₖ − θ_lₖ + sₖ δ) + α Σᵢ θᵢ² (the objective of
    :func:`choix.opt_pairwise`), with Σθ = 0 and δ = 0 unless ``position_effect``.
    Standard errors are √diag pinv(F), F the Fisher information over (θ, δ) plus the
    penalty Hessian 2αI. Infit is Σ c(1 − p)² / Σ c p(1 − p) and outfit Σ c(1 − p)/p / Σ c
    over the decisions of an essay or judge, p the fitted probability of the decision made.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Either ``winner_id``, ``loser_id``, or ``essay_a_id``, ``essay_b_id``, ``winner``
        with values ``"essay_a"`` / ``"essay_b"`` (rows whose winner is ``"error"`` or null
        are ignored and counted). Optional ``judge_id`` and ``count`` (a non-negative
        weight, default 1: a row with count k equals k identical rows).
    alpha : float, default 0.0
        L2 penalty on θ. 0 gives the maximum-likelihood estimate, which exists only when
        the directed win graph is strongly connected.
    engine : {"auto", "choix", "sparse"}, default "auto"
        ``"choix"``: :func:`choix.ilsr_pairwise_dense` then dense Newton polishing.
        ``"sparse"``: Newton with conjugate gradients on the sparse Hessian, never forming
        an n × n matrix. ``"auto"``: choix for at most ``AUTO_CHOIX_MAX_ESSAYS`` essays
        and no position effect, else sparse.
    position_effect : bool, default False
        Estimate δ in P(essay in position A wins) = σ(θ_A − θ_B + δ). Needs positions.
    se_method : {None, "pinv_fisher", "neumann_approx"}, default None
        None gives the exact ``"pinv_fisher"`` up to ``EXACT_SE_MAX_ESSAYS`` essays (it
        inverts a dense n × n matrix) and ``"neumann_approx"`` above.

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
        a negative alpha, or an unknown engine or se_method.
    DisconnectedComparisonsError
        ``alpha == 0`` and the win graph is not strongly connected; it lists the strongly
        connected components and the essays that always win or always lose.
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    decisions = _parse_comparisons(comparisons, position_effect)
    n = len(decisions.essay_ids)
    engine = _resolve_engine(engine, n, position_effect)
    se_method = _resolve_se_method(se_method, n)

    weight = decisions.weight
    share_a = None
    if decisions.winner_in_a is not None:
        share_a = float(weight[decisions.winner_in_a].sum() / weight.sum())
        if position_effect and share_a in (0.0, 1.0):
            raise ValueError(
                "the position effect is infinite: one position won every decision; "
                "fit without position_effect"
            )
    wins = np.bincount(decisions.winner, weight, n)
    losses = np.bincount(decisions.loser, weight, n)

    design = _aggregate(decisions, float(alpha), position_effect)
    n_components, labels = _components(design)
    connected = n_components == 1
    if not connected and alpha == 0:
        raise _disconnected_error(decisions.essay_ids, labels, wins, losses)

    if engine == "choix":
        start, solver = _choix_start(design), _dense_solver(design)
    else:
        start, solver = _log_odds_start(design), _cg_solver(design)
    z, curvature, iterations, converged = _newton(start, design, solver)
    if not converged:
        logger.warning("Bradley–Terry fit did not converge after %d iterations", iterations)
    if se_method == "pinv_fisher":
        variances = _exact_variances(design, curvature)
    else:
        variances = _neumann_variances(design, curvature)
    # Var(δ) is at least 1/Σh; far above it, δ is only nominally estimated.
    if position_effect and not variances[n] * curvature.sum() < _MAX_POSITION_VARIANCE_RATIO:
        raise _unidentified_position_effect()
    theta, se = z[:n], np.sqrt(variances[:n])

    squared, information, outfit, log_likelihood = _fit_statistics(decisions, z, position_effect)

    def per_essay(values: np.ndarray) -> np.ndarray:
        return np.bincount(decisions.winner, values, n) + np.bincount(decisions.loser, values, n)

    integral = bool(np.all(weight == np.rint(weight)))
    scores = pd.DataFrame(
        {
            "theta": theta,
            "se": se,
            "wins": _whole_if_integral(wins, integral),
            "losses": _whole_if_integral(losses, integral),
            "n_comparisons": _whole_if_integral(wins + losses, integral),
            "infit": _ratio(per_essay(squared), per_essay(information)),
            "outfit": _ratio(per_essay(outfit), wins + losses),
        },
        index=decisions.essay_ids,
    ).sort_values("theta", ascending=False, kind="stable")

    variance = float(np.var(theta, ddof=1)) if n > 1 else 0.0
    mean_square_error = float(np.mean(se**2))
    reliability = (variance - mean_square_error) / variance if variance > 0 else math.nan
    separation = math.sqrt(max(variance - mean_square_error, 0.0) / mean_square_error)

    return BTResult(
        scores=scores,
        judges=_judge_table(decisions, (squared, information, outfit), integral),
        reliability=reliability,
        separation=separation,
        position_effect=(
            {"estimate": float(z[n]), "se": float(math.sqrt(variances[n]))}
            if position_effect
            else None
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
