"""``cj health``: batches in each alert state (:func:`cjlib.diagnostics.health_alerts`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cjlib.cli._common import DatabaseUrl, JsonFlag, age, console, open_engine, print_json, show

if TYPE_CHECKING:
    from cjlib.diagnostics import HealthReport

app = typer.Typer()

#: Exit code of ``cj health`` while any alert fires.
ALERTS_FIRING_EXIT_CODE = 3


def _render_health(report: HealthReport) -> None:
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
                show(alert.batch_label),
                show(alert.cj_state),
                age(alert.seconds),
                show(alert.detail),
            )
        console.print(table)


@app.command("health")
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
    engine = open_engine(database_url, readonly=True)
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
