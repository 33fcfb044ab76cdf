"""The light notebook helpers: parameters, batch record, run folders, small tables."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from cjlib.errors import NotFoundError, UsageError
from cjlib.notebook import (
    BATCH_RECORD,
    field_table,
    files_table,
    fill_parameters,
    format_value,
    html_table,
    latest_run_dir,
    read_batch_record,
    write_batch_record,
)

_IMPORT_PROBE = """
import json, sys
seen = {}
for module in ("cjlib.notebook", "cjlib.report", "cjlib.report.loading", "cjlib.report.snapshots"):
    __import__(module)
    seen[module] = sorted(m for m in ("matplotlib", "scipy") if m in sys.modules)
print(json.dumps(seen))
"""


def test_light_modules_load_no_plotting_and_notebook_helpers_no_scipy():
    # One fresh interpreter, modules imported lightest first: sys.modules only grows, so each
    # line shows what that import (and the ones before it) loaded.
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout)
    assert seen["cjlib.notebook"] == []
    assert "matplotlib" not in seen["cjlib.report"]
    assert "matplotlib" not in seen["cjlib.report.loading"]
    assert "matplotlib" not in seen["cjlib.report.snapshots"]


def test_fill_parameters_fills_only_none_values_from_environment(monkeypatch):
    monkeypatch.setenv("CJ_NOTEBOOK_PARAMETERS", json.dumps({"run_dir": "/r", "seed": 9}))
    assert fill_parameters(run_dir=None, seed=1, other=None) == ("/r", 1, None)
    monkeypatch.setenv("CJ_NOTEBOOK_PARAMETERS", "[1, 2]")
    with pytest.raises(UsageError):
        fill_parameters(run_dir=None)


def test_fill_parameters_refuses_invalid_json(monkeypatch):
    monkeypatch.setenv("CJ_NOTEBOOK_PARAMETERS", "{not json")
    with pytest.raises(UsageError, match="CJ_NOTEBOOK_PARAMETERS is not valid JSON"):
        fill_parameters(run_dir=None)


def _result(**overrides):
    fields = {
        "cj_batch_id": 12, "bos_batch_id": "b-1", "batch_label": "demo",
        "assignment_id": "eng5", "status": "COMPLETE_STABLE", "state": "COMPLETED",
        "run_dir": None,
    } | overrides  # fmt: skip
    return SimpleNamespace(**fields)


def test_batch_record_round_trips_through_the_run_folder(tmp_path):
    path = write_batch_record(tmp_path, _result(run_dir=tmp_path))
    assert path == tmp_path / BATCH_RECORD
    record = read_batch_record(tmp_path)
    assert record["cj_batch_id"] == 12 and record["batch_label"] == "demo"
    assert record["artefacts_dir"] == str(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_reading_a_missing_or_broken_batch_record_says_what_to_run(tmp_path):
    with pytest.raises(NotFoundError, match="run notebook 02_execute_eng5_batch"):
        read_batch_record(tmp_path)
    (tmp_path / BATCH_RECORD).write_text("{}", encoding="utf-8")
    with pytest.raises(NotFoundError, match="no integer cj_batch_id"):
        read_batch_record(tmp_path)


def test_latest_run_dir_is_the_newest_folder_with_a_batch_record(tmp_path):
    with pytest.raises(NotFoundError, match="no run folder"):
        latest_run_dir(tmp_path)
    for name in ("20260101T000000Z_a_pipeline", "20260102T000000Z_b_pipeline"):
        (tmp_path / name).mkdir()
        write_batch_record(tmp_path / name, _result())
    (tmp_path / "20260103T000000Z_c_pipeline").mkdir()  # newer, but no batch.json
    assert latest_run_dir(tmp_path).name == "20260102T000000Z_b_pipeline"


def test_small_tables_format_values_and_escape_html(tmp_path):
    (tmp_path / "x.csv").write_text("a\n1\n", encoding="utf-8")
    assert files_table({"x": tmp_path / "x.csv"}).values.tolist() == [["x", "x.csv", 4]]
    table = field_table({"ok": True, "score": 0.12345, "missing": None, "nested": {"a": 1.5}})
    assert table["value"].tolist() == ["yes", "0.123", "–", "a 1.500"]
    assert format_value(float("nan")) == "–"
    html = html_table(pd.DataFrame({"<b>label</b>": ["<script>alert(9)</script>"]}))
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(9)&lt;/script&gt;" in html
