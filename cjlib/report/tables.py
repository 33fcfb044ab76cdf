"""The report's tables: run summary, reliability, anchors, calibration, accuracy, judges, health.

Each function takes a :class:`~cjlib.report.assembly.BatchReport` (or its frames) and returns a
plain :class:`pandas.DataFrame`; :func:`cjlib.notebook.html_table` renders any of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Engine

from cjlib.db.models import utc_now
from cjlib.errors import CJError, NotFoundError
from cjlib.notebook import format_value
from cjlib.provenance import git_revision, versions
from cjlib.report.assembly import BatchReport
from cjlib.report.loading import DECIDED, BatchRecord, import_info, positions_known

#: Confidence level of the binomial intervals of the position-A win share.
POSITION_CI_LEVEL = 0.95


def _frames_of(rep: BatchReport | BatchRecord) -> BatchRecord:
    return rep.frames if isinstance(rep, BatchReport) else rep


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "–"
    seconds = round((end - start).total_seconds())
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _metric_table(rows: list[tuple[str, Any, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(m, format_value(v), note) for m, v, note in rows], columns=["metric", "value", "meaning"]
    )


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _judge(run: dict[str, Any]) -> Any:
    judge = run.get("judge")
    if run.get("judge_id") and run.get("judge_id") != judge:
        return f"{judge} ({run['judge_id']})"
    return judge


def _identity_rows(frames: BatchRecord) -> list[tuple[str, Any]]:
    upload, run = frames.upload, frames.run
    return [
        ("CJ batch id", upload.id),
        ("BOS batch id", upload.bos_batch_id),
        ("batch label", upload.batch_label),
        ("assignment / course", f"{upload.assignment_id} / {upload.course_id}"),
        ("grade scale", frames.grade_scale),
        ("judge", _judge(run)),
        ("judge parameters", ", ".join(f"{k}={v}" for k, v in run.get("judge_params", {}).items())),
        ("seed", run.get("seed")),
        ("comparison budget", run.get("max_comparisons")),
    ]


def _outcome_rows(frames: BatchRecord) -> list[tuple[str, Any]]:
    upload, run, meta = frames.upload, frames.run, frames.metadata
    state = frames.state
    anchors = int(frames.essays["is_anchor"].sum())
    return [
        (
            "comparisons",
            f"{(state.submitted_comparisons if state else '–')} submitted, "
            f"{(state.completed_comparisons if state else '–')} completed, "
            f"{(state.failed_comparisons if state else '–')} failed",
        ),
        (
            "essays",
            f"{anchors} anchors, {len(frames.essays) - anchors} students",
        ),
        (
            "outcome",
            f"{upload.status} / {(state.state if state else '–')}, "
            f"{meta.get('completion_reason') or 'no completion reason'}",
        ),
        ("data set", run.get("dataset")),
        ("created", upload.created_at),
        ("completed", upload.completed_at),
        ("run time", _duration(upload.created_at, upload.completed_at)),
    ]


def _provenance_rows() -> list[tuple[str, Any]]:
    return [
        ("versions", ", ".join(f"{k} {v}" for k, v in versions().items())),
        ("git revision", git_revision() or "not in a git checkout"),
        ("report generated", utc_now()),
    ]


def run_summary(rep: BatchReport) -> pd.DataFrame:
    """Ids, parameters, counters, timing, versions and git revision of the batch (field/value)."""
    rows = [*_identity_rows(rep.frames), *_outcome_rows(rep.frames), *_provenance_rows()]
    return pd.DataFrame([(k, format_value(v)) for k, v in rows], columns=["field", "value"])


# --------------------------------------------------------------------------------------------
# Scores, anchors, calibration, accuracy
# --------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def reliability_table(rep: BatchReport) -> pd.DataFrame:
    """Scale reliability and fit settings of the batch's BT scores (metric/value/meaning)."""
    meta = rep.frames.metadata
    ssr, g = meta.get("reliability"), meta.get("separation")
    strata = None if g is None else (4 * g + 1) / 3
    median = float(rep.scores["n_comparisons"].median()) if len(rep.scores) else None
    name = meta.get("reliability_name") or "mle_rel"
    meaning = {
        "mle_rel": "(var θ − mean SE²) / var θ over informative essays (sirt's mle.rel)",
        "eap_rel": "EAP-type reliability of penalised scores",
    }.get(name, "")
    split = meta.get("split_half") or {}
    misfit = meta.get("misfit_judges")
    return _metric_table(
        [
            (
                "BT estimator",
                meta.get("bt_method") or ("ridge" if meta.get("bt_alpha") else "mle"),
                meta.get("bt_method_reason") or "",
            ),
            (f"scale separation reliability ({name})", ssr, f"{meaning}; ≥ 0.7 is usually wanted"),
            (
                "split-half reliability (Spearman–Brown)",
                split.get("spearman_brown"),
                f"median r {_text(split.get('median'))} over {split.get('n_splits', 0)} random "
                f"splits of the {split.get('split_by', 'judges')}",
            ),
            ("separation G", g, "√(var θ − mean SE²) / √mean SE²: true SD over RMSE"),
            ("separation G (sirt sepG)", meta.get("sep_g_sirt"), "√(var θ / mean SE²)"),
            ("strata (4G + 1) / 3", strata, "statistically distinct levels of quality"),
            ("BT penalty α", meta.get("bt_alpha"), "ridge only; 0 otherwise"),
            (
                "misfitting judges",
                ", ".join(misfit) if misfit else ("none" if misfit is not None else None),
                "infit above the judges' mean + 2 SD (Pollitt 2012)",
            ),
            (
                "comparison graph strongly connected",
                meta.get("bt_connected"),
                "the MLE needs it; Firth's estimate does not",
            ),
            (
                "BT fit converged",
                meta.get("bt_converged"),
                f"after {meta.get('bt_iterations')} iterations"
                if meta.get("bt_iterations") is not None
                else "",
            ),
            ("BT engine / SE method", f"{meta.get('bt_engine')} / {meta.get('bt_se_method')}", ""),
            ("essays scored", len(rep.scores), ""),
            ("median comparisons per essay", median, ""),
        ]
    )


def anchor_check_table(rep: BatchReport) -> pd.DataFrame:
    """How well anchor θ agree with anchor grades: inversions, Kendall τ-b, Spearman ρ."""
    if rep.projection is None:
        return pd.DataFrame(
            [("projection", rep.projection_error or "unavailable")], columns=["metric", "value"]
        )
    check = rep.projection.anchor_check
    anchors = rep.projection.anchor_grades
    rows = [
        ("anchors", len(anchors)),
        ("distinct anchor grades", anchors.nunique()),
        ("inverted anchor pairs", len(check.inversions)),
        ("Kendall τ-b (grade vs θ)", check.kendall_tau_b),
        ("Spearman ρ (grade vs θ)", check.spearman_rho),
        ("anchors that never won", ", ".join(map(str, check.zero_win_anchors)) or "none"),
        ("anchors that never lost", ", ".join(map(str, check.zero_loss_anchors)) or "none"),
    ]
    return pd.DataFrame([(m, format_value(v)) for m, v in rows], columns=["metric", "value"])


def inversions_table(rep: BatchReport) -> pd.DataFrame:
    """Anchor pairs whose θ order contradicts their grade order, largest gap first."""
    if rep.projection is None:
        return pd.DataFrame(columns=["anchor_low", "grade_low", "anchor_high", "grade_high"])
    return rep.projection.anchor_check.inversions.copy()


def calibration_table(rep: BatchReport) -> pd.DataFrame:
    """Per grade: centre, boundaries, their SEs, number of anchors and how it was placed."""
    if rep.projection is None:
        return pd.DataFrame(columns=["grade"])
    cal = rep.projection.calibration.reset_index()
    cal["placed by"] = np.select(
        [cal["interpolated"], cal["extrapolated"], cal["pooled"]],
        ["interpolation", "extrapolation", "anchors (pooled)"],
        default="anchors",
    )
    return cal[["grade", "n_anchors", "centre", "centre_se", "lower", "upper", "placed by"]]


def accuracy_table(rep: BatchReport) -> pd.DataFrame:
    """Agreement and calibration of the rebuilt projection with the true grades."""
    ev = rep.evaluation
    if ev is None:
        why = "no true grades are known" if rep.truth is None else "no projection to evaluate"
        return pd.DataFrame([("evaluation", why, "")], columns=["metric", "value", "meaning"])
    return _metric_table(
        [
            ("students evaluated", ev.n, ""),
            ("exact agreement", ev.exact_agreement, "primary grade = true grade"),
            ("majority baseline", ev.majority_baseline, "always guessing the commonest true grade"),
            ("adjacent agreement", ev.adjacent_agreement, "at most one grade away"),
            ("quadratic weighted κ", ev.quadratic_weighted_kappa, "1 = perfect, 0 = chance"),
            ("Spearman ρ", ev.spearman_rho, "expected grade index vs true grade index"),
            ("Brier score", ev.brier_score, "lower is better"),
            ("log loss", ev.log_loss, "lower is better"),
            (
                "expected calibration error",
                ev.expected_calibration_error,
                "|accuracy − confidence|",
            ),
            ("mean confidence", ev.mean_confidence, "≈ exact agreement when calibrated"),
            ("mean probability of the true grade", ev.mean_true_grade_probability, ""),
        ]
    )


def confusion_table(rep: BatchReport) -> pd.DataFrame | None:
    """Counts of true grade (rows) by projected primary grade (columns), or None without truth."""
    if rep.projection is None or rep.truth is None or rep.evaluation is None:
        return None
    labels = list(rep.projection.scale.all_labels)
    grades = rep.projection.grades
    truth = rep.truth.loc[rep.truth.index.isin(grades.index)]
    predicted = grades.loc[truth.index, "primary_grade"]
    table = pd.crosstab(
        pd.Categorical(truth.to_numpy(), categories=labels),
        pd.Categorical(predicted.to_numpy(), categories=labels),
        dropna=False,
    )
    table.index.name, table.columns.name = "true grade", "projected grade"
    return table


# --------------------------------------------------------------------------------------------
# Comparisons and judges
# --------------------------------------------------------------------------------------------


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=POSITION_CI_LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def _wave_label(wave: Any) -> str:
    return (
        str(int(wave)) if isinstance(wave, float | np.floating) and wave.is_integer() else str(wave)
    )


def position_table(rep: BatchReport | BatchRecord) -> pd.DataFrame:
    """Share of decisions won by the essay in position A, per wave and overall, with CIs.

    Returns
    -------
    pandas.DataFrame
        ``wave`` (``all`` last), ``decisions``, ``a_wins``, ``a_share``, ``ci_low``,
        ``ci_high`` (Wilson interval at :data:`POSITION_CI_LEVEL`). For an imported batch whose
        file did not give positions (:func:`cjlib.report.loading.positions_known`), one row
        ``all`` with the decisions and NaN shares.
    """
    frames = _frames_of(rep)
    decided = frames.decided
    if not positions_known(frames):
        # Stored winner-first: the share would be 1 by construction.
        nan = float("nan")
        return pd.DataFrame(
            [("all", len(decided), nan, nan, nan, nan)],
            columns=["wave", "decisions", "a_wins", "a_share", "ci_low", "ci_high"],
        )
    rows = []
    groups = [(_wave_label(w), g) for w, g in decided.groupby("wave", sort=True)]
    for wave, group in [*groups, ("all", decided)]:
        n, k = len(group), int((group["winner"] == "essay_a").sum())
        low, high = _wilson(k, n)
        rows.append((wave, n, k, k / n if n else float("nan"), low, high))
    return pd.DataFrame(
        rows, columns=["wave", "decisions", "a_wins", "a_share", "ci_low", "ci_high"]
    )


def judge_fit_table(rep: BatchReport) -> pd.DataFrame:
    """Per judge: decisions, infit and outfit (from the refit), errors and position-A share."""
    comparisons = rep.frames.comparisons
    per_judge = pd.DataFrame(
        {
            "judge_id": comparisons["judge_id"].fillna("unknown"),
            "decided": comparisons["winner"].isin(DECIDED),
            "error": comparisons["winner"] == "error",
            "a_win": comparisons["winner"] == "essay_a",
        }
    ).groupby("judge_id", sort=False)
    table = pd.DataFrame(
        {
            "comparisons": per_judge.size(),
            "errors": per_judge["error"].sum().astype(int),
            "position_a_share": per_judge["a_win"].sum() / per_judge["decided"].sum(),
        }
    )
    if not positions_known(rep.frames):
        table["position_a_share"] = float("nan")
    if rep.bt is not None and not rep.bt.judges.empty:
        table = table.join(rep.bt.judges[["infit", "outfit"]], how="left")
    else:
        table["infit"] = table["outfit"] = float("nan")
    return table.reset_index()


# --------------------------------------------------------------------------------------------
# Health and state log
# --------------------------------------------------------------------------------------------


def batch_health_row(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    """The batch's row of the ``cj_batch_health`` view as field/value pairs.

    Raises
    ------
    NotFoundError
        The view has no row for this batch.
    """
    from cjlib.diagnostics import batch_health

    frame = batch_health(engine)
    row = frame.loc[frame["cj_batch_id"] == cj_batch_id]
    if row.empty:
        raise NotFoundError(f"no CJ batch with id {cj_batch_id} in the health view")
    record = row.iloc[0].to_dict()
    return pd.DataFrame(
        [
            (k, format_value(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v))
            for k, v in record.items()
        ],
        columns=["field", "value"],
    )


def transitions_table(rep: BatchReport | BatchRecord) -> pd.DataFrame:
    """The batch's state transitions in order (``at`` as a UTC string)."""
    table = _frames_of(rep).transitions.copy()
    table["at"] = [format_value(v) for v in table["at"]]
    return table


# --------------------------------------------------------------------------------------------
# The LLM judge
# --------------------------------------------------------------------------------------------


#: Heading and explanation of the report's LLM section (shown only with stored calls).
LLM_SECTION_MARKDOWN = """## LLM judge

Every call to the model is stored (`cj_judge_calls`): per model as the server reported it
and prompt template, the calls, how many gave a decision, the failed ones by error code (an
answer outside the contract is a failed comparison, never a decision), retries, tokens and
the estimated cost. Then position bias: the share of decisions won by the essay shown first
(position A) with its 95 % Wilson interval; for pairs asked in both orders (`--both-orders`),
the share where the same essay won both times (forward/reverse agreement) and the position
effect δ on the logit scale, ½·log(n_AA / n_BB) from the pairs answered "A" twice or "B"
twice, with its 95 % interval (0 means no position preference)."""


def _judge_calls(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    from cjlib.db import session_scope
    from cjlib.db.judge_calls import judge_calls_frame

    with session_scope(engine) as session:
        return judge_calls_frame(session, cj_batch_id)


def has_judge_calls(engine: Engine, cj_batch_id: int) -> bool:
    """Whether the batch stored LLM judge calls (the report's LLM section is shown then)."""
    from cjlib.db import session_scope
    from cjlib.db.judge_calls import judge_call_summary

    with session_scope(engine) as session:
        return judge_call_summary(session, cj_batch_id).calls > 0


def llm_calls_table(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    """Per model (as the server reported it) and prompt template: calls, outcomes, tokens, cost.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``template`` (SHA-256 prefix), ``calls``, ``decided``, ``failed``,
        ``retries``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd`` (None when some
        answered call had no price), ``errors`` (failed calls by error code); empty without
        calls.
    """
    calls = _judge_calls(engine, cj_batch_id)
    columns = [
        "model", "template", "calls", "decided", "failed", "retries", "prompt_tokens",
        "completion_tokens", "cost_usd", "errors",
    ]  # fmt: skip
    if calls.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (model, template), group in calls.groupby(["model", "template_sha256"], sort=True):
        answered = group["http_status"].between(200, 299)
        unpriced = bool((answered & group["cost_usd"].isna()).any())
        errors = group["error_code"].dropna().value_counts().sort_index()
        rows.append(
            (
                model,
                str(template)[:12],
                len(group),
                int(group["winner"].notna().sum()),
                int(group["error_code"].notna().sum()),
                int((group["attempts"] - 1).clip(lower=0).sum()),
                int(group["prompt_tokens"].fillna(0).sum()),
                int(group["completion_tokens"].fillna(0).sum()),
                None if unpriced else float(group["cost_usd"].fillna(0.0).sum()),
                ", ".join(f"{code} {n}" for code, n in errors.items()) or "–",
            )
        )
    return pd.DataFrame(rows, columns=columns)


def llm_order_table(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    """Position bias per model, from :func:`cjlib.llm.orders.order_agreement` on stored calls.

    The position-A win share (Wilson interval at :data:`POSITION_CI_LEVEL`), the
    forward/reverse agreement of pairs asked in both orders (``--both-orders``) and the
    position effect δ̂ = ½·log(n_AA / n_BB) on the logit scale with its interval; agreement
    and δ̂ are "–" without pairs asked both ways.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model``, ``decisions``, ``position_a_share`` ("0.52
        [0.45, 0.59]"), ``pairs_both_orders``, ``agreement``, ``position_effect``; empty
        without calls.
    """
    from cjlib.llm.orders import order_agreement

    columns = [
        "model", "decisions", "position_a_share", "pairs_both_orders", "agreement",
        "position_effect",
    ]  # fmt: skip
    calls = _judge_calls(engine, cj_batch_id)
    if calls.empty:
        return pd.DataFrame(columns=columns)
    table = order_agreement(calls, level=POSITION_CI_LEVEL)

    def with_interval(row: pd.Series, name: str) -> str:
        value = row[name]
        if pd.isna(value):
            return "–"
        low, high = row[f"{name}_low"], row[f"{name}_high"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"

    rows = [
        (
            row["model"],
            int(row["n_decisions"]),
            with_interval(row, "a_win_share"),
            int(row["n_matched"]),
            with_interval(row, "agreement"),
            with_interval(row, "position_effect"),
        )
        for _, row in table.iterrows()
    ]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Human judging panels: the imported file, judges, split-half reliability
# --------------------------------------------------------------------------------------------

#: A judge is flagged as misfitting when their infit exceeds the panel's mean by this many SDs
#: (Pollitt 2012; the convention of the major CJ platforms).
MISFIT_SD = 2.0
#: Random splits of the judges the report's split-half reliability takes the median over.
SPLIT_HALF_SPLITS = 20
#: Ridge penalty of the half fits in the fallback split-half (a half is often disconnected).
SPLIT_HALF_ALPHA = 0.03


def import_table(rep: BatchReport) -> pd.DataFrame:
    """How the batch was imported (file, task, rows kept and skipped, positions), or empty.

    Returns
    -------
    pandas.DataFrame
        ``field``, ``value``; no rows for a batch that was judged, not imported.
    """
    info = import_info(rep.frames)
    if info is None:
        return pd.DataFrame(columns=["field", "value"])
    rows = [
        ("file", info.get("source")),
        ("task", info.get("task") or "–"),
        ("rows read", info.get("rows_read")),
        ("decisions imported", info.get("decisions")),
        ("rows marked excluded (skipped)", info.get("excluded")),
        ("repeated decision ids (imported once)", info.get("duplicates")),
        ("rows of other tasks (skipped)", info.get("other_tasks")),
        ("anchors", info.get("anchors")),
        ("essay texts", "stored" if info.get("has_texts") else "none (ids only)"),
        ("positions", "known" if info.get("positions_known") else "unknown (stored winner-first)"),
    ]
    return pd.DataFrame([(k, format_value(v)) for k, v in rows], columns=["field", "value"])


def judge_misfit(judges: pd.DataFrame) -> pd.Series:
    """Which judges misfit: infit above the panel's mean infit + :data:`MISFIT_SD` SD.

    Uses the ``misfit`` column of :attr:`cjlib.scoring.BTResult.judges` when the scoring
    module provides one; otherwise computes the same rule here. Mean and SD (denominator
    n − 1) are over judges with a finite infit; with fewer than three such judges nobody is
    flagged.

    Parameters
    ----------
    judges : pandas.DataFrame
        Indexed by judge, with ``infit`` (and optionally ``misfit``).

    Returns
    -------
    pandas.Series
        Boolean, same index as ``judges``.
    """
    if "misfit" in judges.columns:
        return judges["misfit"].fillna(False).astype(bool)
    infit = judges["infit"].astype(float)
    finite = infit[np.isfinite(infit)]
    if len(finite) < 3:
        return pd.Series(False, index=judges.index, name="misfit")
    limit = finite.mean() + MISFIT_SD * finite.std(ddof=1)
    return (infit > limit).rename("misfit")


def judge_panel_table(rep: BatchReport) -> pd.DataFrame:
    """Per judge: decisions, infit, outfit, misfit flag, median seconds, share of left choices.

    Returns
    -------
    pandas.DataFrame
        One row per judge, most decisions first: ``judge_id``, ``decisions`` (decided
        comparisons), ``infit``, ``outfit`` (from the report's refit), ``misfit``
        (:func:`judge_misfit`), ``median_seconds`` (median ``seconds_taken`` of the judge's
        decisions, NaN when the file gave no times), ``left_share`` (share of decisions won by
        the essay shown left / as A; NaN when positions are unknown). Empty when no decided
        comparison names a judge.
    """
    columns = [
        "judge_id", "decisions", "infit", "outfit", "misfit", "median_seconds", "left_share",
    ]  # fmt: skip
    decided = rep.frames.decided
    decided = decided.loc[decided["judge_id"].notna()]
    if decided.empty:
        return pd.DataFrame(columns=columns)
    seconds = (
        pd.to_numeric(decided["seconds_taken"], errors="coerce")
        if "seconds_taken" in decided.columns
        else pd.Series(np.nan, index=decided.index)
    )
    grouped = pd.DataFrame(
        {
            "judge_id": decided["judge_id"].to_numpy(),
            "left": (decided["winner"] == "essay_a").to_numpy(),
            "seconds": seconds.to_numpy(dtype=float),
        }
    ).groupby("judge_id", sort=False)
    table = pd.DataFrame(
        {
            "decisions": grouped.size(),
            "median_seconds": grouped["seconds"].median(),
            "left_share": grouped["left"].mean(),
        }
    )
    if not positions_known(rep.frames):
        table["left_share"] = float("nan")
    judges = rep.bt.judges if rep.bt is not None else pd.DataFrame()
    if judges.empty:
        table["infit"] = table["outfit"] = float("nan")
        table["misfit"] = False
    else:
        fit = judges.assign(misfit=judge_misfit(judges))
        table = table.join(fit[["infit", "outfit", "misfit"]], how="left")
        table["misfit"] = table["misfit"].fillna(False).astype(bool)
    table.index.name = "judge_id"
    table = table.reset_index().sort_values(["decisions", "judge_id"], ascending=[False, True])
    return table[columns].reset_index(drop=True)


def _fit_theta(comparisons: pd.DataFrame) -> pd.Series:
    from cjlib.scoring import fit_bradley_terry

    return fit_bradley_terry(comparisons, alpha=SPLIT_HALF_ALPHA).scores["theta"]


def _judge_split_half(comparisons: pd.DataFrame, *, n_splits: int, seed: int) -> np.ndarray:
    """Correlations of θ between halves of the judges (of the decisions with one judge)."""
    rng = np.random.default_rng(seed)
    judges = comparisons["judge_id"].fillna("unknown").to_numpy()
    names = pd.unique(judges)
    correlations = []
    for _ in range(n_splits):
        if len(names) >= 2:
            first = set(rng.permutation(names)[: len(names) // 2])
            half = np.isin(judges, list(first))
        else:
            half = rng.permutation(len(comparisons)) % 2 == 0
        try:
            theta_1 = _fit_theta(comparisons.loc[half])
            theta_2 = _fit_theta(comparisons.loc[~half])
        except (ValueError, CJError):
            continue  # a half too small to fit (fewer than two essays)
        both = theta_1.index.intersection(theta_2.index)
        if len(both) >= 3:
            correlations.append(float(np.corrcoef(theta_1[both], theta_2[both])[0, 1]))
    return np.asarray(correlations, dtype=float)


def split_half_reliability(
    rep: BatchReport, *, n_splits: int = SPLIT_HALF_SPLITS, seed: int = 0
) -> dict[str, Any]:
    """Split-half (inter-rater) reliability of the batch's scores.

    The judges are split at random into two halves (the decisions, when there is one judge),
    each half is fitted on its own, and θ of the essays in both halves are correlated
    (Pearson r); over ``n_splits`` splits the median r and its Spearman–Brown step-up
    2r / (1 + r) are reported (Verhavert et al. 2019). The value the finalizer stored with the
    batch (``processing_metadata["split_half"]``) when there is one; else
    :func:`cjlib.reliability.split_half` when this cjlib has it; otherwise the same procedure
    here, with halves fitted with ridge α = :data:`SPLIT_HALF_ALPHA` (a half is often not
    strongly connected).

    Returns
    -------
    dict
        ``median_r``, ``spearman_brown``, ``splits`` (correlations computed), ``judges``,
        ``method`` (which implementation); NaN values when there are too few decisions.
    """
    decided = rep.frames.decided
    comparisons = decided[["essay_a_id", "essay_b_id", "winner"]].copy()
    comparisons["judge_id"] = decided["judge_id"].fillna("unknown").to_numpy()
    n_judges = int(comparisons["judge_id"].nunique())
    nan = float("nan")
    stored = rep.frames.metadata.get("split_half")
    if isinstance(stored, dict) and stored.get("median") is not None:
        # The finalizer's own split-half (cjlib.reliability.split_half): the number the batch
        # published, so the report does not show a second, differently seeded estimate.
        return {
            "median_r": float(stored["median"]),
            "spearman_brown": float(stored.get("spearman_brown", nan)),
            "splits": int(stored.get("n_splits") or 0),
            "judges": n_judges,
            "method": f"stored by the finalizer (split by {stored.get('split_by', 'judges')})",
        }
    if len(comparisons) < 4:
        return {"median_r": nan, "spearman_brown": nan, "splits": 0, "judges": n_judges,
                "method": "too few decisions"}  # fmt: skip
    try:
        from cjlib.reliability import split_half
    except ImportError:
        r = _judge_split_half(comparisons, n_splits=n_splits, seed=seed)
        median = float(np.median(r)) if len(r) else nan
        return {
            "median_r": median,
            "spearman_brown": 2 * median / (1 + median) if median > -1 else nan,
            "splits": len(r),
            "judges": n_judges,
            "method": "cjlib.report (judges split at random)",
        }
    result = split_half(comparisons, n_splits=n_splits, seed=seed)
    correlations = getattr(result, "correlations", ())
    return {
        "median_r": float(result.median),
        "spearman_brown": float(result.spearman_brown),
        "splits": len(correlations) if correlations is not None else n_splits,
        "judges": n_judges,
        "method": "cjlib.reliability.split_half",
    }


def split_half_table(rep: BatchReport, *, n_splits: int = SPLIT_HALF_SPLITS) -> pd.DataFrame:
    """:func:`split_half_reliability` as a metric/value/meaning table."""
    result = split_half_reliability(rep, n_splits=n_splits)
    return _metric_table(
        [
            ("split-half correlation (median r)", result["median_r"],
             "θ of two random halves of the judges, correlated"),
            ("Spearman–Brown 2r / (1 + r)", result["spearman_brown"],
             "reliability of the whole panel; compare with SSR"),
            ("splits", result["splits"], f"over {result['judges']} judge(s)"),
            ("computed by", result["method"], ""),
        ]
    )  # fmt: skip
