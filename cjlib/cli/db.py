"""``cj db …``: create, migrate and reset the CJ database.

Thin shells over :mod:`cjlib.db` (migrations) and :mod:`cjlib.maintenance` (reset).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cjlib.cli._common import DatabaseUrl, ForceForeign, console
from cjlib.errors import UsageError

app = typer.Typer(help="Create, migrate and reset the CJ database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(database_url: DatabaseUrl = None, force_foreign: ForceForeign = False) -> None:
    """Migrate the database to the newest schema (creates it when empty)."""
    from cjlib.db import get_engine, safe_url
    from cjlib.db import upgrade as upgrade_schema

    engine = get_engine(database_url)
    try:
        revision = upgrade_schema(engine, force_foreign=force_foreign)
    finally:
        engine.dispose()
    console.print(f"database {safe_url(engine.url)} at {revision}", markup=False)


@app.command("current")
def current(database_url: DatabaseUrl = None) -> None:
    """Say what the database holds (its schema revision against the newest one shipped).

    Read-only: a missing SQLite file is an error (nothing is created) and the file is opened
    in SQLite's read-only mode. Exit 0 when the schema is up to date, 1 otherwise.
    """
    from cjlib.db import get_engine, schema_status

    engine = get_engine(database_url, readonly=True)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    console.print(status.describe(), markup=False, highlight=False)
    if not status.up_to_date:
        raise typer.Exit(1)


@app.command("reset")
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every table is dropped.")] = False,
    database_url: DatabaseUrl = None,
    force_foreign: ForceForeign = False,
) -> None:
    """Drop every table and view of a local dev/test database and migrate it again."""
    from cjlib.db import get_engine, safe_url
    from cjlib.maintenance import ensure_disposable_database, reset_database

    if not yes:
        raise UsageError("`cj db reset` drops every table and all data; pass --yes to confirm")
    ensure_disposable_database(database_url, force_foreign=force_foreign)
    engine = get_engine(database_url)
    try:
        revision = reset_database(engine, force_foreign=force_foreign)
    finally:
        engine.dispose()
    console.print(
        f"database {safe_url(engine.url)} reset: empty, at revision {revision}", markup=False
    )
