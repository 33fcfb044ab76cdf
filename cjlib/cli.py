"""The ``cj`` command-line tool: parse → call cjlib → render. No logic lives only here."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from cjlib import __version__
from cjlib.errors import CJError

console = Console(soft_wrap=True)
err_console = Console(stderr=True)

app = typer.Typer(
    name="cj",
    help="Comparative judgement of essays: database, anchors, batches, health, pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Create, migrate and reset the CJ database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default CJ_DATABASE_URL, else the embedded data/cj.sqlite3.",
        show_default=False,
    ),
]


def open_engine(url: str | None):
    """An engine for ``url`` whose schema is current (one-line error otherwise)."""
    from cjlib.db import get_engine, require_current_schema

    return require_current_schema(get_engine(url))


BatchId = Annotated[
    int,
    typer.Argument(
        metavar="CJ_BATCH_ID",
        min=1,
        max=2**63 - 1,
        help="cj_batch_uploads.id of the batch.",
        show_default=False,
    ),
]


def print_json(obj: object) -> None:
    """Write ``obj`` as JSON to stdout (no Rich markup, so it pipes cleanly)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command("version")
def version_cmd() -> None:
    """Print the cjlib version."""
    console.print(__version__)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Migrate the database to the newest schema (creates it when empty)."""
    from cjlib.db import get_engine, safe_url, upgrade

    engine = get_engine(database_url)
    revision = upgrade(engine)
    console.print(f"database {safe_url(engine.url.render_as_string(False))} at {revision}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Show the schema revision of the database and the newest one shipped."""
    from cjlib.db import current_revision, get_engine, head_revision

    engine = get_engine(database_url)
    current, head = current_revision(engine), head_revision()
    state = "up to date" if current == head else "needs `cj db upgrade`"
    console.print(f"current: {current or '(empty)'}  head: {head}  ({state})")


def _register_subcommands() -> None:
    # Sub-apps live next to the code they drive; imported here so `cj --help` lists them all.
    from cjlib import cli_commands

    cli_commands.register(app, db_app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cj`` console script: domain errors become one line on stderr."""
    _register_subcommands()
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
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
