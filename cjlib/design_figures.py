"""Figures of a design study: each measure against comparisons per essay, per strategy.

Matplotlib ``Figure`` objects built without pyplot (no global state), for notebooks and
reports; the data come from :func:`cjlib.design.run_design_study`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cjlib.design import MEASURES

__all__ = ["LABELS", "plot_design_study"]

#: Axis title of each measure.
LABELS: dict[str, str] = {
    "true_reliability": "true reliability corr(θ̂, θ)²",
    "ssr": "SSR",
    "split_half": "split-half reliability",
    "null_ssr": "null SSR (coin-toss decisions)",
    "exact_accuracy": "exact grade accuracy",
    "adjacent_accuracy": "adjacent grade accuracy",
    "ece": "expected calibration error",
    "brier": "Brier score",
}

#: Reliabilities below this are drawn at the lower edge: a coin-toss SSR can fall far below 0.
_RELIABILITY_FLOOR = -0.5


def plot_design_study(
    frame: pd.DataFrame, measures: Sequence[str] = MEASURES, *, columns: int = 4
) -> Figure:
    """One panel per measure: mean over seeds per strategy, shaded from min to max.

    The x axis (comparisons per essay) is logarithmic. Reliability panels show the 0.7 and
    0.8 rules of thumb as dotted lines and are cut at −0.5 below.
    """
    rows = int(np.ceil(len(measures) / columns))
    fig = Figure(figsize=(3.6 * columns, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    stats = frame.groupby(["strategy", "per_essay"])[list(measures)].agg(["mean", "min", "max"])
    strategies = list(dict.fromkeys(frame["strategy"]))
    for ax, measure in zip(axes, measures, strict=False):
        for strategy in strategies:
            part = stats.loc[strategy, measure]
            x = part.index.to_numpy(dtype=float)
            (line,) = ax.plot(x, part["mean"], marker="o", label=strategy)
            ax.fill_between(x, part["min"], part["max"], color=line.get_color(), alpha=0.2)
        if measure in ("true_reliability", "ssr", "split_half", "null_ssr"):
            for level in (0.7, 0.8):
                ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
            low = max(_RELIABILITY_FLOOR, float(stats[(measure, "min")].min()) - 0.05)
            ax.set_ylim(low, 1.02)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sorted(frame["per_essay"].unique()))
        ax.set_xticklabels([f"{v:g}" for v in sorted(frame["per_essay"].unique())])
        ax.set_title(LABELS.get(measure, measure), fontsize=10)
        ax.set_xlabel("comparisons per essay")
    for ax in axes[len(measures) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    return fig
