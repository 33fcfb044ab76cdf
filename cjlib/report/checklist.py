"""The success checklist: the pass/fail lines every healthy, finished batch satisfies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine

from cjlib.db.models import CoreCJState
from cjlib.report.loading import BatchRecord, import_info, load_batch

if TYPE_CHECKING:
    from cjlib.diagnostics import HealthAlert

#: The end of the state history of a batch that finalized normally.
FINAL_STATE_SEQUENCE = (
    CoreCJState.WAITING_CALLBACKS.value,
    CoreCJState.SCORING.value,
    CoreCJState.COMPLETED.value,
)
#: The names of the success checklist lines, in order.
CHECKS = (
    "is_anchor matches the anchor metadata for every essay",
    "state history ends WAITING_CALLBACKS → SCORING → COMPLETED",
    "upload status is COMPLETE_STABLE",
    "grade projections exist and come from valid anchors",
    "inspect snapshot is healthy",
    "no health alert fires for this batch",
)


def _check(name: str, passed: bool, evidence: str) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "evidence": evidence}


def anchor_flag_check(frames: BatchRecord) -> dict[str, Any]:
    """Checklist line 1: the ``is_anchor`` column agrees with every essay's anchor metadata.

    Returns
    -------
    dict
        ``check``, ``passed``, ``evidence`` (naming each disagreeing essay).
    """
    essays = frames.essays
    claimed = essays["metadata_is_anchor"]
    mismatched = essays.loc[claimed.notna() & (claimed != essays["is_anchor"])]
    silent = int(claimed.isna().sum())
    if mismatched.empty:
        evidence = f"{len(essays)} essays agree ({int(essays['is_anchor'].sum())} anchors)" + (
            f"; {silent} without an anchor flag in their metadata" if silent else ""
        )
        return _check(CHECKS[0], True, evidence)
    listed = ", ".join(
        f"{row.els_essay_id} (column {str(row.is_anchor).lower()}, "
        f"metadata {str(row.metadata_is_anchor).lower()})"
        for row in mismatched.itertuples(index=False)
    )
    return _check(CHECKS[0], False, f"{len(mismatched)} mismatch(es): {listed}")


def _state_history_check(frames: BatchRecord) -> dict[str, Any]:
    history = [str(s) for s in frames.transitions["to_state"]]
    tail = tuple(history[-len(FINAL_STATE_SEQUENCE) :])
    shown = " → ".join(history[-5:])
    prefix = "… → " if len(history) > 5 else ""
    evidence = (
        f"{len(history)} transitions, ending {prefix}{shown}" if history else "no transitions"
    )
    return _check(CHECKS[1], tail == FINAL_STATE_SEQUENCE, evidence)


def _status_check(frames: BatchRecord) -> dict[str, Any]:
    status = frames.upload.status
    return _check(CHECKS[2], status == "COMPLETE_STABLE", f"status {status}")


def _imported_without_anchors(frames: BatchRecord, n_projections: int, n_anchors: int) -> bool:
    # `cj judgements import` / `cj pipeline --judgements` without --anchors: scores and
    # reliabilities are the whole result, so no projection is not a failure.
    return (
        import_info(frames) is not None
        and n_anchors == 0
        and n_projections == 0
        and frames.metadata.get("projection_unavailable_reason") == "no_anchors"
    )


def _projection_check(frames: BatchRecord) -> dict[str, Any]:
    n_projections = len(frames.projections)
    n_anchors = int(frames.essays["is_anchor"].sum())
    if _imported_without_anchors(frames, n_projections, n_anchors):
        return _check(
            CHECKS[3],
            True,
            "not applicable: batch imported without anchors, so it has scores and "
            "reliabilities but no projections (projection_unavailable_reason no_anchors)",
        )
    grades = frames.anchor_grades
    n_grades = int(grades.nunique())
    passed = n_projections > 0 and n_anchors > 0 and n_grades >= 2
    evidence = (
        f"{n_projections} projections; {n_anchors} anchors with {len(grades)} known grades "
        f"covering {n_grades} distinct grade(s)"
    )
    reason = frames.metadata.get("projection_unavailable_reason")
    if reason:
        evidence += f"; projection unavailable: {reason}"
    return _check(CHECKS[3], passed, evidence)


def _health_check(frames: BatchRecord, health: str | None) -> dict[str, Any]:
    status = frames.upload.status
    state = None if frames.state is None else frames.state.state
    return _check(CHECKS[4], health == "ok", f"health {health} (state {state}, status {status})")


def _alert_check(alerts: list[HealthAlert]) -> dict[str, Any]:
    alert_text = "; ".join(f"{a.kind}: {a.detail}" for a in alerts) or "none firing"
    return _check(CHECKS[5], not alerts, alert_text)


def evaluate_checklist(
    frames: BatchRecord, *, health: str | None, alerts: Iterable[HealthAlert] = ()
) -> pd.DataFrame:
    """The success checklist of a batch from its data, inspect verdict and health alerts.

    Parameters
    ----------
    frames : BatchRecord
    health : str or None
        The batch's verdict from :func:`cjlib.diagnostics.inspect_batch` (``ok`` passes).
    alerts : iterable
        The firing alerts of this batch (objects with ``kind`` and ``detail``, e.g.
        :class:`cjlib.diagnostics.HealthAlert`).

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``passed`` (bool), ``evidence`` (str); one row per entry of
        :data:`CHECKS`, in that order.
    """
    rows = [
        anchor_flag_check(frames),
        _state_history_check(frames),
        _status_check(frames),
        _projection_check(frames),
        _health_check(frames, health),
        _alert_check(list(alerts)),
    ]
    return pd.DataFrame(rows, columns=["check", "passed", "evidence"])


def success_checklist(
    engine: Engine,
    cj_batch_id: int,
    *,
    frames: BatchRecord | None = None,
) -> pd.DataFrame:
    """Evaluate the success checklist of batch ``cj_batch_id`` on the database.

    Lines (see :data:`CHECKS`): the ``is_anchor`` column agrees with each essay's anchor
    metadata; the state history ends WAITING_CALLBACKS → SCORING → COMPLETED; the upload is
    COMPLETE_STABLE; there are grade projections, anchors, and ≥ 2 distinct anchor grades (a
    batch imported without anchors passes this line with the reason ``no_anchors``);
    :func:`cjlib.diagnostics.inspect_batch` judges the batch ``ok``; no alert of
    :func:`cjlib.diagnostics.health_alerts` (including ``anchor_flag_drift``) names the batch.

    Both the health verdict and the alerts use the view's default thresholds, so the two
    lines cannot disagree about what counts as stuck.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    cj_batch_id : int
    frames : BatchRecord, optional
        Already loaded data of the batch (loaded when omitted).

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``passed``, ``evidence``.

    Raises
    ------
    NotFoundError
        No batch has this id.
    """
    from cjlib.diagnostics import DEFAULT_THRESHOLDS, health_alerts, inspect_batch

    frames = frames or load_batch(engine, cj_batch_id)
    inspection = inspect_batch(engine, cj_batch_id)
    report = health_alerts(engine, DEFAULT_THRESHOLDS)
    mine = [a for alerts in report.alerts.values() for a in alerts if a.cj_batch_id == cj_batch_id]
    return evaluate_checklist(frames, health=inspection.health, alerts=mine)
