"""``cj anchors …`` and ``cj batch execute``: thin shells over :mod:`cjlib.workflow`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cjlib.cli import DatabaseUrl, console, err_console, open_engine, print_json

GRADE_SCALE_HELP = "Grade scale of the anchors (eng5_np_legacy_9_step, …)."


def anchors_register(
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    course_id: Annotated[str, typer.Option("--course-id", help="Course id, e.g. ENG5.")],
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Data set folder with anchors.csv and essays.")
    ],
    grade_scale: Annotated[
        str, typer.Option("--grade-scale", help=GRADE_SCALE_HELP)
    ] = "eng5_np_legacy_9_step",
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
    table = Table(title=f"anchors of {assignment_id} ({reg.grade_scale})")
    for col in ("label", "grade", "file"):
        table.add_column(col)
    for row in reg.anchors.itertuples(index=False):
        table.add_row(row.label, row.grade, str(row.file))
    console.print(table)
    console.print(
        f"anchors: inserted {reg.inserted}, updated {reg.updated}, unchanged {reg.unchanged}; "
        f"instructions {'written' if reg.instructions_written else 'unchanged'}"
        + ("" if reg.changed else " (nothing to do)")
    )


def anchors_verify(
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
        console.print(f"{result.anchor_count} anchors registered for {assignment_id}")
    if not result.ok:
        raise AnchorVerificationFailed("; ".join(result.problems))
    if not as_json:
        console.print("[green]anchors verified[/green]")


def batch_execute(
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    course_id: Annotated[str, typer.Option("--course-id", help="Course id.")],
    batch_id: Annotated[
        str, typer.Option("--batch-id", help="Batch label (only a label; ids are generated).")
    ],
    max_comparisons: Annotated[
        int, typer.Option("--max-comparisons", help="Comparison budget (≥ 2).")
    ],
    judge: Annotated[str, typer.Option("--judge", help="Judge: simulated (alias mock).")] = (
        "simulated"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of judge and pairing.")] = 0,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Student essays folder.")
    ] = None,
    await_completion: Annotated[
        bool, typer.Option("--await-completion", help="Wait for completion, with a deadline.")
    ] = False,
    completion_timeout: Annotated[
        float, typer.Option("--completion-timeout", help="Seconds to wait for completion.")
    ] = 600.0,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Parent folder of the run folder.")
    ] = Path("reports/runs"),
    verbose: Annotated[bool, typer.Option("--verbose", help="Log each wave.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run a CJ batch: create it, judge pairs in waves, finalize, write artefacts."""
    import logging

    from cjlib.workflow import execute_batch

    if verbose:
        logging.getLogger("cjlib").setLevel(logging.INFO)
    result = execute_batch(
        open_engine(database_url),
        assignment_id=assignment_id,
        course_id=course_id,
        batch_label=batch_id,
        max_comparisons=max_comparisons,
        judge=judge,
        seed=seed,
        dataset=dataset,
        await_completion=await_completion,
        completion_timeout=completion_timeout,
        output_dir=output_dir,
        progress=not as_json,
    )
    summary = result.summary()
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"CJ batch {result.cj_batch_id} ({result.batch_label})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
    if result.status != "COMPLETE_STABLE" or result.state != "COMPLETED":
        err_console.print(f"batch {result.cj_batch_id} ended {result.status}/{result.state}")
        raise typer.Exit(1)


def register(groups: dict[str, typer.Typer]) -> None:
    """Add the anchors and batch-execute commands."""
    groups["anchors"].command("register")(anchors_register)
    groups["anchors"].command("verify")(anchors_verify)
    groups["batch"].command("execute")(batch_execute)
