"""``cj init DIR``: a researcher's working folder (:func:`cjlib.workspace.init_workspace`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from cjlib.cli._common import console

app = typer.Typer()


@app.command("init")
def init(
    folder: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="Folder to create (new or empty).", show_default=False),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a non-empty folder, replacing its notebooks, sample data and README.",
        ),
    ] = False,
) -> None:
    """Make a working folder: the four notebooks, the ENG5 sample data set and a README."""
    from cjlib.workspace import init_workspace

    workspace = init_workspace(folder, force=force)
    console.print(f"working folder {workspace.path}", markup=False, highlight=False)
    for path in (*workspace.notebooks, workspace.dataset_dir, workspace.readme):
        console.print(f"  {path.relative_to(workspace.path)}", markup=False, highlight=False)
    folder_arg = shlex.quote(str(workspace.path))
    console.print(
        f"next: cd {folder_arg} && cj pipeline   (see {workspace.readme.name})",
        markup=False,
        highlight=False,
    )
