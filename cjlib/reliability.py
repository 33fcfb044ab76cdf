"""Split-half (inter-rater) reliability of Bradley–Terry scores.

The scale separation reliability in :class:`cjlib.scoring.BTResult` says how well the
decisions pin down each essay's score under the model. Split-half reliability asks the
question CJ papers report next to it (Verhavert et al. 2019; Kinnear, Jones & Davies 2025):
would a different panel of judges rank the essays the same way? The judges are split at
random into two halves, each half's decisions are scored on their own, and θ is correlated
over the essays scored in both halves; the median over many random splits, stepped up to
the full panel by Spearman–Brown, 2r / (1 + r), estimates the reliability of the whole
panel's scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cjlib.scoring import DEFAULT_METHOD, fit_bradley_terry

__all__ = ["SplitHalfResult", "split_half"]

logger = logging.getLogger(__name__)

_MIN_SHARED_ESSAYS = 3


@dataclass(frozen=True)
class SplitHalfResult:
    """Split-half reliability over random splits.

    Attributes
    ----------
    median : float
        Median Pearson correlation of θ between the halves.
    spearman_brown : float
        2 · median / (1 + median): the reliability of scores from the whole panel.
    correlations : numpy.ndarray
        The correlation of every split that could be scored (NaN-free).
    split_by : str
        ``"judges"`` (at least two judges) or ``"decisions"`` (one judge, or no
        ``judge_id``: the decisions themselves are split at random).
    method : str
        The scoring method used for each half.
    n_failed : int
        Splits left out because a half could not be scored (e.g. its comparisons do not
        link all its essays) or shared fewer than three essays with the other half.
    """

    median: float
    spearman_brown: float
    correlations: np.ndarray
    split_by: str
    method: str
    n_failed: int


def _halves(
    comparisons: pd.DataFrame, rng: np.random.Generator, judges: np.ndarray | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if judges is not None:
        shuffled = rng.permutation(judges)
        first = set(shuffled[: len(shuffled) // 2].tolist())
        in_first = comparisons["judge_id"].isin(first).to_numpy()
    else:
        order = rng.permutation(len(comparisons))
        in_first = np.zeros(len(comparisons), dtype=bool)
        in_first[order[: len(comparisons) // 2]] = True
    return comparisons[in_first], comparisons[~in_first]


def split_half(
    comparisons: pd.DataFrame,
    *,
    n_splits: int = 100,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
    position_effect: bool = False,
) -> SplitHalfResult:
    """Split-half reliability of BT scores: judges split at random, each half scored.

    For each of ``n_splits`` random splits, the judges (or, with fewer than two judges,
    the decisions) are divided into two halves of equal size (±1), each half is scored
    with :func:`cjlib.scoring.fit_bradley_terry` (``method``, sparse engine), and the
    Pearson correlation r of θ is taken over the essays scored in both halves. Returns
    the median r, its Spearman–Brown step-up 2r / (1 + r) and all correlations.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Decisions in either form :func:`~cjlib.scoring.fit_bradley_terry` accepts; an
        optional ``judge_id`` column (rows with a null judge are left out when splitting
        by judges).
    n_splits : int, default 100
        Number of random splits (> 0).
    seed : int, default 0
        Seed of the random splits.
    method : str, default DEFAULT_METHOD
        Scoring method for each half. ``"firth"`` scores any half whose comparisons link
        its essays; ``"mle"`` fails whenever an essay wins or loses all its comparisons in
        a half.
    position_effect : bool, default False
        Estimate a position effect in each half.

    Returns
    -------
    SplitHalfResult

    Raises
    ------
    ValueError
        ``n_splits`` < 1, or no split could be scored (too few decisions per half).
    """
    if not (isinstance(n_splits, int | np.integer) and n_splits >= 1):
        raise ValueError(f"n_splits must be a whole number >= 1, got {n_splits!r}")
    judges = None
    frame = comparisons
    if "judge_id" in comparisons.columns:
        distinct = pd.unique(comparisons["judge_id"].dropna())
        if len(distinct) >= 2:
            judges = np.asarray(distinct, dtype=object)
            frame = comparisons[comparisons["judge_id"].notna()]
    rng = np.random.default_rng(seed)
    correlations = []
    failed = 0
    # Only θ is used: the cheap Neumann SEs spare two dense n × n inverses per half up to
    # EXACT_SE_MAX_ESSAYS essays (θ does not depend on the SE method).
    options = {
        "method": method,
        "engine": "sparse",
        "position_effect": position_effect,
        "se_method": "neumann_approx",
    }
    for _ in range(n_splits):
        first, second = _halves(frame, rng, judges)
        try:
            theta_first = fit_bradley_terry(first, **options).scores
            theta_second = fit_bradley_terry(second, **options).scores
        except ValueError as error:
            logger.debug("split-half: a half could not be scored: %s", error)
            failed += 1
            continue
        both = theta_first.merge(
            theta_second, left_index=True, right_index=True, suffixes=("_1", "_2")
        )
        # Essays a half saw only in count-0 rows carry no information in that half.
        both = both[(both["n_comparisons_1"] > 0) & (both["n_comparisons_2"] > 0)]
        if len(both) < _MIN_SHARED_ESSAYS or both["theta_1"].std() == 0:
            failed += 1
            continue
        correlations.append(float(np.corrcoef(both["theta_1"], both["theta_2"])[0, 1]))
    if not correlations:
        raise ValueError(
            f"none of the {n_splits} random halves could be scored with method={method!r}; "
            "split-half reliability needs more decisions per half (or method='firth')"
        )
    values = np.asarray(correlations)
    median = float(np.median(values))
    return SplitHalfResult(
        median=median,
        spearman_brown=2.0 * median / (1.0 + median),
        correlations=values,
        split_by="judges" if judges is not None else "decisions",
        method=method,
        n_failed=failed,
    )
