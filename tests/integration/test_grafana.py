"""Grafana provisioning files: well-formed, consistent, and their SQL works on the health view."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text

from cjlib.db import get_engine
from cjlib.diagnostics import parse_duration
from cjlib.maintenance import cleanup_batch
from tests.integration import health_fixtures as fx

GRAFANA = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARD = GRAFANA / "dashboards" / "cj_batch_health.json"
DATASOURCE_UID = "cj-postgres"
EXPRESSION_UID = "__expr__"

#: Alert rule uid → the fixture that must make it fire.
RULE_FIXTURE = {
    "cj-stuck-finalization": "stuck",
    "cj-long-scoring": "long_scoring",
    "cj-stalled-callbacks": "stalled",
    "cj-anchor-flag-drift": "anchor_drift",
}


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict]:
    doc = _yaml(PROVISIONING / "alerting" / "cj_alert_rules.yaml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _query(rule: dict) -> dict:
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != EXPRESSION_UID]
    return query


def _substitute_macros(sql: str) -> str:
    # Grafana expands these before sending the query; here they become plain PostgreSQL.
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+),\s*1h\)",
        "date_trunc('hour', \\1) AS time",
        sql,
    )
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '7 days' AND now()", sql)
    assert "$__" not in sql, f"unsubstituted Grafana macro in {sql!r}"
    return sql


def _evaluate_rule(engine: Engine, rule: dict) -> tuple[float, bool]:
    """Run a rule's SQL, then its reduce and threshold expressions: (value, firing)."""
    steps = {d["refId"]: d["model"] for d in rule["data"]}
    with engine.connect() as conn:
        rows = conn.execute(text(_query(rule)["model"]["rawSql"])).all()
    assert len(rows) == 1 and len(rows[0]) == 1, "a rule query must return one number"
    condition = steps[rule["condition"]]
    reduce = steps[condition["expression"]]
    assert (reduce["type"], reduce["reducer"]) == ("reduce", "last")
    assert reduce["expression"] == _query(rule)["refId"]
    value = float(rows[0][0])  # "last" of a single number is that number
    (check,) = condition["conditions"]
    assert check["evaluator"]["type"] == "gt"
    return value, value > check["evaluator"]["params"][0]


# --- structure ----------------------------------------------------------------------------


def test_every_provisioning_file_is_yaml_with_api_version_1():
    files = sorted(PROVISIONING.rglob("*.yaml"))
    assert {f.parent.name for f in files} == {"datasources", "dashboards", "alerting"}
    for path in files:
        assert _yaml(path)["apiVersion"] == 1, path


def test_datasource_has_the_fixed_uid_and_takes_connection_from_environment():
    (source,) = _yaml(PROVISIONING / "datasources" / "cj_postgres.yaml")["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "grafana-postgresql-datasource"
    for value in (
        source["url"],
        source["user"],
        source["jsonData"]["database"],
        source["secureJsonData"]["password"],
    ):
        assert re.fullmatch(r"(\$\{CJ_GRAFANA_PG_[A-Z]+\}:?)+", value), value
    assert "password" not in source  # Grafana 12 ignores a top-level password


def test_dashboard_provider_loads_files_into_the_cj_folder():
    (provider,) = _yaml(PROVISIONING / "dashboards" / "cj.yaml")["providers"]
    assert (provider["type"], provider["folder"]) == ("file", "CJ")
    assert provider["options"]["path"].startswith("/")


def test_every_dashboard_panel_reads_the_view_through_the_cj_datasource():
    dashboard = _dashboard()
    assert dashboard["uid"] == "cj-batch-health"
    panels = dashboard["panels"]
    assert {"table", "stat", "timeseries"} <= {p["type"] for p in panels}
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] is True
            assert target["format"] in {"table", "time_series"}
            assert "FROM cj_batch_health" in target["rawSql"]


def test_every_alert_rule_queries_the_view_and_waits_5_to_10_minutes():
    rules = _rules()
    assert {r["uid"] for r in rules} == set(RULE_FIXTURE)
    for rule in rules:
        assert 300 <= parse_duration(rule["for"]) <= 600, rule["uid"]
        query = _query(rule)
        assert query["datasourceUid"] == DATASOURCE_UID
        assert query["model"]["datasource"]["uid"] == DATASOURCE_UID
        assert {"from", "to"} <= set(query["relativeTimeRange"])
        assert "FROM cj_batch_health" in query["model"]["rawSql"]
        assert "$__" not in query["model"]["rawSql"]
        steps = {d["refId"]: d for d in rule["data"]}
        condition = steps[rule["condition"]]
        assert condition["datasourceUid"] == EXPRESSION_UID
        assert condition["model"]["type"] == "threshold"
        assert steps[condition["model"]["expression"]]["model"]["type"] == "reduce"


# --- SQL on PostgreSQL --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_engine(request) -> Iterator[Engine]:
    """A migrated PostgreSQL database holding only healthy batches."""
    engine = get_engine(fx.fresh_database_url(request, "postgresql", prefix="cj_grafana"))
    fx.build_all(engine, fx.HEALTHY)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_every_dashboard_query_runs_on_postgres(pg_engine):
    with pg_engine.connect() as conn:
        for panel in _dashboard()["panels"]:
            for target in panel["targets"]:
                result = conn.execute(text(_substitute_macros(target["rawSql"]))).mappings().all()
                if target["format"] == "time_series":
                    assert result and {"time", "metric"} <= set(result[0]), panel["title"]
                else:
                    assert result, panel["title"]


@pytest.mark.postgres
def test_no_rule_fires_on_healthy_batches(pg_engine):
    for rule in _rules():
        assert _evaluate_rule(pg_engine, rule) == (0.0, False), rule["uid"]


@pytest.mark.postgres
def test_each_rule_fires_on_its_fixture_and_only_that_rule(pg_engine):
    for uid, name in RULE_FIXTURE.items():
        batch_id = fx.FIXTURES[name][0](pg_engine)
        try:
            firing = {r["uid"]: _evaluate_rule(pg_engine, r) for r in _rules()}
        finally:
            cleanup_batch(pg_engine, batch_id)
        assert firing == {
            other: ((1.0, True) if other == uid else (0.0, False)) for other in RULE_FIXTURE
        }, name
