"""``cj pipeline --judgements``: an imported human batch through notebooks 02–04 (SQLite)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from cjlib.cli.main import main as cli_main
from cjlib.notebook import read_batch_record
from cjlib.package_data import packaged_notebooks_dir
from cjlib.pipeline import NOTEBOOKS, REPORT_HTML
from cjlib.report.checklist import CHECKS
from cjlib.report.figures import FIGURES
from cjlib.workflow.artefacts import EXECUTE_RECORD, validate_assessment_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "judgements"
PNG = 'src="data:image/png;base64,'
PANEL_COLUMNS = ("judge_id", "decisions", "infit", "outfit", "misfit", "median_seconds",
                 "left_share")  # fmt: skip


def _pipeline(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(
        [
            "pipeline",
            "--database-url", f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            "--output-dir", str(tmp_path / "runs"),
            *args,
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _checklist(html: str) -> list[tuple[str, str, str]]:
    table = re.search(r'<table[^>]*id="success-checklist".*?</table>', html, re.S)
    assert table, "the report has no success checklist table"
    return re.findall(
        r'<tr class="(pass|fail)"><td>.*?</td><td>(.*?)</td><td>(.*?)</td>', table.group(0), re.S
    )


def _judge_table(html: str) -> list[list[str]]:
    """Rows of the HTML table whose header is the per-judge table's."""
    for table in re.findall(r"<table.*?</table>", html, re.S):
        header = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", table, re.S)
        if [h.strip() for h in header if h.strip()] == list(PANEL_COLUMNS):
            body = table.split("</thead>")[-1]
            cell = r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>"
            return [
                [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(cell, row, re.S)]
                for row in re.findall(r"<tr.*?</tr>", body, re.S)
            ]
    raise AssertionError("the report has no per-judge table")


def _png_outputs(notebook: Path) -> int:
    nb = nbformat.read(str(notebook), as_version=4)
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def _report(out: str) -> tuple[Path, str]:
    html_path = Path(out.strip().splitlines()[-1])
    assert html_path.name == REPORT_HTML and html_path.is_file()
    return html_path.parent, html_path.read_text(encoding="utf-8")


def _common_report_checks(run_dir: Path, html: str) -> None:
    # Notebook 01 (anchor registration) does not run for an import.
    assert not (run_dir / f"{NOTEBOOKS[0]}.ipynb").exists()
    assert all((run_dir / f"{name}.ipynb").is_file() for name in NOTEBOOKS[1:])
    record = json.loads((run_dir / EXECUTE_RECORD).read_text())
    validate_assessment_run(record)
    assert record["metadata"]["cj_batch_id"] == read_batch_record(run_dir)["cj_batch_id"]
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
    assert "Human judging panel" in html
    assert "Decisions over time" in html and "Split-half reliability" in html
    # Every standard figure plus the decisions-over-time figure, all embedded.
    assert html.count(PNG) == _png_outputs(run_dir / "04_validation_report.ipynb")
    assert html.count(PNG) == len(FIGURES) + 1
    assert "no true grades are known" in html
    rows = _checklist(html)
    assert [check for _, check, _ in rows] == list(CHECKS)
    assert {status for status, _, _ in rows} == {"pass"}, rows


def test_pipeline_imports_nmm_export_without_anchors(tmp_path, capsys):
    code, out, err = _pipeline(
        tmp_path, capsys,
        "--judgements", str(FIXTURES / "nmm_export.csv"), "--batch-label", "nmm-panel",
    )  # fmt: skip
    assert code == 0, err
    assert "running 01_register_anchors" not in err
    run_dir, html = _report(out)
    _common_report_checks(run_dir, html)
    # The projection line passes with its reason; there are no projections.
    evidence = _checklist(html)[3][2]
    assert "imported without anchors" in evidence and "no_anchors" in evidence
    assert (run_dir / "grade_projections.csv").read_text().count("\n") <= 1
    # The per-judge table: three judges with the file's times and the left share (isLeft).
    judges = {row[0]: row for row in _judge_table(html)}
    assert set(judges) == {"j1", "j2", "j3"}
    assert sum(int(row[1]) for row in judges.values()) == 32
    assert all(re.fullmatch(r"\d+\.\d+", row[5]) for row in judges.values())  # median seconds
    assert all(re.fullmatch(r"[01]\.\d+", row[6]) for row in judges.values())  # left share
    assert re.search(r"<td>positions</td>\s*<td>known</td>", html)
    # cj health does not treat the batch without projections as a failure.
    assert cli_main(["health", "--database-url", f"sqlite:///{tmp_path / 'cj.sqlite3'}"]) == 0


def test_pipeline_imports_winner_loser_file_with_anchors(tmp_path, capsys):
    code, out, err = _pipeline(
        tmp_path, capsys,
        "--judgements", str(FIXTURES / "winner_loser.tsv"),
        "--anchors", str(FIXTURES / "anchors.csv"),
        "--batch-label", "wl-panel",
    )  # fmt: skip
    assert code == 0, err
    run_dir, html = _report(out)
    _common_report_checks(run_dir, html)
    assert _checklist(html)[3][2].startswith("5 projections; 3 anchors")
    assert (run_dir / "grade_projections.csv").read_text().count("\n") == 6  # header + 5
    judges = _judge_table(html)
    assert {row[0] for row in judges} == {"j1", "j2", "j3"}
    # The file gives no positions: no left share, and the report says why.
    assert {row[6] for row in judges} == {"–"}
    assert re.search(r"<td>positions</td>\s*<td>unknown \(stored winner-first\)</td>", html)
    assert "position bias of the judges cannot be measured" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judgements", str(FIXTURES / "bad_empty_winner.csv")], "bad_empty_winner.csv"),
        (
            [
                "--judgements", str(FIXTURES / "nmm_export.csv"),
                "--anchors", str(FIXTURES / "bad_anchors_unknown_id.csv"),
            ],
            "zz9",
        ),
        (
            [
                "--judgements", str(FIXTURES / "nmm_export.csv"),
                "--anchors", str(FIXTURES / "bad_anchors_unknown_grade.csv"),
            ],
            "bad_anchors_unknown_grade.csv",
        ),
        (["--judgements", str(FIXTURES / "nmm_two_tasks.csv")], "--task"),
        (["--anchors", str(FIXTURES / "anchors.csv")], "need --judgements"),
        (["--judgements", str(FIXTURES / "no-such-file.csv")], "no such file"),
    ],
)  # fmt: skip
def test_bad_judgements_exit_2_with_one_line_before_any_kernel(tmp_path, capsys, args, message):
    code, _, err = _pipeline(tmp_path, capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "running" not in err
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "cj.sqlite3").exists()


def test_working_folder_notebooks_without_import_mode_are_refused(tmp_path, capsys, monkeypatch):
    notebooks = tmp_path / "work" / "notebooks"
    shutil.copytree(packaged_notebooks_dir(), notebooks)
    old = notebooks / f"{NOTEBOOKS[1]}.ipynb"
    nb = nbformat.read(str(old), as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = "\n".join(
                line for line in cell.source.splitlines() if not line.startswith("judgements_")
            )
    nbformat.write(nb, str(old))
    monkeypatch.chdir(tmp_path / "work")
    code, _, err = _pipeline(tmp_path, capsys, "--judgements", str(FIXTURES / "nmm_export.csv"))
    assert code == 2
    assert "no import-mode parameters" in err and "cj init --force" in err
    assert not (tmp_path / "runs").exists()
