"""The report's alert line judges only its own batch, on SQLite and PostgreSQL."""

from __future__ import annotations

from cjlib.report.checklist import CHECKS, success_checklist
from tests.integration.health_fixtures import anchor_drift_batch, completed_batch

ALERT_LINE = CHECKS[5]


def _line(checklist, check):
    return checklist.set_index("check").loc[check]


def test_alert_of_another_batch_does_not_fail_this_batch(engine):
    healthy = completed_batch(engine, label="healthy")
    drifting = anchor_drift_batch(engine, label="drifting")
    mine = _line(success_checklist(engine, healthy), ALERT_LINE)
    other = _line(success_checklist(engine, drifting), ALERT_LINE)
    assert bool(mine["passed"]) and mine["evidence"] == "none firing"
    assert not bool(other["passed"]) and "anchor_flag_drift" in other["evidence"]
