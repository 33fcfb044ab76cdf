"""Registers the ``cj`` sub-commands that later modules provide (anchors, batch, health, …)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, db_app: typer.Typer) -> None:
    """Attach every sub-command group to the root app (idempotent)."""
    if getattr(app, "_cj_registered", False):
        return
    app._cj_registered = True  # type: ignore[attr-defined]
