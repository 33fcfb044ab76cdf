"""The notebook pipeline end to end: papermill runs, the HTML report, and failures."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import text

from cjlib.cli.main import main as cli_main
from cjlib.datasets import generate_eng5_dataset
from cjlib.db import get_engine, upgrade
from cjlib.errors import DatasetError, PipelineError, UsageError
from cjlib.notebook import read_batch_record, write_batch_record
from cjlib.pipeline import (
    NOTEBOOKS,
    REPORT_HTML,
    check_kernel,
    execute_notebook,
    export_report,
    parse_parameters,
    run_pipeline,
)
from cjlib.report.checklist import CHECKS
from cjlib.report.figures import FIGURES
from cjlib.workflow import execute_batch, register_anchors
from cjlib.workflow.artefacts import EXECUTE_RECORD, validate_assessment_run

ASSIGNMENT = "eng5-np-2016"
PNG = 'src="data:image/png;base64,'


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_eng5_dataset(tmp_path_factory.mktemp("data") / "eng5", seed=3, n_students=20)


def _checklist_rows(html: str) -> list[tuple[str, str]]:
    table = re.search(r'<table[^>]*id="success-checklist".*?</table>', html, re.S)
    assert table, "the report has no success checklist table"
    return re.findall(r'<tr class="(pass|fail)"><td>.*?</td><td>(.*?)</td>', table.group(0), re.S)


def _png_outputs(notebook: Path) -> int:
    nb = nbformat.read(str(notebook), as_version=4)
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def test_pipeline_runs_notebooks_and_exports_report_without_code(
    dataset, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    code = cli_main(
        [
            "pipeline",
            "--database-url", url,
            "--dataset", str(dataset),
            "--batch-id", "pipeline-test",
            "--max-comparisons", "160",  # 10 per essay: enough information to project
            "--seed", "7",
            "--output-dir", "runs",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    html_path = Path(captured.out.strip().splitlines()[-1])
    assert html_path.name == REPORT_HTML and html_path.is_file()
    run_dir = html_path.parent
    assert run_dir.parent == tmp_path / "runs"

    executed = [run_dir / f"{name}.ipynb" for name in NOTEBOOKS]
    assert all(p.is_file() for p in executed)
    batch = read_batch_record(run_dir)
    for name in ("grade_projections.csv", "bt_scores.csv", "comparisons.csv"):
        assert (run_dir / name).stat().st_size > 0
    record = json.loads((run_dir / EXECUTE_RECORD).read_text())
    validate_assessment_run(record)
    assert record["metadata"]["cj_batch_id"] == batch["cj_batch_id"]
    manifest = {item["path"] for item in record["validation"]["manifest"]}
    assert {REPORT_HTML, "04_validation_report.ipynb", "batch.json"} <= manifest

    html = html_path.read_text(encoding="utf-8")
    # No code input: no editor blocks, no prompts, no source text of a code cell.
    assert 'class="jp-CodeMirrorEditor' not in html
    assert 'class="jp-InputPrompt' not in html
    assert "build_report(" not in html and "fill_parameters(" not in html
    # Every figure is embedded, none is linked.
    assert html.count(PNG) >= len(FIGURES)
    assert html.count(PNG) == _png_outputs(executed[-1])
    assert not re.search(r'<img[^>]*src="(?!data:)', html)
    # No warning or traceback leaked into the report.
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
    # A healthy batch passes every line of the checklist.
    rows = _checklist_rows(html)
    assert [check for _, check in rows] == list(CHECKS)
    assert {status for status, _ in rows} == {"pass"}
    assert f"cj_batch_id {batch['cj_batch_id']}" in html

    # The kernel ran this interpreter.
    nb = nbformat.read(str(executed[0]), as_version=4)
    version = ".".join(map(str, sys.version_info[:3]))
    assert nb.metadata["language_info"]["version"] == version


def test_report_on_batch_with_flipped_anchor_flag_shows_failing_lines(tmp_path):
    data = generate_eng5_dataset(tmp_path / "eng5", seed=5, n_students=8)
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    engine = get_engine(url)
    upgrade(engine)
    register_anchors(engine, assignment_id=ASSIGNMENT, course_id="ENG5", dataset=data)
    result = execute_batch(
        engine,
        assignment_id=ASSIGNMENT,
        course_id="ENG5",
        batch_label="broken",
        max_comparisons=60,
        seed=2,
        dataset=data,
        output_dir=None,
        callback_grace=2.0,
    )
    assert result.state == "COMPLETED"
    write_batch_record(run_dir, result)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE cj_processed_essays SET is_anchor = :f "
                "WHERE cj_batch_id = :b AND els_essay_id = 'eng5_anchor_03'"
            ),
            {"f": False, "b": result.cj_batch_id},
        )
    engine.dispose()

    executed = execute_notebook(
        "04_validation_report",
        run_dir,
        {"database_url": url, "run_dir": run_dir, "cj_batch_id": None, "dataset_dir": data},
    )
    html = export_report(executed, run_dir / REPORT_HTML).read_text(encoding="utf-8")

    failing = {check for status, check in _checklist_rows(html) if status == "fail"}
    assert failing == {CHECKS[0], CHECKS[5]}
    assert "eng5_anchor_03 (column false, metadata true)" in html
    assert "anchor_flag_drift" in html


def test_failing_notebook_raises_pipeline_error_naming_notebook_cell_and_error(tmp_path):
    (tmp_path / "no-such-data").mkdir()  # a folder, so the early checks pass, but no anchors.csv
    with pytest.raises(PipelineError) as caught:
        run_pipeline(
            database_url=f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            output_dir=tmp_path / "runs",
            extra_parameters=parse_parameters([f"dataset_dir={tmp_path / 'no-such-data'}"]),
        )
    message = str(caught.value)
    assert "01_register_anchors.ipynb" in message
    assert re.search(r"in cell \d+ \('registration = register_anchors\('\)", message)
    assert "DatasetError" in message and "no-such-data" in message
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "01_register_anchors.ipynb").is_file()
    assert not (run_dir / "02_execute_eng5_batch.ipynb").exists()


def test_unknown_or_reserved_parameter_is_refused_before_any_notebook_runs(tmp_path):
    with pytest.raises(UsageError, match="no notebook declares parameter"):
        run_pipeline(output_dir=tmp_path / "runs", extra_parameters={"colour": "blue"})
    with pytest.raises(UsageError, match="set by the pipeline itself"):
        run_pipeline(output_dir=tmp_path / "runs", extra_parameters={"run_dir": "x"})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "error", "fragment"),
    [
        ({"dataset_dir": "/nonexistent/data"}, DatasetError, "does not exist"),
        ({"max_comparisons": 1}, UsageError, "at least 2"),
        ({"judge": "oracle"}, UsageError, "unknown judge"),
    ],
)
def test_bad_dataset_budget_or_judge_is_refused_before_any_notebook_runs(
    tmp_path, extra, error, fragment
):
    with pytest.raises(error, match=fragment):
        run_pipeline(
            database_url=f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            output_dir=tmp_path / "runs",
            extra_parameters=extra,
        )
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "cj.sqlite3").exists()


def test_cli_reports_refused_parameter_in_one_line_with_exit_code_2(tmp_path, capsys):
    code = cli_main(["pipeline", "--output-dir", str(tmp_path), "-p", "colour=blue"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no notebook declares parameter(s) colour")


def test_parse_parameters_reads_json_values_and_keeps_other_text():
    parsed = parse_parameters(["a=3", "b=0.5", "c=true", 'd={"x": 1}', "e=/some/path", "f="])
    assert parsed == {"a": 3, "b": 0.5, "c": True, "d": {"x": 1}, "e": "/some/path", "f": ""}
    with pytest.raises(UsageError):
        parse_parameters(["no-equals-sign"])


def test_check_kernel_accepts_venv_kernel_and_refuses_other_interpreter(tmp_path, monkeypatch):
    assert check_kernel() == "python3"
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/opt/other/bin/python", "-m", "ipykernel_launcher", "-f", "{c}"],
                "display_name": "other",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(PipelineError, match="runs '/opt/other/bin/python'"):
        check_kernel()


def test_committed_notebooks_have_no_outputs_and_exactly_one_parameters_cell():
    folder = Path(__file__).resolve().parents[2] / "cjlib" / "notebooks"
    for name in NOTEBOOKS:
        nb = nbformat.read(str(folder / f"{name}.ipynb"), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), name
        tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
