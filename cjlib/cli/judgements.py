"""``cj judgements …``: import human decision exports (parse → call cjlib → render).

A Typer sub-app for the ``cjlib.cli`` package (move it to ``cjlib/cli/judgements.py``); the
root ``cj`` app joins it with ``add_typer(app, name="judgements")``. Domain errors become one
line on stderr and their exit code here as well, so the sub-app behaves the same when run on
its own (tests, CliRunner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cjlib.cli._common import DatabaseUrl, JsonFlag, console, err_console, open_engine, print_json
from cjlib.errors import CJError, UsageError
from cjlib.importing import MAPPABLE_COLUMNS

app = typer.Typer(
    help="Import human comparative-judgement decisions (No More Marking, winner/loser, …).",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    # A callback keeps `import` a named sub-command even while it is the group's only one.
    pass


def parse_column_mappings(values: list[str]) -> dict[str, str]:
    """``["winner_id=Chosen", …]`` → ``{"winner_id": "Chosen"}`` (UsageError when malformed)."""
    mapping: dict[str, str] = {}
    for value in values:
        canonical, sep, source = value.partition("=")
        canonical, source = canonical.strip(), source.strip()
        if not sep or not canonical or not source:
            raise UsageError(
                f"--column {value!r}: write canonical=source, e.g. --column winner_id=Chosen"
            )
        if canonical in mapping:
            raise UsageError(f"--column {canonical} given twice; give each canonical name once")
        mapping[canonical] = source
    return mapping


def _render(summary: dict) -> None:
    console.print(
        f"imported batch [bold]{summary['cj_batch_id']}[/bold] "
        f"({escape(summary['batch_label'])}): {summary['comparisons']} comparisons, "
        f"{summary['essays']} essays ({summary['anchors']} anchors), {summary['judges']} judges"
    )
    console.print(
        f"rows read {summary['rows_read']}, excluded {summary['excluded']}, duplicate ids "
        f"{summary['duplicates']}, other tasks {summary['other_tasks']}; positions "
        f"{'known' if summary['positions_known'] else 'unknown'}"
    )
    reliability = summary["reliability"]
    projected = (
        f"{summary['grade_projections']} grade projections"
        if summary["projection_unavailable_reason"] is None
        else f"no grade projections ({summary['projection_unavailable_reason']})"
    )
    console.print(
        f"status {summary['status']} / {summary['state']}; reliability "
        f"{'-' if reliability is None else f'{reliability:.3f}'}; {projected}"
    )


@app.command("import")
def import_cmd(
    path: Annotated[
        Path, typer.Argument(help="Decision file: CSV, TSV or Excel .xlsx.", show_default=False)
    ],
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    course_id: Annotated[str, typer.Option("--course-id", help="Course id, e.g. ENG5.")],
    batch_label: Annotated[str, typer.Option("--batch-label", help="Label of the new batch.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Layout: auto, nmm, candidate, won_lost, winner_loser, id1_id2, left_right, "
            "cjlib.",
        ),
    ] = "auto",
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="canonical=source, repeatable; canonical: " + ", ".join(MAPPABLE_COLUMNS) + ".",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Task to import from a multi-task file.")
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option("--anchors", help="CSV of essay_id, grade marking anchors in the file."),
    ] = None,
    essays: Annotated[
        Path | None,
        typer.Option("--essays", help="Folder of <essay id>.txt/.md/.docx texts (optional)."),
    ] = None,
    grade_scale: Annotated[
        str | None,
        typer.Option("--grade-scale", help="Scale of the anchor grades (default: assignment's)."),
    ] = None,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Import a decision export as a new batch, score it and project grades (with --anchors).

    Everything is checked before anything is written; one transaction writes the batch, and
    the finalizer completes it (COMPLETE_STABLE / COMPLETED).
    """
    from cjlib.importing import read_judgement_file
    from cjlib.workflow.imports import import_judgements

    try:
        decisions = read_judgement_file(
            path, format=format, columns=parse_column_mappings(column or []), task=task
        )
        engine = open_engine(database_url)
        try:
            result = import_judgements(
                engine,
                decisions,
                assignment_id=assignment_id,
                course_id=course_id,
                batch_label=batch_label,
                anchors=anchors,
                essays_dir=essays,
                grade_scale=grade_scale,
            )
        finally:
            engine.dispose()
    except CJError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(err.exit_code) from None
    summary = result.summary()
    if as_json:
        print_json(summary)
    else:
        _render(summary)
