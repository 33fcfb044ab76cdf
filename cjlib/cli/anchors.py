"""``cj anchors …``: register and verify anchor essays (:mod:`cjlib.workflow.anchors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cjlib.cli._common import DatabaseUrl, console, open_engine, print_json, show
from cjlib.defaults import DEFAULT_GRADE_SCALE

app = typer.Typer(help="Register and verify anchor essays.", no_args_is_help=True)

GRADE_SCALE_HELP = "Grade scale of the anchors (eng5_np_legacy_9_step, …)."


@app.command("register")
def register(
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    course_id: Annotated[str, typer.Option("--course-id", help="Course id, e.g. ENG5.")],
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Data set folder with anchors.csv and essays.")
    ],
    grade_scale: Annotated[
        str, typer.Option("--grade-scale", help=GRADE_SCALE_HELP)
    ] = DEFAULT_GRADE_SCALE,
    database_url: DatabaseUrl = None,
) -> None:
    """Write the assignment's instructions and upsert its anchors (idempotent)."""
    from cjlib.workflow import register_anchors

    reg = register_anchors(
        open_engine(database_url),
        assignment_id=assignment_id,
        course_id=course_id,
        dataset=dataset,
        grade_scale=grade_scale,
    )
    table = Table(title=f"anchors of {show(assignment_id)} ({show(reg.grade_scale)})")
    for col in ("label", "grade", "file"):
        table.add_column(col)
    for row in reg.anchors.itertuples(index=False):
        table.add_row(show(row.label), show(row.grade), show(row.file))
    console.print(table)
    console.print(
        f"anchors: inserted {reg.inserted}, updated {reg.updated}, unchanged {reg.unchanged}; "
        f"instructions {'written' if reg.instructions_written else 'unchanged'}"
        + ("" if reg.changed else " (nothing to do)"),
        markup=False,
    )


@app.command("verify")
def verify(
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    expect: Annotated[
        int | None, typer.Option("--expect", help="Number of anchors that must be registered.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Check the anchor count and that every anchor text resolves in the content store."""
    from cjlib.workflow import verify_anchors
    from cjlib.workflow.anchors import AnchorVerificationFailed

    result = verify_anchors(open_engine(database_url), assignment_id=assignment_id, expect=expect)
    if as_json:
        print_json(
            {
                "assignment_id": assignment_id,
                "anchor_count": result.anchor_count,
                "ok": result.ok,
                "problems": list(result.problems),
                "anchors": result.anchors.to_dict(orient="records"),
            }
        )
    else:
        console.print(f"{result.anchor_count} anchors registered for {assignment_id}", markup=False)
    if not result.ok:
        raise AnchorVerificationFailed("; ".join(result.problems))
    if not as_json:
        console.print("[green]anchors verified[/green]")
