"""The report's figures, each a :class:`matplotlib.figure.Figure` made without pyplot.

Figures hold no global state (no pyplot), so building many in one process leaks nothing;
Jupyter shows them as embedded PNGs. Every function takes a
:class:`~cjlib.report.assembly.BatchReport` and returns a figure, a placeholder saying why when
there is nothing to draw. Labels from the data are drawn as plain text (``$`` never starts
mathtext).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from cjlib.grades import get_grade_scale
from cjlib.report.assembly import BatchReport
from cjlib.report.loading import DECIDED, positions_known
from cjlib.report.tables import confusion_table, position_table

_STUDENT_COLOUR, _ANCHOR_COLOUR, _ALERT_COLOUR = "#4C72B0", "#DD8452", "#C44E52"
#: Above this many essays the per-essay figures aggregate (a band, quantile bins, a
#: histogram) instead of drawing one bar or error bar per essay: at 2,000 essays individual
#: marks are narrower than a pixel and the figure takes long to render.
AGGREGATE_ABOVE = 300
#: Quantile bins of the aggregated grade-probability figure.
PROBABILITY_BINS = 100
#: At most this many wave labels on the position-effect axis.
MAX_WAVE_LABELS = 25


def _text(value: Any) -> str:
    # An id or label with two dollar signs would otherwise be parsed as mathtext (and one
    # that is not valid TeX would make the figure fail to render).
    return str(value).replace("$", r"\$")


def _figure(width: float = 9.0, height: float = 4.5) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _placeholder(title: str, message: str) -> Figure:
    fig, ax = _figure(6.0, 1.6)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, _text(message), ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def _label_anchors(ax: Axes, x: np.ndarray, anchors: pd.DataFrame) -> None:
    """Write each anchor's grade above its point."""
    for xi, (theta, grade) in zip(x, anchors.itertuples(index=False), strict=True):
        ax.annotate(
            _text(grade),
            (xi, theta),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color=_ANCHOR_COLOUR,
            fontweight="bold",
        )


def plot_bt_scores(rep: BatchReport) -> Figure:
    """Every essay's θ with ±1.96·SE bars, in θ order; anchors marked and labelled with grades."""
    title = "Bradley–Terry scores (θ ± 1.96·SE)"
    scores = rep.scores.sort_values("theta", kind="stable")
    if scores.empty:
        return _placeholder(title, "no essay has a stored score")
    fig, ax = _figure(10.0, 4.8)
    x = np.arange(len(scores))
    anchor = scores["is_anchor"].to_numpy(dtype=bool)
    theta, se = scores["theta"].to_numpy(dtype=float), scores["se"].to_numpy(dtype=float)
    if len(scores) > AGGREGATE_ABOVE:
        # Many essays: the students' θ as a line and their 95 % intervals as a band.
        band = np.nan_to_num(1.96 * se, nan=0.0, posinf=0.0)
        ax.fill_between(x, theta - band, theta + band, color=_STUDENT_COLOUR, alpha=0.25,
                        linewidth=0, label="student 95 % interval")  # fmt: skip
        ax.plot(x[~anchor], theta[~anchor], color=_STUDENT_COLOUR, lw=1.2, label="student")
        ax.errorbar(x[anchor], theta[anchor], yerr=1.96 * se[anchor], fmt="D", ms=6,
                    color=_ANCHOR_COLOUR, ecolor=_ANCHOR_COLOUR, elinewidth=0.8,
                    label="anchor")  # fmt: skip
        title = f"{title}, {len(scores)} essays"
    for mask, colour, marker, label in (
        ()
        if len(scores) > AGGREGATE_ABOVE
        else (
            (~anchor, _STUDENT_COLOUR, "o", "student"),
            (anchor, _ANCHOR_COLOUR, "D", "anchor"),
        )
    ):
        ax.errorbar(
            x[mask],
            theta[mask],
            yerr=1.96 * se[mask],
            fmt=marker,
            ms=4 if label == "student" else 6,
            color=colour,
            ecolor=colour,
            elinewidth=0.8,
            alpha=0.9,
            label=label,
        )
    _label_anchors(ax, x[anchor], scores.loc[anchor, ["theta", "anchor_grade"]])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("essays in order of θ")
    ax.set_ylabel("θ (logits)")
    ax.set_xticks([])
    ax.set_title(title)
    ax.legend(loc="upper left")
    return fig


def _draw_grade_bands(ax: Axes, calibration: pd.DataFrame, lo: float, hi: float) -> None:
    """Each grade's θ interval as a band (hatched when unanchored) with its centre as a tick."""
    for i, row in enumerate(calibration.itertuples()):
        unanchored = bool(row.interpolated or row.extrapolated)
        ax.fill_between(
            [i - 0.4, i + 0.4],
            max(row.lower, lo),
            min(row.upper, hi),
            color=_STUDENT_COLOUR,
            alpha=0.12 if unanchored else 0.25,
            hatch="//" if unanchored else None,
            linewidth=0,
        )
        ax.plot([i - 0.4, i + 0.4], [row.centre] * 2, color="black", lw=1.2)


def _jitter(grade_index: np.ndarray) -> np.ndarray:
    """Horizontal offsets that spread anchors of the same grade apart."""
    jitter = np.zeros(len(grade_index))
    for g in np.unique(grade_index):
        same = np.flatnonzero(grade_index == g)
        jitter[same] = np.linspace(-0.15, 0.15, len(same)) if len(same) > 1 else 0.0
    return jitter


def _draw_anchors(
    ax: Axes,
    anchors: pd.Index,
    x: np.ndarray,
    theta: np.ndarray,
    se: np.ndarray,
    inversions: pd.DataFrame,
) -> None:
    """Anchors as diamonds with 95 % bars; inverted pairs red and joined by a dashed line."""
    inverted = set(inversions["anchor_low"]) | set(inversions["anchor_high"])
    colours = [_ALERT_COLOUR if a in inverted else _ANCHOR_COLOUR for a in anchors]
    ax.vlines(x, theta - 1.96 * se, theta + 1.96 * se, colors=colours, lw=1)
    ax.scatter(x, theta, c=colours, marker="D", s=36, zorder=3)
    position = {a: (x[i], theta[i]) for i, a in enumerate(anchors)}
    for row in inversions.itertuples(index=False):
        (x0, y0), (x1, y1) = position[row.anchor_low], position[row.anchor_high]
        ax.plot([x0, x1], [y0, y1], color=_ALERT_COLOUR, ls="--", lw=1)


def plot_anchor_calibration(rep: BatchReport) -> Figure:
    """Anchor θ against their grades, with each grade's calibrated θ interval and inversions.

    Shaded bands are the θ intervals [lower, upper] of each grade (hatched when the grade has
    no anchor: interpolated or extrapolated); black ticks are the grade centres. Anchors of an
    inverted pair (lower grade, higher θ) are red and joined by a dashed red line.
    """
    title = "Anchor θ against grade, with calibrated grade intervals"
    if rep.projection is None:
        return _placeholder(title, f"projection unavailable: {rep.projection_error}")
    proj = rep.projection
    cal = proj.calibration
    labels = list(proj.scale.all_labels)
    anchors = proj.anchor_grades
    theta = rep.scores.loc[anchors.index, "theta"].to_numpy(dtype=float)
    se = rep.scores.loc[anchors.index, "se"].to_numpy(dtype=float)
    gidx = np.array([labels.index(g) for g in anchors], dtype=float)
    finite = np.r_[cal["lower"].to_numpy(), cal["upper"].to_numpy(), theta]
    finite = finite[np.isfinite(finite)]
    pad = 0.5 + float(np.max(se, initial=0.0)) * 1.96
    lo, hi = float(finite.min()) - pad, float(finite.max()) + pad
    fig, ax = _figure(9.0, 5.0)
    _draw_grade_bands(ax, cal, lo, hi)
    inversions = proj.anchor_check.inversions
    _draw_anchors(ax, anchors.index, gidx + _jitter(gidx), theta, se, inversions)
    ax.set_xticks(range(len(labels)), [_text(g) for g in labels])
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("grade (hatched: no anchor)")
    ax.set_ylabel("θ (logits)")
    ax.set_title(f"{title}\n{len(inversions)} inverted anchor pair(s) (red)")
    return fig


def _probability_columns(projections: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    return [f"p_{g}" for g in labels if f"p_{g}" in projections.columns]


def plot_grade_probabilities(rep: BatchReport) -> Figure:
    """Stacked bars of each student's stored grade probabilities, ordered by expected grade."""
    title = "Grade probabilities per student (stored projections)"
    projections = rep.frames.projections
    if projections.empty:
        return _placeholder(title, "the batch has no stored grade projections")
    labels = list(get_grade_scale(rep.frames.grade_scale).all_labels)
    columns = _probability_columns(projections, labels)
    probs = projections[columns].to_numpy(dtype=float)
    expected = probs @ np.arange(len(columns))
    order = np.argsort(expected, kind="stable")
    probs = probs[order]
    ids = projections["els_essay_id"].to_numpy()[order]
    xlabel = "students in order of expected grade"
    if len(probs) > AGGREGATE_ABOVE:
        # Many students: mean probabilities of equal-count bins in expected-grade order.
        bins = np.array_split(np.arange(len(probs)), PROBABILITY_BINS)
        probs = np.vstack([probs[b].mean(axis=0) for b in bins])
        ids = np.array([], dtype=object)
        xlabel = (
            f"{len(order)} students in {len(bins)} equal-count bins of expected grade "
            "(mean probability per bin)"
        )
    fig, ax = _figure(10.0, 4.8)
    colours = _grade_colours(len(columns))
    bottom = np.zeros(len(probs))
    x = np.arange(len(probs))
    for j, column in enumerate(columns):
        ax.bar(
            x,
            probs[:, j],
            bottom=bottom,
            width=1.0,
            color=colours[j],
            label=_text(column.removeprefix("p_")),
            linewidth=0,
        )
        bottom += probs[:, j]
    ax.set_xlim(-0.5, len(probs) - 0.5)
    ax.set_ylim(0, 1)
    if 0 < len(ids) <= 40:
        ax.set_xticks(x, [_text(i) for i in ids], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend(title="grade", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def _grade_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.05, 0.95, n)]


def _comparison_counts(rep: BatchReport) -> pd.DataFrame:
    """Per essay: decided and failed comparisons and the anchor flag, fewest decided first."""
    frames = rep.frames
    comparisons = frames.comparisons
    ids = frames.essays["els_essay_id"]
    long = pd.concat(
        [
            comparisons[["essay_a_id", "winner"]].rename(columns={"essay_a_id": "essay"}),
            comparisons[["essay_b_id", "winner"]].rename(columns={"essay_b_id": "essay"}),
        ]
    )
    decided = long.loc[long["winner"].isin(DECIDED), "essay"].value_counts()
    failed = long.loc[long["winner"] == "error", "essay"].value_counts()
    return pd.DataFrame(
        {
            "decided": decided.reindex(ids, fill_value=0).to_numpy(),
            "failed": failed.reindex(ids, fill_value=0).to_numpy(),
            "is_anchor": frames.essays["is_anchor"].to_numpy(),
        },
        index=ids.to_numpy(),
    ).sort_values(["decided", "failed"], kind="stable")


def plot_comparisons_per_essay(rep: BatchReport) -> Figure:
    """Successful and failed comparisons of each essay, anchors highlighted."""
    title = "Comparisons per essay"
    if rep.frames.comparisons.empty:
        return _placeholder(title, "the batch has no comparisons")
    counts = _comparison_counts(rep)
    if len(counts) > AGGREGATE_ABOVE:
        return _comparison_histogram(title, counts)
    fig, ax = _figure(10.0, 4.2)
    x = np.arange(len(counts))
    colours = np.where(counts["is_anchor"], _ANCHOR_COLOUR, _STUDENT_COLOUR)
    ax.bar(x, counts["decided"], color=colours, width=0.85)
    if counts["failed"].any():
        ax.bar(x, counts["failed"], bottom=counts["decided"], color=_ALERT_COLOUR, width=0.85)
    mean = float(counts["decided"].mean())
    ax.axhline(mean, color="black", ls="--", lw=1)
    handles = [
        Patch(color=_STUDENT_COLOUR, label="student"),
        Patch(color=_ANCHOR_COLOUR, label="anchor"),
        Patch(color=_ALERT_COLOUR, label="failed"),
        Line2D([], [], color="black", ls="--", label=f"mean {mean:.1f} successful"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_xticks([])
    ax.set_xlabel("essays in order of successful comparisons")
    ax.set_ylabel("comparisons")
    ax.set_title(title)
    return fig


def _comparison_histogram(title: str, counts: pd.DataFrame) -> Figure:
    """Many essays: how many essays had k successful comparisons, students and anchors apart."""
    fig, ax = _figure(10.0, 4.2)
    decided = counts["decided"].to_numpy()
    anchor = counts["is_anchor"].to_numpy(dtype=bool)
    edges = np.arange(decided.min(), decided.max() + 2) - 0.5
    if len(edges) > 80:
        edges = np.linspace(decided.min() - 0.5, decided.max() + 0.5, 61)
    ax.hist(decided[~anchor], bins=edges, color=_STUDENT_COLOUR, label="students")
    ax.hist(decided[anchor], bins=edges, color=_ANCHOR_COLOUR, label="anchors")
    mean = float(decided.mean())
    ax.axvline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.1f}")
    failed = int(counts["failed"].sum())
    with_failed = int((counts["failed"] > 0).sum())
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("successful comparisons of an essay")
    ax.set_ylabel("essays")
    ax.set_title(
        f"{title}: {len(counts)} essays, fewest {int(decided.min())}; "
        f"{failed} failed comparison sides on {with_failed} essays"
    )
    return fig


def plot_position_effect(rep: BatchReport) -> Figure:
    """Share of decisions won by position A per wave and overall, with Wilson 95 % CIs."""
    title = "Position-A win share (95 % Wilson CI)"
    if not positions_known(rep.frames):
        return _placeholder(
            title, "positions unknown: the imported file did not say which essay was shown first"
        )
    table = position_table(rep)
    if table["decisions"].iloc[-1] == 0:
        return _placeholder(title, "no decided comparisons")
    fig, ax = _figure(9.0, 4.0)
    x = np.arange(len(table))
    share = table["a_share"].to_numpy(dtype=float)
    colours = [_STUDENT_COLOUR] * (len(table) - 1) + [_ANCHOR_COLOUR]
    ax.vlines(x, table["ci_low"], table["ci_high"], colors=colours, lw=1.5)
    ax.scatter(x, share, c=colours, zorder=3)
    overall = table.iloc[-1]
    ax.axhspan(overall["ci_low"], overall["ci_high"], color=_ANCHOR_COLOUR, alpha=0.12)
    ax.axhline(0.5, color="black", ls="--", lw=1, label="no position effect")
    names = [f"wave {w}" if w != "all" else "all" for w in table["wave"]]
    step = max(1, int(np.ceil((len(names) - 1) / MAX_WAVE_LABELS)))
    shown = [i for i in range(len(names) - 1) if i % step == 0] + [len(names) - 1]
    ax.set_xticks([x[i] for i in shown], [names[i] for i in shown], rotation=45)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share won by position A")
    ax.set_title(f"{title}: overall {overall['a_share']:.2f} of {int(overall['decisions'])}")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_confusion_matrix(rep: BatchReport) -> Figure:
    """True against projected primary grade of the rebuilt projection (counts)."""
    title = "Confusion matrix: true vs projected grade"
    table = confusion_table(rep)
    if table is None:
        return _placeholder(title, "no true grades known (or no projection)")
    fig, ax = _figure(6.5, 5.5)
    counts = table.to_numpy()
    image = ax.imshow(counts, cmap="Blues", origin="lower")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            colour = "white" if n > counts.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=colour)
    labels = [_text(g) for g in table.columns]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("projected grade")
    ax.set_ylabel("true grade")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="students")
    return fig


def plot_reliability_diagram(rep: BatchReport) -> Figure:
    """Observed accuracy against mean confidence per confidence bin (calibration diagram)."""
    title = "Reliability diagram of the projected grades"
    if rep.evaluation is None:
        return _placeholder(title, "no true grades known (or no projection)")
    table = rep.evaluation.reliability_table
    filled = table.loc[table["n"] > 0]
    fig, ax = _figure(5.5, 5.0)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    sizes = 20 + 200 * filled["n"] / max(int(filled["n"].max()), 1)
    ax.scatter(
        filled["mean_confidence"],
        filled["observed_accuracy"],
        s=sizes,
        color=_STUDENT_COLOUR,
        zorder=3,
        label="confidence bin (size = n)",
    )
    for row in filled.itertuples(index=False):
        ax.annotate(
            f"n={row.n}",
            (row.mean_confidence, row.observed_accuracy),
            xytext=(6, -10),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence (probability of the primary grade)")
    ax.set_ylabel("observed accuracy")
    ece = rep.evaluation.expected_calibration_error
    ax.set_title(f"{title}\nECE {ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    return fig


#: The report's figure functions, in the order notebook 04 shows them.
FIGURES = (
    plot_bt_scores,
    plot_anchor_calibration,
    plot_grade_probabilities,
    plot_comparisons_per_essay,
    plot_position_effect,
    plot_confusion_matrix,
    plot_reliability_diagram,
)


#: Largest number of time bins of :func:`plot_decisions_over_time`.
MAX_TIME_BINS = 40


def plot_decisions_over_time(rep: BatchReport) -> Figure:
    """Decisions per time bin (when each was made) with the cumulative count.

    Times are the pairs' ``completed_at``: for an imported batch the decision time of the file
    (``createdAt`` of No More Marking), for a judged batch the callback's arrival. At most
    :data:`MAX_TIME_BINS` equal-width bins between the first and the last decision.
    """
    title = "Decisions over time"
    decided = rep.frames.decided
    times = pd.to_datetime(decided["completed_at"], utc=True, errors="coerce").dropna()
    if times.empty:
        return _placeholder(title, "no decision has a time")
    start, end = times.min(), times.max()
    if start == end:
        return _placeholder(
            title,
            f"all {len(times)} decisions carry one time ({start}): the file gave no decision times",
        )
    hours = ((times - start).dt.total_seconds() / 3600.0).to_numpy()
    n_bins = int(min(MAX_TIME_BINS, max(5, np.sqrt(len(hours)))))
    counts, edges = np.histogram(hours, bins=n_bins)
    fig, ax = _figure(9.0, 4.0)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_STUDENT_COLOUR,
           edgecolor="white", linewidth=0.5, label="decisions per bin")  # fmt: skip
    ax.set_xlabel(f"hours since the first decision ({start:%Y-%m-%d %H:%M} UTC)")
    ax.set_ylabel("decisions per bin")
    cumulative = ax.twinx()
    ordered = np.sort(hours)
    cumulative.plot(ordered, np.arange(1, len(ordered) + 1), color=_ANCHOR_COLOUR, lw=1.5)
    cumulative.set_ylabel("decisions so far", color=_ANCHOR_COLOUR)
    cumulative.set_ylim(0, len(ordered) * 1.05)
    span = (end - start).total_seconds() / 3600.0
    ax.set_title(f"{title}: {len(times)} decisions over {span:.1f} h")
    return fig
