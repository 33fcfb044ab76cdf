"""The cj_batch_health view, batch inspection, health alerts and their CLI, on both databases."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text, update

from cjlib.cli.main import main
from cjlib.db import MIGRATIONS_DIR, get_engine, session_scope, upgrade
from cjlib.db.models import CJComparisonPair, CoreCJState, utc_now
from cjlib.db.repository import record_state_transition
from cjlib.diagnostics import (
    DEFAULT_THRESHOLDS,
    HEALTH_STATES,
    HealthThresholds,
    batch_health,
    health_alerts,
    inspect_batch,
    judge_health,
    parse_duration,
)
from cjlib.errors import NotFoundError, UsageError
from tests.conftest import BACKENDS
from tests.integration import health_fixtures as fx

VIEW_COLUMNS = [
    "cj_batch_id",
    "bos_batch_id",
    "batch_label",
    "assignment_id",
    "upload_status",
    "cj_state",
    "total_comparisons",
    "submitted_comparisons",
    "completed_comparisons",
    "failed_comparisons",
    "anchor_count",
    "essay_count",
    "grade_projection_count",
    "created_at",
    "last_activity_at",
    "completed_at",
    "seconds_since_last_activity",
    "seconds_in_state",
    "anchor_flag_drift_count",
    "health",
]


@dataclass(frozen=True)
class Shared:
    url: str
    engine: Engine
    ids: dict[str, int]


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request) -> Iterator[Shared]:
    """Every fixture batch, built once per backend for the tests that only read."""
    url = fx.fresh_database_url(request, request.param)
    engine = get_engine(url)
    yield Shared(url, engine, fx.build_all(engine))
    engine.dispose()


def _by_id(frame):
    return {int(row["cj_batch_id"]): row for row in frame.to_dict("records")}


# --- the view -----------------------------------------------------------------------------


def test_view_has_one_row_per_batch_with_the_documented_columns(shared):
    frame = batch_health(shared.engine)
    assert list(frame.columns) == VIEW_COLUMNS
    assert sorted(frame["cj_batch_id"]) == sorted(shared.ids.values())


def test_view_judges_every_fixture_with_its_expected_health(shared):
    frame = batch_health(shared.engine)
    health = dict(zip(frame["cj_batch_id"], frame["health"], strict=True))
    expected = {shared.ids[name]: fx.FIXTURES[name][1] for name in shared.ids}
    assert health == expected


def test_view_counts_essays_anchors_projections_and_state_counters(shared):
    rows = _by_id(batch_health(shared.engine))
    completed = rows[shared.ids["completed"]]
    assert (completed["essay_count"], completed["anchor_count"]) == (6, 2)
    assert completed["grade_projection_count"] == 4
    long_scoring = rows[shared.ids["long_scoring"]]
    assert (
        long_scoring["submitted_comparisons"],
        long_scoring["completed_comparisons"],
        long_scoring["failed_comparisons"],
    ) == (8, 7, 1)
    assert rows[shared.ids["stuck"]]["completed_comparisons"] == 6  # the state row's lagging count


def test_view_counts_anchor_flag_drift_only_where_metadata_contradicts_column(shared):
    drift = {
        bid: row["anchor_flag_drift_count"]
        for bid, row in _by_id(batch_health(shared.engine)).items()
    }
    assert drift.pop(shared.ids["anchor_drift"]) == 1
    assert set(drift.values()) == {0}


def test_view_reads_drift_from_string_metadata_like_the_repository(engine):
    batch_id = fx.completed_batch(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE cj_processed_essays SET processing_metadata = :meta "
                "WHERE cj_batch_id = :b AND els_essay_id = 'completed-E04'"
            ),
            {"meta": '{"is_anchor": " Yes "}', "b": batch_id},
        )
    assert batch_health(engine)["anchor_flag_drift_count"].tolist() == [1]
    assert [d.els_essay_id for d in inspect_batch(engine, batch_id).anchor_disagreements] == [
        "completed-E04"
    ]


def test_view_ages_come_from_backdated_activity(shared):
    rows = _by_id(batch_health(shared.engine))
    stalled = rows[shared.ids["stalled"]]
    assert 3600 <= stalled["seconds_since_last_activity"] < 3600 + 120
    assert 1200 <= rows[shared.ids["long_scoring"]]["seconds_in_state"] < 1200 + 120
    assert rows[shared.ids["in_progress"]]["seconds_since_last_activity"] < 120


def test_view_timestamps_are_utc_aware_on_both_backends(shared):
    frame = batch_health(shared.engine)
    assert str(frame["last_activity_at"].dt.tz) == "UTC"
    newest = frame["last_activity_at"].max().to_pydatetime()
    assert abs((datetime.now(UTC) - newest).total_seconds()) < 120


def test_a_fresh_callback_counts_as_activity_and_unstalls_a_batch(engine):
    batch_id = fx.stalled_batch(engine)
    with session_scope(engine) as s:
        s.execute(
            update(CJComparisonPair)
            .where(CJComparisonPair.cj_batch_id == batch_id, CJComparisonPair.winner.is_(None))
            .values(completed_at=utc_now())
        )
    row = batch_health(engine).iloc[0]
    assert row["seconds_since_last_activity"] < 120
    assert row["health"] == "in_progress"


def test_python_rule_agrees_with_sql_rule_on_every_fixture(shared):
    frame = batch_health(shared.engine)
    for row in frame.to_dict("records"):
        assert judge_health(row, DEFAULT_THRESHOLDS) == row["health"], row["batch_label"]


def test_default_thresholds_are_the_ones_built_into_the_view():
    assert HealthThresholds(600, 600, 120) == DEFAULT_THRESHOLDS
    # Read the numbers from the view's SQL, so a change on either side alone fails.
    import importlib
    import re

    # The newest revision that defines the view.
    view = importlib.import_module("cjlib.db.migrations.versions.0003_batch_workers")
    sql = view._view_sql("postgresql")
    stuck = re.search(r"seconds_since_last_activity > (\d+) THEN 'stuck_finalization'", sql)
    scoring = re.search(r"seconds_in_state > (\d+) THEN 'long_scoring'", sql)
    stalled = re.search(r"seconds_since_last_activity > (\d+) THEN 'stalled_callbacks'", sql)
    assert (int(stuck[1]), int(scoring[1]), int(stalled[1])) == (
        DEFAULT_THRESHOLDS.stuck_after,
        DEFAULT_THRESHOLDS.scoring_after,
        DEFAULT_THRESHOLDS.stalled_after,
    )


def _row(**overrides):
    base = {
        "upload_status": "PERFORMING_COMPARISONS",
        "cj_state": "WAITING_CALLBACKS",
        "grade_projection_count": 0,
        "submitted_comparisons": 10,
        "completed_comparisons": 10,
        "failed_comparisons": 0,
        "seconds_since_last_activity": 0.0,
        "seconds_in_state": 0.0,
    }
    return base | overrides


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (_row(cj_state="FAILED"), "failed"),
        (_row(upload_status="ERROR_PROCESSING", cj_state="SCORING"), "failed"),
        (
            _row(
                upload_status="COMPLETE_STABLE",
                cj_state="SCORING",
                seconds_in_state=9999.0,
                seconds_since_last_activity=601.0,
            ),
            "stuck_finalization",
        ),
        # Not yet stuck at exactly 600 s, but silent past the 120 s stall limit.
        (
            _row(upload_status="COMPLETE_STABLE", seconds_since_last_activity=600.0),
            "stalled_callbacks",
        ),
        (
            _row(
                upload_status="COMPLETE_STABLE",
                grade_projection_count=3,
                seconds_since_last_activity=5000.0,
            ),
            "stalled_callbacks",
        ),
        (_row(cj_state="SCORING", seconds_in_state=601.0), "long_scoring"),
        (_row(cj_state="SCORING", completed_comparisons=9, seconds_in_state=601.0), "in_progress"),
        (_row(seconds_since_last_activity=121.0), "stalled_callbacks"),
        (_row(seconds_since_last_activity=120.0), "in_progress"),
        (_row(cj_state="GENERATING_PAIRS", seconds_since_last_activity=121.0), "stalled_callbacks"),
        (_row(seconds_since_last_activity=None), "in_progress"),
        (_row(cj_state=None), "in_progress"),
        (_row(cj_state="COMPLETED", seconds_since_last_activity=1e6), "ok"),
        (_row(cj_state="CANCELLED"), "ok"),
    ],
)
def test_health_rule_priorities_and_boundaries(row, expected):
    assert judge_health(row) == expected
    assert expected in HEALTH_STATES


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_downgrade_to_0001_drops_the_view_and_keeps_the_tables(empty_db_url):
    engine = get_engine(empty_db_url)
    upgrade(engine)
    assert "cj_batch_health" in inspect(engine).get_view_names()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    assert "cj_batch_health" not in inspect(engine).get_view_names()
    assert "cj_batch_uploads" in inspect(engine).get_table_names()
    with pytest.raises(UsageError, match="cj db upgrade"):
        batch_health(engine)
    engine.dispose()


# --- health alerts ------------------------------------------------------------------------


def _alert_ids(report):
    return {kind: {a.cj_batch_id for a in alerts} for kind, alerts in report.alerts.items()}


def test_each_alert_fires_on_its_fixture_and_nowhere_else(shared):
    report = health_alerts(shared.engine)
    assert _alert_ids(report) == {
        "stuck_finalization": {shared.ids["stuck"]},
        "long_scoring": {shared.ids["long_scoring"]},
        "stalled_callbacks": {shared.ids["stalled"]},
        "anchor_flag_drift": {shared.ids["anchor_drift"]},
    }
    assert report.firing
    assert report.health_counts["failed"] == 1
    assert report.batch_count == len(shared.ids)


def test_no_alert_fires_on_healthy_batches(engine):
    fx.build_all(engine, fx.HEALTHY)
    report = health_alerts(engine)
    assert not report.firing
    assert all(not alerts for alerts in report.alerts.values())


def test_lower_stalled_threshold_makes_a_quiet_batch_stalled(shared):
    strict = HealthThresholds(stalled_after=parse_duration("30s"))
    assert _alert_ids(health_alerts(shared.engine, strict))["stalled_callbacks"] == {
        shared.ids["stalled"],
        shared.ids["quiet"],
    }
    rows = _by_id(batch_health(shared.engine, thresholds=strict))
    assert rows[shared.ids["quiet"]]["health"] == "stalled_callbacks"


def test_higher_thresholds_silence_stuck_and_long_scoring(shared):
    lenient = HealthThresholds(stuck_after=3600, scoring_after=3600, stalled_after=7200)
    report = health_alerts(shared.engine, lenient)
    assert _alert_ids(report)["stuck_finalization"] == set()
    assert _alert_ids(report)["long_scoring"] == set()
    assert _alert_ids(report)["stalled_callbacks"] == set()
    assert _by_id(batch_health(shared.engine, thresholds=lenient))[shared.ids["stuck"]][
        "health"
    ] == ("in_progress")


def test_alert_ages_are_the_ages_that_crossed_the_threshold(shared):
    report = health_alerts(shared.engine)
    (stuck,) = report.stuck_finalization
    assert 1200 <= stuck.seconds < 1320
    assert report.anchor_flag_drift[0].seconds is None


@pytest.mark.parametrize(
    ("text_", "seconds"),
    [("600", 600), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)],
)
def test_parse_duration_reads_units(text_, seconds):
    assert parse_duration(text_) == seconds


@pytest.mark.parametrize("bad", ["", "ten minutes", "-5m", "10x", "m"])
def test_parse_duration_rejects_bad_input_with_a_usage_error(bad):
    with pytest.raises(UsageError, match="cannot read duration"):
        parse_duration(bad)


# --- inspect ------------------------------------------------------------------------------


def test_inspect_completed_batch_reports_counts_projections_and_transitions(shared):
    report = inspect_batch(shared.engine, shared.ids["completed"])
    assert (report.upload_status, report.cj_state, report.health) == (
        "COMPLETE_STABLE",
        "COMPLETED",
        "ok",
    )
    assert (report.anchor_count, report.non_anchor_count, report.essay_count) == (2, 4, 6)
    assert report.grade_projection_count == 4
    assert report.comparisons_agree
    assert report.completion_reason == "stable"
    assert [t.to_state for t in report.transitions] == [
        "INITIALIZING",
        "GENERATING_PAIRS",
        "WAITING_CALLBACKS",
        "SCORING",
        "COMPLETED",
    ]
    assert report.completed_at is not None and report.completed_at.tzinfo is not None


def test_inspect_in_progress_batch_counts_pending_pairs(shared):
    report = inspect_batch(shared.engine, shared.ids["in_progress"])
    pairs = report.comparisons_from_pairs
    assert (pairs.total, pairs.submitted, pairs.completed, pairs.failed) == (8, 8, 5, 0)
    assert report.comparisons_agree
    assert report.health == "in_progress"
    assert report.completed_at is None


def test_inspect_stuck_batch_shows_state_row_disagreeing_with_pairs(shared):
    report = inspect_batch(shared.engine, shared.ids["stuck"])
    assert report.health == "stuck_finalization"
    assert report.comparisons_from_state.completed == 6
    assert report.comparisons_from_pairs.completed == 8
    assert not report.comparisons_agree
    assert report.grade_projection_count == 0


def test_inspect_keeps_only_the_last_20_transitions_oldest_first(engine):
    batch_id = fx.in_progress_batch(engine)
    with session_scope(engine) as s:
        for _ in range(12):  # WAITING_CALLBACKS ↔ GENERATING_PAIRS: 24 more transitions
            record_state_transition(s, batch_id, CoreCJState.GENERATING_PAIRS, reason="more")
            record_state_transition(s, batch_id, CoreCJState.WAITING_CALLBACKS, reason="more")
    transitions = inspect_batch(engine, batch_id).transitions
    assert len(transitions) == 20
    assert [t.at for t in transitions] == sorted(t.at for t in transitions)
    assert transitions[-1].to_state == "WAITING_CALLBACKS"


def test_inspect_missing_batch_raises_not_found(shared):
    with pytest.raises(NotFoundError, match=r"^no CJ batch with id 999$"):
        inspect_batch(shared.engine, 999)


def test_inspection_to_dict_is_json_ready(shared):
    data = json.loads(
        json.dumps(inspect_batch(shared.engine, shared.ids["anchor_drift"]).to_dict())
    )
    assert data["anchor_disagreements"] == [
        {"els_essay_id": "anchor_drift-E03", "is_anchor": False, "metadata_is_anchor": True}
    ]
    assert data["health_row"]["anchor_flag_drift_count"] == 1
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None


# --- CLI ----------------------------------------------------------------------------------


def test_cli_inspect_renders_tables(shared, capsys):
    assert main(["batch", "inspect", str(shared.ids["stuck"]), "--database-url", shared.url]) == 0
    out = capsys.readouterr().out
    assert "stuck_finalization" in out
    assert "COMPLETE_STABLE" in out and "WAITING_CALLBACKS" in out
    assert "state row counters disagree" in out


def test_cli_inspect_json_is_one_object(shared, capsys):
    batch_id = shared.ids["completed"]
    assert main(["batch", "inspect", str(batch_id), "--json", "--database-url", shared.url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cj_batch_id"] == batch_id
    assert data["health"] == "ok"
    assert data["comparisons_from_pairs"] == {
        "total": 8,
        "submitted": 8,
        "completed": 8,
        "failed": 0,
    }


def test_cli_inspect_missing_batch_is_one_line_on_stderr_and_exit_1(shared, capsys):
    assert main(["batch", "inspect", "999", "--database-url", shared.url]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == ["error: no CJ batch with id 999"]
    assert captured.out == ""


def test_cli_inspect_non_integer_id_is_a_usage_error_not_a_traceback(shared, capsys):
    assert main(["batch", "inspect", "abc", "--database-url", shared.url]) == 2
    captured = capsys.readouterr()
    assert "Usage: cj batch inspect" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_cli_health_exits_3_and_lists_alerts_when_any_fire(shared, capsys):
    assert main(["health", "--database-url", shared.url]) == 3
    out = capsys.readouterr().out
    for kind in ("stuck_finalization", "long_scoring", "stalled_callbacks", "anchor_flag_drift"):
        assert kind in out


def test_cli_health_exits_0_when_nothing_fires(db_url, engine, capsys):
    fx.build_all(engine, fx.HEALTHY)
    assert main(["health", "--database-url", db_url]) == 0
    assert "no alerts" in capsys.readouterr().out


def test_cli_health_json_uses_threshold_options(shared, capsys):
    args = ["health", "--json", "--stalled-after", "30s", "--stuck-after", "1h"]
    assert main([*args, "--database-url", shared.url]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["thresholds"]["stalled_after"] == 30
    stalled = {a["cj_batch_id"] for a in data["alerts"]["stalled_callbacks"]}
    # Not stuck under a 1 h limit, the stuck batch (idle 20 min) now counts as stalled.
    assert stalled == {shared.ids[name] for name in ("stalled", "quiet", "stuck")}
    assert data["alerts"]["stuck_finalization"] == []


def test_cli_health_bad_duration_exits_2_with_message(shared, capsys):
    assert main(["health", "--stuck-after", "soon", "--database-url", shared.url]) == 2
    assert "cannot read duration 'soon'" in capsys.readouterr().err


def test_python_m_cjlib_cli_batch_inspect_behaves_like_cj_batch_inspect(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    engine = get_engine(url)
    upgrade(engine)
    batch_id = fx.completed_batch(engine)
    engine.dispose()
    assert main(["batch", "inspect", str(batch_id), "--json", "--database-url", url]) == 0
    via_cj = json.loads(capsys.readouterr().out)
    inspect_args = ["batch", "inspect", str(batch_id), "--json", "--database-url", url]
    done = subprocess.run(
        [sys.executable, "-m", "cjlib.cli", *inspect_args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    via_module = json.loads(done.stdout)
    for data in (via_cj, via_module):  # ages move between the two runs
        for key in ("seconds_since_last_activity", "seconds_in_state"):
            data["health_row"].pop(key)
    assert via_module == via_cj
    assert main(["batch", "inspect", "999", "--database-url", url]) == 1
    assert capsys.readouterr().err.strip() == "error: no CJ batch with id 999"
