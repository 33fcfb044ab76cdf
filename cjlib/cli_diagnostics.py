"""CLI for batch diagnostics and dev-database maintenance: parse → call cjlib → render.

Commands: ``cj batch inspect``, ``cj health`` (exit 3 while an alert fires), ``cj db reset`` and
``cj batch cleanup``. The work is done by :mod:`cjlib.diagnostics` and :mod:`cjlib.maintenance`;
this module only turns their results into Rich tables or JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cjlib.cli import BatchId, DatabaseUrl, console, open_engine, print_json
from cjlib.errors import UsageError

ALERTS_FIRING_EXIT_CODE = 3

JsonFlag = Annotated[bool, typer.Option("--json", help="Write one JSON object to stdout.")]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _time(value: Any) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _show(value: Any) -> str:
    # User data (labels, reasons) may contain [brackets] that Rich would read as markup.
    return "-" if value is None else escape(str(value))


def _render_inspection(report: Any) -> None:
    row = report.health_row
    summary = Table(title=f"CJ batch {report.cj_batch_id}", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("health", report.health),
        ("upload status", report.upload_status),
        ("CJ state", _show(report.cj_state)),
        ("in state for", _age(row["seconds_in_state"])),
        ("batch label", _show(report.batch_label)),
        ("assignment", _show(report.assignment_id)),
        ("bos_batch_id", report.bos_batch_id),
        (
            "essays",
            f"{report.essay_count} ({report.anchor_count} anchors, "
            f"{report.non_anchor_count} students)",
        ),
        ("grade projections", str(report.grade_projection_count)),
        ("created", _time(report.created_at)),
        (
            "last activity",
            f"{_time(report.last_activity_at)} ({_age(row['seconds_since_last_activity'])} ago)",
        ),
        ("completed", _time(report.completed_at)),
        ("completion reason", _show(report.completion_reason)),
    ):
        summary.add_row(label, value, end_section=False)
    console.print(summary)

    comparisons = Table(title="Comparisons")
    comparisons.add_column("")
    comparisons.add_column("state row", justify="right")
    comparisons.add_column("counted pairs", justify="right")
    state, pairs = report.comparisons_from_state, report.comparisons_from_pairs
    for name in ("total", "submitted", "completed", "failed"):
        recorded = "-" if state is None else str(getattr(state, name))
        counted = str(getattr(pairs, name))
        marker = "" if recorded == counted else "  [bold red]≠[/]"
        comparisons.add_row(name, recorded, counted + marker)
    console.print(comparisons)
    if not report.comparisons_agree:
        console.print("[bold red]state row counters disagree with cj_comparison_pairs[/]")

    if report.anchor_disagreements:
        drift = Table(title="Anchor flag disagreements (metadata vs column)")
        drift.add_column("els_essay_id")
        drift.add_column("is_anchor column")
        drift.add_column("metadata is_anchor")
        for item in report.anchor_disagreements:
            drift.add_row(
                _show(item.els_essay_id), str(item.is_anchor), _show(repr(item.metadata_is_anchor))
            )
        console.print(drift)

    transitions = Table(title=f"State transitions (last {len(report.transitions)})")
    transitions.add_column("at")
    transitions.add_column("from")
    transitions.add_column("to")
    transitions.add_column("reason")
    for item in report.transitions:
        transitions.add_row(
            _time(item.at), _show(item.from_state), item.to_state, _show(item.reason)
        )
    console.print(transitions)


def batch_inspect(
    cj_batch_id: BatchId,
    json_output: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show one batch: statuses, comparison counters, anchors, activity, transitions, health."""
    from cjlib.diagnostics import inspect_batch

    engine = open_engine(database_url)
    try:
        report = inspect_batch(engine, cj_batch_id)
    finally:
        engine.dispose()
    if json_output:
        print_json(report.to_dict())
    else:
        _render_inspection(report)


def _render_health(report: Any) -> None:
    counts = ", ".join(f"{state} {n}" for state, n in report.health_counts.items() if n)
    console.print(f"{report.batch_count} batches" + (f": {counts}" if counts else ""))
    if not report.firing:
        console.print("no alerts")
        return
    for kind, alerts in report.alerts.items():
        if not alerts:
            continue
        table = Table(title=f"{kind} ({len(alerts)})")
        for column in ("batch", "label", "state", "age", "detail"):
            table.add_column(column)
        for alert in alerts:
            table.add_row(
                str(alert.cj_batch_id),
                _show(alert.batch_label),
                _show(alert.cj_state),
                _age(alert.seconds),
                _show(alert.detail),
            )
        console.print(table)


def health(
    json_output: JsonFlag = False,
    stuck_after: Annotated[
        str, typer.Option("--stuck-after", help="Idle time before a finalizing batch is stuck.")
    ] = "10m",
    scoring_after: Annotated[
        str, typer.Option("--scoring-after", help="Time in SCORING before it is too long.")
    ] = "10m",
    stalled_after: Annotated[
        str, typer.Option("--stalled-after", help="Idle time before callbacks count as stalled.")
    ] = "30m",
    database_url: DatabaseUrl = None,
) -> None:
    """List batches in each alert state; exit 3 when any alert fires, 0 when none does."""
    from cjlib.diagnostics import HealthThresholds, health_alerts, parse_duration

    thresholds = HealthThresholds(
        stuck_after=parse_duration(stuck_after),
        scoring_after=parse_duration(scoring_after),
        stalled_after=parse_duration(stalled_after),
    )
    engine = open_engine(database_url)
    try:
        report = health_alerts(engine, thresholds)
    finally:
        engine.dispose()
    if json_output:
        print_json(report.to_dict())
    else:
        _render_health(report)
    if report.firing:
        raise typer.Exit(ALERTS_FIRING_EXIT_CODE)


def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every table is dropped.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Drop every table and view of a local dev/test database and migrate it again."""
    from cjlib.db import get_engine, safe_url
    from cjlib.maintenance import ensure_disposable_database, reset_database

    if not yes:
        raise UsageError("`cj db reset` drops every table and all data; pass --yes to confirm")
    ensure_disposable_database(database_url)
    engine = get_engine(database_url)
    try:
        revision = reset_database(engine)
    finally:
        engine.dispose()
    shown = safe_url(engine.url.render_as_string(hide_password=False))
    console.print(f"database {shown} reset: empty, at revision {revision}")


def batch_cleanup(
    cj_batch_id: Annotated[
        int | None,
        typer.Argument(
            metavar="CJ_BATCH_ID",
            min=1,
            max=2**63 - 1,
            help="Batch to delete (or use --assignment-id).",
            show_default=False,
        ),
    ] = None,
    assignment_id: Annotated[
        str | None, typer.Option("--assignment-id", help="Delete every batch of this assignment.")
    ] = None,
    keep_anchors: Annotated[
        bool,
        typer.Option(
            "--keep-anchors/--drop-anchors",
            help="With --assignment-id: keep or also delete its anchors and instructions.",
        ),
    ] = True,
    json_output: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a batch, or all batches of an assignment, from a local dev/test database."""
    from cjlib.maintenance import cleanup_assignment, cleanup_batch, ensure_disposable_database

    if (cj_batch_id is None) == (assignment_id is None):
        raise UsageError("give either CJ_BATCH_ID or --assignment-id (exactly one)")
    if cj_batch_id is not None and not keep_anchors:
        raise UsageError("--drop-anchors applies to --assignment-id only")
    ensure_disposable_database(database_url)
    engine = open_engine(database_url)
    try:
        if cj_batch_id is not None:
            summary = cleanup_batch(engine, cj_batch_id)
        else:
            summary = cleanup_assignment(engine, assignment_id, keep_anchors=keep_anchors)
    finally:
        engine.dispose()
    if json_output:
        print_json(summary.to_dict())
        return
    target = (
        f"batch {cj_batch_id}"
        if cj_batch_id is not None
        else f"assignment {assignment_id} ({len(summary.cj_batch_ids)} batches)"
    )
    table = Table(title=f"Deleted rows: {target}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in summary.deleted.items():
        table.add_row(name, str(count))
    table.add_row("total", str(summary.total), style="bold")
    console.print(table)


def register(groups: dict[str, typer.Typer]) -> None:
    """Add the diagnostics and maintenance commands to the ``cj`` command groups."""
    groups["batch"].command("inspect")(batch_inspect)
    groups["batch"].command("cleanup")(batch_cleanup)
    groups["app"].command("health")(health)
    groups["db"].command("reset")(db_reset)
