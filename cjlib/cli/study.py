"""``cj study``: the design study notebook into one run folder (:func:`cjlib.study.run_study`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cjlib import defaults
from cjlib.cli._common import console, err_console
from cjlib.errors import UsageError

app = typer.Typer()


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--strategies needs at least one name, e.g. balanced,adaptive")
    return names


def _sizes(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"--per-essay must be numbers separated by commas, e.g. 3,5,10; got {text!r}"
        ) from None


@app.command("study")
def study(
    strategies: Annotated[
        str, typer.Option("--strategies", help="Pairing strategies, comma-separated.")
    ] = ",".join(defaults.DEFAULT_STUDY_STRATEGIES),
    per_essay: Annotated[
        str, typer.Option("--per-essay", help="Comparisons per essay, comma-separated.")
    ] = ",".join(str(p) for p in defaults.DEFAULT_STUDY_PER_ESSAY),
    seeds: Annotated[int, typer.Option("--seeds", help="Simulated populations per setting.")] = (
        defaults.DEFAULT_STUDY_SEEDS
    ),
    students: Annotated[
        int, typer.Option("--students", help="Student essays per batch (plus 12 anchors).")
    ] = defaults.DEFAULT_STUDY_STUDENTS,
    discrimination: Annotated[
        float, typer.Option("--discrimination", help="Judge D: P(A wins) = σ(D·(θA − θB)).")
    ] = defaults.DEFAULT_STUDY_DISCRIMINATION,
    judge_noise: Annotated[
        float, typer.Option("--judge-noise", help="Share of coin-toss decisions, in [0, 1].")
    ] = defaults.DEFAULT_STUDY_JUDGE_NOISE,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Parent folder of the run folder.")
    ] = Path("reports/runs"),
    kernel: Annotated[
        str | None, typer.Option("--kernel", help="Jupyter kernel (default python3).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress", help="Show per-cell progress bars on stderr.")
    ] = False,
) -> None:
    """Simulate how many comparisons each pairing strategy needs; print the HTML report's path last.

    Runs notebook 05_design_study (in process, no database) into a fresh run folder with
    design_study.csv and design_study.html.
    """
    from cjlib.study import run_study

    err_console.print("running 05_design_study", highlight=False, markup=False)
    result = run_study(
        strategies=_names(strategies),
        per_essay=_sizes(per_essay),
        seeds=seeds,
        students=students,
        discrimination=discrimination,
        judge_noise=judge_noise,
        output_dir=output_dir,
        kernel_name=kernel,
        progress=progress,
    )
    console.print(f"csv {result.csv_path}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"run folder {result.run_dir}", highlight=False, soft_wrap=True, markup=False)
    # The last line is the bare path, for scripts: `open "$(cj study | tail -n 1)"`.
    sys.stdout.write(f"{result.report_html}\n")
