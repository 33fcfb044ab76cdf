"""``cj db …``: create, migrate and reset the CJ database.

Thin shells over :mod:`cjlib.db` (migrations) and :mod:`cjlib.maintenance` (reset).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cjlib.cli._common import DatabaseUrl, console
from cjlib.errors import UsageError

app = typer.Typer(help="Create, migrate and reset the CJ database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(database_url: DatabaseUrl = None) -> None:
    """Migrate the database to the newest schema (creates it when empty)."""
    from cjlib.db import get_engine, safe_url
    from cjlib.db import upgrade as upgrade_schema

    engine = get_engine(database_url)
    revision = upgrade_schema(engine)
    shown = safe_url(engine.url.render_as_string(False))
    console.print(f"database {shown} at {revision}", markup=False)


@app.command("current")
def current(database_url: DatabaseUrl = None) -> None:
    """Show the schema revision of the database and the newest one shipped."""
    from cjlib.db import current_revision, get_engine, head_revision

    engine = get_engine(database_url)
    revision, head = current_revision(engine), head_revision()
    state = "up to date" if revision == head else "needs `cj db upgrade`"
    console.print(f"current: {revision or '(empty)'}  head: {head}  ({state})", markup=False)


@app.command("reset")
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every table is dropped.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Drop every table and view of a local dev/test database and migrate it again."""
    from cjlib.db import get_engine, safe_url
    from cjlib.maintenance import ensure_disposable_database, reset_database

    if not yes:
        raise UsageError("`cj db reset` drops every table and all data; pass --yes to confirm")
    ensure_disposable_database(database_url)
    engine = get_engine(database_url)
    try:
        revision = reset_database(engine)
    finally:
        engine.dispose()
    shown = safe_url(engine.url.render_as_string(hide_password=False))
    console.print(f"database {shown} reset: empty, at revision {revision}", markup=False)
