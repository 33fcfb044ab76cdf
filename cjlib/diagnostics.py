"""Batch diagnostics: inspect one CJ batch, judge the health of all batches, raise alerts.

Reads the ``cj_batch_health`` view (migration 0002) and the CJ tables; never writes. The health
rule lives in two places that a test keeps in agreement: the view's ``CASE`` (default
thresholds, so Grafana and plain SQL see it) and :func:`judge_health` (any thresholds).

``cj batch inspect`` and ``cj health`` (:mod:`cjlib.cli`) render what this module returns; it never
imports the CLI.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, case, func, inspect, select, text
from sqlalchemy.orm import Session

from cjlib.db.judge_calls import judge_call_summary
from cjlib.db.models import (
    FINAL_STATES,
    CJBatchState,
    CJBatchStateTransition,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJComparisonPair,
    CJJudgeCall,
    CJProcessedEssay,
    ComparisonWinner,
    CoreCJState,
    GradeProjection,
)
from cjlib.db.repository import parse_anchor_flag
from cjlib.errors import NotFoundError, UsageError
from cjlib.validation import integer_range

log = logging.getLogger(__name__)

VIEW_NAME = "cj_batch_health"
#: Tables the view and the inspection read directly.
_TABLES_READ = frozenset(
    model.__tablename__
    for model in (
        CJBatchUpload,
        CJBatchState,
        CJBatchStateTransition,
        CJProcessedEssay,
        CJComparisonPair,
        GradeProjection,
    )
)

#: Every value of the view's ``health`` column.
HEALTH_STATES = (
    "ok",
    "in_progress",
    "stuck_finalization",
    "long_scoring",
    "stalled_callbacks",
    "failed",
)
#: Health states that raise an alert (``anchor_flag_drift`` is judged separately).
ALERTING_HEALTH = ("stuck_finalization", "long_scoring", "stalled_callbacks")
ALERT_KINDS = (*ALERTING_HEALTH, "anchor_flag_drift")

#: How many state transitions :func:`inspect_batch` reports.
RECENT_TRANSITIONS = 20

_TIMESTAMP_COLUMNS = ("created_at", "last_activity_at", "completed_at")
_COUNT_COLUMNS = (
    "total_comparisons",
    "submitted_comparisons",
    "completed_comparisons",
    "failed_comparisons",
    "anchor_count",
    "essay_count",
    "grade_projection_count",
    "anchor_flag_drift_count",
)
_FINALIZING_STATES = {CoreCJState.WAITING_CALLBACKS.value, CoreCJState.SCORING.value}
_WORKING_STATES = {CoreCJState.GENERATING_PAIRS.value, CoreCJState.WAITING_CALLBACKS.value}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class HealthThresholds:
    """How long a batch may sit in a condition before it counts as unhealthy, in seconds.

    The defaults are the ones built into the ``cj_batch_health`` view.
    """

    stuck_after: float = 600.0
    scoring_after: float = 600.0
    stalled_after: float = 120.0


DEFAULT_THRESHOLDS = HealthThresholds()


def parse_duration(value: str | float) -> float:
    """Seconds in a duration written as ``600``, ``30s``, ``10m``, ``2h`` or ``1d``.

    Raises
    ------
    UsageError
        ``value`` is empty, negative, or has an unknown unit.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or math.isnan(value):
            raise UsageError(f"duration must be zero or more seconds, got {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise UsageError(
            f"cannot read duration {value!r}: give seconds or a number with a unit s, m, h "
            "or d, e.g. 600, 30s, 10m, 2h"
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit.lower()]


def _exceeds(seconds: Any, limit: float) -> bool:
    # NULL ages (no activity recorded) never exceed a threshold, as in the SQL rule.
    if seconds is None:
        return False
    seconds = float(seconds)
    return not math.isnan(seconds) and seconds > limit


def _state_value(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def judge_health(row: Mapping[str, Any], thresholds: HealthThresholds = DEFAULT_THRESHOLDS) -> str:
    """The health verdict of one ``cj_batch_health`` row under ``thresholds``.

    The first rule that matches wins:

    1. ``failed`` — CJ state FAILED, or upload status ERROR_PROCESSING;
    2. ``stuck_finalization`` — upload COMPLETE_STABLE, state WAITING_CALLBACKS or SCORING,
       no grade projections, no activity for longer than ``stuck_after``;
    3. ``long_scoring`` — state SCORING for longer than ``scoring_after`` although every
       submitted callback is in (completed + failed ≥ submitted);
    4. ``stalled_callbacks`` — state GENERATING_PAIRS or WAITING_CALLBACKS, no activity for
       longer than ``stalled_after`` (live workers heartbeat every few seconds, so silence
       means the process died);
    5. ``in_progress`` — any other non-final state (or no state row);
    6. ``ok`` — COMPLETED or CANCELLED.

    With :data:`DEFAULT_THRESHOLDS` this is exactly the view's ``CASE`` expression.

    Parameters
    ----------
    row : mapping
        Needs ``upload_status``, ``cj_state``, ``grade_projection_count``,
        ``submitted_comparisons``, ``completed_comparisons``, ``failed_comparisons``,
        ``seconds_since_last_activity`` and ``seconds_in_state``.
    thresholds : HealthThresholds

    Returns
    -------
    str
        One of :data:`HEALTH_STATES`.
    """
    state = _state_value(row["cj_state"])
    status = _state_value(row["upload_status"])
    if state == CoreCJState.FAILED.value or status == CJBatchStatusEnum.ERROR_PROCESSING.value:
        return "failed"
    if (
        status == CJBatchStatusEnum.COMPLETE_STABLE.value
        and state in _FINALIZING_STATES
        and int(row["grade_projection_count"]) == 0
        and _exceeds(row["seconds_since_last_activity"], thresholds.stuck_after)
    ):
        return "stuck_finalization"
    callbacks_in = int(row["completed_comparisons"]) + int(row["failed_comparisons"])
    if (
        state == CoreCJState.SCORING.value
        and callbacks_in >= int(row["submitted_comparisons"])
        and _exceeds(row["seconds_in_state"], thresholds.scoring_after)
    ):
        return "long_scoring"
    if state in _WORKING_STATES and _exceeds(
        row["seconds_since_last_activity"], thresholds.stalled_after
    ):
        return "stalled_callbacks"
    if state is None or state not in FINAL_STATES:
        return "in_progress"
    return "ok"


def _to_utc(value: Any) -> datetime | None:
    # PostgreSQL returns aware datetimes; SQLite returns the stored naive-UTC text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _require_view(connection: Connection) -> None:
    # Name exactly what is missing (the view, or a table it reads) and the command that fixes
    # it, instead of letting the query fail with the database's own error.
    names = inspect(connection)
    if VIEW_NAME not in names.get_view_names():
        raise UsageError(
            f"view {VIEW_NAME} is missing: run `cj db upgrade` (it recreates the view)"
        )
    missing = sorted(_TABLES_READ - set(names.get_table_names()))
    if missing:
        raise UsageError(
            f"table {', '.join(missing)} is missing: the schema is damaged; restore it from a "
            "backup or, on a development database, run `cj db reset --yes`"
        )


def _normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in _TIMESTAMP_COLUMNS:
        out[column] = _to_utc(out[column])
    for column in _COUNT_COLUMNS:
        out[column] = int(out[column])
    for column in ("seconds_since_last_activity", "seconds_in_state"):
        out[column] = None if out[column] is None else float(out[column])
    return out


@dataclass(frozen=True)
class ComparisonCounts:
    """Comparison counters of a batch: total pairs, sent to a judge, answered, errored."""

    total: int
    submitted: int
    completed: int
    failed: int


@dataclass(frozen=True)
class AnchorDisagreement:
    """An essay whose ``processing_metadata['is_anchor']`` contradicts its ``is_anchor`` column."""

    els_essay_id: str
    is_anchor: bool
    metadata_is_anchor: Any


@dataclass(frozen=True)
class TransitionRecord:
    """One entry of a batch's state transition log."""

    at: datetime
    from_state: str | None
    to_state: str
    reason: str | None


@dataclass(frozen=True)
class BatchInspection:
    """Everything needed to judge one CJ batch, as read from the database.

    Comparison counters appear twice: as the state row records them and as counted from
    ``cj_comparison_pairs``, so a disagreement between the two is visible.
    """

    cj_batch_id: int
    bos_batch_id: str
    batch_label: str | None
    assignment_id: str | None
    upload_status: str
    cj_state: str | None
    comparisons_from_state: ComparisonCounts | None
    comparisons_from_pairs: ComparisonCounts
    anchor_count: int
    non_anchor_count: int
    anchor_disagreements: tuple[AnchorDisagreement, ...]
    grade_projection_count: int
    created_at: datetime
    last_activity_at: datetime | None
    completed_at: datetime | None
    completion_reason: str | None
    transitions: tuple[TransitionRecord, ...]
    health: str
    health_row: dict[str, Any] = field(default_factory=dict)
    #: Totals of the batch's LLM judge calls (``calls``, ``retries``, ``failed``,
    #: ``prompt_tokens``, ``completion_tokens``, ``cost_usd``; see
    #: :func:`cjlib.db.judge_calls.judge_call_summary`), None when it has none.
    judge_calls: dict[str, Any] | None = None
    #: The finalizer's statistics: estimator, reliability (with its name), separations,
    #: split-half reliability and misfitting judges; empty until the batch is finalized.
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def essay_count(self) -> int:
        """Anchors plus other essays of the batch."""
        return self.anchor_count + self.non_anchor_count

    @property
    def comparisons_agree(self) -> bool:
        """Whether the state row's counters equal the counts of ``cj_comparison_pairs``."""
        return self.comparisons_from_state == self.comparisons_from_pairs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 strings in UTC)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["comparisons_from_state"] = (
            None if self.comparisons_from_state is None else asdict(self.comparisons_from_state)
        )
        out["comparisons_from_pairs"] = asdict(self.comparisons_from_pairs)
        out["comparisons_agree"] = self.comparisons_agree
        out["essay_count"] = self.essay_count
        out["anchor_disagreements"] = [asdict(d) for d in self.anchor_disagreements]
        out["transitions"] = [asdict(t) for t in self.transitions]
        return _jsonable(out)


def _pair_counts(connection: Connection, cj_batch_id: int) -> ComparisonCounts:
    pair = CJComparisonPair
    answered = (ComparisonWinner.ESSAY_A, ComparisonWinner.ESSAY_B)
    row = connection.execute(
        select(
            func.count(),
            func.count(pair.submitted_at),
            func.coalesce(func.sum(case((pair.winner.in_(answered), 1), else_=0)), 0),
            func.coalesce(func.sum(case((pair.winner == ComparisonWinner.ERROR, 1), else_=0)), 0),
        ).where(pair.cj_batch_id == cj_batch_id)
    ).one()
    return ComparisonCounts(*(int(v) for v in row))


def _anchor_facts(
    connection: Connection, cj_batch_id: int
) -> tuple[int, int, tuple[AnchorDisagreement, ...]]:
    essay = CJProcessedEssay
    rows = connection.execute(
        select(essay.els_essay_id, essay.is_anchor, essay.processing_metadata)
        .where(essay.cj_batch_id == cj_batch_id)
        .order_by(essay.els_essay_id)
    ).all()
    anchors = sum(1 for row in rows if row.is_anchor)
    disagreements = []
    for row in rows:
        meta = row.processing_metadata if isinstance(row.processing_metadata, dict) else {}
        flag = parse_anchor_flag(meta.get("is_anchor"))
        if flag is not None and flag != bool(row.is_anchor):
            disagreements.append(
                AnchorDisagreement(row.els_essay_id, bool(row.is_anchor), meta.get("is_anchor"))
            )
    return anchors, len(rows) - anchors, tuple(disagreements)


def _recent_transitions(connection: Connection, cj_batch_id: int) -> tuple[TransitionRecord, ...]:
    tr = CJBatchStateTransition
    rows = connection.execute(
        select(tr.at, tr.from_state, tr.to_state, tr.reason)
        .where(tr.batch_id == cj_batch_id)
        .order_by(tr.at.desc(), tr.id.desc())
        .limit(RECENT_TRANSITIONS)
    ).all()
    return tuple(
        TransitionRecord(
            at=row.at,
            from_state=None if row.from_state is None else str(row.from_state),
            to_state=str(row.to_state),
            reason=row.reason,
        )
        for row in reversed(rows)
    )


def _completion_reason(*metadata: Any) -> str | None:
    for meta in metadata:
        if isinstance(meta, dict) and meta.get("completion_reason") is not None:
            return str(meta["completion_reason"])
    return None


#: Keys of the upload's metadata that ``inspect`` reports as the batch's statistics.
STATISTICS_KEYS = (
    "bt_method",
    "bt_method_reason",
    "bt_converged",
    "bt_iterations",
    "reliability",
    "reliability_name",
    "separation",
    "sep_g",
    "sep_g_sirt",
    "split_half",
    "misfit_judges",
)


def _statistics(metadata: Any) -> dict[str, Any]:
    meta = metadata if isinstance(metadata, dict) else {}
    return {key: meta[key] for key in STATISTICS_KEYS if key in meta}


def inspect_batch(engine: Engine, cj_batch_id: int) -> BatchInspection:
    """Read everything about one batch: statuses, counters, anchors, activity, transitions.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        A database migrated to at least revision 0002.
    cj_batch_id : int
        ``cj_batch_uploads.id``.

    Returns
    -------
    BatchInspection

    Raises
    ------
    NotFoundError
        No batch has this id.
    UsageError
        The database lacks the ``cj_batch_health`` view (not migrated).
    """
    low, high = integer_range(CJBatchUpload.id)
    if not low <= cj_batch_id <= high:
        # No row can hold it, and PostgreSQL would refuse the comparison with an error; SQLite
        # would answer "no row": say the same on both.
        raise NotFoundError(f"no CJ batch with id {cj_batch_id}")
    with engine.connect() as connection:
        _require_view(connection)
        upload = connection.execute(
            select(CJBatchUpload.__table__).where(CJBatchUpload.id == cj_batch_id)
        ).one_or_none()
        if upload is None:
            raise NotFoundError(f"no CJ batch with id {cj_batch_id}")
        state = connection.execute(
            select(CJBatchState.__table__).where(CJBatchState.batch_id == cj_batch_id)
        ).one_or_none()
        health_row = connection.execute(
            text(f"SELECT * FROM {VIEW_NAME} WHERE cj_batch_id = :cj_batch_id"),
            {"cj_batch_id": cj_batch_id},
        ).one()
        health = _normalise_row(health_row._mapping)
        anchors, non_anchors, disagreements = _anchor_facts(connection, cj_batch_id)
        from_pairs = _pair_counts(connection, cj_batch_id)
        projections = connection.execute(
            select(func.count()).where(GradeProjection.cj_batch_id == cj_batch_id)
        ).scalar_one()
        transitions = _recent_transitions(connection, cj_batch_id)
        calls = None
        # Databases before migration 0004 have no audit table (and no LLM batches).
        if inspect(connection).has_table(CJJudgeCall.__tablename__):
            with Session(bind=connection) as session:
                calls = judge_call_summary(session, cj_batch_id)
    from_state = (
        None
        if state is None
        else ComparisonCounts(
            state.total_comparisons,
            state.submitted_comparisons,
            state.completed_comparisons,
            state.failed_comparisons,
        )
    )
    return BatchInspection(
        cj_batch_id=upload.id,
        bos_batch_id=upload.bos_batch_id,
        batch_label=upload.batch_label,
        assignment_id=upload.assignment_id,
        upload_status=str(upload.status),
        cj_state=None if state is None else str(state.state),
        comparisons_from_state=from_state,
        comparisons_from_pairs=from_pairs,
        anchor_count=anchors,
        non_anchor_count=non_anchors,
        anchor_disagreements=disagreements,
        grade_projection_count=int(projections),
        created_at=upload.created_at,
        last_activity_at=health["last_activity_at"],
        completed_at=upload.completed_at,
        completion_reason=_completion_reason(
            upload.processing_metadata, None if state is None else state.processing_metadata
        ),
        transitions=transitions,
        health=health["health"],
        health_row=health,
        judge_calls=asdict(calls) if calls is not None and calls.calls else None,
        statistics=_statistics(upload.processing_metadata),
    )


def batch_health(
    engine: Engine, *, thresholds: HealthThresholds = DEFAULT_THRESHOLDS
) -> pd.DataFrame:
    """The ``cj_batch_health`` view as a DataFrame, one row per batch, ordered by id.

    Timestamps are timezone-aware UTC on both backends. With thresholds other than the
    defaults, ``health`` is re-judged by :func:`judge_health` from the same row.

    Raises
    ------
    UsageError
        The database lacks the ``cj_batch_health`` view (not migrated).
    """
    with engine.connect() as connection:
        _require_view(connection)
        frame = pd.read_sql(text(f"SELECT * FROM {VIEW_NAME} ORDER BY cj_batch_id"), connection)
    for column in _TIMESTAMP_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in ("cj_batch_id", *_COUNT_COLUMNS):
        frame[column] = frame[column].astype("int64")
    for column in ("seconds_since_last_activity", "seconds_in_state"):
        frame[column] = frame[column].astype("float64")
    if thresholds != DEFAULT_THRESHOLDS and not frame.empty:
        frame["health"] = [judge_health(row, thresholds) for row in frame.to_dict("records")]
    return frame


@dataclass(frozen=True)
class HealthAlert:
    """One batch in an alerting condition; ``seconds`` is the age that crossed the threshold."""

    kind: str
    cj_batch_id: int
    batch_label: str | None
    assignment_id: str | None
    upload_status: str
    cj_state: str | None
    seconds: float | None
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """Alerts per kind over all batches, and how many batches are in each health state."""

    thresholds: HealthThresholds
    health_counts: dict[str, int]
    stuck_finalization: tuple[HealthAlert, ...] = ()
    long_scoring: tuple[HealthAlert, ...] = ()
    stalled_callbacks: tuple[HealthAlert, ...] = ()
    anchor_flag_drift: tuple[HealthAlert, ...] = ()

    @property
    def alerts(self) -> dict[str, tuple[HealthAlert, ...]]:
        """Alerts keyed by kind, in :data:`ALERT_KINDS` order."""
        return {kind: getattr(self, kind) for kind in ALERT_KINDS}

    @property
    def batch_count(self) -> int:
        """How many batches were judged."""
        return sum(self.health_counts.values())

    @property
    def firing(self) -> bool:
        """Whether any alert fires."""
        return any(self.alerts.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "firing": self.firing,
            "thresholds": asdict(self.thresholds),
            "batch_count": self.batch_count,
            "health_counts": dict(self.health_counts),
            "alerts": {kind: [asdict(a) for a in alerts] for kind, alerts in self.alerts.items()},
        }


def _duration(seconds: float) -> str:
    """A threshold as people write it: ``45 s``, ``10 min``, ``1 h 30 min``, ``1 min 30 s``.

    Never rounded to a coarser unit, so ``--stalled-after 1s`` reads ``1 s``, not ``0 min``.
    """
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:g} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    secs_part = f"{secs + (seconds - whole):g} s" if secs or seconds != whole else ""
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", secs_part]
    return " ".join(part for part in parts if part)


def _over(what: str, seconds: float | None, limit: float) -> str:
    """``idle 5 s > 1 s``: the measured time (whole seconds) against the threshold."""
    measured = "" if seconds is None else f" {_duration(round(float(seconds)))}"
    return f"{what}{measured} > {_duration(limit)}"


def _alert(kind: str, row: Mapping[str, Any], thresholds: HealthThresholds) -> HealthAlert:
    seconds: float | None
    if kind == "stuck_finalization":
        seconds = row["seconds_since_last_activity"]
        detail = (
            f"{_over('idle', seconds, thresholds.stuck_after)}, upload {row['upload_status']}, "
            "0 grade projections"
        )
    elif kind == "long_scoring":
        seconds = row["seconds_in_state"]
        detail = (
            f"{_over('scoring', seconds, thresholds.scoring_after)}, all "
            f"{row['submitted_comparisons']} callbacks in"
        )
    elif kind == "stalled_callbacks":
        seconds = row["seconds_since_last_activity"]
        pending = row["submitted_comparisons"] - row["completed_comparisons"]
        pending -= row["failed_comparisons"]
        detail = (
            f"{_over('idle', seconds, thresholds.stalled_after)}, {pending} of "
            f"{row['submitted_comparisons']} callbacks pending"
        )
    else:
        seconds = None
        detail = f"{row['anchor_flag_drift_count']} essay(s): metadata is_anchor, column not"
    return HealthAlert(
        kind=kind,
        cj_batch_id=int(row["cj_batch_id"]),
        batch_label=row["batch_label"],
        assignment_id=row["assignment_id"],
        upload_status=row["upload_status"],
        cj_state=_state_value(row["cj_state"]),
        seconds=None if seconds is None else float(seconds),
        detail=detail,
    )


def health_alerts(
    engine: Engine, thresholds: HealthThresholds = DEFAULT_THRESHOLDS
) -> HealthReport:
    """Batches in each alerting condition under ``thresholds``.

    ``stuck_finalization``, ``long_scoring`` and ``stalled_callbacks`` list the batches whose
    health (see :func:`judge_health`) is that state, so each batch appears under at most one
    of them; ``anchor_flag_drift`` lists batches with ``anchor_flag_drift_count > 0`` whatever
    their health.

    Raises
    ------
    UsageError
        The database lacks the ``cj_batch_health`` view (not migrated).
    """
    frame = batch_health(engine, thresholds=thresholds)
    rows = [
        {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in r.items()}
        for r in frame.to_dict("records")
    ]
    counts = {state: 0 for state in HEALTH_STATES}
    by_kind: dict[str, list[HealthAlert]] = {kind: [] for kind in ALERT_KINDS}
    for row in rows:
        counts[row["health"]] += 1
        if row["health"] in ALERTING_HEALTH:
            by_kind[row["health"]].append(_alert(row["health"], row, thresholds))
        if row["anchor_flag_drift_count"] > 0:
            by_kind["anchor_flag_drift"].append(_alert("anchor_flag_drift", row, thresholds))
    log.info("health of %d batches: %s", len(rows), counts)
    return HealthReport(
        thresholds=thresholds,
        health_counts=counts,
        **{kind: tuple(alerts) for kind, alerts in by_kind.items()},
    )
