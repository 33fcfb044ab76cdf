"""The root ``cj`` app: joins the command groups and turns domain errors into exit codes.

Laid out as Typer's docs lay out a larger app: every command group is a module of this
package with its own ``typer.Typer()``, added here with ``add_typer`` (with a name for a group
such as ``cj db …``, without one for a single top-level command such as ``cj health``).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from cjlib import __version__
from cjlib.cli import anchors, batch, db, health, judgements, pipeline, study, workspace
from cjlib.cli._common import console, err_console
from cjlib.errors import CJError

app = typer.Typer(
    name="cj",
    help="Comparative judgement of essays: database, anchors, batches, health, pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(anchors.app, name="anchors")
app.add_typer(batch.app, name="batch")
app.add_typer(judgements.app, name="judgements")
app.add_typer(health.app)
app.add_typer(pipeline.app)
app.add_typer(workspace.app)
app.add_typer(study.app)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command("version")
def version() -> None:
    """Print the cjlib version."""
    console.print(__version__, markup=False)


def main(argv: list[str] | None = None) -> int:
    """Run ``cj`` with ``argv``; domain errors become one line on stderr and their exit code."""
    try:
        # Without standalone mode Click returns a command's exit code instead of raising.
        result = app(args=argv, prog_name="cj", standalone_mode=False)
    except CJError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        return err.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:
        # Typer vendors its own Click in newer releases, so match Click's usage errors by
        # shape rather than by class.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if type(exc).__name__ == "Abort":
            err_console.print("aborted")
            return 1
        raise
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point of ``cj`` (``cj = "cjlib.cli.main:run"``)."""
    sys.exit(main())
