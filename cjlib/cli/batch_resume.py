"""``cj batch resume``: continue a batch whose process died, as one more worker.

Registered onto the ``batch`` Typer app of :mod:`cjlib.cli.batch` (kept in its own module so
the ``batch`` group's other commands can change independently). The work is
:func:`cjlib.workflow.resume_batch`; this is the shell around it:

- a batch that is already final says so and exits 0 (nothing is sent or written);
- a FAILED or CANCELLED batch says why and exits 1 (:class:`~cjlib.errors.BatchNotResumable`);
- on SQLite a second live worker is refused with exit 2 (one line); on PostgreSQL several
  ``cj batch resume`` processes share the remaining pairs and exactly one finalizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cjlib.cli._common import (
    BatchId,
    DatabaseUrl,
    JsonFlag,
    console,
    err_console,
    open_engine,
    print_json,
    show,
)
from cjlib.cli.batch import app


@app.command("resume")
def resume(
    cj_batch_id: BatchId,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Judge requests in flight; default the batch's."),
    ] = None,
    completion_timeout: Annotated[
        float,
        typer.Option("--completion-timeout", min=0.0, help="Seconds this worker may take."),
    ] = 600.0,
    no_await: Annotated[
        bool, typer.Option("--no-await", help="No deadline: run until the batch is done.")
    ] = False,
    judge: Annotated[
        str | None,
        typer.Option("--judge", help="Judge name; default the one the batch recorded."),
    ] = None,
    stale_after: Annotated[
        float | None,
        typer.Option(
            "--stale-after",
            min=0.0,
            help="Seconds of silence after which another worker counts as dead (default 30).",
        ),
    ] = None,
    finalize_now: Annotated[
        bool,
        typer.Option(
            "--finalize-now",
            help="Send nothing more: finalize what was decided (completion reason interrupted).",
        ),
    ] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Parent folder of the run folder for artefacts."),
    ] = Path("reports/runs"),
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Continue a batch a crash left unfinished: judge what is left, then finalize it."""
    from cjlib.workflow.execute import resume_batch

    engine = open_engine(database_url)
    try:
        result = resume_batch(
            engine,
            cj_batch_id,
            judge=judge,
            concurrency=concurrency,
            await_completion=not no_await,
            completion_timeout=completion_timeout,
            output_dir=output_dir,
            stale_after=stale_after,
            finalize_now=finalize_now,
        )
    finally:
        engine.dispose()
    already_final = result.finalization is not None and result.finalization.already_final
    summary = {**result.summary(), "already_final": already_final}
    if as_json:
        print_json(summary)
    elif already_final:
        console.print(
            f"batch {cj_batch_id} is already final ({result.status}/{result.state}, "
            f"completion reason {result.completion_reason or '-'}); nothing to resume",
            markup=False,
        )
        return
    else:
        table = Table(title=f"CJ batch {cj_batch_id} resumed", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in summary.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            table.add_row(key, show(value))
        console.print(table)
    if not already_final and (result.status != "COMPLETE_STABLE" or result.state != "COMPLETED"):
        err_console.print(f"batch {cj_batch_id} ended {result.status}/{result.state}", markup=False)
        raise typer.Exit(1)
