"""``cj study`` end to end: notebook 05 with papermill, the CSV and the no-input HTML report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cjlib.cli.main import main
from cjlib.design import COLUMNS

PNG = 'src="data:image/png;base64,'


def test_a_small_study_writes_the_csv_and_a_report_without_live_scripts(tmp_path, capsys):
    code = main(
        [
            "study", "--strategies", "balanced,adaptive", "--per-essay", "2,4", "--seeds", "1",
            "--students", "8", "--discrimination", "1.5", "--judge-noise", "0.1",
            "--output-dir", str(tmp_path / "runs"),
        ]
    )  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = Path(lines[-1])  # the report's path is the last line, for scripts
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("_design_study")
    assert report == run_dir / "design_study.html"
    frame = pd.read_csv(run_dir / "design_study.csv")
    assert list(frame.columns) == list(COLUMNS)
    assert sorted(zip(frame["strategy"], frame["per_essay"], strict=True)) == [
        ("adaptive", 2), ("adaptive", 4), ("balanced", 2), ("balanced", 4),
    ]  # fmt: skip
    # 20 essays (12 anchors + 8 students): per_essay · 20 / 2 comparisons.
    assert list(frame.sort_values(["strategy", "per_essay"])["comparisons"]) == [20, 40, 20, 40]
    assert frame["true_reliability"].between(0, 1).all()
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html.lower()  # opens offline, runs nothing
    assert PNG in html  # the curves, embedded
    assert "Conclusions" in html and "comparisons per essay" in html
    assert "run_design_study(" not in html  # no code cells
    assert (run_dir / "05_design_study.ipynb").is_file()


def test_a_bad_setting_is_refused_before_a_run_folder_exists(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["study", "--per-essay", "0,5", "--output-dir", str(out)]) == 2
    assert "comparisons per essay must be at least 1" in capsys.readouterr().err
    assert main(["study", "--strategies", "swiss", "--output-dir", str(out)]) == 2
    assert "unknown pairing strategy 'swiss'" in capsys.readouterr().err
    assert main(["study", "--per-essay", "3,x", "--output-dir", str(out)]) == 2
    assert not out.exists()
