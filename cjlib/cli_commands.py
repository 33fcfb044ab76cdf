"""Registers the ``cj`` sub-command groups that live next to the code they drive."""

from __future__ import annotations

import importlib

import typer

#: Modules that provide ``register(app, groups)``; each adds its commands to the groups.
_PROVIDERS = ("cjlib.cli_workflow", "cjlib.cli_diagnostics", "cjlib.cli_pipeline")


def register(app: typer.Typer, db_app: typer.Typer) -> None:
    """Attach every sub-command group to the root app (idempotent)."""
    if getattr(app, "_cj_registered", False):
        return
    app._cj_registered = True  # type: ignore[attr-defined]
    anchors_app = typer.Typer(help="Register and verify anchor essays.", no_args_is_help=True)
    batch_app = typer.Typer(help="Run, inspect and clean up CJ batches.", no_args_is_help=True)
    app.add_typer(anchors_app, name="anchors")
    app.add_typer(batch_app, name="batch")
    groups = {"app": app, "db": db_app, "anchors": anchors_app, "batch": batch_app}
    for name in _PROVIDERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(groups)
