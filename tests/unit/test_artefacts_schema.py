"""The execute record's schema check refuses records that break the schema."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import fastjsonschema
import pytest

from cjlib.workflow.artefacts import validate_assessment_run

ROOT = Path(__file__).resolve().parents[2]


def test_a_record_missing_its_sections_is_refused():
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="bt_fit"):
        validate_assessment_run({"schema_version": "1.0"})


def test_a_wrong_schema_version_is_refused():
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate_assessment_run({"schema_version": "2.0"})


def _comparison(i: int) -> dict:
    return {
        "request_correlation_id": str(uuid.UUID(int=i, version=4)),
        "essay_a_id": f"S{i:04d}",
        "essay_b_id": "ANCHOR_01",
        "winner": "essay_a" if i % 2 else "essay_b",
        "confidence": 0.5 + (i % 50) / 100,
        "error_code": None,
        "judge_id": "simulated",
        "wave": 1 + i // 100,
        "submitted_at": "2026-12-03T12:00:00+00:00",
        "completed_at": None,
    }


_UUID = "00000000-0000-4000-8000-000000000001"


def _record(comparisons: list[dict]) -> dict:
    """A minimal valid record around ``comparisons``."""
    return {
        "schema_version": "1.0",
        "metadata": {"cj_batch_id": 1, "bos_batch_id": _UUID, "event_correlation_id": _UUID,
                     "batch_label": "t", "assignment_id": "a", "grade_scale": None,
                     "judge": None, "seed": 0, "status": "COMPLETE_STABLE", "state": "COMPLETED",
                     "versions": {"cjlib": "0", "python": "3"}, "git_revision": None,
                     "generated_at": None},
        "inputs": {"essays": [], "files": []},
        "comparisons": comparisons,
        "bt_fit": {"reliability": None, "alpha": None, "engine": None, "se_method": None,
                   "connected": None},
        "bt_summary": [],
        "grade_projections": [],
        "validation": {"state_history": [], "anchor_count": 0, "projection_count": 0,
                       "comparisons": {"total": 0, "submitted": 0, "completed": 0, "failed": 0},
                       "manifest": []},
    }  # fmt: skip


def test_a_long_list_of_valid_rows_is_accepted():
    validate_assessment_run(_record([_comparison(i) for i in range(700)]))


@pytest.mark.parametrize("bad_row", [0, 7, 640])
@pytest.mark.parametrize(
    ("field", "value"),
    [("request_correlation_id", "not-a-uuid"), ("winner", "essay_c"), ("wave", 1.5),
     ("confidence", "high"), ("submitted_at", 3)],
)  # fmt: skip
def test_a_bad_value_in_any_row_of_a_long_list_is_refused_naming_the_row(bad_row, field, value):
    rows = [_comparison(i) for i in range(700)]
    rows[bad_row][field] = value
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match=rf"comparisons\[{bad_row}\]"):
        validate_assessment_run(_record(rows))


def test_rows_of_a_long_list_missing_a_required_key_or_of_mixed_keys_are_refused():
    rows = [_comparison(i) for i in range(300)]
    for row in rows:
        del row["winner"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="winner"):
        validate_assessment_run(_record(rows))
    rows = [_comparison(i) for i in range(300)]
    del rows[250]["essay_b_id"]  # keys differ from the first row's: every row checked whole
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="essay_b_id"):
        validate_assessment_run(_record(rows))


def test_true_is_not_taken_for_the_number_1_already_checked():
    rows = [_comparison(i) for i in range(300)]
    rows[3]["confidence"] = 1
    rows[200]["confidence"] = True
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match=r"comparisons\[200\]"):
        validate_assessment_run(_record(rows))


def test_the_record_text_has_one_row_per_line_and_reads_back_equal():
    from cjlib.workflow.artefacts import _write_json

    rows = [_comparison(i) for i in range(300)]
    record = {"schema_version": "1.0", "metadata": {"a": [1, 2], "b": {"c": None}},
              "comparisons": rows[:1], "empty": []}  # fmt: skip
    # As the writer does: the comparisons come from their columns, the record holds one row.
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    out = io.StringIO()
    _write_json(out, record, {"comparisons": columns})
    text = out.getvalue()
    assert json.loads(text) == {**record, "comparisons": rows}
    lines = text.splitlines()
    assert sum(line.lstrip().startswith('{"request_correlation_id"') for line in lines) == 300
    assert len(lines) < 330


def test_rows_are_checked_whether_or_not_the_whole_schema_was_compiled_first():
    # The per-property validators resolved "#/$defs/uuid" against the schema's $id (a URL
    # they then fetched) when the whole schema had been compiled before them.
    script = (
        "from cjlib.workflow import artefacts as a\n"
        "from tests.unit.test_artefacts_schema import _comparison, _record\n"
        "import fastjsonschema\n"
        "a._validator()\n"
        "rows = [_comparison(i) for i in range(300)]\n"
        "rows[150]['request_correlation_id'] = 'not-a-uuid'\n"
        "try:\n"
        "    a.validate_assessment_run(_record(rows))\n"
        "except fastjsonschema.JsonSchemaValueException as err:\n"
        "    print(err.message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "comparisons[150].request_correlation_id" in done.stdout
