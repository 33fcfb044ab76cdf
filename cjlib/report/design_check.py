"""Honest reliability of a batch: its SSR beside split-half and the null baseline of its design.

Adaptive pairing inflates the scale separation reliability (SSR): Bramley (2015) measured SSR
up to 0.89 on coin-toss decisions. The report therefore shows the SSR next to a split-half
reliability and the *null baseline* — the SSR of the same pairing procedure re-run on
coin-toss decisions (:func:`cjlib.design.null_ssr`) — and says so in a sentence when the SSR
exceeds them notably. Computed by :func:`cjlib.design.design_reliability`.
"""

from __future__ import annotations

import logging
import math

import pandas as pd

from cjlib.design import DesignReliability, design_reliability
from cjlib.errors import CJError
from cjlib.notebook import format_value
from cjlib.pairing import make_strategy
from cjlib.report.assembly import BatchReport

log = logging.getLogger(__name__)

#: Random splits of the report's split-half (two fits each; the report must stay quick).
REPORT_SPLITS = 5
#: SSR above split-half or the honest reliability by more than this is called inflated.
INFLATION_MARGIN = 0.1


def batch_design_reliability(
    rep: BatchReport, *, n_splits: int = REPORT_SPLITS
) -> DesignReliability | None:
    """SSR, split-half and null SSR of the batch's decided comparisons under its own pairing.

    The pairing strategy is the one the batch recorded (``processing_metadata["run"]
    ["pairing"]``; ``balanced`` for batches recorded before strategies existed), the seed its
    run seed. None when the batch has no decided comparison or the statistics cannot be
    computed (the reason is logged).
    """
    frames = rep.frames
    decided = frames.decided
    if decided.empty:
        return None
    run = frames.run
    recorded = run.get("pairing") or {"name": "balanced", "params": {}}
    try:
        strategy = make_strategy(recorded.get("name", "balanced"), **(recorded.get("params") or {}))
        return design_reliability(
            decided[["essay_a_id", "essay_b_id", "winner"]].reset_index(drop=True),
            strategy,
            sorted(frames.essays["els_essay_id"].astype(str)),
            seed=int(run.get("seed") or 0),
            anchor_grades=frames.anchor_grades.to_dict(),
            scale=frames.grade_scale,
            n_splits=n_splits,
        )
    except (ValueError, CJError) as err:
        log.warning("batch %s: design reliability not computed: %s", frames.cj_batch_id, err)
        return None


def design_reliability_table(result: DesignReliability | None) -> pd.DataFrame:
    """SSR, split-half, null SSR and the null-adjusted SSR, one row each (metric/value/meaning)."""
    if result is None:
        return pd.DataFrame({"metric": ["design reliability"], "value": ["–"],
                             "meaning": ["no decided comparisons to compute it from"]})  # fmt: skip
    honest = "← used by --target-reliability"
    rows = [
        ("pairing strategy", result.strategy, "how the waves were paired"),
        ("scale separation reliability (SSR)", result.ssr, "what the fit reports"),
        (
            "split-half reliability",
            result.split_half,
            "Spearman–Brown of the θ correlation between random halves of the comparisons"
            + (f" {honest}" if result.measure == "split_half" else ""),
        ),
        (
            "null baseline (SSR on coin tosses)",
            result.null_ssr,
            "SSR of the same pairing procedure on coin-toss decisions: what the design alone "
            "produces (≤ 0 is honest)",
        ),
        (
            "null-adjusted SSR",
            result.adjusted_ssr,
            "(SSR − b) / (1 − b), b = max(null baseline, 0)"
            + (f" {honest}" if result.measure == "null_adjusted_ssr" else ""),
        ),
    ]
    return pd.DataFrame(
        [(m, format_value(v), note) for m, v, note in rows], columns=["metric", "value", "meaning"]
    )


def _num(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "not computable"


def inflation_sentence(result: DesignReliability | None) -> str:
    """One sentence: whether the SSR exceeds split-half and the null baseline notably."""
    if result is None:
        return "The design reliability could not be computed for this batch."
    gaps = []
    if math.isfinite(result.split_half) and result.ssr - result.split_half > INFLATION_MARGIN:
        gaps.append(f"the split-half reliability ({_num(result.split_half)})")
    if math.isfinite(result.null_ssr) and result.null_ssr > 0.3:
        gaps.append(
            f"what coin tosses reach under the same pairing ({_num(result.null_ssr)}; "
            f"adjusted SSR {_num(result.adjusted_ssr)})"
        )
    if gaps:
        return (
            f"**Inflation visible:** the SSR ({_num(result.ssr)}) is notably higher than "
            + " and ".join(gaps)
            + f"; part of it comes from the {result.strategy} pairing design, not from the "
            "judges, so read the reliability from the split-half or the adjusted SSR."
        )
    return (
        f"The SSR ({_num(result.ssr)}) is in line with the split-half reliability "
        f"({_num(result.split_half)}) and the null baseline ({_num(result.null_ssr)}) is low: "
        f"no sign that the {result.strategy} pairing inflated it."
    )
