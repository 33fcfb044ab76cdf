"""What a reader must keep in mind about a batch's numbers, generated from its data.

:func:`limitations` returns one plain sentence per caveat; :func:`cjlib.report.html.
limitations_markdown` renders them for the report. Each group of caveats is one small function
below, in the order the report lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cjlib.projection import Projection
from cjlib.report.assembly import BatchReport
from cjlib.report.checklist import anchor_flag_check
from cjlib.report.loading import import_info, positions_known
from cjlib.report.tables import position_table

#: Scale separation reliability below this is reported as a limitation.
LOW_RELIABILITY = 0.7
#: Essays with fewer successful comparisons than this are reported as thinly measured.
MIN_COMPARISONS_PER_ESSAY = 5
#: Below this many evaluated students, accuracy is reported as imprecise.
MIN_EVALUATED_STUDENTS = 30


def _listed(values: Iterable[Any], limit: int = 8) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _projection_unavailable(rep: BatchReport) -> list[str]:
    meta = rep.frames.metadata
    if meta.get("projection_available") is not False and rep.projection is not None:
        return []
    reason = meta.get("projection_unavailable_reason")
    if reason == "no_anchors" and import_info(rep.frames) is not None:
        return [
            "The decisions were imported without anchors, so the batch has scores and "
            "reliabilities but no projected grades."
        ]
    message = meta.get("projection_unavailable_message") or rep.projection_error
    return [
        "No grades could be projected"
        + (f" ({reason})" if reason else "")
        + (f": {message}" if message else ".")
    ]


def _unanchored_grades(projection: Projection) -> list[str]:
    cal = projection.calibration
    out = []
    interpolated = list(cal.index[cal["interpolated"]])
    extrapolated = list(cal.index[cal["extrapolated"]])
    pooled = list(cal.index[cal["pooled"]])
    if interpolated:
        out.append(
            f"Grade(s) {_listed(interpolated)} have no anchor essay: their intervals are "
            "interpolated between the anchored neighbours, with the uncertainty of an "
            "unmeasured grade width."
        )
    if extrapolated:
        out.append(
            f"Grade(s) {_listed(extrapolated)} lie outside the anchored range: their intervals "
            "are extrapolated from the anchored grades' typical width, with an uncertainty "
            "that grows with each unmeasured width, so projections into them are weakly "
            "supported."
        )
    if pooled:
        out.append(
            f"Anchored grade(s) {_listed(pooled)} were pooled with a neighbour because their "
            "anchors' θ were out of grade order or too close together."
        )
    return out


def _anchor_problems(projection: Projection) -> list[str]:
    check = projection.anchor_check
    out = []
    if check.zero_win_anchors:
        out.append(
            f"Anchor(s) {_listed(check.zero_win_anchors)} never won a comparison: their θ is "
            "bounded only by the fit, not measured."
        )
    if check.zero_loss_anchors:
        out.append(
            f"Anchor(s) {_listed(check.zero_loss_anchors)} never lost a comparison: their θ is "
            "bounded only by the fit, not measured."
        )
    inv = check.inversions
    if len(inv):
        top = inv.iloc[0]
        out.append(
            f"{len(inv)} anchor pair(s) are inverted (θ order contradicts grade order); the "
            f"largest: {top['anchor_low']} ({top['grade_low']}) is {top['theta_gap']:.2f} logits "
            f"above {top['anchor_high']} ({top['grade_high']})."
        )
    return out


def _calibration(rep: BatchReport) -> list[str]:
    if rep.projection is None:
        return []
    return _unanchored_grades(rep.projection) + _anchor_problems(rep.projection)


def _fit(rep: BatchReport) -> list[str]:
    meta = rep.frames.metadata
    out = []
    method = meta.get("bt_method")
    if meta.get("bt_connected") is False and method != "firth":
        out.append(
            "The comparison graph was not strongly connected (some essays only won or only "
            "lost within their group), so the maximum-likelihood scores do not exist."
        )
    if meta.get("bt_converged") is False:
        out.append(
            f"The Bradley–Terry fit did not converge ({meta.get('bt_iterations')} iterations): "
            "scores and SEs may be off; very sparse designs with a position effect do this "
            "(docs/scoring.md), and more comparisons per essay help."
        )
    alpha = meta.get("bt_alpha")
    if alpha and method in (None, "ridge"):
        out.append(
            f"Scores were fitted with an L2 penalty (α = {alpha}), which pulls extreme θ "
            "towards 0 and makes their SEs optimistic."
        )
    reliability = meta.get("reliability")
    if reliability is not None and reliability < LOW_RELIABILITY:
        out.append(
            f"Scale separation reliability is {reliability:.2f} (< {LOW_RELIABILITY}): the "
            "scores do not separate the essays well; more comparisons per essay would help."
        )
    return out


def _comparisons(rep: BatchReport) -> list[str]:
    comparisons = rep.frames.comparisons
    failed = comparisons.loc[comparisons["winner"] == "error"]
    pending = comparisons.loc[comparisons["winner"].isna()]
    out = []
    if len(failed):
        codes = failed["error_code"].fillna("unknown").value_counts()
        detail = ", ".join(f"{code} × {n}" for code, n in codes.items())
        out.append(
            f"{len(failed)} of {len(comparisons)} comparisons failed ({detail}) and were left "
            "out of the fit."
        )
    if len(pending):
        out.append(f"{len(pending)} comparisons never received a decision.")
    return out


def _essays(rep: BatchReport) -> list[str]:
    essays = rep.frames.essays
    out = []
    unscored = essays.loc[essays["bt_score"].isna(), "els_essay_id"]
    if len(unscored):
        out.append(f"{len(unscored)} essay(s) have no score: {_listed(unscored)}.")
    thin = rep.scores.loc[rep.scores["n_comparisons"] < MIN_COMPARISONS_PER_ESSAY]
    if len(thin):
        out.append(
            f"{len(thin)} essay(s) have fewer than {MIN_COMPARISONS_PER_ESSAY} successful "
            f"comparisons ({_listed(thin.index)}): their scores and grades are uncertain."
        )
    return out


def _position_bias(rep: BatchReport) -> list[str]:
    if not positions_known(rep.frames):
        return [
            "The imported file did not say which essay was shown first, so a position bias of "
            "the judges cannot be measured."
        ]
    overall = position_table(rep).iloc[-1]
    if not overall["decisions"] or overall["ci_low"] <= 0.5 <= overall["ci_high"]:
        return []
    return [
        f"The essay shown in position A won {overall['a_share']:.0%} of decisions (95 % CI "
        f"{overall['ci_low']:.2f}–{overall['ci_high']:.2f}): the judge has a position bias "
        "that the scores do not model."
    ]


def _run(rep: BatchReport) -> list[str]:
    meta, run = rep.frames.metadata, rep.frames.run
    out = []
    # An import's "budget" is its file: every decision is in, none was left unjudged.
    if meta.get("completion_reason") == "budget_exhausted" and import_info(rep.frames) is None:
        out.append(
            f"The batch stopped when its budget of {run.get('max_comparisons')} comparisons was "
            "used up, not because the scores had become stable."
        )
    if str(run.get("judge", "")).lower() in {"simulated", "mock"}:
        out.append(
            "Decisions come from the simulated judge, which decides from the data set's latent "
            "abilities: this validates the pipeline, not the judgement of a real marker."
        )
    return out


def _truth(rep: BatchReport) -> list[str]:
    if rep.truth is None:
        return [
            "No true grades are known for this data set, so the accuracy and calibration of "
            "the projected grades could not be checked."
        ]
    ev = rep.evaluation
    if ev is None:
        return []
    out = []
    if ev.exact_agreement <= ev.majority_baseline:
        out.append(
            f"Exact agreement with the true grades ({ev.exact_agreement:.2f}) is no better "
            f"than always guessing the commonest grade ({ev.majority_baseline:.2f})."
        )
    if ev.n < MIN_EVALUATED_STUDENTS:
        out.append(f"Accuracy is measured on only {ev.n} students; its sampling error is large.")
    return out


def _anchor_flags(rep: BatchReport) -> list[str]:
    mismatch = anchor_flag_check(rep.frames)
    if mismatch["passed"]:
        return []
    return [f"The is_anchor column disagrees with the anchor metadata: {mismatch['evidence']}."]


def _stored_vs_rebuilt(rep: BatchReport) -> list[str]:
    stored = rep.frames.projections
    if rep.projection is None or stored.empty:
        return []
    rebuilt = rep.projection.grades["primary_grade"]
    stored_grades = stored.set_index("els_essay_id")["primary_grade"]
    common = stored_grades.index.intersection(rebuilt.index)
    differ = [i for i in common if stored_grades[i] != rebuilt[i]]
    missing = stored_grades.index.symmetric_difference(rebuilt.index)
    if not differ and missing.empty:
        return []
    return [
        f"The stored grade projections differ from those rebuilt from the stored scores for "
        f"{len(differ) + len(missing)} essay(s) ({_listed([*differ, *missing])}): the "
        "projection code or the anchors changed since the batch was finalized."
    ]


#: The groups of caveats, in the order :func:`limitations` lists them.
_SECTIONS = (
    _projection_unavailable,
    _calibration,
    _fit,
    _comparisons,
    _essays,
    _position_bias,
    _run,
    _truth,
    _anchor_flags,
    _stored_vs_rebuilt,
)


def limitations(rep: BatchReport) -> list[str]:
    """What a reader must keep in mind about this batch's numbers, generated from its data.

    Covers: projection unavailable (with the reason), grades without anchors (interpolated /
    extrapolated), pooled grades, anchors with zero wins or losses, anchor inversions, a
    disconnected comparison graph or penalised fit, reliability below
    :data:`LOW_RELIABILITY`, failed comparisons, thinly compared or unscored essays, a position
    effect, stopping on the budget, a simulated judge, missing truth or accuracy no better
    than the majority baseline, anchor-flag disagreements, and stored projections that differ
    from the rebuilt ones.

    Returns
    -------
    list of str
        One sentence each, plain text (not escaped); empty when nothing calls for a caveat.
    """
    return [item for section in _SECTIONS for item in section(rep)]
