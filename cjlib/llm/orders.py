"""Both orders and position bias: send a pair as AB and BA, and measure what position does.

LLM judges prefer one position (published forward/reverse agreement runs 0.82–0.94 by model).
:func:`both_orders` turns a request into its AB and BA forms; :func:`order_agreement`
summarises decisions per model:

* **position-A win share** ``k/n`` with its Wilson score interval
  ``(p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``;
* **forward/reverse agreement**: among ordered pairs asked in both orders (the k-th AB
  decision matched with the k-th BA one), the share where the same essay won both times;
* **position effect** δ on the logit scale, from the matched pairs that disagree. If
  P(A wins) = σ(θ_A − θ_B + δ), a pair answered "A" both times has probability
  σ(d+δ)σ(−d+δ) and "B" both times σ(−d−δ)σ(d−δ), whose ratio is e^{2δ} whatever d, so
  δ̂ = ½·log(n_AA / n_BB) with standard error ½·sqrt(1/n_AA + 1/n_BB) (a conditional,
  McNemar-type estimate; undefined while either count is 0).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from cjlib.judges import PairRequest

#: Columns of :func:`order_agreement`'s result.
AGREEMENT_COLUMNS = (
    "model",
    "n_decisions",
    "a_wins",
    "a_win_share",
    "a_win_share_low",
    "a_win_share_high",
    "n_matched",
    "n_agree",
    "agreement",
    "agreement_low",
    "agreement_high",
    "n_both_a",
    "n_both_b",
    "position_effect",
    "position_effect_low",
    "position_effect_high",
)


def both_orders(
    request: PairRequest, *, new_correlation_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> tuple[PairRequest, PairRequest]:
    """``(AB, BA)``: the request as given, and a copy with the positions swapped.

    The BA request gets a new correlation id and, when the request has one, the draw key
    ``"<draw_key>:BA"``, so both are stored as separate decisions.
    """
    reverse = dataclasses.replace(
        request,
        request_correlation_id=new_correlation_id(),
        essay_a_id=request.essay_b_id,
        essay_b_id=request.essay_a_id,
        essay_a_text=request.essay_b_text,
        essay_b_text=request.essay_a_text,
        draw_key=None if request.draw_key is None else f"{request.draw_key}:BA",
    )
    return request, reverse


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; ``(nan, nan)`` when ``n == 0``."""
    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _matched(decided: pd.DataFrame) -> pd.DataFrame:
    """One row per AB decision matched with a BA decision of the same two essays."""
    frame = decided.assign(
        first=np.minimum(decided["essay_a_id"], decided["essay_b_id"]),
        second=np.maximum(decided["essay_a_id"], decided["essay_b_id"]),
    )
    frame["forward"] = frame["essay_a_id"] == frame["first"]
    frame["winner_id"] = np.where(
        frame["winner"] == "essay_a", frame["essay_a_id"], frame["essay_b_id"]
    )
    frame["k"] = frame.groupby(["first", "second", "forward"]).cumcount()
    fwd = frame[frame["forward"]]
    rev = frame[~frame["forward"]]
    return fwd.merge(rev, on=["first", "second", "k"], suffixes=("_ab", "_ba"))


def _model_row(model: str, decided: pd.DataFrame, level: float) -> dict[str, object]:
    n = len(decided)
    a_wins = int((decided["winner"] == "essay_a").sum())
    share_low, share_high = wilson_interval(a_wins, n, level)
    matched = _matched(decided)
    n_matched = len(matched)
    n_agree = int((matched["winner_id_ab"] == matched["winner_id_ba"]).sum())
    agree_low, agree_high = wilson_interval(n_agree, n_matched, level)
    both_a = int(((matched["winner_ab"] == "essay_a") & (matched["winner_ba"] == "essay_a")).sum())
    both_b = int(((matched["winner_ab"] == "essay_b") & (matched["winner_ba"] == "essay_b")).sum())
    effect = low = high = math.nan
    if both_a and both_b:
        z = stats.norm.ppf(0.5 + level / 2)
        effect = 0.5 * math.log(both_a / both_b)
        se = 0.5 * math.sqrt(1 / both_a + 1 / both_b)
        low, high = effect - z * se, effect + z * se
    return {
        "model": model,
        "n_decisions": n,
        "a_wins": a_wins,
        "a_win_share": a_wins / n if n else math.nan,
        "a_win_share_low": share_low,
        "a_win_share_high": share_high,
        "n_matched": n_matched,
        "n_agree": n_agree,
        "agreement": n_agree / n_matched if n_matched else math.nan,
        "agreement_low": agree_low,
        "agreement_high": agree_high,
        "n_both_a": both_a,
        "n_both_b": both_b,
        "position_effect": effect,
        "position_effect_low": low,
        "position_effect_high": high,
    }


def order_agreement(
    decisions: pd.DataFrame, *, model_column: str = "model", level: float = 0.95
) -> pd.DataFrame:
    """Position-A win share, forward/reverse agreement and position effect per model.

    Parameters
    ----------
    decisions : DataFrame
        One row per decision with ``essay_a_id``, ``essay_b_id``, ``winner``
        (``essay_a``/``essay_b``; other values and nulls are failed comparisons and are left
        out) and ``model_column``, in the order the decisions were made.
    model_column : str
        Column naming the model (or judge) to group by.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    DataFrame
        One row per model with :data:`AGREEMENT_COLUMNS`; agreement and position effect are
        NaN where no pair was asked in both orders (or no matched pair disagreed both ways).

    Raises
    ------
    ValueError
        A required column is missing.
    """
    needed = {"essay_a_id", "essay_b_id", "winner", model_column}
    missing = sorted(needed - set(decisions.columns))
    if missing:
        raise ValueError(f"decisions lack column(s) {', '.join(missing)}")
    decided = decisions[decisions["winner"].isin(["essay_a", "essay_b"])]
    rows = [
        _model_row(str(model), group.reset_index(drop=True), level)
        for model, group in decided.groupby(model_column, sort=True)
    ]
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
