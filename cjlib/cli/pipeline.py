"""``cj pipeline``: the four notebooks into one run folder (:func:`cjlib.pipeline.run_pipeline`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cjlib.cli import _llm
from cjlib.cli._common import BATCH_LABEL_HELP, DatabaseUrl, console, err_console
from cjlib.defaults import (
    DEFAULT_ASSIGNMENT_ID,
    DEFAULT_BATCH_LABEL,
    DEFAULT_COURSE_ID,
    DEFAULT_MAX_COMPARISONS,
    DEFAULT_SEED,
)

app = typer.Typer()


@app.command("pipeline")
def pipeline(
    database_url: DatabaseUrl = None,
    assignment_id: Annotated[
        str, typer.Option("--assignment-id", help="Assignment id.")
    ] = DEFAULT_ASSIGNMENT_ID,
    course_id: Annotated[str, typer.Option("--course-id", help="Course id.")] = DEFAULT_COURSE_ID,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Data set folder (default: ./data/eng5_np_2016, else the one shipped with cjlib).",
        ),
    ] = None,
    batch_label: Annotated[
        str, typer.Option("--batch-label", "--batch-id", help=BATCH_LABEL_HELP)
    ] = DEFAULT_BATCH_LABEL,
    max_comparisons: Annotated[
        int, typer.Option("--max-comparisons", help="Comparison budget (≥ 2).")
    ] = DEFAULT_MAX_COMPARISONS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of judge and pairing.")] = DEFAULT_SEED,
    judge: Annotated[
        str, typer.Option("--judge", help="Judge: simulated (alias mock), llm or replay.")
    ] = "simulated",
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Parent folder of the run folder.")
    ] = Path("reports/runs"),
    judgements: Annotated[
        Path | None,
        typer.Option(
            "--judgements",
            help="Import mode: a human decision export (CSV, TSV, xlsx) becomes the batch "
            "instead of the simulated judge; notebook 01 is skipped.",
        ),
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(
            "--anchors", help="With --judgements: CSV of essay_id, grade marking anchors."
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="With --judgements: task of a multi-task file.")
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="With --judgements: layout (auto, nmm, candidate, won_lost, winner_loser, "
            "id1_id2, left_right, cjlib).",
        ),
    ] = "auto",
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="With --judgements: canonical=source column mapping, repeatable.",
            show_default=False,
        ),
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--parameter",
            "-p",
            help="Notebook parameter key=value (value read as JSON if it parses); repeatable.",
        ),
    ] = None,
    kernel: Annotated[
        str | None, typer.Option("--kernel", help="Jupyter kernel (default python3).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress", help="Show per-cell progress bars on stderr.")
    ] = False,
    # -- LLM judge options (cjlib/cli/_llm.py), passed to notebook 02 --
    llm_base_url: _llm.LLMBaseUrl = None,
    llm_model: _llm.LLMModel = None,
    prompt_template: _llm.PromptTemplateFile = None,
    max_cost_usd: _llm.MaxCostUsd = None,
    both_orders: _llm.BothOrders = False,
    replay_from: _llm.ReplayFrom = None,
) -> None:
    """Run the four notebooks into one run folder; print the HTML report's path last.

    Runs ./notebooks/*.ipynb when the folder has them (cj init), else cjlib's own notebooks.
    With --judgements the batch is imported from a decision file instead of judged.
    """
    from cjlib.cli.judgements import parse_column_mappings
    from cjlib.errors import UsageError
    from cjlib.pipeline import notebooks_dir, parse_parameters, run_pipeline

    if judgements is None and (anchors or task or column or format != "auto"):
        raise UsageError("--anchors, --task, --format and --column need --judgements PATH")
    notebooks = notebooks_dir()
    extra = parse_parameters(parameter or [])
    llm_options = {
        "llm_base_url": llm_base_url,
        "llm_model": llm_model,
        "prompt_template": None if prompt_template is None else str(prompt_template),
        "max_cost_usd": max_cost_usd,
        "both_orders": both_orders or None,
        "replay_from": replay_from,
    }
    extra.update({k: v for k, v in llm_options.items() if v is not None})
    result = run_pipeline(
        database_url=database_url,
        assignment_id=assignment_id,
        course_id=course_id,
        dataset=dataset,
        batch_label=batch_label,
        max_comparisons=max_comparisons,
        seed=seed,
        judge=judge,
        output_dir=output_dir,
        judgements=judgements,
        judgements_anchors=anchors,
        judgements_task=task,
        judgements_format=format,
        judgements_columns=parse_column_mappings(column or []),
        extra_parameters=extra,
        kernel_name=kernel,
        progress=progress,
        on_notebook=lambda name: err_console.print(
            f"running {name}", highlight=False, markup=False
        ),
    )
    console.print(f"cj_batch_id {result.cj_batch_id}", highlight=False)
    console.print(f"notebooks {notebooks}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"run folder {result.run_dir}", highlight=False, soft_wrap=True, markup=False)
    # The last line is the bare path, for scripts: `open "$(cj pipeline | tail -n 1)"`.
    sys.stdout.write(f"{result.report_html}\n")
