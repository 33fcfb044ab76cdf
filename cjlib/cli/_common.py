"""What the ``cj`` command groups share: consoles, common options and small renderers."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from sqlalchemy import Engine

console = Console(soft_wrap=True)
err_console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default CJ_DATABASE_URL, else ./data/cj.sqlite3.",
        show_default=False,
    ),
]

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

JsonFlag = Annotated[bool, typer.Option("--json", help="Write one JSON object to stdout.")]

ForceForeign = Annotated[
    bool,
    typer.Option(
        "--force-foreign",
        help="Also act on a database that holds tables but is not a cj database.",
    ),
]

#: Help of ``--batch-label`` (alias ``--batch-id``, the name the seed's command pattern uses).
BATCH_LABEL_HELP = "Batch label, free text (alias --batch-id); the numeric id is generated."


def open_engine(url: str | None, *, readonly: bool = False) -> Engine:
    """An engine for ``url`` whose schema is current (one-line error otherwise).

    ``readonly`` (``cj health``, ``cj batch inspect``): a missing SQLite file is an error, the
    file is opened in SQLite's read-only mode and a PostgreSQL session is READ ONLY, so the
    command creates, migrates and switches nothing.
    """
    from cjlib.db import get_engine, require_current_schema

    engine = get_engine(url, readonly=readonly)
    try:
        return require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise


def print_json(obj: object) -> None:
    """Write ``obj`` as JSON to stdout (no Rich markup, so it pipes cleanly)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def show(value: object) -> str:
    """``value`` as table text; user data (labels, reasons) may hold [brackets] Rich would parse."""
    return "-" if value is None else escape(str(value))


def age(seconds: float | None) -> str:
    """A duration in seconds as ``1h 02m``, ``3m 04s`` or ``5s``."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def when(value: datetime | None) -> str:
    """A UTC timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
